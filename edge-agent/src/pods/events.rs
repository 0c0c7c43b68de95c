//! Probe events on their way from the probers to the link: a bounded queue that never
//! blocks a prober. Events are best effort (as Kubernetes Events are): when the queue is
//! full (the link is down or slow) new ones are dropped and counted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use wasmfleet_protocol::pod::probe::PodEvent;

/// How many events may wait for the link.
const QUEUE: usize = 256;

/// The probers' end of the queue.
pub struct EventSink {
    sender: mpsc::Sender<PodEvent>,
    receiver: Mutex<Option<mpsc::Receiver<PodEvent>>>,
    dropped: AtomicU64,
}

impl Default for EventSink {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
            dropped: AtomicU64::new(0),
        }
    }
}

impl EventSink {
    /// Queues `event`, or drops it when the queue is full.
    pub fn report(&self, event: PodEvent) {
        if self.sender.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "pod event queue full; dropping probe events");
            }
        }
    }

    /// The link's end of the queue (once: later calls get `None`).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<PodEvent>> {
        self.receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}
