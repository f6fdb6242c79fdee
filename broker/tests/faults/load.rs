//! A steady load as Exchange sends it: each device's mailbox gets one new message after
//! another (unread count 1, 2, 3, …), each notification retried on 503 until it is answered
//! OK, as Exchange retries. What each device was last told OK for is the badge it must end
//! with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_broker::testsuite::expected;
use herald_workers::PushRequest;
use tokio::sync::watch;

use crate::harness::{Device, Told, post};

/// Time between one device's notifications: well within the per-URL rate.
const PACE: Duration = Duration::from_millis(250);
/// Time before a 503 is retried.
const RETRY: Duration = Duration::from_millis(200);

/// Notification `n` for `device`: a new message, and the inbox's unread count `n`.
pub(crate) fn new_mail(device: &Device, n: u64) -> Vec<u8> {
    let registry = &expected("ews")["registry"]["alice"];
    let inbox = registry["inbox_folder_id"].as_str().unwrap();
    let watermark = |k: u64| format!("AQAAAJ6Xmtv4ya7Fg7VYBjxa5Q{:014x}AAE=", n * 4 + k);
    let item = format!(
        "AAMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQBGAAAAAABia8xVkEUO6xr5haNi6bx{n:016x}"
    );
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>"#,
            r#"<m:SendNotification xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">"#,
            r#"<m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification>"#,
            "<t:SubscriptionId>{sub}</t:SubscriptionId><t:PreviousWatermark>{w0}</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>",
            r#"<t:NewMailEvent><t:Watermark>{w1}</t:Watermark><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:ItemId Id="{item}" ChangeKey="CQAAAA=="/><t:ParentFolderId Id="{inbox}" ChangeKey="AQAAAA=="/></t:NewMailEvent>"#,
            r#"<t:ModifiedEvent><t:Watermark>{w2}</t:Watermark><t:TimeStamp>2026-03-04T09:15:27Z</t:TimeStamp><t:FolderId Id="{inbox}" ChangeKey="AQAAAA=="/><t:ParentFolderId Id="AQMkAGSBBojhCVaWA3el3gSl931pHuG3mdcrDjgbBnxjJGaPn2RPcQAuAAADKr" ChangeKey="AQAAAA=="/><t:UnreadCount>{n}</t:UnreadCount></t:ModifiedEvent>"#,
            "</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></s:Body></s:Envelope>"
        ),
        sub = device.subscription,
        w0 = watermark(0),
        w1 = watermark(1),
        w2 = watermark(2),
        item = item,
        inbox = inbox,
        n = n,
    )
    .into_bytes()
}

/// One answer Exchange got.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answer {
    pub(crate) sent: Instant,
    pub(crate) took: Duration,
    pub(crate) told: Told,
}

/// A load running until [`stop`](Self::stop).
pub(crate) struct Load {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<Answer>)>>,
    devices: Arc<Vec<Device>>,
}

/// What the load saw.
pub(crate) struct Seen {
    /// Per device, the unread count it was last told OK for.
    pub(crate) last_ok: Vec<u64>,
    pub(crate) answers: Vec<Answer>,
    pub(crate) devices: Arc<Vec<Device>>,
}

impl Load {
    pub(crate) fn start(gateway: SocketAddr, devices: Vec<Device>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let devices = Arc::new(devices);
        let tasks = (0..devices.len())
            .map(|i| {
                let (devices, stopped) = (devices.clone(), stopped.clone());
                tokio::spawn(async move { mailbox(gateway, &devices[i], stopped).await })
            })
            .collect();
        Self {
            stop,
            tasks,
            devices,
        }
    }

    pub(crate) async fn stop(self) -> Seen {
        self.stop.send_replace(true);
        let (mut last_ok, mut answers) = (Vec::new(), Vec::new());
        for task in self.tasks {
            let (last, seen) = task.await.unwrap();
            last_ok.push(last);
            answers.extend(seen);
        }
        answers.sort_by_key(|a| a.sent);
        Seen {
            last_ok,
            answers,
            devices: self.devices,
        }
    }
}

/// One device's mailbox: new mail after new mail, each retried until OK.
async fn mailbox(
    gateway: SocketAddr,
    device: &Device,
    stopped: watch::Receiver<bool>,
) -> (u64, Vec<Answer>) {
    let (mut last_ok, mut answers) = (0, Vec::new());
    let mut n = 1;
    // A notification answered 503 is retried even after the stop, as Exchange would: it
    // may have been recorded all the same, and only an OK says which count is the last.
    let mut retrying = false;
    while retrying || !*stopped.borrow() {
        let body = new_mail(device, n);
        let sent = Instant::now();
        let told =
            tokio::time::timeout(Duration::from_secs(30), post(gateway, &device.path, &body))
                .await
                .unwrap_or(Told::Unavailable);
        answers.push(Answer {
            sent,
            took: sent.elapsed(),
            told,
        });
        match told {
            Told::Ok => {
                retrying = false;
                last_ok = n;
                n += 1;
                tokio::time::sleep(PACE).await;
            }
            Told::Unavailable => {
                retrying = true;
                tokio::time::sleep(RETRY).await;
            }
            Told::Other => panic!("a live registration was told something other than OK or 503"),
        }
    }
    (last_ok, answers)
}

impl Seen {
    /// Waits until each device's last push carries the count it was last told OK for;
    /// returns how many devices never got it (within 60 s).
    pub(crate) async fn badges_lost(&self, sent: impl Fn() -> Vec<PushRequest>) -> usize {
        let missing = || {
            let pushes = sent();
            self.devices
                .iter()
                .zip(&self.last_ok)
                .filter(|(device, last)| {
                    let last_push = pushes
                        .iter()
                        .rev()
                        .find(|p| p.device_token == device.device_token);
                    **last > 0 && last_push.is_none_or(|p| u64::from(p.badge) != **last)
                })
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if missing() == 0 {
                return 0;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        missing()
    }

    /// Answers to notifications sent within `[from, to)`.
    pub(crate) fn between(&self, from: Instant, to: Instant) -> impl Iterator<Item = &Answer> {
        self.answers
            .iter()
            .filter(move |a| a.sent >= from && a.sent < to)
    }

    /// From `from`, the time until the first notification sent then or later was answered OK.
    pub(crate) fn recovered_after(&self, from: Instant) -> Option<Duration> {
        self.answers
            .iter()
            .filter(|a| a.sent >= from && matches!(a.told, Told::Ok))
            .map(|a| (a.sent + a.took).duration_since(from))
            .min()
    }
}
