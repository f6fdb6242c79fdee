//! Exchange's side of the model: the `SendNotification` bodies one subscription posts, with
//! watermarks that chain, timestamps that grow, and the Inbox count.

/// One subscription's notification stream.
#[derive(Clone, Debug)]
pub(crate) struct Stream {
    pub(crate) subscription_id: String,
    pub(crate) inbox: String,
    /// The last watermark Exchange sent.
    watermark: u64,
    /// Seconds since midnight of the last event.
    clock: u32,
    /// The last notification with events other than heartbeats, for a redelivery.
    pub(crate) last: Option<String>,
}

impl Stream {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            subscription_id: format!("SUB-{n}-AAMkAGI2TG93AAA="),
            inbox: format!(
                "INBOX-{n}-AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAA="
            ),
            watermark: 0,
            clock: 0,
            last: None,
        }
    }

    fn mark(n: u64) -> String {
        format!("AQAAAJ6Xmtv4ya7Fg7VYBjxa{n:016}AAAAAAAE=")
    }

    fn stamp(&mut self) -> String {
        self.clock += 1;
        let (h, m, s) = (self.clock / 3600, self.clock / 60 % 60, self.clock % 60);
        format!("2026-03-04T{h:02}:{m:02}:{s:02}Z")
    }

    /// A heartbeat: nothing changed.
    pub(crate) fn heartbeat(&mut self) -> String {
        let mark = Self::mark(self.watermark);
        envelope(
            &self.subscription_id,
            &mark,
            &format!("<t:StatusEvent><t:Watermark>{mark}</t:Watermark></t:StatusEvent>"),
        )
    }

    /// New mail (with `new_mail`) or a read, leaving `unread` in the Inbox; `skip` watermarks
    /// were lost on the way (a gap).
    pub(crate) fn change(&mut self, unread: u32, new_mail: bool, skip: u64) -> String {
        let previous = Self::mark(self.watermark + skip);
        let mut events = String::new();
        if new_mail {
            self.watermark += 1 + skip;
            let stamp = self.stamp();
            events.push_str(&format!(
                "<t:NewMailEvent><t:Watermark>{}</t:Watermark><t:TimeStamp>{stamp}</t:TimeStamp>\
                 <t:ItemId Id=\"ITEM-{}\" ChangeKey=\"CQAAAA==\" />\
                 <t:ParentFolderId Id=\"{}\" ChangeKey=\"AQAAAA==\" /></t:NewMailEvent>",
                Self::mark(self.watermark),
                self.watermark,
                self.inbox
            ));
        } else {
            self.watermark += skip;
        }
        self.watermark += 1;
        let stamp = self.stamp();
        events.push_str(&format!(
            "<t:ModifiedEvent><t:Watermark>{}</t:Watermark><t:TimeStamp>{stamp}</t:TimeStamp>\
             <t:FolderId Id=\"{}\" ChangeKey=\"AQAAAA==\" />\
             <t:ParentFolderId Id=\"ROOT\" ChangeKey=\"AQAAAA==\" />\
             <t:UnreadCount>{unread}</t:UnreadCount></t:ModifiedEvent>",
            Self::mark(self.watermark),
            self.inbox
        ));
        let body = envelope(&self.subscription_id, &previous, &events);
        self.last = Some(body.clone());
        body
    }
}

fn envelope(subscription_id: &str, previous: &str, events: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/">
  <soap11:Body>
    <m:SendNotification xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
      <m:ResponseMessages>
        <m:SendNotificationResponseMessage ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>
          <m:Notification>
            <t:SubscriptionId>{subscription_id}</t:SubscriptionId>
            <t:PreviousWatermark>{previous}</t:PreviousWatermark>
            <t:MoreEvents>false</t:MoreEvents>
            {events}
          </m:Notification>
        </m:SendNotificationResponseMessage>
      </m:ResponseMessages>
    </m:SendNotification>
  </soap11:Body>
</soap11:Envelope>"#
    )
}
