//! The HTTPS API in the Kubernetes REST shape, so that `kubectl` and `wasmfleet` work.
//!
//! Served with axum over rustls (ring). Resources: Namespaces and Nodes (cluster-scoped),
//! Pods (namespaced, plus `/api/v1/pods` across namespaces) with list, watch, get, create,
//! update, patch (server-side apply included, [`apply`]) and delete; pod logs; module push
//! and list; join tokens; discovery and the OpenAPI v3 documents ([`openapi`]).
//! Errors are Kubernetes `Status` objects.
//!
//! Files: [`router`] (routes), [`auth`] (who is asking and whether they may),
//! [`request_info`] (what a request asks, for the authorizer), [`rbac`] (rule matching and
//! the default roles), [`node_authorizer`] (what a node's identity may reach),
//! [`users`] (client certificates: who they are, and signing them), [`objects`] (the verbs),
//! [`kinds`] + [`pods`]/[`nodes`]/[`namespaces`] (per-resource admission),
//! [`validation`] (the Pod allow-list), [`volumes`] (env sources, volumes and mounts),
//! [`placement`] (affinity and topology spread
//! constraints), [`defaults`] (what a Pod gets when left out,
//! resources included), [`body`] (limits, content types, patches, decoding
//! off the async workers), [`nesting`] (the depth pre-scan),
//! [`protobuf`] (`kubectl create namespace`), [`watch`], [`table`], [`logs`], [`modules`], [`join_tokens`], [`discovery`], [`status`],
//! [`health`] (`/healthz`, `/livez`, `/readyz`, without authentication),
//! [`metrics_api`] (`metrics.k8s.io`: what agents report their pods use, for `kubectl top`).
//!
//! Store calls run in `spawn_blocking`: a write waits for an fsync, and the API serves many
//! clients at once.

pub mod apply;
pub mod auth;
pub mod body;
pub mod cascade;
pub mod defaults;
pub mod discovery;
pub mod eviction;
pub mod health;
pub mod join_tokens;
pub mod kinds;
pub mod logs;
pub mod metrics_api;
pub mod modules;
pub mod nesting;
pub mod node_authorizer;
pub mod objects;
pub mod openapi;
pub mod pagination;
pub mod placement;
pub mod pod_streams;
pub mod probes;
pub mod protobuf;
pub mod rbac;
pub mod request_info;
pub mod router;
pub mod scale;
pub mod status;
pub mod table;
pub mod users;
pub mod validation;
pub mod volumes;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use logs::{LogFuture, LogQuery, LogSource};
pub use status::ApiError;

use crate::bootstrap::TlsMaterial;
use crate::modules::ModuleStore;
use crate::store::Store;

/// How long open connections (watches, log follows) get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiContext {
    /// The cluster state.
    pub store: Store,
    /// The module store; `None` answers module requests with 503.
    pub modules: Option<ModuleStore>,
    /// Where pod logs come from; `None` answers log requests with 503.
    pub logs: Option<Arc<dyn LogSource>>,
    /// The admin's bearer token.
    pub admin_token: Arc<str>,
    /// Who may do what (RBAC over the informer's cache).
    pub authorizer: auth::Authorizer,
    /// Signs and verifies ServiceAccount tokens; `None`: no TokenRequest, no token logins.
    pub tokens: Option<Arc<crate::identity::service_account_tokens::TokenSigner>>,
    /// Signs users' client certificates with the cluster CA; `None` answers 503.
    pub certificates: Option<Arc<crate::identity::certificates::NodeCertificates>>,
    /// Ends watches and log streams on shutdown.
    pub shutdown: CancellationToken,
    /// Tracks the tasks that feed streaming responses.
    pub tracker: TaskTracker,
    /// Whether the fleet link is connected to the broker, for `/readyz`; `None` leaves the
    /// check out.
    pub fleet_link: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Where Services' ClusterIPs come from.
    pub service_cidr: ipnet::Ipv4Net,
    /// What requests and watches are counted into, and `/metrics` renders.
    pub metrics: crate::metrics::Metrics,
    /// What the agents last reported their pods use (`metrics.k8s.io`).
    pub usage: crate::fleet::usage::UsageBook,
}

/// Starting the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS material was refused by rustls.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The listener could not be used.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Installs ring as rustls' process-wide crypto provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    // An error only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves the API on `listener` until `shutdown`, then drains connections for a few seconds.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: TlsMaterial,
    ctx: ApiContext,
) -> Result<(), ServeError> {
    let config = server_config(&tls)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let shutdown = ctx.shutdown.clone();
    let handle = axum_server::Handle::<SocketAddr>::new();
    let app = router::build(ctx);
    let server = axum_server::tls_rustls::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
    )?
    // Watches and followed logs stream small writes: without this each waited ~40 ms for
    // the client's delayed ACK (Nagle's algorithm).
    .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
    .handle(handle.clone());
    tracing::info!(%local, "API serving");
    let serving = server.serve(app.into_make_service());
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => result?,
        () = shutdown.cancelled() => {
            handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
            serving.await?;
        }
    }
    Ok(())
}

fn server_config(tls: &TlsMaterial) -> Result<rustls::ServerConfig, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_error = |err: &dyn std::fmt::Display| ServeError::Tls(err.to_string());
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| tls_error(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(&e))?
    .with_client_cert_verifier(client_verifier(tls)?)
    .with_single_cert(certs, key)
    .map_err(|e| tls_error(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Asks clients for a certificate of the cluster CA ([`users`]) and lets those without one
/// in (they authenticate with a bearer token instead).
fn client_verifier(
    tls: &TlsMaterial,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ServeError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tls_error = |err: &dyn std::fmt::Display| ServeError::Tls(err.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(tls.ca_cert_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| tls_error(&e))?)
            .map_err(|e| tls_error(&e))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls_error(&e))
}

/// Runs a synchronous store call off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| ApiError::internal(&err))?
}
