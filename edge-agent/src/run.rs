//! Wires the agent together and takes it apart in order.
//!
//! Start: open the local state, build the runtime, the module fetcher and the
//! `PodManager`, restore the last pod statuses and apply the persisted desired pods
//! *before* the broker is reachable (offline autonomy), then start the link and the pod sync.
//!
//! Stop (when `shutdown` fires): freeze the persisted statuses, stop the pods gracefully,
//! report their final status if connected, publish "offline" and disconnect, and wait for
//! every task, each step under a timeout.

use crate::net::ServiceDirectory;
use crate::net::node_ports::NodePorts;
use crate::net::peers::Peers;
use crate::net::remote::Remote;
use crate::pods::host_paths::HostPathPolicy;
use crate::pods::volumes::VolumeRoots;
use std::sync::Arc;
use std::time::Duration;
use wasmfleet_protocol::node::NodeAddress;
use wasmfleet_protocol::peers::PeerTable;
use wasmfleet_protocol::routes::RouteTable;
use wasmfleet_protocol::service::ServiceTable;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::pod::DesiredPods;

use crate::config::AgentConfig;
use crate::identity::certificate::TunnelCredentials;
use crate::link::{self, BackoffPolicy, Deliveries, Link, LinkConfig};
use crate::modules::{FetchTimeouts, ModuleFetcher};
use crate::node_info;
use crate::pods::{PodManager, PodManagerConfig};
use crate::runtime::Runtime;
use crate::state::AgentState;
use crate::sync::PodSync;

/// How long pods get to stop.
const POD_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the link gets to send the final status and say goodbye.
const LINK_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the remaining tasks get to end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the agent until `shutdown` fires.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let transport = config.transport()?;
    let password = crate::identity::mqtt_password(&config.node_password_path(), &config.token)?;
    // The node's tunnel key and certificate. The tunnel takes the current identity from
    // `credentials.identity()` (a watch: `None` until the server has certified the key,
    // replaced when it sends a new certificate).
    let credentials = TunnelCredentials::load(
        &config.node_name,
        config.tunnel_files(),
        config.artifact_signer(),
    )?;
    if !config.mqtt.tls {
        tracing::warn!(
            server = %config.mqtt,
            "connecting without TLS: the node token and all pod traffic cross the network in clear text"
        );
    }
    let state = AgentState::open(&config.state_path())
        .with_context(|| format!("opening {}", config.state_path().display()))?;
    let runtime = Runtime::new(config.cache_dir()).context("starting the wasm runtime")?;
    let mut info = node_info::collect(
        config.labels.clone(),
        runtime.engine_info(),
        config.system_reserved,
        config.max_pods,
    )?;
    let node_ip = match config.node_ip {
        Some(ip) => ip,
        None => node_info::detect_node_ip(&config.mqtt).await,
    };
    info.addresses = vec![NodeAddress::internal(node_ip)];
    info.tunnel = Some(credentials.tunnel_info(config.tunnel_port));
    tracing::info!(%node_ip, "node address (NodePort and LoadBalancer Services listen on it)");
    runtime.limit_to(&info.allocatable);
    tracing::info!(
        memory_bytes = info.allocatable.memory_bytes,
        cpu_millis = info.allocatable.cpu_millis,
        "pods together may use the node's allocatable"
    );
    let (uplink, parts) = link::uplink(&config.node_name);

    // Pods get their own token and tracker: they stop first, before the link says goodbye.
    let pods_shutdown = CancellationToken::new();
    let pods_tracker = TaskTracker::new();
    let fetcher = ModuleFetcher::new(
        config.modules_dir(),
        config.artifact_signer().map(<[u8]>::to_vec),
        uplink.clone(),
        FetchTimeouts::default(),
        pods_shutdown.clone(),
        pods_tracker.clone(),
    )
    .with_context(|| format!("creating {}", config.modules_dir().display()))?;
    let services = ServiceDirectory::new(&config.node_name, persisted_services(&state));
    if let Some(routes) = persisted_routes(&state) {
        services.replace_routes(routes);
    }
    // Pods on other nodes: tunnels and forwarders stop with the pods.
    let peers = Peers::new(
        &config.node_name,
        credentials.identity(),
        &config.mqtt.host,
        Some(uplink.clone()),
        pods_tracker.clone(),
        pods_shutdown.clone(),
    );
    if let Some(table) = persisted_peers(&state) {
        peers.replace(table);
    }
    pods_tracker.spawn(peers.clone().listen(config.tunnel_port));
    services.attach_remote(Remote::new(
        peers,
        pods_tracker.clone(),
        pods_shutdown.clone(),
    ));
    services.attach_udp_egress(crate::net::udp_egress::UdpEgress::new(
        pods_tracker.clone(),
        pods_shutdown.clone(),
    ));
    // With the pods' token and tracker: connections finish their request before the pods
    // stop.
    let ingress_ports = crate::net::ingress::IngressPorts {
        http: config.ingress_port,
        https: config.ingress_https_port,
    };
    pods_tracker.spawn(crate::net::ingress::serve(
        ingress_ports,
        services.clone(),
        pods_shutdown.clone(),
        pods_tracker.clone(),
    ));
    let pods = PodManager::new(
        runtime,
        Arc::new(fetcher.clone()),
        PodManagerConfig {
            restart_backoff_base: config.restart_backoff_base,
            log_dir: Some(config.data_dir.join("logs")),
            volume_dir: Some(VolumeRoots::for_data_dir(&config.data_dir)),
            module_cache_bytes: config.module_cache_bytes,
            services: services.clone(),
            host_paths: HostPathPolicy::new(config.host_path_allow.clone()),
        },
        pods_shutdown.clone(),
        pods_tracker.clone(),
    );
    pods_tracker.spawn(
        pods.clone()
            .enforce_volume_limits(config.volume_check_interval, pods_shutdown.clone()),
    );
    let applied = resume_from_local_state(&state, &pods);
    if let Some(address) = config.metrics_listen {
        let listener = crate::metrics::bind(address).await?;
        tracing::info!(%address, "serving the agent's Prometheus metrics at /metrics");
        let metrics = crate::metrics::AgentMetrics::new(pods.clone(), fetcher.clone());
        pods_tracker.spawn(crate::metrics::serve(
            listener,
            metrics,
            pods_shutdown.clone(),
        ));
    }
    // The listeners stop with the pods they forward to.
    NodePorts::start(
        services.clone(),
        node_ip,
        uplink.clone(),
        pods_shutdown.clone(),
        &pods_tracker,
    );

    let link_tracker = TaskTracker::new();
    let deliveries = Deliveries {
        fetcher,
        services,
        credentials,
    };
    let (link, inbox) = Link::start(
        &link_config(&config, transport, password),
        parts,
        info,
        state.clone(),
        Some(deliveries),
        &link_tracker,
    );
    pods_tracker.spawn(crate::usage::report(
        pods.clone(),
        uplink.clone(),
        config.usage_interval,
        pods_shutdown.clone(),
    ));
    let sync = PodSync::start(inbox, pods, state, uplink, applied, &link_tracker);
    tracing::info!(node = %config.node_name, server = %config.mqtt, "agent started");

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    sync.freeze();
    pods_shutdown.cancel();
    drain("pods", pods_tracker, POD_STOP_TIMEOUT).await;
    sync.shutdown().await;
    if let Err(err) = link.shutdown(LINK_CLOSE_TIMEOUT).await {
        tracing::warn!(%err, "the link did not close cleanly");
    }
    drain("link", link_tracker, DRAIN_TIMEOUT).await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The table of Services an earlier process persisted (unreadable: none, the server sends
/// it again).
fn persisted_services(state: &AgentState) -> Option<ServiceTable> {
    state
        .services()
        .inspect_err(|err| tracing::warn!(%err, "ignoring the persisted table of Services"))
        .ok()
        .flatten()
}

/// The table of peers an earlier process persisted (unreadable: none, the server sends it
/// again).
fn persisted_peers(state: &AgentState) -> Option<PeerTable> {
    state
        .peers()
        .inspect_err(|err| tracing::warn!(%err, "ignoring the persisted table of peers"))
        .ok()
        .flatten()
}

/// The table of HTTP routes an earlier process persisted (unreadable: none, the server
/// sends it again).
fn persisted_routes(state: &AgentState) -> Option<RouteTable> {
    state
        .routes()
        .inspect_err(|err| tracing::warn!(%err, "ignoring the persisted table of HTTP routes"))
        .ok()
        .flatten()
}

/// Restores the last statuses and applies the persisted desired pods; returns the
/// snapshot applied. Unreadable local state is logged and treated as empty: the server
/// sends everything again once it is reachable.
fn resume_from_local_state(state: &AgentState, pods: &PodManager) -> Option<DesiredPods> {
    match state.statuses() {
        Ok(statuses) if !statuses.is_empty() => {
            tracing::info!(
                pods = statuses.len(),
                "restoring pod statuses from local state"
            );
            pods.restore(statuses);
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(%err, "ignoring unreadable pod statuses"),
    }
    match state.desired() {
        Ok(Some(desired)) => {
            tracing::info!(
                revision = desired.revision,
                pods = desired.pods.len(),
                "starting pods from local state"
            );
            pods.resume(desired.pods.clone());
            Some(desired)
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(%err, "ignoring an unreadable desired snapshot");
            None
        }
    }
}

fn link_config(
    config: &AgentConfig,
    transport: rumqttc::Transport,
    password: String,
) -> LinkConfig {
    LinkConfig {
        mqtt: config.mqtt.clone(),
        transport,
        node_name: config.node_name.clone(),
        password,
        heartbeat_interval: config.heartbeat_interval,
        reconnect: BackoffPolicy::default(),
    }
}

async fn drain(what: &str, tracker: TaskTracker, timeout: Duration) {
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        tracing::warn!(what, ?timeout, "tasks did not stop in time");
    }
}
