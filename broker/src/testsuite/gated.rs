//! A push sender that holds every push until the test lets it through, then answers what
//! its recording sender was scripted to: a push "on its way" for as long as a test needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_workers::{PushRequest, PushSender, RecordingSender, SendFuture};
use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub struct GatedSender {
    pushes: RecordingSender,
    gate: Arc<Semaphore>,
    arrived: Arc<AtomicUsize>,
}

impl GatedSender {
    /// A closed gate in front of `pushes`.
    pub fn new(pushes: RecordingSender) -> Self {
        Self {
            pushes,
            gate: Arc::new(Semaphore::new(0)),
            arrived: Arc::default(),
        }
    }

    /// How many pushes reached the gate so far.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Lets every push through, now and from now on.
    pub fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

impl PushSender for GatedSender {
    fn send(&self, request: PushRequest) -> SendFuture<'_> {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let _permit = self.gate.acquire().await;
            self.pushes.send(request).await
        })
    }
}
