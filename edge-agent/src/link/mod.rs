//! The agent's MQTT link to the server.
//!
//! One task owns the rumqttc event loop (`connection`); everything else talks to it
//! through channels and watches, so nothing can block it:
//!
//! - [`Uplink`]: the cloneable handle every part of the agent publishes through; a
//!   `publisher` task feeds the client, births the node at every session start and drops
//!   stale messages while disconnected;
//! - [`inbound`]: classifies what arrives; the connection routes module chunks to the
//!   [`ModuleFetcher`], node certificates to the [`TunnelCredentials`] and the tables pods
//!   route by to the [`ServiceDirectory`] (together the [`Deliveries`]), and everything for
//!   the pod sync ([`crate::sync`]) to the [`Inbox`];
//! - [`assembly`]: turns the retained desired index and per-pod messages into complete
//!   desired sets; [`resync`] asks the broker to replay them when a session goes on
//!   without a complete set;
//! - `heartbeat`: the lease, every interval.
//!
//! The link knows nothing of pods: [`crate::sync::PodSync`] reads the [`Inbox`] and reports
//! through the [`Uplink`]. Shutdown is ordered so the server hears the end:
//! [`crate::sync::PodSync::shutdown`] sends the final status, then [`Link::shutdown`]
//! flushes the queue, publishes "offline" (a graceful disconnect does not fire the will)
//! and disconnects.

pub mod assembly;
mod connection;
mod heartbeat;
pub mod inbound;
mod publisher;
pub mod resync;
mod uplink;

use crate::net::ServiceDirectory;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::broker_url::BrokerUrl;
use wasmfleet_protocol::logs::NodeCommand;
use wasmfleet_protocol::node::NodeInfo;
use wasmfleet_protocol::pod::{DesiredPods, StatusAck};

pub use heartbeat::unix_ms;
pub use uplink::{Session, Uplink, UplinkError, UplinkParts, uplink};
pub use wasmfleet_protocol::backoff::BackoffPolicy;

use crate::identity::certificate::TunnelCredentials;
use crate::modules::ModuleFetcher;
use crate::state::AgentState;

/// What the link needs to connect.
#[derive(Clone)]
pub struct LinkConfig {
    /// The broker.
    pub mqtt: BrokerUrl,
    /// How to reach it (TLS with the cluster CA, or plain TCP); see
    /// [`AgentConfig::transport`](crate::config::AgentConfig::transport).
    pub transport: rumqttc::Transport,
    /// Client id, username and node name.
    pub node_name: String,
    /// The MQTT password: the node password, after the join token while the agent has one
    /// ([`crate::identity::mqtt_password`]).
    pub password: String,
    /// How often to send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Delays between reconnect attempts.
    pub reconnect: BackoffPolicy,
}

/// Where the link hands what arrives for the node's pods rather than for the pod sync.
/// A hollow agent (the fleet simulator's) runs no pods and passes none: module chunks,
/// certificates and tables are then dropped, the tables after they are persisted.
#[derive(Debug, Clone)]
pub struct Deliveries {
    /// Module chunks and artifact offers.
    pub fetcher: ModuleFetcher,
    /// The tables of Services, HTTP routes and peers pods route by.
    pub services: ServiceDirectory,
    /// The node's tunnel key; the node certificates the server sends are checked and kept
    /// there.
    pub credentials: TunnelCredentials,
}

/// The password is a credential: it never appears in logs.
impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("mqtt", &self.mqtt)
            .field("node_name", &self.node_name)
            .field("password", &"<redacted>")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

/// Why the link did not shut down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A link task panicked.
    #[error("a link task failed: {0}")]
    Task(String),
}

/// What the server sent, for [`crate::sync`]: level-triggered values as watches, commands queued.
#[derive(Debug)]
pub struct Inbox {
    /// The latest desired snapshot received.
    pub desired: watch::Receiver<Option<DesiredPods>>,
    /// The latest status acknowledgement received.
    pub acks: watch::Receiver<Option<StatusAck>>,
    /// The epoch of the server's latest "online" presence.
    pub server_epoch: watch::Receiver<Option<u64>>,
    /// Commands (log requests), in order.
    pub commands: mpsc::Receiver<NodeCommand>,
    /// Bump to publish the birth again in the current session.
    pub rebirth: watch::Sender<u64>,
}

/// The running link: its tasks and the tokens that stop them in order.
#[derive(Debug)]
pub struct Link {
    connection: JoinHandle<()>,
    publisher: JoinHandle<()>,
    uplink: Uplink,
    stop_heartbeat: CancellationToken,
    stop_publisher: CancellationToken,
    stop_connection: CancellationToken,
}

impl Link {
    /// Starts the connection, publisher and heartbeat tasks. Connecting happens in the
    /// background (with back-off); the link never gives up on an unreachable broker.
    /// What arrives for the pods goes to `deliveries`.
    pub fn start(
        config: &LinkConfig,
        parts: UplinkParts,
        info: NodeInfo,
        state: AgentState,
        deliveries: Option<Deliveries>,
        tracker: &TaskTracker,
    ) -> (Link, Inbox) {
        let (client, eventloop) = wasmfleet_protocol::transport::client(
            connection::mqtt_options(config),
            connection::REQUEST_CAPACITY,
        );
        let (routes, inbox, signals) = connection::Routes::with_inbox(deliveries);
        let stop_heartbeat = CancellationToken::new();
        let stop_publisher = CancellationToken::new();
        let stop_connection = CancellationToken::new();

        let uplink = parts.uplink;
        let session = parts.session.subscribe();
        let connection = connection::Connection {
            eventloop,
            node: config.node_name.clone(),
            state,
            session: parts.session,
            routes,
            assembler: assembly::Assembler::default(),
            resync: resync::Resync::default(),
            index_this_session: false,
            backoff: config.reconnect,
            stop: stop_connection.clone(),
        };
        let publisher = publisher::Publisher {
            client,
            node: config.node_name.clone(),
            info,
            queue: parts.queue,
            session,
            rebirth: signals.rebirth,
            resubscribe: signals.resubscribe,
            stop: stop_publisher.clone(),
        };
        let link = Link {
            connection: tracker.spawn(connection.run()),
            publisher: tracker.spawn(publisher.run()),
            uplink: uplink.clone(),
            stop_heartbeat: stop_heartbeat.clone(),
            stop_publisher,
            stop_connection,
        };
        tracker.spawn(heartbeat::run(
            uplink,
            config.heartbeat_interval,
            stop_heartbeat,
        ));
        (link, inbox)
    }

    /// Sends what is queued, publishes "offline", disconnects; gives up after `timeout`.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), LinkError> {
        self.stop_heartbeat.cancel();
        self.stop_publisher.cancel();
        let graceful = async {
            if let Err(err) = self.publisher.await {
                tracing::warn!(%err, "the publisher task failed");
            }
            if !self.uplink.session().connected {
                self.stop_connection.cancel();
            }
        };
        let mut connection = self.connection;
        let finished = tokio::time::timeout(timeout, async {
            graceful.await;
            (&mut connection).await
        })
        .await;
        match finished {
            Ok(joined) => joined.map_err(|e| LinkError::Task(e.to_string())),
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "the link did not close in time; dropping the connection"
                );
                self.stop_connection.cancel();
                connection.await.map_err(|e| LinkError::Task(e.to_string()))
            }
        }
    }
}
