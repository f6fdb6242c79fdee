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
            // One write per line: an append of a whole line is atomic, while `writeln!`
            // writes the line and its newline separately, and concurrent pushes then
            // interleave their lines.
            let mut line = serde_json::to_vec(request).unwrap_or_default();
            line.push(b'\n');
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(&line));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Provider;

    fn request(token: &str, badge: u32) -> PushRequest {
        PushRequest {
            provider: Provider::Apns,
            app_id: "com.example.mail".into(),
            device_token: token.into(),
            badge,
            new_mail: 1,
            collapse_id: "c".into(),
            push_id: "00000000-0000-4000-8000-000000000000".into(),
            attempt: 0,
            send_before: None,
        }
    }

    #[tokio::test]
    async fn it_records_in_memory_and_answers_what_was_scripted() {
        let sender = RecordingSender::new();
        sender.script(
            "dead",
            PushOutcome::TokenDead {
                reason: "gone".into(),
                since_ms: None,
            },
        );
        assert_eq!(
            sender.send(request("alive", 3)).await,
            PushOutcome::Delivered
        );
        assert!(matches!(
            sender.send(request("dead", 4)).await,
            PushOutcome::TokenDead { .. }
        ));
        let badges: Vec<u32> = sender.sent().iter().map(|r| r.badge).collect();
        assert_eq!(badges, vec![3, 4]);
    }

    #[tokio::test]
    async fn a_file_backed_sender_writes_json_lines_and_keeps_nothing_in_memory() {
        let dir = std::env::temp_dir().join(format!("herald-recording-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pushes.jsonl");
        let _ = std::fs::remove_file(&path);
        let sender = RecordingSender::with_file(&path);
        sender.send(request("a", 1)).await;
        sender.send(request("b", 2)).await;
        assert!(sender.sent().is_empty());
        let read = RecordingSender::read_file(&path).unwrap();
        assert_eq!(read, vec![request("a", 1), request("b", 2)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A node pushes from many tasks at once: every request is one whole line of the file.
    #[test]
    fn concurrent_pushes_never_share_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pushes.jsonl");
        let sender = RecordingSender::with_file(&path);
        let (threads, each) = (8, 200);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let sender = sender.clone();
                scope.spawn(move || {
                    for i in 0..each {
                        let _ = sender.record(&request(&format!("device-{t}-{i}"), i));
                    }
                });
            }
        });
        let read = RecordingSender::read_file(&path).unwrap();
        assert_eq!(read.len(), threads * each as usize);
    }
}
