//! The dispatcher: decodes what arrives from the broker and hands it to the right place.
//!
//! It runs as its own task, fed by the event loop, so it may await publishes (acks,
//! subscriptions) without ever blocking the event loop. Garbage, unknown protocol
//! versions, oversize payloads and messages on the wrong topic are logged (at most one
//! warning per node and ten seconds) and dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::logs::NodeCommand;
use wasmfleet_protocol::node::NodeInfo;
use wasmfleet_protocol::pod::{StatusAck, StatusReport};
use wasmfleet_protocol::topic::{self, Down, ServerInbound, Up};
use wasmfleet_protocol::{Message, decode, encode};

use super::connection::Inbound;
use super::logs::LogRouter;
use super::usage::UsageBook;
use super::{blobs, nodes, status};
use crate::artifacts::Artifacts;
use crate::controllers::leases::{LeaseUpdate, Leases};
use crate::identity::certificates::NodeCertificates;
use crate::informer::Cache;
use crate::modules::ModuleStore;
use crate::store::Store;

/// Everything the dispatcher needs.
pub(super) struct Dispatcher {
    pub(super) client: AsyncClient,
    pub(super) store: Store,
    pub(super) cache: Cache,
    pub(super) modules: ModuleStore,
    pub(super) leases: Leases,
    pub(super) logs: LogRouter,
    pub(super) republish: Vec<Arc<Notify>>,
    pub(super) artifacts: Option<Artifacts>,
    /// Signs the tunnel key of each birth (see [`Dispatcher::certify`]).
    pub(super) certificates: Option<Arc<NodeCertificates>>,
    pub(super) server_state: Vec<u8>,
    pub(super) tracker: TaskTracker,
    pub(super) shutdown: CancellationToken,
    pub(super) complaints: Complaints,
    /// New nodes wait for an admin's approval (see [`nodes::handle_state`]).
    pub(super) node_approval: bool,
    /// The latest usage of every node (`kubectl top`).
    pub(super) usage: UsageBook,
}

/// Rate-limits warnings about bad input: one per source and topic per window, with a count
/// of what was suppressed in between.
#[derive(Debug, Default)]
pub(super) struct Complaints {
    last: HashMap<(String, String), (Instant, u32)>,
}

impl Complaints {
    const WINDOW: Duration = Duration::from_secs(10);
    /// Beyond this many remembered sources, old entries are forgotten (bounded memory).
    const MAX_ENTRIES: usize = 4096;

    /// Logs the complaint unless `source` complained about `topic` recently. Returns whether
    /// it was logged.
    pub(super) fn warn(&mut self, source: &str, topic: &str, reason: &str) -> bool {
        let now = Instant::now();
        let key = (source.to_owned(), topic.to_owned());
        match self.last.get_mut(&key) {
            Some((at, suppressed)) if now.duration_since(*at) < Self::WINDOW => {
                *suppressed += 1;
                false
            }
            entry => {
                let suppressed = entry.map_or(0, |(_, n)| *n);
                tracing::warn!(%source, %topic, %reason, suppressed, "dropping a bad MQTT message");
                if self.last.len() >= Self::MAX_ENTRIES {
                    self.last
                        .retain(|_, (at, _)| now.duration_since(*at) < Self::WINDOW);
                }
                self.last.insert(key, (now, 0));
                true
            }
        }
    }
}

/// Which message kinds may arrive on which up topic.
pub(crate) fn expected_on(kind: Up, message: &Message) -> bool {
    matches!(
        (kind, message),
        (Up::State, Message::NodeState(_))
            | (Up::Heartbeat, Message::Heartbeat(_))
            | (Up::Status, Message::Status(_))
            | (
                Up::BlobRequest,
                Message::BlobRequest(_) | Message::ArtifactRequest(_)
            )
            | (Up::Logs, Message::LogChunk(_))
            | (Up::Events, Message::PodEvents(_))
            | (Up::Usage, Message::Usage(_))
    )
}

impl Dispatcher {
    /// Handles inbound messages until the event loop or `shutdown` ends.
    pub(super) async fn run(mut self, mut inbound: mpsc::Receiver<Inbound>) {
        let shutdown = self.shutdown.clone();
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = inbound.recv() => message,
            };
            let Some(message) = message else { break };
            // Publishes wait for room in the client's queue, which never frees once the
            // event loop has stopped: give up on the message at shutdown instead of hanging.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.handle(message) => {}
            }
        }
    }

    async fn handle(&mut self, message: Inbound) {
        match message {
            Inbound::Connected => self.on_connected().await,
            Inbound::Publish { topic, payload, .. } => self.on_publish(&topic, payload).await,
        }
    }

    /// A fresh (clean) session: subscribe, announce ourselves, re-send desired state.
    async fn on_connected(&mut self) {
        let subscribed = async {
            self.client
                .subscribe(topic::ALL_NODES_UP, QoS::AtLeastOnce)
                .await?;
            self.client
                .publish(
                    topic::SERVER_STATE,
                    QoS::AtLeastOnce,
                    true,
                    self.server_state.clone(),
                )
                .await
        };
        if let Err(err) = subscribed.await {
            tracing::warn!(%err, "cannot subscribe after connecting; the fleet link is stopping");
        }
        for republish in &self.republish {
            republish.notify_one();
        }
    }

    async fn on_publish(&mut self, topic_name: &str, payload: Bytes) {
        match topic::parse_server_inbound(topic_name) {
            Some(ServerInbound::FromNode { node, kind }) => {
                self.node_message(node, kind, topic_name, &payload).await;
            }
            None => {
                self.complaints.warn("?", topic_name, "unknown topic");
            }
        }
    }

    async fn node_message(&mut self, node: &str, kind: Up, topic_name: &str, payload: &[u8]) {
        let message = match decode(payload) {
            Ok(message) => message,
            Err(err) => {
                self.complaints.warn(node, topic_name, &err.to_string());
                return;
            }
        };
        if !expected_on(kind, &message) {
            self.complaints
                .warn(node, topic_name, "message of the wrong kind for this topic");
            return;
        }
        match message {
            Message::NodeState(state) => {
                if let Err(err) =
                    nodes::handle_state(&self.store, &self.leases, node, &state, self.node_approval)
                {
                    tracing::error!(%node, %err, "cannot record node presence");
                } else if let Some(info) = state.info.as_ref().filter(|_| state.online) {
                    self.certify(node, info);
                }
            }
            Message::Heartbeat(hb) => self.heartbeat(node, hb.epoch),
            Message::Status(report) => self.status(node, &report).await,
            Message::BlobRequest(request) => self.spawn_until_shutdown(blobs::answer(
                self.client.clone(),
                self.modules.clone(),
                node.to_owned(),
                request,
            )),
            Message::ArtifactRequest(request) => self.spawn_until_shutdown(blobs::offer_artifact(
                self.client.clone(),
                self.artifacts.clone(),
                node.to_owned(),
                request,
            )),
            Message::LogChunk(chunk) => self.logs.route(node, chunk),
            Message::PodEvents(reported) => {
                status::record_pod_events(&self.store, &self.cache, node, &reported)
            }
            Message::Usage(report) => {
                let recorded =
                    self.usage
                        .record(node, report, Instant::now(), jiff::Timestamp::now());
                if let Err(err) = recorded {
                    self.complaints.warn(node, topic_name, &err.to_string());
                }
            }
            _ => {}
        }
    }

    /// Runs `task` on the tracker, so it never holds up the dispatcher; shutdown ends it.
    fn spawn_until_shutdown(&self, task: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Sends the node a certificate for the tunnel key of its birth (every birth: signing
    /// is cheap, and the certificate stays fresh). Only `node` itself may publish on its
    /// `up/state` topic (the broker's ACL), so it only ever gets one for its own name.
    fn certify(&self, node: &str, info: &NodeInfo) {
        let (Some(certificates), Some(tunnel)) = (&self.certificates, &info.tunnel) else {
            return;
        };
        let cert = match certificates.sign(node, &tunnel.public_key) {
            Ok(cert) => cert,
            Err(err) => {
                tracing::warn!(%node, %err, "no node certificate for this birth; the node works on without one");
                return;
            }
        };
        let payload = encode(&Message::Command(NodeCommand::Certificate(cert)));
        // Not awaited here, for the reason `status` gives: the certificate waits for room
        // in its own task.
        let client = self.client.clone();
        let topic = topic::down(node, Down::Cmd);
        let node = node.to_owned();
        tokio::spawn(async move {
            if let Err(err) = client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
            {
                tracing::warn!(%node, %err, "cannot send the node its certificate");
            }
        });
    }

    /// Renews the node's lease when the heartbeat is of its current session; writes the
    /// store's `Lease` object when it is due (at a bounded rate).
    fn heartbeat(&self, node: &str, epoch: u64) {
        match self.leases.heartbeat(node, epoch, Instant::now()) {
            LeaseUpdate::Ignored => {
                tracing::debug!(%node, epoch, "ignoring a heartbeat that is not of the current session");
            }
            // A lease that fell due is written by the lease writer.
            LeaseUpdate::Applied { .. } => {}
        }
    }

    /// Writes the report if it is of the node's live current session, and acknowledges it
    /// either way: a report of another session (an old one, or a forged epoch) is acked
    /// without being applied, so an agent never re-sends it forever, and its current session
    /// reports afresh after its birth.
    async fn status(&mut self, node: &str, report: &StatusReport) {
        if !self.leases.is_current(node, report.epoch) {
            tracing::debug!(%node, epoch = report.epoch, "acking a status report that is not of the current session without applying it");
        } else {
            let image_id = status::image_id_resolver(self.modules.clone());
            match status::apply_report(&self.store, &self.cache, node, report, &image_id) {
                Ok(changed) => {
                    self.leases.remember_report(node, report);
                    tracing::debug!(%node, seq = report.seq, changed, "status report applied");
                }
                Err(err) => {
                    // No ack: the agent re-sends, and the write is retried.
                    tracing::error!(%node, %err, "cannot write a status report");
                    return;
                }
            }
        }
        let ack = encode(&Message::StatusAck(StatusAck {
            epoch: report.epoch,
            seq: report.seq,
        }));
        // Never wait for room in the client's queue here: the event loop may be waiting for
        // this dispatcher (its inbound queue full), and both then waited for ever (the fleet
        // simulator's 1,000 nodes did it). An ack that finds no room is dropped: the agent
        // sends the report again until it is acknowledged.
        if let Err(err) =
            self.client
                .try_publish(topic::down(node, Down::Ack), QoS::AtLeastOnce, false, ack)
        {
            tracing::debug!(%node, %err, "status ack dropped; the agent will re-send the report");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::node::Heartbeat;

    #[test]
    fn a_heartbeat_is_only_expected_on_the_heartbeat_topic() {
        let hb = Message::Heartbeat(Heartbeat {
            epoch: 1,
            unix_ms: 2,
        });
        assert!(expected_on(Up::Heartbeat, &hb));
        assert!(!expected_on(Up::Status, &hb));
        assert!(!expected_on(Up::State, &hb));
    }

    #[test]
    fn a_repeated_complaint_is_suppressed_but_one_about_another_topic_is_not() {
        let mut complaints = Complaints::default();
        assert!(complaints.warn("pi-1", "wf/v1/n/pi-1/up/state", "garbage"));
        assert!(!complaints.warn("pi-1", "wf/v1/n/pi-1/up/state", "garbage"));
        assert!(complaints.warn("pi-1", "wf/v1/n/pi-1/up/status", "garbage"));
        assert!(complaints.warn("pi-2", "wf/v1/n/pi-2/up/state", "garbage"));
    }

    #[test]
    fn server_messages_are_never_expected_from_nodes() {
        let ack = Message::StatusAck(StatusAck { epoch: 1, seq: 1 });
        for kind in [
            Up::State,
            Up::Heartbeat,
            Up::Status,
            Up::BlobRequest,
            Up::Logs,
        ] {
            assert!(!expected_on(kind, &ack));
        }
    }
}
