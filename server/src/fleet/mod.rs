//! The fleet link: the server's side of MQTT.
//!
//! One task owns the rumqttc event loop ([`connection`]): it keeps the session up
//! (keep-alive, capped exponential back-off between reconnects, since rumqttc retries at
//! once) and hands every incoming publish to the dispatcher ([`inbound`]), which decodes it
//! and routes it:
//!
//! - births and wills → Node objects and leases ([`nodes`]);
//! - heartbeats → leases (memory, and the store's `Lease` objects at a bounded rate; the
//!   node lifecycle controller reads them);
//! - status reports → pod status in the store, then an ack ([`status`]);
//! - chunk requests → module chunks, sent from their own task ([`blobs`]);
//! - log chunks → the waiting [`FleetHandle::logs`] receiver ([`logs`]);
//! - usage reports → the latest usage of every node, in memory ([`usage`]), which the API
//!   serves as `metrics.k8s.io` (`kubectl top`).
//!
//! Module uploads and manifests from clients come in through the [`front_door`], an MQTT 5
//! session of its own that answers every publish.
//!
//! A third task ([`publisher`], planning with [`desired`], resolving env and volumes with
//! [`config`]) publishes each node's retained desired-pods snapshot whenever
//! it changes, and all of them after every (re)connect; two more ([`retained`] loops) keep the
//! retained tables every agent serves: the Services ([`services`]), the HTTP routes of
//! Ingresses ([`routes`]) and the peers that carry pod traffic between nodes ([`peers`]);
//! [`certificates`] keeps the ingress's certificates and keys on the serving nodes' own
//! topics. The server's retained presence on
//! `wf/v1/server/state` is also its last will (`online: false`).

mod blobs;
pub mod certificates;
pub mod config;
mod connection;
pub mod delivery;
pub mod desired;
pub mod front_door;
pub(crate) mod inbound;
mod logs;
pub mod nodes;
pub mod peers;
pub mod pod_events;
pub mod probes;
pub mod publisher;
mod retained;
pub mod routes;
pub mod services;
pub mod status;
pub mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmfleet_protocol::network::ClusterCidr;

use rumqttc::{AsyncClient, ClientError, LastWill, MqttOptions, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::broker_url::BrokerUrl;
use wasmfleet_protocol::logs::LogChunk;
use wasmfleet_protocol::node::ServerState;
use wasmfleet_protocol::transport::{self, TransportError, transport};
use wasmfleet_protocol::{Message, encode, topic};

use crate::artifacts::Artifacts;
use crate::broker::MAX_PACKET_SIZE;
use crate::controllers::leases::{self, Leases};
use crate::controllers::node_lifecycle;
use crate::identity::certificates::NodeCertificates;
use crate::informer::Cache;
use crate::modules::ModuleStore;
use crate::store::Store;
use retained::RetainedPublisher;

pub use logs::LogParams;

/// How many requests (publishes, subscriptions) may wait for the event loop. Publishers
/// wait when it is full, which bounds the memory held by queued module chunks
/// (64 × 256 KiB = 16 MiB).
const REQUEST_QUEUE: usize = 64;

/// Where the broker is and how the server logs in to it.
#[derive(Clone)]
pub struct MqttTarget {
    /// The broker.
    pub broker: BrokerUrl,
    /// The PEM CA the broker's certificate must chain to (`mqtts://`): the cluster CA for
    /// the embedded broker, an external broker's own CA otherwise.
    pub ca_pem: Option<Vec<u8>>,
    /// Username (`wasmfleet-server` on the embedded broker).
    pub username: String,
    /// Password (the server's MQTT password).
    pub password: String,
}

impl std::fmt::Debug for MqttTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttTarget")
            .field("broker", &self.broker)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How the fleet link behaves. [`FleetConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The broker.
    pub mqtt: MqttTarget,
    /// The MQTT client id.
    pub client_id: String,
    /// This server run's epoch, published in its presence; must grow with every start
    /// (the default is the start time in milliseconds).
    pub server_epoch: u64,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// How long a node may go without heartbeats before it is `Ready=Unknown`.
    pub node_grace: Duration,
    /// How long a log request waits for the node's first answer.
    pub log_timeout: Duration,
    /// How often desired snapshots are re-planned even without changes.
    pub resync: Duration,
    /// The cluster's pod CIDR, delivered with every pod's network.
    pub cluster_cidr: ClusterCidr,
    /// The service CIDR, delivered with the table of Services.
    pub service_cidr: ipnet::Ipv4Net,
    /// Precompiles modules for agents that ask; `None` answers every request with
    /// "unavailable" (agents then compile themselves).
    pub artifacts: Option<Artifacts>,
    /// Where agents reach the relay, published in the table of peers.
    pub relay: peers::Relay,
    /// A node whose first birth creates its Node (an external broker admitted it) is
    /// tainted unapproved, as the embedded broker's join does (`--node-approval`).
    pub node_approval: bool,
    /// Signs each node's tunnel key at its birth; `None` sends no node certificates.
    pub certificates: Option<Arc<NodeCertificates>>,
    /// Where the link's MQTT traffic is counted.
    pub metrics: crate::metrics::Metrics,
    /// Issues pods' projected ServiceAccount tokens; `None`: a pod that mounts one waits.
    pub pod_tokens: Option<Arc<crate::identity::pod_tokens::PodTokens>>,
}

impl FleetConfig {
    /// The defaults: client id `wasmfleet-server`, 15 s keep-alive, 40 s node grace,
    /// 5 s log timeout, 30 s resync, epoch = now in milliseconds.
    pub fn new(mqtt: MqttTarget) -> Self {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            mqtt,
            client_id: "wasmfleet-server".to_owned(),
            server_epoch: epoch,
            keep_alive: Duration::from_secs(15),
            node_grace: node_lifecycle::DEFAULT_GRACE,
            log_timeout: Duration::from_secs(5),
            resync: Duration::from_secs(30),
            cluster_cidr: ClusterCidr::default(),
            service_cidr: wasmfleet_protocol::service::DEFAULT_SERVICE_NET,
            artifacts: None,
            relay: peers::Relay::default(),
            node_approval: false,
            certificates: None,
            metrics: crate::metrics::Metrics::default(),
            pod_tokens: None,
        }
    }
}

/// Why the fleet link failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The MQTT client's request queue is closed (the fleet link stopped).
    #[error("the fleet link is not running: {0}")]
    Stopped(#[from] ClientError),
    /// The node's agent is not connected to the broker.
    #[error("node {0} is not connected: its agent has not been heard from")]
    NodeNotConnected(String),
    /// A node name that cannot be a topic level.
    #[error(transparent)]
    InvalidNode(#[from] wasmfleet_protocol::names::InvalidName),
    /// The broker's TLS cannot be set up (no CA for `mqtts://`, or an unusable one).
    #[error("cannot connect to the MQTT broker: {0}")]
    Transport(#[from] TransportError),
    /// The ingress's default certificate cannot be made.
    #[error("cannot create the ingress's default certificate: {0}")]
    DefaultCertificate(#[from] rcgen::Error),
}

/// The fleet link's entry point.
#[derive(Debug)]
pub struct Fleet;

/// A handle to the running fleet link. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FleetHandle {
    client: AsyncClient,
    logs: logs::LogRouter,
    leases: Leases,
    log_timeout: Duration,
    /// Set while the connection to the broker is up (see [`FleetHandle::link_up`]).
    link_up: Arc<AtomicBool>,
    /// What every node last reported its pods use.
    usage: usage::UsageBook,
}

impl Fleet {
    /// Connects to the broker and starts the fleet tasks on `tracker`: the event loop, the
    /// dispatcher and the desired-state publisher (which reads `cache`). They stop when
    /// `shutdown` is cancelled (the server's presence is set offline on the way out).
    ///
    /// Returns at once; the connection is made (and retried) in the background.
    pub fn start(
        config: FleetConfig,
        store: Store,
        cache: Cache,
        modules: ModuleStore,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<FleetHandle, FleetError> {
        let (client, eventloop) = transport::client(mqtt_options(&config)?, REQUEST_QUEUE);
        let (inbound_tx, inbound_rx) = mpsc::channel(connection::INBOUND_QUEUE);
        let inbound_tx = connection::InboundSender::new(
            inbound_tx,
            connection::InboundBudget::new(connection::INBOUND_BYTES),
        );
        let leases = Leases::new(config.node_grace);
        let logs = logs::LogRouter::new(
            client.clone(),
            config.log_timeout,
            shutdown.clone(),
            tracker.clone(),
        );
        let desired = publisher::DesiredPublisher::new(
            client.clone(),
            store.clone(),
            cache.clone(),
            modules.clone(),
            config.cluster_cidr,
        )
        .with_tokens(config.pod_tokens.clone());
        let services = RetainedPublisher::new(
            client.clone(),
            cache.clone(),
            services::Services {
                service_cidr: config.service_cidr,
            },
        );
        let routes = RetainedPublisher::new(client.clone(), cache.clone(), routes::Routes);
        let peers = RetainedPublisher::new(
            client.clone(),
            cache.clone(),
            peers::Peers {
                relay: config.relay.clone(),
            },
        );
        let usage = usage::UsageBook::default();
        let tls =
            certificates::CertificatePublisher::new(client.clone(), store.clone(), cache.clone())?;
        let ctx = inbound::Dispatcher {
            client: client.clone(),
            store,
            cache,
            modules,
            leases: leases.clone(),
            logs: logs.clone(),
            republish: vec![
                desired.republish_trigger(),
                services.republish_trigger(),
                routes.republish_trigger(),
                peers.republish_trigger(),
                tls.republish_trigger(),
            ],
            artifacts: config.artifacts.clone(),
            certificates: config.certificates.clone(),
            server_state: server_state_payload(&config, true),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            complaints: inbound::Complaints::default(),
            node_approval: config.node_approval,
            usage: usage.clone(),
        };
        let link_up = Arc::new(AtomicBool::new(false));
        tracker.spawn(connection::run(
            eventloop,
            client.clone(),
            inbound_tx,
            server_state_payload(&config, false),
            (Arc::clone(&link_up), config.metrics.clone()),
            shutdown.clone(),
        ));
        tracker.spawn(leases::write_due(
            ctx.store.clone(),
            leases.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(ctx.run(inbound_rx));
        tracker.spawn(services.run(shutdown.clone()));
        tracker.spawn(routes.run(shutdown.clone()));
        tracker.spawn(peers.run(shutdown.clone()));
        tracker.spawn(tls.run(shutdown.clone()));
        tracker.spawn(desired.run(config.resync, shutdown));
        Ok(FleetHandle {
            client,
            logs,
            leases,
            log_timeout: config.log_timeout,
            link_up,
            usage,
        })
    }
}

impl FleetHandle {
    /// Asks `node` for a container's logs. Chunks arrive on the receiver; the last one has
    /// `done` set (or `error` when the node refused or did not answer within the log
    /// timeout). Dropping the receiver cancels a follow on the node.
    pub async fn logs(
        &self,
        node: &str,
        params: LogParams,
    ) -> Result<mpsc::Receiver<LogChunk>, FleetError> {
        wasmfleet_protocol::names::validate_node_name(node)?;
        if !self.leases.wait_online(node, self.log_timeout).await {
            return Err(FleetError::NodeNotConnected(node.to_owned()));
        }
        self.logs.request(node, params).await
    }

    /// Whether the node's agent is connected and heartbeating (as of its last message).
    pub fn node_online(&self, node: &str) -> bool {
        self.leases.is_online(node)
    }

    /// Whether the fleet link is connected to the broker right now (for `/readyz`).
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Relaxed)
    }

    /// Every agent's session and liveness (the node lifecycle controller reads them).
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// The latest usage every node reported (the API serves it as `metrics.k8s.io`).
    pub fn usage(&self) -> &usage::UsageBook {
        &self.usage
    }

    /// The MQTT client, for publishing from other server parts.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }
}

fn mqtt_options(config: &FleetConfig) -> Result<MqttOptions, TransportError> {
    let broker = &config.mqtt.broker;
    let mut options = MqttOptions::new(&config.client_id, &broker.host, broker.port);
    options
        .set_transport(transport(broker, config.mqtt.ca_pem.as_deref())?)
        .set_keep_alive(config.keep_alive)
        .set_credentials(&config.mqtt.username, &config.mqtt.password)
        // Incoming: nodes send envelopes, but an external broker may deliver anything up to
        // its packet limit, which must not break the link (the dispatcher refuses oversize
        // envelopes); outgoing messages are envelopes (chunks, snapshots) bounded by the
        // protocol. Module uploads arrive on the front door's own session.
        .set_max_packet_size(MAX_PACKET_SIZE + 1024, MAX_PACKET_SIZE + 1024)
        .set_clean_session(true)
        .set_last_will(LastWill::new(
            topic::SERVER_STATE,
            server_state_payload(config, false),
            QoS::AtLeastOnce,
            true,
        ));
    Ok(options)
}

fn server_state_payload(config: &FleetConfig, online: bool) -> Vec<u8> {
    encode(&Message::ServerState(ServerState {
        online,
        epoch: config.server_epoch,
    }))
}
