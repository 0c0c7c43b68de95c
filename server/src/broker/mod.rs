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
//! [`MAX_PACKET_SIZE`] (16 MiB), so larger modules must be pushed over HTTPS.

pub mod auth;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqtt5::broker::config::{StorageBackend, StorageConfig, TlsConfig};
use mqtt5::broker::server::BrokerShutdownHandle;
use mqtt5::broker::{BrokerConfig, MqttBroker};
use tokio::task::JoinHandle;

use crate::bootstrap::{Credentials, TlsMaterial};
use crate::identity::NodeIdentities;
use crate::store::Store;
use auth::{Authenticator, BrokerAuth};

/// The largest MQTT packet the broker accepts or sends: big enough for a 16 MiB module
/// upload, bounded so one client cannot make the broker buffer arbitrary amounts.
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;

/// Retained messages are presence and desired snapshots, never modules.
const MAX_RETAINED_MESSAGE_SIZE: usize = wasmfleet_protocol::MAX_MESSAGE_SIZE;

/// How long a disconnected persistent session is kept before the broker forgets it.
const SESSION_EXPIRY: Duration = Duration::from_secs(3600);

/// How long [`EmbeddedBroker::shutdown`] waits for the broker to close its connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The secrets the broker checks CONNECTs against.
///
/// Mirrors `bootstrap::Credentials`, so the broker does not depend on how they are stored.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerCredentials {
    /// The admin token (username `admin`).
    pub admin_token: String,
    /// The join token a node presents at its first login (username = node name).
    pub node_token: String,
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
            node_token: credentials.node_token.clone(),
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
    /// The listener reported no local address.
    #[error("the embedded MQTT broker could not listen on {0} (address in use?)")]
    NoListener(SocketAddr),
}

/// A running embedded broker. Dropping it does not stop it; call [`EmbeddedBroker::shutdown`].
pub struct EmbeddedBroker {
    local_addr: SocketAddr,
    shutdown: BrokerShutdownHandle,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Binds `addr` (port 0 picks a free port) and starts serving MQTT 3.1.1 and 5 clients
    /// over TLS with `tls`'s serving certificate. `credentials` is usually
    /// `&bootstrap::Credentials`; node identities are kept in `store`.
    pub async fn start(
        addr: SocketAddr,
        credentials: impl Into<BrokerCredentials>,
        tls: &TlsMaterial,
        store: Store,
    ) -> Result<Self, BrokerError> {
        let start_error = |source| BrokerError::Start { addr, source };
        // mqtt5 builds its rustls config with the process-wide crypto provider.
        crate::api::install_crypto_provider();
        let credentials = credentials.into();
        let nodes = NodeIdentities::new(store, &credentials.node_token);
        let auth = BrokerAuth::new(Authenticator::new(credentials, nodes));
        let mut broker = MqttBroker::with_config(config(addr, tls))
            .await
            .map_err(start_error)?
            .with_auth_provider(Arc::new(auth));
        // `run` takes the listeners, so the address must be read before it starts. mqtt5
        // only warns when a TLS listener cannot bind, so a missing one is our error.
        let local_addr = broker
            .tls_local_addr()
            .ok_or(BrokerError::NoListener(addr))?;
        let shutdown = broker.shutdown_handle();
        let mut ready = broker.ready_receiver();
        let task = tokio::spawn(async move {
            if let Err(err) = broker.run().await {
                tracing::error!(%err, "embedded MQTT broker stopped with an error");
            }
        });
        // Connections are accepted by the kernel already; waiting for `ready` only makes
        // sure the broker's router is initialised before the first client talks to it.
        let _ = tokio::time::timeout(Duration::from_secs(5), ready.wait_for(|r| *r)).await;
        tracing::info!(%local_addr, "embedded MQTT broker listening (TLS)");
        Ok(Self {
            local_addr,
            shutdown,
            task,
        })
    }

    /// The address the broker really listens on (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting clients, closes connections and waits (bounded) for the broker to end.
    pub async fn shutdown(self) {
        self.shutdown.shutdown();
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("embedded MQTT broker did not stop in time; aborting it");
            task.abort();
        }
    }
}

fn config(addr: SocketAddr, tls: &TlsMaterial) -> BrokerConfig {
    let storage = StorageConfig::new()
        .with_backend(StorageBackend::Memory)
        .with_persistence(true);
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
        .with_max_packet_size(MAX_PACKET_SIZE)
        .with_max_retained_message_size(MAX_RETAINED_MESSAGE_SIZE)
        .with_session_expiry(SESSION_EXPIRY)
        .with_storage(storage)
        .with_sys_topics_enabled(false)
}
