//! [`PodBackend`]: what the pod sync needs from whatever runs the node's pods.
//!
//! The agent's backend is the [`PodManager`] (wasmtime sandboxes). The fleet simulator's
//! hollow agents (`wasmfleet-sim`) plug in one that only records pods and reports them
//! Running, so thousands of them share one process without an engine each. The sync is
//! generic over the backend, so the agent's path is compiled for the `PodManager` alone:
//! no dynamic dispatch, no extra code.

use tokio::sync::{mpsc, watch};
use wasmfleet_protocol::pod::probe::PodEvent;
use wasmfleet_protocol::pod::{ContainerRef, PodAssignment, PodImages, PodReason, PodStatus};

use crate::pods::{LogError, LogStream, PodManager};
use crate::runtime::LogSelection;

/// Runs the pods the server assigns and tells the sync how they are. Cheap to clone: every
/// clone drives the same pods.
pub trait PodBackend: Clone + Send + Sync + 'static {
    /// Converges on `desired`, the node's whole set: starts new uids, stops missing ones.
    fn apply(&self, desired: Vec<PodAssignment>);

    /// The status of every pod on the node (ordered by uid) and the images their containers
    /// run, for a report.
    fn report(&self) -> (Vec<PodStatus>, Vec<PodImages>);

    /// Why pods the backend ended itself (evictions) ended: their `status.reason`.
    fn reasons(&self) -> Vec<PodReason> {
        Vec::new()
    }

    /// The running containers whose startup probe has not succeeded yet.
    fn starting(&self) -> Vec<ContainerRef>;

    /// A receiver whose value changes after every status change.
    fn changes(&self) -> watch::Receiver<u64>;

    /// The lines of a container's log that `selection` asks for, and when it follows the
    /// lines after them.
    fn logs(
        &self,
        uid: &str,
        container: &str,
        selection: &LogSelection,
    ) -> Result<LogStream, LogError>;

    /// Probe events to forward to the server; `None` when there are none (or after the
    /// first call).
    fn take_events(&self) -> Option<mpsc::Receiver<PodEvent>>;
}

impl PodBackend for PodManager {
    fn apply(&self, desired: Vec<PodAssignment>) {
        PodManager::apply(self, desired);
    }

    fn report(&self) -> (Vec<PodStatus>, Vec<PodImages>) {
        PodManager::report(self)
    }

    fn reasons(&self) -> Vec<PodReason> {
        PodManager::reasons(self)
    }

    fn starting(&self) -> Vec<ContainerRef> {
        PodManager::starting(self)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        PodManager::changes(self)
    }

    fn logs(
        &self,
        uid: &str,
        container: &str,
        selection: &LogSelection,
    ) -> Result<LogStream, LogError> {
        PodManager::logs(self, uid, container, selection)
    }

    fn take_events(&self) -> Option<mpsc::Receiver<PodEvent>> {
        PodManager::take_events(self)
    }
}
