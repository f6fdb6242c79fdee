//! Every log line of a test binary, at debug level, kept in memory for the test to search.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The log lines written so far, for the whole test binary.
#[derive(Clone, Debug, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Routes the process's logs (every target, debug and up) here; the first call installs
    /// the subscriber, later ones return the same capture.
    pub fn install() -> Self {
        static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
        CAPTURE
            .get_or_init(|| {
                let capture = Self::default();
                let writer = capture.clone();
                let subscriber = tracing_subscriber::fmt()
                    .with_env_filter("debug")
                    .with_writer(move || writer.clone())
                    .finish();
                tracing::subscriber::set_global_default(subscriber)
                    .expect("no other log subscriber in this test binary");
                capture
            })
            .clone()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
