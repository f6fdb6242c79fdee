//! Playing Exchange for one mailbox: its Inbox unread count, its watermark chain, and the
//! `SendNotification` bodies its activity produces — new-mail bursts (Created + NewMail +
//! Inbox Modified with the true count, sometimes as two `MoreEvents` pages or with the count
//! in a second notification), reads, deletes, moves, heartbeats, redeliveries and gaps.

use std::fmt::Write as _;

use crate::scenario::Mix;

const HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/"><soap11:Header><t:RequestServerVersion xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" Version="Exchange2013"/></soap11:Header><soap11:Body><m:SendNotification xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification>"#;
const TAIL: &str = "</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></soap11:Body></soap11:Envelope>\n";
const DELETED_ITEMS: &str =
    "AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAADKr/dzxJ3dirE4SP0vO+2sQ7V5XQ";

/// What a notification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    NewMail,
    Read,
    Delete,
    Move,
    Heartbeat,
}

impl Activity {
    pub fn pick(mix: &Mix, rng: &mut fastrand::Rng) -> Self {
        let weights = [
            (Self::NewMail, mix.new_mail),
            (Self::Read, mix.read),
            (Self::Delete, mix.delete),
            (Self::Move, mix.move_),
            (Self::Heartbeat, mix.heartbeat),
        ];
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        let mut roll = rng.f64() * total;
        for (activity, weight) in weights {
            if roll < weight {
                return activity;
            }
            roll -= weight;
        }
        Self::Heartbeat
    }
}

/// One notification to send, and what it should do.
#[derive(Clone, Debug)]
pub struct Notification {
    pub body: String,
    /// Exchange's redelivery of an earlier notification: must change nothing.
    pub redelivery: bool,
    /// The Inbox unread count once this notification is applied.
    pub unread_after: u32,
    /// Whether it changes the count (a push is due for the device).
    pub changes_count: bool,
    /// Whether the node may push for it (a count change, or new mail: FCM announces it).
    pub may_push: bool,
}

/// One mailbox as Exchange sees it.
#[derive(Clone, Debug)]
pub struct Mailbox {
    pub index: usize,
    pub subscription_id: String,
    pub inbox: String,
    pub unread: u32,
    watermark: u64,
    items: u64,
    last: Option<String>,
}

impl Mailbox {
    pub fn new(index: usize, subscription_id: String, inbox: String) -> Self {
        Self {
            index,
            subscription_id,
            inbox,
            unread: 0,
            watermark: 0,
            items: 0,
            last: None,
        }
    }

    /// The notifications of one turn of activity (two for a split burst or `MoreEvents`
    /// pages; the original and its copy for a redelivery).
    pub fn turn(
        &mut self,
        mix: &Mix,
        rng: &mut fastrand::Rng,
        timestamp: &str,
    ) -> Vec<Notification> {
        if rng.f64() < mix.redelivery
            && let Some(last) = &self.last
        {
            return vec![Notification {
                body: last.clone(),
                redelivery: true,
                unread_after: self.unread,
                changes_count: false,
                may_push: false,
            }];
        }
        if rng.f64() < mix.gap {
            // A notification Exchange sent and Herald never got.
            self.watermark += 1;
        }
        let activity = Activity::pick(mix, rng);
        let before = self.unread;
        // The watermark the first notification continues from.
        let start = self.watermark;
        let mut bodies = Vec::with_capacity(2);
        match activity {
            Activity::Heartbeat => {
                let wm = self.next_watermark();
                let events =
                    format!("<t:StatusEvent><t:Watermark>{wm}</t:Watermark></t:StatusEvent>");
                bodies.push(self.envelope(start, false, &events));
            }
            Activity::NewMail => {
                let arrived = 1 + rng.u32(0..3);
                let mut mail = String::new();
                for _ in 0..arrived {
                    let item = self.next_item();
                    for kind in ["CreatedEvent", "NewMailEvent"] {
                        let wm = self.next_watermark();
                        let _ = write!(
                            mail,
                            r#"<t:{kind}><t:Watermark>{wm}</t:Watermark><t:TimeStamp>{timestamp}</t:TimeStamp><t:ItemId Id="{item}" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="{}" ChangeKey="AQAAAA=="/></t:{kind}>"#,
                            self.inbox
                        );
                    }
                }
                self.unread += arrived;
                let count = self.inbox_modified(timestamp);
                let page = start + 2 * u64::from(arrived);
                if rng.f64() < mix.more_events {
                    bodies.push(self.envelope(start, true, &mail));
                    bodies.push(self.envelope(page, false, &count));
                } else if rng.f64() < mix.split {
                    bodies.push(self.envelope(start, false, &mail));
                    bodies.push(self.envelope(page, false, &count));
                } else {
                    bodies.push(self.envelope(start, false, &format!("{mail}{count}")));
                }
            }
            Activity::Read | Activity::Delete | Activity::Move => {
                let item = self.next_item();
                let wm = self.next_watermark();
                let inbox = &self.inbox;
                let change = match activity {
                    Activity::Read => format!(
                        r#"<t:ModifiedEvent><t:Watermark>{wm}</t:Watermark><t:TimeStamp>{timestamp}</t:TimeStamp><t:ItemId Id="{item}" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="{inbox}" ChangeKey="AQAAAA=="/></t:ModifiedEvent>"#
                    ),
                    Activity::Delete => format!(
                        r#"<t:DeletedEvent><t:Watermark>{wm}</t:Watermark><t:TimeStamp>{timestamp}</t:TimeStamp><t:ItemId Id="{item}" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="{inbox}" ChangeKey="AQAAAA=="/></t:DeletedEvent>"#
                    ),
                    _ => format!(
                        r#"<t:MovedEvent><t:Watermark>{wm}</t:Watermark><t:TimeStamp>{timestamp}</t:TimeStamp><t:ItemId Id="{item}" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="{DELETED_ITEMS}" ChangeKey="AQAAAA=="/><t:OldItemId Id="{item}" ChangeKey="CQAAAA=="/><t:OldParentFolderId Id="{inbox}" ChangeKey="AQAAAA=="/></t:MovedEvent>"#
                    ),
                };
                self.unread = self.unread.saturating_sub(1);
                let count = self.inbox_modified(timestamp);
                bodies.push(self.envelope(start, false, &format!("{change}{count}")));
            }
        }
        let last = bodies.len() - 1;
        let notifications = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let changes_count = i == last && activity != Activity::Heartbeat;
                Notification {
                    may_push: changes_count || body.contains("<t:NewMailEvent>"),
                    body,
                    redelivery: false,
                    unread_after: if i == last { self.unread } else { before },
                    changes_count,
                }
            })
            .collect::<Vec<_>>();
        self.last = notifications.last().map(|n| n.body.clone());
        notifications
    }

    fn inbox_modified(&mut self, timestamp: &str) -> String {
        let wm = self.next_watermark();
        format!(
            r#"<t:ModifiedEvent><t:Watermark>{wm}</t:Watermark><t:TimeStamp>{timestamp}</t:TimeStamp><t:FolderId Id="{}" ChangeKey="AQAAAA=="/><t:ParentFolderId Id="AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAADKr" ChangeKey="AQAAAA=="/><t:UnreadCount>{}</t:UnreadCount></t:ModifiedEvent>"#,
            self.inbox, self.unread
        )
    }

    /// A notification of `events` whose `PreviousWatermark` is watermark number `previous`.
    fn envelope(&self, previous: u64, more_events: bool, events: &str) -> String {
        let previous = self.watermark_at(previous);
        let mut body = String::with_capacity(HEAD.len() + events.len() + 400);
        body.push_str(HEAD);
        let _ = write!(
            body,
            "<t:SubscriptionId>{}</t:SubscriptionId><t:PreviousWatermark>{previous}</t:PreviousWatermark><t:MoreEvents>{more_events}</t:MoreEvents>{events}",
            self.subscription_id
        );
        body.push_str(TAIL);
        body
    }

    fn watermark_at(&self, n: u64) -> String {
        format!("AQAAAJ6Xmtv4ya7F{:08x}{n:016x}AAE=", self.index)
    }

    fn next_watermark(&mut self) -> String {
        self.watermark += 1;
        self.watermark_at(self.watermark)
    }

    fn next_item(&mut self) -> String {
        self.items += 1;
        format!(
            "AAMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQBGAAAAAABia8x{:08x}{:016x}",
            self.index, self.items
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox() -> Mailbox {
        Mailbox::new(3, "SUB".into(), "INBOX".into())
    }

    fn only(activity: &str) -> Mix {
        let mut mix = Mix {
            new_mail: 0.0,
            read: 0.0,
            delete: 0.0,
            move_: 0.0,
            heartbeat: 0.0,
            more_events: 0.0,
            split: 0.0,
            redelivery: 0.0,
            gap: 0.0,
        };
        match activity {
            "new_mail" => mix.new_mail = 1.0,
            "read" => mix.read = 1.0,
            _ => mix.heartbeat = 1.0,
        }
        mix
    }

    #[test]
    fn a_burst_carries_the_true_count_and_chains_watermarks() {
        let mut m = mailbox();
        let mut rng = fastrand::Rng::with_seed(1);
        let first = m.turn(&only("new_mail"), &mut rng, "2026-11-28T00:00:00Z");
        assert_eq!(first.len(), 1);
        let n = &first[0];
        assert!(n.changes_count && n.unread_after == m.unread && m.unread >= 1);
        assert!(
            n.body
                .contains(&format!("<t:UnreadCount>{}</t:UnreadCount>", m.unread))
        );
        let last_watermark = m.watermark_at(m.watermark);
        let second = m.turn(&only("read"), &mut rng, "2026-11-28T00:00:01Z");
        assert!(
            second[0].body.contains(&format!(
                "<t:PreviousWatermark>{last_watermark}</t:PreviousWatermark>"
            )),
            "the next notification continues the chain"
        );
        assert_eq!(second[0].unread_after, m.unread);
    }

    #[test]
    fn more_events_pages_put_the_count_on_the_last_page() {
        let mut m = mailbox();
        let mut rng = fastrand::Rng::with_seed(2);
        let mut mix = only("new_mail");
        mix.more_events = 1.0;
        let pages = m.turn(&mix, &mut rng, "2026-11-28T00:00:00Z");
        assert_eq!(pages.len(), 2);
        assert!(pages[0].body.contains("<t:MoreEvents>true</t:MoreEvents>"));
        assert!(!pages[0].changes_count && pages[1].changes_count);
        assert!(!pages[0].body.contains("UnreadCount"));
    }

    #[test]
    fn a_redelivery_is_the_last_notification_verbatim() {
        let mut m = mailbox();
        let mut rng = fastrand::Rng::with_seed(3);
        let sent = m.turn(&only("new_mail"), &mut rng, "2026-11-28T00:00:00Z");
        let mut mix = only("read");
        mix.redelivery = 1.0;
        let again = m.turn(&mix, &mut rng, "2026-11-28T00:00:01Z");
        assert!(again[0].redelivery && !again[0].changes_count);
        assert_eq!(again[0].body, sent[0].body);
    }
}
