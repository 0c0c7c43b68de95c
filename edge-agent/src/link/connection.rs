//! The one task that owns the rumqttc event loop.
//!
//! It connects (with back-off between failed attempts), stamps every connect with a fresh
//! persisted epoch (the will carries the same epoch as the birth that follows), announces
//! sessions on the [`Session`] watch, and routes every received publish. It never awaits
//! anyone else: routing is a watch update, a `try_send` or a call that does not block.

use std::time::{Duration, Instant};

use rumqttc::{
    ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::logs::NodeCommand;
use wasmfleet_protocol::node::NodeState;
use wasmfleet_protocol::pod::{DesiredPods, StatusAck};
use wasmfleet_protocol::topic::{self, Up};
use wasmfleet_protocol::{MAX_MESSAGE_SIZE, Message, encode};

use super::assembly::Assembler;
use super::inbound::{Inbound, classify};
use super::resync::Resync;
use super::uplink::Session;
use super::{Deliveries, Inbox, LinkConfig};
use crate::state::AgentState;
use wasmfleet_protocol::backoff::{Backoff, BackoffPolicy};

/// The MQTT keep-alive: a dead agent's will fires about 1.5× this after it vanishes.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Largest packet in either direction: one envelope plus topic and header, with room.
const MAX_PACKET: usize = 2 * MAX_MESSAGE_SIZE;

/// rumqttc's request channel; the publisher task is its only producer.
pub(super) const REQUEST_CAPACITY: usize = 64;

/// How many commands (log requests) may wait to be handled.
const COMMAND_CAPACITY: usize = 64;

/// Where received messages go.
pub(super) struct Routes {
    pub(super) desired: watch::Sender<Option<DesiredPods>>,
    pub(super) acks: watch::Sender<Option<StatusAck>>,
    pub(super) server_epoch: watch::Sender<Option<u64>>,
    pub(super) commands: mpsc::Sender<NodeCommand>,
    /// Module chunks, certificates and tables (none on a hollow agent).
    pub(super) deliveries: Option<Deliveries>,
    /// Bumped to make the publisher subscribe again (the broker then replays the retained
    /// desired state).
    pub(super) resubscribe: watch::Sender<u64>,
}

/// What the publisher is asked to do besides publishing its queue.
pub(super) struct PublisherSignals {
    /// Publish the birth again (a new server epoch).
    pub(super) rebirth: watch::Receiver<u64>,
    /// Subscribe to the node's down topics again.
    pub(super) resubscribe: watch::Receiver<u64>,
}

impl Routes {
    /// Routes whose receiving ends form the [`Inbox`]; also returns the publisher's signals.
    pub(super) fn with_inbox(deliveries: Option<Deliveries>) -> (Routes, Inbox, PublisherSignals) {
        let (desired, desired_rx) = watch::channel(None);
        let (acks, acks_rx) = watch::channel(None);
        let (server_epoch, server_epoch_rx) = watch::channel(None);
        let (commands, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (rebirth, rebirth_rx) = watch::channel(0);
        let (resubscribe, resubscribe_rx) = watch::channel(0);
        let routes = Routes {
            desired,
            acks,
            server_epoch,
            commands,
            deliveries,
            resubscribe,
        };
        let inbox = Inbox {
            desired: desired_rx,
            acks: acks_rx,
            server_epoch: server_epoch_rx,
            commands: commands_rx,
            rebirth,
        };
        let signals = PublisherSignals {
            rebirth: rebirth_rx,
            resubscribe: resubscribe_rx,
        };
        (routes, inbox, signals)
    }
}

/// The event loop and everything it needs.
pub(super) struct Connection {
    pub(super) eventloop: EventLoop,
    pub(super) node: String,
    pub(super) state: AgentState,
    pub(super) session: watch::Sender<Session>,
    pub(super) routes: Routes,
    /// Builds complete desired sets from the index and per-pod messages.
    pub(super) assembler: Assembler,
    /// When to ask the broker to replay the desired state again.
    pub(super) resync: Resync,
    /// Whether this session has received a desired index (or a whole set) yet.
    pub(super) index_this_session: bool,
    pub(super) backoff: BackoffPolicy,
    /// Ends the loop at once.
    pub(super) stop: CancellationToken,
}

/// The client options: client id = username = node name, password = node login, clean session,
/// over the configured transport (TLS by default).
pub(super) fn mqtt_options(config: &LinkConfig) -> MqttOptions {
    let mut options = MqttOptions::new(&config.node_name, &config.mqtt.host, config.mqtt.port);
    options
        .set_transport(config.transport.clone())
        .set_credentials(&config.node_name, &config.password)
        .set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_clean_session(true);
    options
}

impl Connection {
    /// Runs until the stop token fires or a graceful disconnect went out.
    pub(super) async fn run(mut self) {
        let mut backoff = Backoff::new(self.backoff);
        let mut connected = false;
        let mut epoch = self.session.borrow().epoch;
        loop {
            if !connected {
                epoch = self.next_epoch(epoch);
                self.set_will(epoch);
            }
            let resync_due = self.resync.due();
            let event = tokio::select! {
                () = self.stop.cancelled() => break,
                () = sleep_until(resync_due) => {
                    self.ask_for_replay();
                    continue;
                }
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(epoch, node = %self.node, "connected to the broker");
                    connected = true;
                    backoff.reset();
                    self.index_this_session = false;
                    self.resync.on_connected(Instant::now());
                    self.session.send_replace(Session { epoch, connected });
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => self.route(&publish),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    tracing::info!("disconnected from the broker");
                    break;
                }
                Ok(_) => {}
                Err(err) => {
                    let delay = backoff.next_delay(rand::random::<f64>());
                    self.resync.on_disconnected();
                    if connected {
                        tracing::warn!(%err, epoch, ?delay, "connection to the broker lost; reconnecting");
                        connected = false;
                        self.session.send_replace(Session { epoch, connected });
                    } else if let ConnectionError::ConnectionRefused(code) = err {
                        tracing::error!(
                            ?code,
                            ?delay,
                            node = %self.node,
                            "the broker refused this node's login; retrying. A node logs in with \
                             its own password (data dir file node-password); its first login also \
                             needs the join token. If the node joined before with another password \
                             (a re-flashed device), an admin must delete the Node first"
                        );
                    } else {
                        tracing::warn!(%err, ?delay, "cannot reach the broker; retrying");
                    }
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.session.send_replace(Session {
            epoch,
            connected: false,
        });
    }

    /// A fresh persisted epoch. If the disk fails the agent keeps running its pods and
    /// counts on in memory: a reused epoch after a restart is the lesser harm.
    fn next_epoch(&self, current: u64) -> u64 {
        match self.state.next_epoch() {
            Ok(epoch) => epoch.max(current + 1),
            Err(err) => {
                tracing::error!(%err, "cannot persist the session epoch; continuing in memory");
                current + 1
            }
        }
    }

    /// The will of the coming session: retained "offline" stamped with its epoch.
    fn set_will(&mut self, epoch: u64) {
        let will = Message::NodeState(NodeState {
            epoch,
            online: false,
            info: None,
        });
        let topic = topic::up(&self.node, Up::State);
        self.eventloop.mqtt_options.set_last_will(LastWill::new(
            topic,
            encode(&will),
            QoS::AtLeastOnce,
            true,
        ));
    }

    /// Tells the resync clock whether this session holds a complete set now.
    fn note_desired_progress(&mut self) {
        let complete = self.index_this_session && self.assembler.is_complete();
        self.resync.on_desired(complete, Instant::now());
    }

    /// The session has gone too long without a complete desired set: subscribe again, so
    /// the broker replays the retained index and pods.
    fn ask_for_replay(&mut self) {
        tracing::warn!(
            node = %self.node,
            received_index = self.index_this_session,
            "no complete desired set since connecting; asking the broker to replay it"
        );
        self.routes
            .resubscribe
            .send_modify(|n| *n = n.wrapping_add(1));
        self.resync.asked(Instant::now());
    }

    fn route(&mut self, publish: &Publish) {
        let inbound = match classify(&self.node, &publish.topic, &publish.payload) {
            Ok(inbound) => inbound,
            Err(why) => {
                tracing::warn!(topic = %publish.topic, bytes = publish.payload.len(), "dropped: {why}");
                return;
            }
        };
        match inbound {
            Inbound::Desired(desired) => {
                self.routes.desired.send_replace(Some(desired));
                self.index_this_session = true;
                self.resync.on_desired(true, Instant::now());
            }
            Inbound::DesiredIndex(index) => {
                self.index_this_session = true;
                if let Some(desired) = self.assembler.on_index(index) {
                    self.routes.desired.send_replace(Some(desired));
                }
                self.note_desired_progress();
            }
            Inbound::DesiredPod { uid, pod: None } => self.assembler.on_cleared(&uid),
            Inbound::DesiredPod {
                uid,
                pod: Some(pod),
            } => {
                if let Some(desired) = self.assembler.on_pod(&uid, pod) {
                    self.routes.desired.send_replace(Some(desired));
                }
                self.note_desired_progress();
            }
            Inbound::StatusAck(ack) => {
                self.routes.acks.send_replace(Some(ack));
            }
            Inbound::ServerState(state) => {
                if state.online {
                    self.routes.server_epoch.send_replace(Some(state.epoch));
                }
            }
            Inbound::Services(table) => {
                tracing::debug!(
                    services = table.services.len(),
                    "table of Services received"
                );
                if let Err(err) = self.state.save_services(&table) {
                    tracing::warn!(%err, "cannot persist the table of Services");
                }
                if let Some(deliveries) = &self.routes.deliveries {
                    deliveries.services.replace(table);
                }
            }
            Inbound::Routes(table) => {
                tracing::debug!(
                    listeners = table.listeners.len(),
                    "table of HTTP routes received"
                );
                if let Err(err) = self.state.save_routes(&table) {
                    tracing::warn!(%err, "cannot persist the table of HTTP routes");
                }
                if let Some(deliveries) = &self.routes.deliveries {
                    deliveries.services.replace_routes(table);
                }
            }
            // Keys stay in memory: never persisted in the agent's state.
            Inbound::IngressCertificates(certificates) => {
                if let Some(deliveries) = &self.routes.deliveries {
                    deliveries.services.replace_certificates(certificates);
                }
            }
            Inbound::Peers(table) => {
                tracing::debug!(peers = table.peers.len(), "table of peers received");
                if let Err(err) = self.state.save_peers(&table) {
                    tracing::warn!(%err, "cannot persist the table of peers");
                }
                if let Some(remote) = self.remote() {
                    remote.peers().replace(table);
                }
            }
            Inbound::Command(NodeCommand::RelayDial(dial)) => {
                if let Some(remote) = self.remote() {
                    remote.peers().join_relay(dial);
                }
            }
            Inbound::BlobReply(reply) => {
                if let Some(deliveries) = &self.routes.deliveries {
                    deliveries.fetcher.deliver(reply);
                }
            }
            Inbound::ArtifactOffer(offer) => {
                if let Some(deliveries) = &self.routes.deliveries {
                    deliveries.fetcher.deliver_offer(offer);
                }
            }
            // Refusals are logged by `accept`; the certificate held stays.
            Inbound::Certificate(cert) => {
                if let Some(deliveries) = &self.routes.deliveries {
                    _ = deliveries.credentials.accept(&cert);
                }
            }
            Inbound::Command(command) => {
                if let Err(err) = self.routes.commands.try_send(command) {
                    tracing::warn!(%err, "too many pending commands; dropped one");
                }
            }
        }
    }
}

impl Connection {
    /// The pod network's reach to other nodes, if the node has one.
    fn remote(&self) -> Option<&crate::net::remote::Remote> {
        self.routes.deliveries.as_ref()?.services.remote()
    }
}

/// Sleeps until `due`, or for ever when there is nothing due.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}
