//! Wiring: everything one server process runs, started in order and drained on shutdown.
//!
//! Start: data directory (secrets, CA, certificate) → store (+ built-in namespaces) → module
//! store → MQTT broker (embedded, unless `--mqtt-url`) → informer cache (listed once, then
//! following the store's events) → fleet link → scheduler and controllers (node lifecycle),
//! all reading the cache → HTTPS API → `admin.kubeconfig` and `endpoints.json`.
//! Stop (when `shutdown` is cancelled): every task sees the token, the API drains its
//! connections, tracked tasks get [`DRAIN_TIMEOUT`] to finish, then the broker stops last so
//! the fleet can still say goodbye through it; the nodes' last usage reports are saved for
//! the next start ([`USAGE_FILE`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiContext, LogFuture, LogQuery, LogSource};
use crate::artifacts::Artifacts;
use crate::bootstrap::{self, Bootstrap};
use crate::broker::{self, EmbeddedBroker};
use crate::config::ServerConfig;
use crate::controllers::{self, node_lifecycle};
use crate::events;
use crate::fleet::front_door::FrontDoor;
use crate::fleet::peers::Relay;
use crate::fleet::{Fleet, FleetConfig, FleetHandle, LogParams, MqttTarget};
use crate::identity::NodeIdentities;
use crate::identity::certificates::NodeCertificates;
use crate::identity::pod_tokens::PodTokens;
use crate::identity::service_account_tokens::TokenSigner;
use crate::informer::{self, Cache};
use crate::metrics::Metrics;
use crate::modules::ModuleStore;
use crate::relay;
use crate::scheduler;
use crate::store::{Store, StoreOptions};
use wasmfleet_agent::config::{AgentConfig, read_ca_file};
use wasmfleet_protocol::broker_url::BrokerUrl;

use crate::network::ipam::NodeRanges;

/// How long tracked tasks get to finish after shutdown begins.
/// The in-process agent needs up to about 16 s to stop its pods and say goodbye.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the server until `shutdown` is cancelled (or the API fails).
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    api::install_crypto_provider();
    crate::network::service_ips::check_service_cidr(config.service_cidr, config.cluster_cidr)
        .map_err(anyhow::Error::msg)
        .context("checking --service-cidr")?;
    let ranges = NodeRanges::new(config.cluster_cidr, config.node_cidr_mask_size)
        .map_err(anyhow::Error::msg)?;
    // A stale file from an earlier run would point readers at dead ports.
    let _ = std::fs::remove_file(config.data_dir.join("endpoints.json"));
    let mut sans = config.tls_sans.clone();
    sans.extend(config.relay_address.iter().map(|relay| relay.host.clone()));
    let mut boot = bootstrap::load_or_create(&config.data_dir, &sans)
        .context("preparing the data directory")?;
    if config.rotate_secrets_key {
        bootstrap::rotate_secrets_key(&config.data_dir, &mut boot)
            .context("rotating the secrets encryption key")?;
    }
    if config.rotate_join_token {
        bootstrap::rotate_join_token(&config.data_dir, &mut boot)
            .context("rotating the join token")?;
        tracing::info!("replaced the node join token; joined nodes are not affected");
    }
    let options = StoreOptions {
        event_retention: config.event_retention,
        secrets_cipher: Some(boot.secrets_cipher.clone()),
        ..StoreOptions::default()
    };
    let store = Store::open_with(config.data_dir.join("state.redb"), options)
        .context("opening the store")?;
    // The store resealed every Secret with the current key as it opened.
    bootstrap::retire_old_secrets_keys(&config.data_dir)
        .context("removing the old secrets encryption keys")?;
    api::kinds::namespaces::ensure_built_in(&store).context("creating the built-in namespaces")?;
    api::kinds::ingressclasses::ensure_built_in(&store)
        .context("creating the built-in IngressClass")?;
    api::kinds::gateway_api::ensure_built_in(&store)
        .context("creating the built-in GatewayClass")?;
    api::rbac::defaults::ensure_built_in(&store)
        .context("creating the default ClusterRoles and ClusterRoleBindings")?;
    let modules = ModuleStore::open(&store).context("opening the module store")?;
    let tracker = TaskTracker::new();

    let (broker, mqtt) = start_mqtt(&config, &boot, &store).await?;
    let relay = relay::bind(config.relay_listen).await?;
    let mut fleet_config = fleet_config(&config, &boot, &modules, &mqtt)?;
    fleet_config.relay = match &config.relay_address {
        Some(address) => Relay {
            port: address.port,
            host: address.host.clone(),
        },
        None => Relay {
            port: relay.local_addr()?.port(),
            host: String::new(),
        },
    };
    fleet_config.node_approval = config.node_approval;
    // One key signs the tokens TokenRequest answers and those projected into pods.
    let signer = Arc::new(
        TokenSigner::load_or_create(&config.data_dir).context("loading the service account key")?,
    );
    fleet_config.pod_tokens = Some(Arc::new(PodTokens::new(Arc::clone(&signer))));
    // The API signs users' certificates with the same CA.
    let fleet_certificates = fleet_config.certificates.clone();
    if let Some(broker) = &broker {
        tracker.spawn(broker::revocation::run(
            store.clone(),
            broker.sessions(),
            shutdown.clone(),
        ));
    }
    let (fleet, cache, metrics) = start_loops(
        fleet_config,
        ranges,
        (relay, &boot.tls),
        &store,
        &modules,
        &shutdown,
        &tracker,
    )?;
    FrontDoor::start(
        &mqtt,
        store.clone(),
        modules.clone(),
        config.service_cidr,
        api::auth::Authorizer::new(cache.clone()),
        &shutdown,
        &tracker,
    )
    .context("starting the MQTT front door")?;

    let listener = std::net::TcpListener::bind(config.https_listen)
        .with_context(|| format!("binding the API on {}", config.https_listen))?;
    let api_addr = listener.local_addr()?;
    let link = fleet.clone();
    let usage = fleet.usage().clone();
    let usage_file = config.data_dir.join(USAGE_FILE);
    let restored = usage.restore(&usage_file, Instant::now(), jiff::Timestamp::now());
    tracing::debug!(nodes = restored, "usage reports restored");
    let saved_usage = usage.clone();
    let ctx = ApiContext {
        store,
        modules: Some(modules),
        fleet_link: Some(Arc::new(move || link.link_up())),
        logs: Some(Arc::new(FleetLogs(fleet))),
        admin_token: Arc::from(boot.credentials.admin_token.as_str()),
        authorizer: api::auth::Authorizer::new(cache),
        certificates: fleet_certificates,
        tokens: Some(signer),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        service_cidr: config.service_cidr,
        metrics,
        usage,
    };
    let api_task = tracker.spawn(api::serve(listener, boot.tls.clone(), ctx));
    let kubeconfig = bootstrap::write_kubeconfig(&config.data_dir, api_addr, &boot)?;
    write_endpoints(&config.data_dir, api_addr, &mqtt)?;
    tracing::info!(api = %bootstrap::api_url(api_addr), kubeconfig = %kubeconfig.display(), "wasmfleet server ready");

    if !config.no_local_agent {
        start_local_agent(&config, &boot, &mqtt, &shutdown, &tracker)?;
    }

    let result = tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        served = api_task => match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(anyhow::Error::new(err).context("the API stopped")),
            Err(err) => Err(anyhow::Error::new(err).context("the API task panicked")),
        },
    };
    shutdown.cancel();
    drain(tracker, broker).await;
    if let Err(err) = saved_usage.save(&usage_file, Instant::now()) {
        tracing::warn!(%err, "cannot save the nodes' usage for the next start");
    }
    result
}

/// Where a stopping server leaves the nodes' last usage reports for the next start
/// (`fleet::usage`), so `kubectl top` answers across a restart.
const USAGE_FILE: &str = "usage.json";

/// The fleet link's settings: the broker, artifact signing, the node grace period.
fn fleet_config(
    config: &ServerConfig,
    boot: &Bootstrap,
    modules: &ModuleStore,
    mqtt: &MqttTarget,
) -> anyhow::Result<FleetConfig> {
    let mut fleet_config = FleetConfig::new(mqtt.clone());
    fleet_config.cluster_cidr = config.cluster_cidr;
    fleet_config.service_cidr = config.service_cidr;
    fleet_config.artifacts = Some(
        Artifacts::new(modules.clone(), &boot.tls.ca_key_pem)
            .context("setting up artifact signing")?,
    );
    fleet_config.certificates = Some(Arc::new(
        NodeCertificates::new(&boot.tls.ca_cert_pem, &boot.tls.ca_key_pem)
            .context("setting up node certificates")?,
    ));
    if let Some(grace) = config.node_monitor_grace() {
        fleet_config.node_grace = grace;
    }
    Ok(fleet_config)
}

/// Starts the loops that follow the store, all reading one informer cache: the fleet link
/// (with the desired-state publisher), the relay, the scheduler and the controllers. Returns
/// the fleet's handle and the cache (the API's authorizer reads RBAC objects from it).
fn start_loops(
    mut fleet_config: FleetConfig,
    ranges: NodeRanges,
    (relay, tls): (tokio::net::TcpListener, &bootstrap::TlsMaterial),
    store: &Store,
    modules: &ModuleStore,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<(FleetHandle, Cache, Metrics)> {
    let cache = Cache::start(store, &informer::RESOURCES, shutdown.clone(), tracker)
        .context("filling the informer's cache")?;
    let metrics = Metrics::collect_from(store.clone(), cache.clone());
    fleet_config.metrics = metrics.clone();
    let node_grace = fleet_config.node_grace;
    let fleet = Fleet::start(
        fleet_config,
        store.clone(),
        cache.clone(),
        modules.clone(),
        shutdown.clone(),
        tracker,
    )
    .context("starting the fleet link")?;
    relay::start(
        relay,
        tls,
        cache.clone(),
        fleet.client().clone(),
        tracker,
        shutdown.clone(),
    )?;
    tracker.spawn(scheduler::run(
        store.clone(),
        cache.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let namespaced = api::kinds::ALL
        .iter()
        .filter(|kind| kind.namespaced)
        .map(|kind| kind.plural)
        .collect();
    controllers::start_workloads(store, &cache, ranges, namespaced, shutdown, tracker);
    tracker.spawn(events::run_expiry(
        store.clone(),
        events::DEFAULT_TTL,
        shutdown.clone(),
    ));
    tracker.spawn(node_lifecycle::run(
        store.clone(),
        cache.clone(),
        fleet.leases().clone(),
        modules.clone(),
        node_grace,
        shutdown.clone(),
    ));
    Ok((fleet, cache, metrics))
}

/// Runs an agent inside the server process, like `k3s server`, so one command gives a
/// working single-node cluster. It joins through the same broker with the node token,
/// exactly as a remote agent would, and keeps its state under `<data-dir>/agent`.
fn start_local_agent(
    config: &ServerConfig,
    boot: &Bootstrap,
    mqtt: &MqttTarget,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let node_name = match &config.node_name {
        Some(name) => name.clone(),
        None => bootstrap::hostname()
            .context("cannot read the host name for the in-process agent; pass --node-name")?
            .to_lowercase(),
    };
    let mut agent = AgentConfig::new(
        mqtt.broker.clone(),
        boot.credentials.node_token.clone(),
        node_name,
    );
    agent.ca_pem = mqtt.ca_pem.clone();
    // With an external broker `ca_pem` is the broker's CA; artifacts are signed by ours.
    agent.cluster_ca_pem = Some(boot.tls.ca_cert_pem.as_bytes().to_vec());
    agent.data_dir = config.data_dir.join("agent");
    agent.ingress_port = config.ingress_port;
    agent.ingress_https_port = config.ingress_https_port;
    agent.node_ip = config.node_ip;
    agent.tunnel_port = config.tunnel_port;
    agent
        .validate()
        .context("configuring the in-process agent (set --node-name, or --no-local-agent)")?;
    tracing::info!(node = %agent.node_name, "starting the in-process agent");
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        if let Err(err) = wasmfleet_agent::run::run(agent, shutdown).await {
            tracing::error!(error = %format!("{err:#}"), "the in-process agent stopped");
        }
    });
    Ok(())
}

/// Starts the embedded broker (or points at the external one) and says how to log in.
async fn start_mqtt(
    config: &ServerConfig,
    boot: &Bootstrap,
    store: &Store,
) -> anyhow::Result<(Option<EmbeddedBroker>, MqttTarget)> {
    let password = config
        .mqtt_password
        .clone()
        .unwrap_or_else(|| boot.credentials.server_mqtt_password.clone());
    let cluster_ca = boot.tls.ca_cert_pem.as_bytes().to_vec();
    let (broker, url, ca_pem) = match &config.mqtt_url {
        Some(external) => {
            let ca_pem = match &config.mqtt_ca_file {
                Some(path) => read_ca_file(path)?,
                None => cluster_ca,
            };
            (None, external.clone(), ca_pem)
        }
        None => {
            let nodes = NodeIdentities::new(store.clone(), &boot.credentials.node_token)
                .requiring_approval(config.node_approval);
            let broker =
                EmbeddedBroker::start(config.mqtt_listen, &boot.credentials, &boot.tls, nodes)
                    .await?;
            let addr = broker.local_addr();
            let url = BrokerUrl {
                tls: true,
                host: loopback_host(addr),
                port: addr.port(),
            };
            (Some(broker), url, cluster_ca)
        }
    };
    let target = MqttTarget {
        broker: url,
        ca_pem: Some(ca_pem),
        username: config.mqtt_username.clone(),
        password,
    };
    Ok((broker, target))
}

/// Cancelled already: wait for tracked tasks (bounded), then stop the broker.
async fn drain(tracker: TaskTracker, broker: Option<EmbeddedBroker>) {
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(remaining = tracker.len(), "tasks did not stop in time");
    }
    if let Some(broker) = broker {
        broker.shutdown().await;
    }
    tracing::info!("wasmfleet server stopped");
}

/// The host a local client uses to reach a listener bound to `addr`.
fn loopback_host(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "::1".to_owned(),
        ip => ip.to_string(),
    }
}

/// `<data-dir>/endpoints.json`: where the API and the broker are (tests and tools read it).
fn write_endpoints(data_dir: &Path, api: SocketAddr, mqtt: &MqttTarget) -> anyhow::Result<()> {
    let endpoints = serde_json::json!({
        "api": bootstrap::api_url(api),
        "mqtt": mqtt.broker.to_string(),
    });
    let path = data_dir.join("endpoints.json");
    let tmp = data_dir.join("endpoints.json.tmp");
    std::fs::write(&tmp, endpoints.to_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// The API's log seam, served by the fleet link.
struct FleetLogs(FleetHandle);

impl LogSource for FleetLogs {
    fn logs(&self, query: LogQuery) -> LogFuture {
        let fleet = self.0.clone();
        Box::pin(async move {
            let params = LogParams {
                pod_uid: query.pod_uid,
                container: query.container,
                options: query.options,
            };
            fleet
                .logs(&query.node, params)
                .await
                .map_err(|err| err.to_string())
        })
    }
}
