//! `herald-loadtest run`: registers a fleet through the gRPC API, plays Exchange for every
//! mailbox at a fixed arrival rate (open loop: each notification leaves when it is due,
//! whatever happened to the earlier ones; latency counts from when it was due, so a slow
//! node cannot hide its queueing), collects the pushes the mock providers received, checks
//! every badge, and reports.

mod providers;
mod report;
mod series;
mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_workers::mock::{MockApnsOptions, MockFcmOptions, MockProviders};
use tokio::sync::{Mutex, Semaphore};

pub use providers::{PushSink, Received};
pub use report::RunReport;
use series::{Live, Second};
pub use verify::Verification;
use verify::{Change, DeviceLog, verify};

use crate::ews::{Answers, Sender, connect, contains, post_xml};
use crate::exchange::Mailbox;
use crate::fleet::{self, Fleet};
use crate::report::latency_histogram;
use crate::scenario::Scenario;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub scenario: Scenario,
    /// Gateways the notifications are spread over.
    pub gateways: Vec<SocketAddr>,
    pub grpc: String,
    pub token: String,
    /// Keep-alive connections per gateway.
    pub connections: usize,
    pub seed: u64,
    /// Stop sending after this long whatever is left.
    pub max_duration: Duration,
    pub pushes: PushSink,
}

struct Shared {
    options: RunOptions,
    mailboxes: Vec<Mutex<MailboxPlay>>,
    logs: Vec<std::sync::Mutex<DeviceLog>>,
    device_of: Vec<usize>,
    android: Vec<bool>,
    /// Per device: its mailboxes' current unread counts (the badge a push should show).
    unread: Vec<std::sync::Mutex<Vec<(usize, u32)>>>,
    pools: Vec<Pool>,
    live: Live,
    answers: Answers,
    /// Turns scheduled past the run's time limit.
    not_sent: AtomicU64,
}

struct MailboxPlay {
    mailbox: Mailbox,
    path: String,
    rng: fastrand::Rng,
}

/// Keep-alive connections to one gateway.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Sender>>,
    slots: Semaphore,
    /// What this gateway answered, and how fast (from when each notification was due).
    answers: Answers,
    latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

/// Starts the mock APNs and FCM (accept-all, recording) on free ports of 127.0.0.1 with
/// their files in `dir`, and prints the `[[apps]]` the scenario needs.
pub async fn spawn_mocks(
    dir: &std::path::Path,
    scenario: &Scenario,
    out: &mut impl std::io::Write,
) -> anyhow::Result<Arc<MockProviders>> {
    let mocks = MockProviders::start(
        dir,
        MockApnsOptions {
            accept_all: true,
            ..MockApnsOptions::default()
        },
        MockFcmOptions {
            accept_all: true,
            ..MockFcmOptions::default()
        },
    )
    .await?;
    let apps = mocks.apps(&scenario.apps(false), &scenario.apps(true), "example-mail")?;
    writeln!(
        out,
        "# mock APNs {} and FCM {} running; configure the node with:\n{}",
        mocks.apns.url(),
        mocks.fcm.url(),
        MockProviders::apps_toml(&apps)?
    )?;
    Ok(Arc::new(mocks))
}

/// Waits until the gRPC endpoint accepts connections (the node was started).
pub async fn wait_for(grpc: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let endpoint = tonic::transport::Channel::from_shared(grpc.to_owned())?;
    while endpoint.connect().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "no node answered at {grpc}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Runs `options`, printing progress and a line per second to `out`.
pub async fn run(
    options: RunOptions,
    out: &mut (impl std::io::Write + Send),
) -> anyhow::Result<RunReport> {
    anyhow::ensure!(!options.gateways.is_empty(), "no gateway to send to");
    let scenario = options.scenario.clone();
    let fleet = fleet::register(
        &scenario,
        &options.grpc,
        &options.token,
        options.seed,
        64,
        out,
    )
    .await?;
    writeln!(
        out,
        "registered {} devices ({} mailboxes); playing {} mailbox turns",
        fleet.devices.len(),
        fleet.mailboxes.len(),
        scenario.notifications()
    )?;
    let shared = Arc::new(Shared::new(options.clone(), &fleet));
    let started = Instant::now();
    let accepted_before = options.pushes.accepted().await?;
    let sending = tokio::spawn(schedule(shared.clone(), started));
    let mut series: Vec<Second> = Vec::new();
    let mut brownout_on = false;
    let mut last_accepted = accepted_before;
    let mut ticker = tokio::time::interval_at(
        (started + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    // Once everything was sent, pushes get `settle` to arrive.
    let mut sent_at: Option<Duration> = None;
    let mut latency = latency_histogram();
    let mut after_warmup = latency_histogram();
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed();
        if let Some(b) = &scenario.brownout {
            let on = elapsed >= b.after && elapsed < b.after + b.lasting;
            if on != brownout_on {
                brownout_on = on;
                if on {
                    options.pushes.brownout(b.apns_share).await?;
                } else {
                    options.pushes.clear().await?;
                }
                writeln!(out, "brownout {}", if on { "on" } else { "off" })?;
            }
        }
        let accepted = options.pushes.accepted().await?;
        let (second, answered) = shared
            .live
            .tick(elapsed.as_secs(), accepted - last_accepted);
        latency.add(&answered)?;
        // Second `t` holds the answers of (t-1, t]: it is past the warm-up once t-1 is.
        if elapsed.as_secs().saturating_sub(1) >= scenario.warmup.as_secs() {
            after_warmup.add(&answered)?;
        }
        last_accepted = accepted;
        writeln!(out, "{second}")?;
        series.push(second);
        if sending.is_finished() {
            let done = *sent_at.get_or_insert(elapsed);
            if elapsed >= done + scenario.settle {
                break;
            }
        }
    }
    sending.await??;
    if brownout_on {
        options.pushes.clear().await?;
    }
    let received = options.pushes.received().await?;
    let fleet = shared.final_fleet(fleet).await;
    let logs: Vec<DeviceLog> = shared
        .logs
        .iter()
        .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect();
    let verification = verify(&fleet, &logs, &received);
    let counts = |a: &Answers, not_sent| report::AnswerCounts {
        ok: a.ok.load(Ordering::Relaxed),
        unsubscribe: a.unsubscribe.load(Ordering::Relaxed),
        other_status: a.other_status.load(Ordering::Relaxed),
        transport: a.transport.load(Ordering::Relaxed),
        not_sent,
    };
    let gateways = shared
        .pools
        .iter()
        .map(|pool| {
            report::GatewayFigures::new(
                pool.addr,
                counts(&pool.answers, 0),
                &pool.latency.lock().unwrap_or_else(|e| e.into_inner()),
            )
        })
        .collect();
    let mut report = RunReport::new(
        &scenario,
        series,
        latency,
        (!scenario.warmup.is_zero()).then_some(after_warmup),
        counts(&shared.answers, shared.not_sent.load(Ordering::Relaxed)),
        verification,
    );
    report.set_gateways(gateways);
    Ok(report)
}

impl Shared {
    fn new(options: RunOptions, fleet: &Fleet) -> Self {
        let seed = options.seed;
        let mailboxes = fleet
            .mailboxes
            .iter()
            .map(|r| {
                Mutex::new(MailboxPlay {
                    mailbox: r.mailbox.clone(),
                    path: r.path.clone(),
                    rng: fastrand::Rng::with_seed(
                        seed ^ (r.mailbox.index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    ),
                })
            })
            .collect();
        let unread = fleet
            .devices
            .iter()
            .map(|d| std::sync::Mutex::new(d.mailboxes.iter().map(|&m| (m, 0)).collect()))
            .collect();
        let pools = options
            .gateways
            .iter()
            .map(|&addr| Pool {
                addr,
                idle: Mutex::new(Vec::new()),
                slots: Semaphore::new(options.connections.max(1)),
                answers: Answers::default(),
                latency: std::sync::Mutex::new(latency_histogram()),
            })
            .collect();
        Self {
            device_of: fleet.mailboxes.iter().map(|r| r.device).collect(),
            android: fleet.devices.iter().map(|d| d.android).collect(),
            logs: fleet.devices.iter().map(|_| Default::default()).collect(),
            mailboxes,
            unread,
            pools,
            live: Live::default(),
            answers: Answers::default(),
            not_sent: AtomicU64::new(0),
            options,
        }
    }

    /// The fleet with every mailbox's final state.
    async fn final_fleet(&self, mut fleet: Fleet) -> Fleet {
        for (registered, play) in fleet.mailboxes.iter_mut().zip(&self.mailboxes) {
            registered.mailbox = play.lock().await.mailbox.clone();
        }
        fleet
    }
}

/// Sends every scheduled turn when it is due: one task per arrival, mailboxes in turn.
async fn schedule(shared: Arc<Shared>, started: Instant) -> anyhow::Result<()> {
    let scenario = &shared.options.scenario;
    let deadline = started + shared.options.max_duration;
    let mut order: Vec<usize> = (0..shared.mailboxes.len()).collect();
    fastrand::Rng::with_seed(shared.options.seed).shuffle(&mut order);
    let mut arrivals = tokio::task::JoinSet::new();
    let mut step_start = started;
    let mut n: usize = 0;
    for step in &scenario.steps {
        let count = (step.rate * step.duration.as_secs_f64()).round() as u64;
        for i in 0..count {
            let due = step_start + Duration::from_secs_f64(i as f64 / step.rate);
            if due >= deadline {
                shared.not_sent.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            tokio::time::sleep_until(due.into()).await;
            let mailbox = order[n % order.len()];
            n += 1;
            arrivals.spawn(play_turn(shared.clone(), mailbox, due));
            while let Some(done) = arrivals.try_join_next() {
                done?;
            }
        }
        step_start += step.duration;
    }
    while let Some(done) = arrivals.join_next().await {
        done?;
    }
    Ok(())
}

/// One turn of one mailbox: its notifications in order, each after the previous was
/// answered (Exchange sends one at a time per subscription).
async fn play_turn(shared: Arc<Shared>, m: usize, due: Instant) {
    let mut play = shared.mailboxes[m].lock().await;
    let timestamp = utc_now();
    let MailboxPlay { mailbox, path, rng } = &mut *play;
    let notifications = mailbox.turn(&shared.options.scenario.mix, rng, &timestamp);
    let pool = &shared.pools[m % shared.pools.len()];
    let device = shared.device_of[m];
    for notification in notifications {
        shared.live.sent.fetch_add(1, Ordering::Relaxed);
        let sent_ms = now_ms();
        let new_mail = notification.body.contains("<t:NewMailEvent>");
        let ok = pool.post(path, notification.body).await;
        let micros = due.elapsed().as_micros() as u64;
        shared.live.answered(ok.is_ok(), micros);
        for answers in [&shared.answers, &pool.answers] {
            let counter = match ok {
                Ok(()) => &answers.ok,
                Err(Answer::Unsubscribe) => &answers.unsubscribe,
                Err(Answer::Status) => &answers.other_status,
                Err(Answer::Transport) => &answers.transport,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // Within the histogram's bounds (a minute) by construction of the run's deadline.
        let _ = pool
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(micros.max(1));
        if notification.may_push {
            let badge = {
                let mut unread = shared.unread[device]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = unread.iter_mut().find(|(i, _)| *i == m) {
                    entry.1 = notification.unread_after;
                }
                unread.iter().map(|(_, u)| u).sum()
            };
            // Every such notification opens a burst whose flush pushes the device's total
            // when it differs from what the device shows (or, on FCM, to announce mail).
            shared.logs[device]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .changes
                .push(Change {
                    at_ms: sent_ms,
                    badge,
                    announces: shared.android[device] && new_mail,
                });
        }
    }
}

enum Answer {
    Unsubscribe,
    Status,
    Transport,
}

impl Pool {
    /// POSTs `body`. A connection the gateway closed while idle is replaced and the
    /// notification sent again, as Exchange retries (the node recognises a redelivery).
    async fn post(&self, path: &str, body: String) -> Result<(), Answer> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(Answer::Transport);
        };
        let idle = self.idle.lock().await.pop();
        let reused = idle.is_some();
        let mut sender = match idle {
            Some(sender) if !sender.is_closed() => sender,
            _ => connect(self.addr).await.map_err(|_| Answer::Transport)?,
        };
        let mut answer = post_xml(&mut sender, self.addr, path, body.clone()).await;
        if answer.is_err() && reused {
            sender = connect(self.addr).await.map_err(|_| Answer::Transport)?;
            answer = post_xml(&mut sender, self.addr, path, body).await;
        }
        let (status, body) = answer.map_err(|_| Answer::Transport)?;
        self.idle.lock().await.push(sender);
        match status {
            200 if contains(&body, b">OK<") => Ok(()),
            200 if contains(&body, b">Unsubscribe<") => Err(Answer::Unsubscribe),
            _ => Err(Answer::Status),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `TimeStamp` values: UTC, whole seconds (the node's stale guard compares seconds).
fn utc_now() -> String {
    rfc3339(SystemTime::now())
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, mo, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
