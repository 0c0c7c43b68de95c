//! The embedded MQTT broker (mqtt5 0.49) that agents and the server's own fleet link meet on.
//!
//! It speaks MQTT over TLS only (`mqtts://`, port 8883 by default), with the same serving
//! certificate as the API: the node token is a password, and it must never cross a network
//! in clear text. Clients check the certificate against the cluster CA.
//!
//! It is never the source of truth: desired state is re-published by the server after any
//! restart, so the broker keeps its sessions and retained messages in memory only (mqtt5 needs
//! `enable_persistence` for sessions to exist at all, with the memory backend nothing touches
//! disk). There are no anonymous clients and no `$SYS` topics; who may do what is decided in
//! [`auth`], the one seam for authentication and authorization.
//!
//! Packet size: a module chunk (256 KiB) plus its envelope fits easily; module uploads over
//! MQTT (`wf/v1/modules/NAME/TAG`, raw wasm) may use whole packets of up to
//! [`MAX_PACKET_SIZE`] (16 MiB), so larger modules must be pushed over HTTPS. That is the
//! only read-time limit mqtt5 has (one for all clients); per-identity payload limits and
//! per-node rates are enforced before routing by [`limits`].
//!
//! The broker runs on its own runtime and OS threads (see [`EmbeddedBroker`]).

pub mod acl;
pub mod auth;
pub mod limits;
pub mod revocation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqtt5::broker::config::{StorageBackend, StorageConfig, TlsConfig};
use mqtt5::broker::router::MessageRouter;
use mqtt5::broker::server::BrokerShutdownHandle;
use mqtt5::broker::{BrokerConfig, MqttBroker};
use tokio::sync::oneshot;

use crate::bootstrap::{Credentials, TlsMaterial};
use crate::identity::NodeIdentities;
use auth::{Authenticator, BrokerAuth};
use limits::PublishLimits;

/// The largest MQTT packet the broker accepts or sends: big enough for a 16 MiB module
/// upload, bounded so one client cannot make the broker buffer arbitrary amounts.
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;

/// Retained messages are presence and desired snapshots, never modules.
const MAX_RETAINED_MESSAGE_SIZE: usize = wasmfleet_protocol::MAX_MESSAGE_SIZE;

/// The broker runtime's worker threads: its own, so keep-alives never wait for the API.
const BROKER_THREADS: usize = 2;

/// Messages queued per client and delivery lane (QoS 0 and QoS 1) before the broker drops
/// QoS 0 messages and holds QoS 1 ones back; with per-node rate limits this bounds what a
/// slow subscriber (the server among them) can make the broker hold.
const CLIENT_CHANNEL_CAPACITY: usize = 256;

/// What an offline or lagging session may have queued, in messages and bytes.
const MAX_QUEUED_MESSAGES: usize = 1000;
const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

/// Connections the broker admits at once: beyond the 10,000 nodes one server is built for
/// (mqtt5's default, 10,000, would leave no room for the server's own clients). The process's
/// open-files limit bounds it too; mqtt5 also admits at most 10,000 connections from one
/// address, which is not configurable.
const MAX_CLIENTS: usize = 50_000;

/// How long a disconnected persistent session is kept before the broker forgets it.
const SESSION_EXPIRY: Duration = Duration::from_secs(3600);

/// How long [`EmbeddedBroker::shutdown`] waits for the broker to close its connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The secrets the broker checks the server's and the admin's CONNECTs against (nodes are
/// checked by [`NodeIdentities`], which holds the join token).
///
/// Mirrors `bootstrap::Credentials`, so the broker does not depend on how they are stored.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerCredentials {
    /// The admin token (username `admin`).
    pub admin_token: String,
    /// The password of the server's own MQTT client (username `wasmfleet-server`).
    pub server_mqtt_password: String,
}

impl std::fmt::Debug for BrokerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerCredentials { .. }")
    }
}

impl From<&Credentials> for BrokerCredentials {
    fn from(credentials: &Credentials) -> Self {
        Self {
            admin_token: credentials.admin_token.clone(),
            server_mqtt_password: credentials.server_mqtt_password.clone(),
        }
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// mqtt5 refused the configuration or could not bind.
    #[error("cannot start the embedded MQTT broker on {addr}: {source}")]
    Start {
        /// The requested listen address.
        addr: SocketAddr,
        /// mqtt5's error.
        #[source]
        source: mqtt5::MqttError,
    },
    /// The broker's own runtime or thread could not be created.
    #[error("cannot start the embedded MQTT broker's runtime for {addr}: {source}")]
    Runtime {
        /// The requested listen address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The listener reported no local address.
    #[error("the embedded MQTT broker could not listen on {0} (address in use?)")]
    NoListener(SocketAddr),
}

/// A running embedded broker. Call [`EmbeddedBroker::shutdown`] to stop it cleanly; dropping
/// it stops its runtime abruptly.
///
/// It runs on its own tokio runtime with its own OS threads ([`BROKER_THREADS`]), so its
/// keep-alives and acks never wait behind work on the server's runtime (API requests, the
/// fleet link, controllers): a busy API cannot make it drop its clients.
pub struct EmbeddedBroker {
    local_addr: SocketAddr,
    shutdown: BrokerShutdownHandle,
    sessions: Sessions,
    /// Fires when the broker's runtime has finished (its thread is about to exit).
    stopped: oneshot::Receiver<()>,
    /// Dropping (or sending on) it makes the broker thread stop waiting for a clean end.
    abort: oneshot::Sender<()>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// What the broker thread reports once it listens (or could not).
type Started = Result<(SocketAddr, BrokerShutdownHandle, Sessions), BrokerError>;

/// A handle on the broker's live sessions; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    router: Arc<MessageRouter>,
}

impl Sessions {
    /// Closes the live connection of `client_id`, if there is one (a revoked node). The
    /// client may connect again, and is then authenticated afresh.
    pub async fn close(&self, client_id: &str) {
        if self.router.is_connected(client_id).await {
            self.router.disconnect_client(client_id).await;
            tracing::info!(client_id, "mqtt session closed by the server");
        }
    }

    /// Whether `client_id` has a live connection.
    pub async fn is_connected(&self, client_id: &str) -> bool {
        self.router.is_connected(client_id).await
    }
}

impl EmbeddedBroker {
    /// Binds `addr` (port 0 picks a free port) and starts serving MQTT 3.1.1 and 5 clients
    /// over TLS with `tls`'s serving certificate, on the broker's own runtime thread.
    /// `credentials` is usually `&bootstrap::Credentials`; `nodes` checks node logins.
    pub async fn start(
        addr: SocketAddr,
        credentials: impl Into<BrokerCredentials>,
        tls: &TlsMaterial,
        nodes: NodeIdentities,
    ) -> Result<Self, BrokerError> {
        // mqtt5 builds its rustls config with the process-wide crypto provider.
        crate::api::install_crypto_provider();
        let auth = BrokerAuth::new(Authenticator::new(credentials.into(), nodes));
        let config = config(addr, tls);
        let (started_tx, started_rx) = oneshot::channel::<Started>();
        let (stopped_tx, stopped) = oneshot::channel();
        let (abort, abort_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("wf-mqtt-broker-main".into())
            .spawn(move || {
                run_broker_thread(addr, config, auth, started_tx, abort_rx);
                let _ = stopped_tx.send(());
            })
            .map_err(|source| BrokerError::Runtime { addr, source })?;
        let (local_addr, shutdown, sessions) = started_rx
            .await
            .map_err(|_| BrokerError::NoListener(addr))??;
        tracing::info!(%local_addr, "embedded MQTT broker listening (TLS, own runtime)");
        Ok(Self {
            local_addr,
            shutdown,
            sessions,
            stopped,
            abort,
        })
    }

    /// The address the broker really listens on (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle on the live sessions.
    pub fn sessions(&self) -> Sessions {
        self.sessions.clone()
    }

    /// Stops accepting clients, closes connections and waits (bounded) for the broker's
    /// runtime to end.
    pub async fn shutdown(self) {
        self.shutdown.shutdown();
        let mut stopped = self.stopped;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut stopped)
            .await
            .is_err()
        {
            tracing::warn!("embedded MQTT broker did not stop in time; aborting it");
            let _ = self.abort.send(());
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, stopped).await;
        }
    }
}

/// The broker thread: its own runtime, dropped (bounded) when the broker ends.
fn run_broker_thread(
    addr: SocketAddr,
    config: BrokerConfig,
    auth: BrokerAuth,
    started: oneshot::Sender<Started>,
    abort: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BROKER_THREADS)
        .thread_name("wf-mqtt-broker")
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => {
            runtime.block_on(serve(addr, config, auth, started, abort));
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        }
        Err(source) => {
            let _ = started.send(Err(BrokerError::Runtime { addr, source }));
        }
    }
}

/// The broker thread's body: builds the broker on its own runtime, reports the address,
/// and runs it until it stops or `abort` fires.
async fn serve(
    addr: SocketAddr,
    config: BrokerConfig,
    auth: BrokerAuth,
    started: oneshot::Sender<Started>,
    abort: oneshot::Receiver<()>,
) {
    let start_error = |source| BrokerError::Start { addr, source };
    let mut broker = match MqttBroker::with_config(config).await {
        Ok(broker) => broker.with_auth_provider(Arc::new(auth)),
        Err(err) => {
            let _ = started.send(Err(start_error(err)));
            return;
        }
    };
    // `run` takes the listeners, so the address must be read before it starts. mqtt5
    // only warns when a TLS listener cannot bind, so a missing one is our error.
    let Some(local_addr) = broker.tls_local_addr() else {
        let _ = started.send(Err(BrokerError::NoListener(addr)));
        return;
    };
    let shutdown = broker.shutdown_handle();
    let sessions = Sessions {
        router: broker.router(),
    };
    let mut ready = broker.ready_receiver();
    let run = tokio::spawn(async move {
        if let Err(err) = broker.run().await {
            tracing::error!(%err, "embedded MQTT broker stopped with an error");
        }
    });
    // Connections are accepted by the kernel already; waiting for `ready` only makes
    // sure the broker's router is initialised before the first client talks to it.
    let _ = tokio::time::timeout(Duration::from_secs(5), ready.wait_for(|r| *r)).await;
    let _ = started.send(Ok((local_addr, shutdown, sessions)));
    tokio::select! {
        _ = run => {}
        _ = abort => {}
    }
}

fn config(addr: SocketAddr, tls: &TlsMaterial) -> BrokerConfig {
    let storage = StorageConfig::new()
        .with_backend(StorageBackend::Memory)
        .with_persistence(true)
        .with_max_queued_messages_per_client(MAX_QUEUED_MESSAGES)
        .with_max_queued_bytes_per_client(MAX_QUEUED_BYTES);
    // `auth_config` stays at mqtt5's permissive default on purpose: mqtt5 refuses a config
    // that disallows anonymous clients without a password file, and its built-in provider
    // is replaced by ours (`with_auth_provider`) before the broker runs; ours refuses
    // anonymous clients.
    let tls =
        TlsConfig::new(tls.cert_file.clone(), tls.key_file.clone()).with_bind_addresses(vec![addr]);
    BrokerConfig::new()
        // No plain-TCP listener at all.
        .with_bind_addresses(Vec::new())
        .with_tls(tls)
        .with_max_clients(MAX_CLIENTS)
        .with_max_packet_size(MAX_PACKET_SIZE)
        .with_max_retained_message_size(MAX_RETAINED_MESSAGE_SIZE)
        .with_session_expiry(SESSION_EXPIRY)
        .with_storage(storage)
        .with_sys_topics_enabled(false)
        .with_client_channel_capacity(CLIENT_CHANNEL_CAPACITY)
        .with_event_handler(Arc::new(PublishLimits::default()))
}
