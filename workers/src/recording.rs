//! A sender that delivers nothing and remembers every request: in memory for tests in the
//! same process, and as JSON lines in a file for tests that run the node as a separate
//! process. It answers `Delivered`, or what the test scripted.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::push::{PushOutcome, PushRequest, PushSender, SendFuture};

#[derive(Debug, Default)]
struct Shared {
    sent: Vec<PushRequest>,
    /// The outcome to answer for a device token, if not `Delivered`.
    scripted: Vec<(String, PushOutcome)>,
}

/// Records pushes instead of sending them. Cheap to clone: clones share the record.
#[derive(Clone, Debug)]
pub struct RecordingSender {
    shared: Arc<Mutex<Shared>>,
    file: Option<PathBuf>,
    /// File-backed senders run for as long as a node does: they keep nothing in memory.
    in_memory: bool,
}

impl Default for RecordingSender {
    fn default() -> Self {
        Self {
            shared: Arc::default(),
            file: None,
            in_memory: true,
        }
    }
}

impl RecordingSender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends each request as one JSON line to `path` (and keeps none in memory).
    pub fn with_file(path: impl Into<PathBuf>) -> Self {
        Self {
            shared: Arc::default(),
            file: Some(path.into()),
            in_memory: false,
        }
    }

    /// Every request so far, in order (in-memory senders only).
    pub fn sent(&self) -> Vec<PushRequest> {
        self.shared
            .lock()
            .map(|s| s.sent.clone())
            .unwrap_or_default()
    }

    /// Answers `outcome` for pushes to `device_token` from now on.
    pub fn script(&self, device_token: &str, outcome: PushOutcome) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.scripted.push((device_token.to_owned(), outcome));
        }
    }

    /// Reads the requests a file-backed sender wrote (lines that do not parse are skipped:
    /// a process killed mid-write leaves at most one).
    pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<PushRequest>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    fn record(&self, request: &PushRequest) -> PushOutcome {
        if let Some(path) = &self.file {
            let line = serde_json::to_string(request).unwrap_or_default();
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = written {
                return PushOutcome::Failed {
                    reason: format!("cannot record the push: {e}"),
                };
            }
        }
        let Ok(mut shared) = self.shared.lock() else {
            return PushOutcome::Failed {
                reason: "the recording sender's lock is poisoned".into(),
            };
        };
        if self.in_memory {
            shared.sent.push(request.clone());
        }
        shared
            .scripted
            .iter()
            .rev()
            .find(|(token, _)| *token == request.device_token)
            .map(|(_, outcome)| outcome.clone())
            .unwrap_or(PushOutcome::Delivered)
    }
}

impl PushSender for RecordingSender {
    fn send(&self, request: PushRequest) -> SendFuture<'_> {
        let outcome = self.record(&request);
        Box::pin(async move { outcome })
    }
}

/// The sender of a node with no provider delivery: it logs and reports the push as failed,
/// so nothing claims a delivery that did not happen.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDelivery;

impl PushSender for NoDelivery {
    fn send(&self, request: PushRequest) -> SendFuture<'_> {
        tracing::info!(
            ?request,
            "push not sent: no provider delivery is configured"
        );
        Box::pin(async {
            PushOutcome::Failed {
                reason: "no provider delivery is configured".into(),
            }
        })
    }
}
