//! The agent's own Prometheus metrics (issue 11), served at `GET /metrics` in the
//! Prometheus text format on `--metrics-listen ADDRESS`: off by default and without
//! authentication, so meant for loopback (`127.0.0.1:PORT`), where a local scraper or
//! node exporter reads it.
//!
//! Everything is read from the agent's own state at each scrape (nothing counts twice):
//! pods by phase and their containers' restarts (the statuses the agent reports), runs
//! ended `OOMKilled`, linear memory and live wasm instances, programs loaded and compiled,
//! the module cache on disk (modules plus their compiled artifacts) and the bytes of module
//! chunks downloaded. Names follow Prometheus' conventions (`wasmfleet_agent_` prefix,
//! base units, `_total` on counters), as the server's `/metrics` does.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::pod::PodPhase;

use crate::modules::ModuleFetcher;
use crate::net::http_listener::{Handler, HttpListener, ListenerLimits, RequestBody};
use crate::pods::{ModuleSource, PodManager};

/// What the listener lets in: a scraper or two, small requests.
const LIMITS: ListenerLimits = ListenerLimits {
    max_connections: 8,
    max_concurrent_requests: 4,
    max_header_bytes: 8 * 1024,
    max_body_bytes: 0,
    header_read_timeout: Duration::from_secs(5),
    drain: Duration::from_secs(1),
};

/// The agent's metrics; cheap to clone.
#[derive(Clone)]
pub struct AgentMetrics {
    registry: Arc<Registry>,
}

impl fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl AgentMetrics {
    /// Metrics read from `pods` (and its runtime) and `modules` at each scrape.
    pub fn new(pods: PodManager, modules: ModuleFetcher) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(AgentCollector { pods, modules }));
        Self {
            registry: Arc::new(registry),
        }
    }

    /// Everything, in the Prometheus text format (reads the module cache's directory:
    /// call it off the async workers).
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Binds `address` for [`serve`]; the error names the address.
pub async fn bind(address: SocketAddr) -> std::io::Result<HttpListener> {
    HttpListener::bind(address, LIMITS).await.map_err(|err| {
        std::io::Error::new(err.kind(), format!("--metrics-listen {address}: {err}"))
    })
}

/// Serves `GET /metrics` on `listener` until `stop` is cancelled.
pub async fn serve(listener: HttpListener, metrics: AgentMetrics, stop: CancellationToken) {
    listener.serve(Arc::new(metrics), &stop).await;
}

impl Handler for AgentMetrics {
    type Body = Full<Bytes>;
    type BodyError = std::convert::Infallible;

    fn handle(
        self: Arc<Self>,
        request: Request<RequestBody>,
        slot: OwnedSemaphorePermit,
    ) -> Pin<Box<dyn Future<Output = Response<Self::Body>> + Send>> {
        Box::pin(async move {
            let _slot = slot;
            match (request.method(), request.uri().path()) {
                (&Method::GET, "/metrics") => self.scrape().await,
                (_, "/metrics") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into()),
                _ => text(StatusCode::NOT_FOUND, "only /metrics is served\n".into()),
            }
        })
    }

    fn refuse(&self, status: StatusCode, message: String) -> Response<Self::Body> {
        text(status, message)
    }
}

impl AgentMetrics {
    async fn scrape(&self) -> Response<Full<Bytes>> {
        let metrics = self.clone();
        match tokio::task::spawn_blocking(move || metrics.render()).await {
            Ok(Ok(body)) => {
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    ),
                );
                response
            }
            Ok(Err(err)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
            Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
        }
    }
}

fn text(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = status;
    response
}

/// Reads the agent's state at each scrape.
struct AgentCollector {
    pods: PodManager,
    modules: ModuleFetcher,
}

impl fmt::Debug for AgentCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCollector").finish_non_exhaustive()
    }
}

/// The pod phases, in Kubernetes' order, with their label values.
const PHASES: [(PodPhase, &str); 4] = [
    (PodPhase::Pending, "Pending"),
    (PodPhase::Running, "Running"),
    (PodPhase::Succeeded, "Succeeded"),
    (PodPhase::Failed, "Failed"),
];

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let statuses = self.pods.statuses();
        let kind = ConstGauge::new(0_i64).metric_type();
        let mut family = encoder.encode_descriptor(
            "wasmfleet_agent_pods",
            "Pods on this node by phase",
            None,
            kind,
        )?;
        for (phase, label) in PHASES {
            let count = statuses.iter().filter(|s| s.phase == phase).count();
            let gauge = ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&[("phase", label)])?)?;
        }
        let restarts: u64 = statuses
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| u64::from(c.restart_count))
            .sum();
        gauge(
            &mut encoder,
            "wasmfleet_agent_container_restarts",
            "Restarts of the containers of the pods on this node now (the sum of their restartCount)",
            restarts,
        )?;
        let runtime = self.pods.runtime();
        counter(
            &mut encoder,
            "wasmfleet_agent_oom_kills",
            "Container runs that ended OOMKilled (their memory limit, or the node's allocatable)",
            runtime.oom_kills(),
        )?;
        gauge(
            &mut encoder,
            "wasmfleet_agent_linear_memory_bytes",
            "Linear memory all wasm instances hold",
            runtime.memory_in_use(),
        )?;
        gauge(
            &mut encoder,
            "wasmfleet_agent_wasm_instances",
            "Live wasm instances (container runs and served requests)",
            as_u64(runtime.live_instances()),
        )?;
        gauge(
            &mut encoder,
            "wasmfleet_agent_loaded_programs",
            "Compiled programs loaded in memory (in use, plus the most recently used idle ones)",
            as_u64(runtime.loaded_programs()),
        )?;
        counter(
            &mut encoder,
            "wasmfleet_agent_compilations",
            "Modules this agent compiled itself (instead of loading a precompiled artifact)",
            runtime.compilations(),
        )?;
        let cached = self.modules.cached();
        let artifacts: u64 = runtime.artifact_bytes_by_module().values().sum();
        let module_bytes: u64 = cached.iter().map(|m| m.bytes).sum();
        gauge(
            &mut encoder,
            "wasmfleet_agent_module_cache_bytes",
            "Bytes on disk of cached modules and their compiled artifacts",
            module_bytes.saturating_add(artifacts),
        )?;
        gauge(
            &mut encoder,
            "wasmfleet_agent_module_cache_modules",
            "Modules in the module cache",
            as_u64(cached.len()),
        )?;
        counter(
            &mut encoder,
            "wasmfleet_agent_module_fetch_bytes",
            "Bytes of module chunks received from the server",
            self.modules.fetched_bytes(),
        )
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    let family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(family)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = ConstCounter::new(value);
    let family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
    counter.encode(family)
}
