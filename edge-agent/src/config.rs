//! The agent's configuration: one plain [`AgentConfig`], validated once, passed down.
//!
//! The `wasmfleet-agent` binary fills it from command-line flags (with environment twins) via
//! [`Cli`], over an optional TOML file ([`FileConfig`], `--config`, e.g.
//! `/etc/wasmfleet/agent.toml` from the Debian package): a flag wins over the file, the file
//! over the defaults. The server builds the same struct directly for its in-process agent.
//! Invalid values give a [`ConfigError`] naming the field, never a panic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::modules::gc::DEFAULT_BUDGET_BYTES;
use crate::pods::host_paths::HostPathRule;
use clap::Parser;
use serde::Deserialize;
use wasmfleet_protocol::broker_url::{BrokerUrl, BrokerUrlError};
use wasmfleet_protocol::names::{InvalidName, validate_dns_subdomain, validate_node_name};
use wasmfleet_protocol::quantity::{self, InvalidResourceList, ResourceAmounts};
use wasmfleet_protocol::transport::{self, TransportError};

/// The port Ingress traffic is served on when not told otherwise (HTTP's).
pub const DEFAULT_INGRESS_PORT: u16 = 80;

/// The port Ingress HTTPS is served on when not told otherwise (HTTPS's).
pub const DEFAULT_INGRESS_HTTPS_PORT: u16 = 443;

/// The port of the agent's tunnel listener when not told otherwise (other agents reach the
/// node's pods through it; next to the kubelet's 10250).
pub const DEFAULT_TUNNEL_PORT: u16 = 10260;

/// Where an agent keeps its state when not told otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/wasmfleet/agent";

/// Everything the agent needs to run.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The broker the agent connects to.
    pub mqtt: BrokerUrl,
    /// The PEM CA certificate(s) the broker's certificate must chain to (`mqtts://` only):
    /// the server's `tls/ca.crt` for its embedded broker.
    pub ca_pem: Option<Vec<u8>>,
    /// The PEM certificate of the wasmfleet cluster CA, whose key signs precompiled
    /// artifacts, when it is not [`Self::ca_pem`]: an external broker (Mosquitto) has a CA
    /// of its own. See [`Self::artifact_signer`].
    pub cluster_ca_pem: Option<Vec<u8>>,
    /// The node join token (empty when the node has joined and keeps no token): needed
    /// only for the first login under this node name, see [`crate::identity`].
    pub token: String,
    /// The node's own password, the credential the server binds its name to [default:
    /// `<data_dir>/node-password`, created at first start].
    pub node_password_file: Option<PathBuf>,
    /// The node name: MQTT client id, username and Kubernetes node name.
    pub node_name: String,
    /// Where the local state database and module cache live.
    pub data_dir: PathBuf,
    /// Labels the node asks for in its birth message.
    pub labels: BTreeMap<String, String>,
    /// The disk budget of cached modules plus their compiled artifacts.
    pub module_cache_bytes: u64,
    /// What the agent keeps back from pods for itself and the OS (the kubelet's
    /// `--system-reserved`); a resource left out gets the default reserve of
    /// [`crate::node_info::allocatable`].
    pub system_reserved: ResourceAmounts,
    /// How many pods the node takes (its `pods` capacity; the kubelet's `--max-pods`).
    pub max_pods: u32,
    /// The delay before the second restart of a crashed container (the first is immediate) and
    /// before a module retry; doubles per restart.
    pub restart_backoff_base: Duration,
    /// How often the agent renews its lease.
    pub heartbeat_interval: Duration,
    /// How often the agent reports what its pods use (`kubectl top`); a node without
    /// running pods reports every [`crate::usage::IDLE_EVERY`] intervals.
    pub usage_interval: Duration,
    /// Where the agent serves its Prometheus `/metrics` (no authentication: meant for
    /// loopback); `None`: nowhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The port the agent serves Ingress traffic on, on all its addresses (0: none).
    pub ingress_port: u16,
    /// The node's `InternalIP`, where it serves NodePort and LoadBalancer Services
    /// [default: [`crate::node_info::detect_node_ip`]].
    pub node_ip: Option<std::net::IpAddr>,
    /// The port the agent serves Ingress HTTPS on, on all its addresses, while the server
    /// has sent it certificates (0: none).
    pub ingress_https_port: u16,
    /// The port of the agent's tunnel listener (mutual TLS with the node certificate),
    /// reported in the birth; 0: none, the node only dials out.
    pub tunnel_port: u16,
    /// The node directories pods may mount as `hostPath` volumes (none by default).
    pub host_path_allow: Vec<HostPathRule>,
    /// How often the pods' `emptyDir` `sizeLimit`s are checked.
    pub volume_check_interval: Duration,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--server` is not an `mqtts://host[:port]` or `mqtt://host[:port]` URL.
    #[error(transparent)]
    ServerUrl(#[from] BrokerUrlError),
    /// The broker's TLS cannot be set up: no CA for `mqtts://`, or an unusable one.
    #[error("{0} (--ca-file, WASMFLEET_CA_FILE or `ca_file` in --config: the server's tls/ca.crt)")]
    Tls(#[from] TransportError),
    /// The cluster CA file holds no usable certificate.
    #[error(
        "{0} (--cluster-ca-file, WASMFLEET_CLUSTER_CA_FILE or `cluster_ca_file` in --config: the server's tls/ca.crt)"
    )]
    ClusterCa(TransportError),
    /// The CA file could not be read.
    #[error("cannot read CA file {path}: {why}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// No token, or an empty one, and no node password from an earlier join.
    #[error(
        "a node join token is required (--token, WASMFLEET_TOKEN or --token-file) until the node \
         has joined and keeps its own password ({0})"
    )]
    MissingToken(PathBuf),
    /// The token file could not be read.
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The node name (given or taken from the host name) is not a DNS-1123 subdomain.
    #[error("{0} (pass a valid --node-name)")]
    NodeName(#[from] InvalidName),
    /// The host name could not be read and no `--node-name` was given.
    #[error("cannot read the host name for the default node name: {0} (pass --node-name)")]
    Hostname(std::io::Error),
    /// A `--labels` entry is malformed.
    #[error("invalid label {label:?}: {why}")]
    Label {
        /// The offending `key=value` entry.
        label: String,
        /// The rule it broke.
        why: String,
    },
    /// The config file could not be read, or is not valid TOML of the expected shape.
    #[error("config file {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (TOML errors name the line and the key).
        why: String,
    },
    /// Neither `--server` nor the config file names the broker.
    #[error(
        "the server's MQTT URL is required (--server, WASMFLEET_SERVER or `server` in --config)"
    )]
    MissingServer,
    /// `--system-reserved` is not a resource list.
    #[error("invalid --system-reserved (or `system_reserved` in --config): {0}")]
    SystemReserved(#[from] InvalidResourceList),
    /// An interval is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A `--host-path-allow` rule is malformed.
    #[error("invalid --host-path-allow (or `host_path_allow` in --config): {0}")]
    HostPathRule(String),
}

/// The token is a credential: it never appears in logs.
impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("mqtt", &self.mqtt)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<set>"))
            .field(
                "cluster_ca_pem",
                &self.cluster_ca_pem.as_ref().map(|_| "<set>"),
            )
            .field("token", &"<redacted>")
            .field("node_password_file", &self.node_password_file)
            .field("node_name", &self.node_name)
            .field("data_dir", &self.data_dir)
            .field("labels", &self.labels)
            .field("module_cache_bytes", &self.module_cache_bytes)
            .field("system_reserved", &self.system_reserved)
            .field("max_pods", &self.max_pods)
            .field("restart_backoff_base", &self.restart_backoff_base)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("usage_interval", &self.usage_interval)
            .field("metrics_listen", &self.metrics_listen)
            .field("ingress_port", &self.ingress_port)
            .field("ingress_https_port", &self.ingress_https_port)
            .field("tunnel_port", &self.tunnel_port)
            .field("host_path_allow", &self.host_path_allow)
            .field("volume_check_interval", &self.volume_check_interval)
            .finish()
    }
}

impl AgentConfig {
    /// A configuration with no CA, the default data dir, no labels and default intervals.
    pub fn new(mqtt: BrokerUrl, token: impl Into<String>, node_name: impl Into<String>) -> Self {
        AgentConfig {
            mqtt,
            ca_pem: None,
            cluster_ca_pem: None,
            token: token.into(),
            node_password_file: None,
            node_name: node_name.into(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            labels: BTreeMap::new(),
            module_cache_bytes: DEFAULT_BUDGET_BYTES,
            system_reserved: ResourceAmounts::default(),
            max_pods: crate::node_info::MAX_PODS,
            restart_backoff_base: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(10),
            usage_interval: crate::usage::DEFAULT_INTERVAL,
            metrics_listen: None,
            ingress_port: DEFAULT_INGRESS_PORT,
            ingress_https_port: DEFAULT_INGRESS_HTTPS_PORT,
            node_ip: None,
            tunnel_port: DEFAULT_TUNNEL_PORT,
            host_path_allow: Vec::new(),
            volume_check_interval: crate::pods::volume_limits::DEFAULT_CHECK_INTERVAL,
        }
    }

    /// Checks every field; `run` calls this before doing anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_node_name(&self.node_name)?;
        if self.token.trim().is_empty() && !self.node_password_path().exists() {
            return Err(ConfigError::MissingToken(self.node_password_path()));
        }
        self.transport()?;
        if let Some(pem) = &self.cluster_ca_pem {
            transport::tls_config(pem).map_err(ConfigError::ClusterCa)?;
        }
        for (key, value) in &self.labels {
            validate_label(key, value).map_err(|why| ConfigError::Label {
                label: format!("{key}={value}"),
                why,
            })?;
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("the heartbeat interval"));
        }
        if self.usage_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("the usage report interval"));
        }
        if self.restart_backoff_base.is_zero() {
            return Err(ConfigError::ZeroDuration("the restart back-off base"));
        }
        if self.volume_check_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("the volume check interval"));
        }
        Ok(())
    }

    /// The CA whose signature a precompiled artifact must carry: the cluster CA when given
    /// apart, else the broker's CA (they are one with the server's embedded broker). `None`
    /// means no artifact is trusted and the agent compiles every module itself.
    pub fn artifact_signer(&self) -> Option<&[u8]> {
        self.cluster_ca_pem.as_deref().or(self.ca_pem.as_deref())
    }

    /// How the MQTT client reaches the broker: TLS checked against [`Self::ca_pem`] for
    /// `mqtts://`, plain TCP for `mqtt://`.
    pub fn transport(&self) -> Result<rumqttc::Transport, ConfigError> {
        Ok(transport::transport(&self.mqtt, self.ca_pem.as_deref())?)
    }

    /// The file holding the node's own password.
    pub fn node_password_path(&self) -> PathBuf {
        self.node_password_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(crate::identity::NODE_PASSWORD_FILE))
    }

    /// The node's tunnel key, certificate and CA (see [`crate::identity::certificate`]).
    pub fn tunnel_files(&self) -> crate::identity::certificate::TunnelFiles {
        crate::identity::certificate::TunnelFiles::in_dir(&self.data_dir)
    }

    /// The redb file holding the agent's local state.
    pub fn state_path(&self) -> PathBuf {
        self.data_dir.join("state.redb")
    }

    /// The directory of downloaded modules.
    pub fn modules_dir(&self) -> PathBuf {
        self.data_dir.join("modules")
    }

    /// The directory of precompiled artifacts (owned by the runtime).
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }
}

/// The `wasmfleet-agent` command line.
#[derive(Parser)]
#[command(
    name = "wasmfleet-agent",
    version,
    about = "Runs Wasm pods for a wasmfleet server."
)]
pub struct Cli {
    /// A TOML file with `server`, `ca_file`, `token` or `token_file`, `node_name`,
    /// `data_dir` and a `[labels]` table; flags override it.
    #[arg(long, env = "WASMFLEET_CONFIG")]
    pub config: Option<PathBuf>,
    /// The server's MQTT broker, as `mqtts://host[:8883]` (or `mqtt://host[:1883]`: plain
    /// TCP, the token crosses the network in clear text).
    #[arg(long, env = "WASMFLEET_SERVER")]
    pub server: Option<String>,
    /// The CA certificate (PEM) the broker's certificate must chain to: the server's
    /// `<data-dir>/tls/ca.crt`. Required for `mqtts://`.
    #[arg(long, env = "WASMFLEET_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The wasmfleet server's own CA certificate (its `<data-dir>/tls/ca.crt`), which signs
    /// the precompiled code the agent accepts, when the broker is not the server's embedded
    /// one and --ca-file names the broker's CA [default: --ca-file].
    #[arg(long, env = "WASMFLEET_CLUSTER_CA_FILE")]
    pub cluster_ca_file: Option<PathBuf>,
    /// The node join token.
    #[arg(
        long,
        env = "WASMFLEET_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the node join token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The file with this node's own password, its identity at the server, created at the
    /// first start [default: <data-dir>/node-password].
    #[arg(long, env = "WASMFLEET_NODE_PASSWORD_FILE")]
    pub node_password_file: Option<PathBuf>,
    /// The node name [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// Where the agent keeps its state and module cache [default: /var/lib/wasmfleet/agent].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Node labels, as `key=value,key2=value2` (replaces the file's labels).
    #[arg(long)]
    pub labels: Option<String>,
    /// Disk budget in MiB for downloaded modules and their compiled code; modules no pod
    /// uses are deleted, least recently used first, beyond it [default: 1024].
    #[arg(long, env = "WASMFLEET_MODULE_CACHE_MIB")]
    pub module_cache_mib: Option<u64>,
    /// What the agent keeps back from pods for itself and the OS, as
    /// `cpu=100m,memory=256Mi` [default: 100m of CPU and a tenth of the memory, at most
    /// 512Mi]. The node's allocatable (capacity minus this) is what the scheduler places
    /// pods against and what the agent lets all pods together use.
    #[arg(long, env = "WASMFLEET_SYSTEM_RESERVED")]
    pub system_reserved: Option<String>,
    /// How many pods the node takes (the kubelet's `--max-pods`) [default: 110]. Small
    /// Wasm pods cost little: a node may take far more than a kubelet would.
    #[arg(long, env = "WASMFLEET_MAX_PODS")]
    pub max_pods: Option<u32>,
    /// The node's address (its `InternalIP`), where it serves NodePort and LoadBalancer
    /// Services [default: the source address of its route to the server's broker, or of
    /// the default route when the broker is on this machine].
    #[arg(long, env = "WASMFLEET_NODE_IP")]
    pub node_ip: Option<std::net::IpAddr>,
    /// The back-off base in milliseconds: the delay before a second restart (for tests).
    #[arg(long, hide = true, default_value_t = 10_000)]
    pub restart_backoff_base_ms: u64,
    /// The heartbeat interval in milliseconds (for tests).
    #[arg(long, hide = true, default_value_t = 10_000)]
    pub heartbeat_interval_ms: u64,
    /// Seconds between reports of what the pods use (`kubectl top`); a node without
    /// running pods reports every fourth interval [default: 15].
    #[arg(long, env = "WASMFLEET_USAGE_INTERVAL")]
    pub usage_interval: Option<u64>,
    /// Serve the agent's Prometheus metrics at `http://ADDRESS/metrics` (pods, restarts,
    /// OOM kills, module cache, fetched bytes). Off by default; it has no authentication,
    /// so bind it to loopback (`127.0.0.1:9101`).
    #[arg(long, env = "WASMFLEET_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The port Ingress traffic is served on, on all the node's addresses; 0 serves none.
    /// Ports below 1024 need root or CAP_NET_BIND_SERVICE: without them the agent logs
    /// why and runs on without serving Ingresses.
    #[arg(long, env = "WASMFLEET_INGRESS_PORT", default_value_t = DEFAULT_INGRESS_PORT)]
    pub ingress_port: u16,
    /// The port Ingress HTTPS (and its TLS hosts' redirects) is served on, on all the
    /// node's addresses, once the server has sent the node certificates (it sends them to
    /// the nodes that serve LoadBalancers); 0 serves none. Same rules as --ingress-port.
    #[arg(
        long,
        env = "WASMFLEET_INGRESS_HTTPS_PORT",
        default_value_t = DEFAULT_INGRESS_HTTPS_PORT
    )]
    pub ingress_https_port: u16,
    /// The port other agents reach this node's pods on (mutual TLS with the node
    /// certificates the server signs); 0: no listener, the node only dials out and its
    /// traffic is relayed through the server.
    #[arg(long, env = "WASMFLEET_TUNNEL_PORT", default_value_t = DEFAULT_TUNNEL_PORT)]
    pub tunnel_port: u16,
    /// A node directory pods may mount as a `hostPath` volume (it and everything below it),
    /// read-only for them unless written `PATH:rw`; repeat for more. None by default: a pod
    /// asking for a path not allowed does not start (CreateContainerConfigError). Replaces
    /// the file's `host_path_allow`.
    #[arg(long = "host-path-allow", value_name = "PATH[:rw]")]
    pub host_path_allow: Vec<String>,
    /// Milliseconds between checks of the pods' emptyDir sizeLimits (for tests).
    #[arg(long, hide = true, default_value_t = 10_000)]
    pub volume_check_interval_ms: u64,
}

impl Cli {
    /// Reads the config file (if any), lets the flags override it, resolves defaults (token
    /// file, host name) and validates the result.
    pub fn into_config(self) -> Result<AgentConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let token = match (self.token, self.token_file) {
            (Some(token), _) => token,
            (None, Some(path)) => read_token_file(&path)?,
            (None, None) => match (file.token, file.token_file) {
                (Some(token), _) => token,
                (None, Some(path)) => read_token_file(&path)?,
                // Validation decides: a node that has joined needs no token.
                (None, None) => String::new(),
            },
        };
        let server = self
            .server
            .or(file.server)
            .ok_or(ConfigError::MissingServer)?;
        let node_name = match self.node_name.or(file.node_name) {
            Some(name) => name,
            None => default_node_name()?,
        };
        let labels = match self.labels {
            Some(labels) => parse_labels(&labels)?,
            None => file.labels,
        };
        let ca_pem = self
            .ca_file
            .or(file.ca_file)
            .map(|path| read_ca_file(&path))
            .transpose()?;
        let cluster_ca_pem = self
            .cluster_ca_file
            .or(file.cluster_ca_file)
            .map(|path| read_ca_file(&path))
            .transpose()?;
        let config = AgentConfig {
            mqtt: server.parse()?,
            ca_pem,
            cluster_ca_pem,
            token,
            node_password_file: self.node_password_file.or(file.node_password_file),
            node_name,
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            labels,
            module_cache_bytes: self
                .module_cache_mib
                .or(file.module_cache_mib)
                .map_or(DEFAULT_BUDGET_BYTES, |mib| mib.saturating_mul(1 << 20)),
            system_reserved: quantity::resource_list(
                self.system_reserved
                    .or(file.system_reserved)
                    .as_deref()
                    .unwrap_or(""),
            )?,
            max_pods: self
                .max_pods
                .or(file.max_pods)
                .unwrap_or(crate::node_info::MAX_PODS),
            restart_backoff_base: Duration::from_millis(self.restart_backoff_base_ms),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            usage_interval: self
                .usage_interval
                .or(file.usage_interval)
                .map_or(crate::usage::DEFAULT_INTERVAL, Duration::from_secs),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            ingress_port: self.ingress_port,
            ingress_https_port: self.ingress_https_port,
            node_ip: self.node_ip,
            tunnel_port: self.tunnel_port,
            host_path_allow: match self.host_path_allow.is_empty() {
                true => file.host_path_allow,
                false => self.host_path_allow,
            }
            .iter()
            .map(|rule| HostPathRule::parse(rule))
            .collect::<Result<_, _>>()
            .map_err(ConfigError::HostPathRule)?,
            volume_check_interval: Duration::from_millis(self.volume_check_interval_ms),
        };
        config.validate()?;
        Ok(config)
    }
}

/// The largest config file the agent reads.
pub const MAX_CONFIG_FILE_BYTES: u64 = 64 * 1024;

/// The agent's TOML config file. Every key is optional; unknown keys are refused so a typo
/// does not go unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The server's MQTT broker, as `mqtts://host:port`.
    pub server: Option<String>,
    /// The CA certificate the broker's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// The server's CA certificate, which signs precompiled artifacts (default: `ca_file`).
    pub cluster_ca_file: Option<PathBuf>,
    /// The node join token.
    pub token: Option<String>,
    /// A file holding the node join token.
    pub token_file: Option<PathBuf>,
    /// The file with the node's own password.
    pub node_password_file: Option<PathBuf>,
    /// The node name.
    pub node_name: Option<String>,
    /// Where the agent keeps its state.
    pub data_dir: Option<PathBuf>,
    /// Disk budget in MiB for cached modules and their compiled code.
    pub module_cache_mib: Option<u64>,
    /// What the agent keeps back from pods: `cpu=100m,memory=256Mi`.
    pub system_reserved: Option<String>,
    /// How many pods the node takes.
    pub max_pods: Option<u32>,
    /// Seconds between reports of what the pods use (`kubectl top`).
    pub usage_interval: Option<u64>,
    /// Where to serve the agent's Prometheus metrics (`127.0.0.1:9101`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Node directories pods may mount as `hostPath` volumes (`PATH` or `PATH:rw`).
    #[serde(default)]
    pub host_path_allow: Vec<String>,
    /// Node labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl FileConfig {
    /// Reads and parses `path` (at most [`MAX_CONFIG_FILE_BYTES`]).
    pub fn read(path: &std::path::Path) -> Result<Self, ConfigError> {
        let bad = |why: String| ConfigError::File {
            path: path.to_owned(),
            why,
        };
        let bytes = read_limited(path, MAX_CONFIG_FILE_BYTES).map_err(bad)?;
        let text = String::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
        Self::parse(&text).map_err(bad)
    }

    /// Parses the TOML text; the error names the line and the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        // An empty value in the shipped template means "not set".
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        Ok(FileConfig {
            server: set(file.server),
            ca_file: file.ca_file.filter(|p| !p.as_os_str().is_empty()),
            cluster_ca_file: file.cluster_ca_file.filter(|p| !p.as_os_str().is_empty()),
            node_password_file: file
                .node_password_file
                .filter(|p| !p.as_os_str().is_empty()),
            token: set(file.token),
            node_name: set(file.node_name),
            ..file
        })
    }
}

/// Reads a join token file (surrounding whitespace trimmed).
pub fn read_token_file(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|token| token.trim().to_owned())
        .map_err(|source| ConfigError::TokenFile {
            path: path.to_owned(),
            source,
        })
}

/// The largest CA file the agent reads (a CA bundle of a few certificates is a few KiB).
pub const MAX_CA_FILE_BYTES: u64 = 256 * 1024;

/// Reads a PEM CA file (at most [`MAX_CA_FILE_BYTES`]); its contents are checked when the
/// transport is built.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    read_limited(path, MAX_CA_FILE_BYTES).map_err(|why| ConfigError::CaFile {
        path: path.to_owned(),
        why,
    })
}

/// Reads a file of at most `limit` bytes; the error says why in words.
fn read_limited(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > limit {
        return Err(format!("{len} bytes is larger than the limit of {limit}"));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// Parses `k=v,k2=v2` (empty input is no labels), validating each pair.
pub fn parse_labels(input: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut labels = BTreeMap::new();
    for entry in input.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why: String| ConfigError::Label {
            label: entry.to_owned(),
            why,
        };
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| bad("must be key=value".into()))?;
        validate_label(key, value).map_err(bad)?;
        if labels.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(bad("the key is given twice".into()));
        }
    }
    Ok(labels)
}

/// Checks a Kubernetes label: key `[prefix/]name`, value a name of at most 63 characters or empty.
pub fn validate_label(key: &str, value: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            validate_dns_subdomain("label key prefix", prefix).map_err(|e| e.to_string())?;
            name
        }
        None => key,
    };
    if !is_label_name(name) {
        return Err(format!(
            "key name {name:?} must be 1-63 alphanumeric characters, '-', '_' or '.', \
             starting and ending with an alphanumeric character"
        ));
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(format!(
            "value {value:?} must be empty or 1-63 alphanumeric characters, '-', '_' or '.', \
             starting and ending with an alphanumeric character"
        ));
    }
    Ok(())
}

/// Kubernetes' qualified-name part: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63.
fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The host name, lowercased as the kubelet does, for the default node name.
fn default_node_name() -> Result<String, ConfigError> {
    let name = crate::node_info::hostname().map_err(ConfigError::Hostname)?;
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(url: &str) -> BrokerUrl {
        url.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn cli(args: &[&str]) -> Result<AgentConfig, String> {
        let mut argv = vec!["wasmfleet-agent"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    /// The flags every agent needs; tests add the one under test.
    const BASE_ARGS: [&str; 6] = [
        "--server",
        "mqtt://b:1883",
        "--token",
        "t",
        "--node-name",
        "pi-1",
    ];

    #[test]
    fn the_system_reserve_comes_from_the_flag_or_the_file_and_bad_ones_are_named() {
        let base = BASE_ARGS;
        let config = cli(&[&base[..], &["--system-reserved", "cpu=250m,memory=256Mi"]].concat())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.system_reserved.cpu_millis, Some(250));
        assert_eq!(config.system_reserved.memory_bytes, Some(256 << 20));
        assert_eq!(
            cli(&base).map(|c| c.system_reserved).ok(),
            Some(ResourceAmounts::default())
        );
        let err = cli(&[&base[..], &["--system-reserved", "disk=1Gi"]].concat())
            .expect_err("unknown resource");
        assert!(
            err.contains("--system-reserved") && err.contains("disk"),
            "{err}"
        );
        let file = FileConfig::parse("system_reserved = \"memory=1Gi\"").expect("valid file");
        assert_eq!(file.system_reserved.as_deref(), Some("memory=1Gi"));
    }

    #[test]
    fn the_pod_capacity_is_the_kubelets_110_unless_max_pods_says_otherwise() {
        let base = BASE_ARGS;
        assert_eq!(cli(&base).map(|c| c.max_pods).ok(), Some(110));
        let more = cli(&[&base[..], &["--max-pods", "1010"]].concat()).map(|c| c.max_pods);
        assert_eq!(more.ok(), Some(1010));
        let file = FileConfig::parse("max_pods = 500").expect("valid file");
        assert_eq!(file.max_pods, Some(500));
        assert!(cli(&[&base[..], &["--max-pods", "many"]].concat()).is_err());
    }

    #[test]
    fn labels_parse_into_a_sorted_map() {
        let labels =
            parse_labels("site=barn, kubernetes.io/role=edge,empty=").map_err(|e| e.to_string());
        assert_eq!(
            labels,
            Ok(BTreeMap::from([
                ("empty".into(), String::new()),
                ("kubernetes.io/role".into(), "edge".into()),
                ("site".into(), "barn".into()),
            ]))
        );
        assert_eq!(parse_labels("").map(|l| l.len()).ok(), Some(0));
    }

    #[test]
    fn labels_that_kubernetes_would_refuse_are_refused() {
        for bad in [
            "novalue",
            "=v",
            "-k=v",
            "k=-v",
            "k=v v",
            "Bad_Prefix!/k=v",
            "a/b/c=v",
            "k=v,k=w",
            &format!("k={}", "v".repeat(64)),
        ] {
            assert!(parse_labels(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_command_line_builds_a_valid_config() {
        let config = cli(&[
            "--server",
            "mqtt://127.0.0.1:1883",
            "--token",
            "secret",
            "--node-name",
            "pi-1",
            "--labels",
            "site=barn",
            "--heartbeat-interval-ms",
            "500",
            "--restart-backoff-base-ms",
            "300",
        ]);
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.node_name, "pi-1");
        assert_eq!(config.token, "secret");
        assert_eq!(config.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(config.restart_backoff_base, Duration::from_millis(300));
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.labels.get("site").map(String::as_str), Some("barn"));
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap_or_else(|e| panic!("{e}"));
        let path = path.display().to_string();
        let config = cli(&[
            "--server",
            "mqtt://h",
            "--token-file",
            &path,
            "--node-name",
            "n",
        ]);
        assert_eq!(config.map(|c| c.token), Ok("from-file".to_owned()));
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let config = AgentConfig::new(broker("mqtt://h:1"), "s3cret", "n");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn invalid_config_is_an_error_not_a_panic() {
        let missing_token = cli(&["--server", "mqtt://h", "--node-name", "n"]);
        assert!(missing_token.is_err_and(|e| e.contains("token")));
        let bad_name = cli(&[
            "--server",
            "mqtt://h",
            "--token",
            "t",
            "--node-name",
            "Pi_1",
        ]);
        assert!(bad_name.is_err_and(|e| e.contains("node name")));
        let zero = cli(&[
            "--server",
            "mqtt://h",
            "--token",
            "t",
            "--node-name",
            "n",
            "--heartbeat-interval-ms",
            "0",
        ]);
        assert!(zero.is_err_and(|e| e.contains("heartbeat")));
    }

    fn write_config(dir: &std::path::Path, text: &str) -> String {
        let path = dir.join("agent.toml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path.display().to_string()
    }

    #[test]
    fn a_config_file_supplies_what_the_flags_leave_out() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write_config(
            dir.path(),
            "server = \"mqtt://broker.local:1884\"\ntoken = \"t0k\"\nnode_name = \"pi-7\"\n\
             data_dir = \"/srv/agent\"\n[labels]\nsite = \"barn\"\n",
        );
        let config = cli(&["--config", &path]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.mqtt.host, "broker.local");
        assert_eq!(config.mqtt.port, 1884);
        assert_eq!(config.token, "t0k");
        assert_eq!(config.node_name, "pi-7");
        assert_eq!(config.data_dir, PathBuf::from("/srv/agent"));
        assert_eq!(config.labels.get("site").map(String::as_str), Some("barn"));
        assert_eq!(config.usage_interval, crate::usage::DEFAULT_INTERVAL);
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn host_paths_are_allowed_by_the_file_or_the_flags_and_bad_rules_are_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write_config(
            dir.path(),
            "server = \"mqtt://b:1883\"\ntoken = \"t\"\nnode_name = \"n\"\n\
             host_path_allow = [\"/sys/class/thermal\", \"/srv/data:rw\"]\n",
        );
        let config = cli(&["--config", &path]).unwrap_or_else(|e| panic!("{e}"));
        let rules: Vec<String> = config
            .host_path_allow
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(rules, ["/sys/class/thermal", "/srv/data:rw"]);
        let config = cli(&["--config", &path, "--host-path-allow", "/dev/i2c:rw"]);
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.host_path_allow.len(),
            1,
            "the flags replace the file's"
        );
        assert!(config.host_path_allow[0].writable);
        let Err(err) = cli(&["--config", &path, "--host-path-allow", "data"]) else {
            panic!("a relative host path was allowed");
        };
        assert!(err.to_string().contains("--host-path-allow"), "{err}");
    }

    #[test]
    fn usage_and_metrics_settings_come_from_the_file_unless_a_flag_says_otherwise() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write_config(
            dir.path(),
            "server = \"mqtt://a\"\ntoken = \"t\"\nnode_name = \"n\"\nusage_interval = 30\n\
             metrics_listen = \"127.0.0.1:9101\"\n",
        );
        let config = cli(&["--config", &path]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.usage_interval, Duration::from_secs(30));
        assert_eq!(config.metrics_listen, Some(([127, 0, 0, 1], 9101).into()));
        let flagged = cli(&["--config", &path, "--usage-interval", "1"]);
        let flagged = flagged.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flagged.usage_interval, Duration::from_secs(1));
        let zero = cli(&["--config", &path, "--usage-interval", "0"]);
        assert!(zero.is_err_and(|e| e.contains("usage report interval")));
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write_config(
            dir.path(),
            "server = \"mqtt://a\"\ntoken = \"file\"\nnode_name = \"from-file\"\n[labels]\nsite = \"barn\"\n",
        );
        let config = cli(&[
            "--config",
            &path,
            "--server",
            "mqtt://b",
            "--node-name",
            "from-flag",
            "--labels",
            "zone=north",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.mqtt.host, "b");
        assert_eq!(config.token, "file");
        assert_eq!(config.node_name, "from-flag");
        assert_eq!(config.labels.len(), 1);
        assert_eq!(config.labels.get("zone").map(String::as_str), Some("north"));
    }

    #[test]
    fn a_bad_config_file_is_refused_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let typo = write_config(dir.path(), "servr = \"mqtt://a\"\n");
        let err = cli(&["--config", &typo, "--token", "t", "--node-name", "n"]);
        assert!(err.is_err_and(|e| e.contains("servr")));
        let bad_label = write_config(
            dir.path(),
            "server = \"mqtt://a\"\ntoken = \"t\"\nnode_name = \"n\"\n[labels]\n\"a b\" = \"c\"\n",
        );
        assert!(cli(&["--config", &bad_label]).is_err_and(|e| e.contains("label")));
        let huge = write_config(
            dir.path(),
            &format!("# {}\n", "x".repeat(MAX_CONFIG_FILE_BYTES as usize)),
        );
        assert!(cli(&["--config", &huge]).is_err_and(|e| e.contains("larger than the limit")));
        let missing = dir.path().join("absent.toml").display().to_string();
        assert!(cli(&["--config", &missing]).is_err_and(|e| e.contains("absent.toml")));
    }

    fn self_signed_ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params =
            rcgen::CertificateParams::new(Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        cert.pem()
    }

    #[test]
    fn a_tls_server_needs_a_ca_file_and_takes_it_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let base = [
            "--server",
            "mqtts://pi-server",
            "--token",
            "t",
            "--node-name",
            "n",
        ];
        let err = cli(&base).unwrap_err();
        assert!(
            err.contains("no CA certificate") && err.contains("--ca-file"),
            "{err}"
        );

        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, self_signed_ca_pem()).unwrap_or_else(|e| panic!("{e}"));
        let ca = ca.display().to_string();
        let config =
            cli(&[&base[..], &["--ca-file", &ca]].concat()).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.mqtt.tls);
        assert_eq!(config.mqtt.port, 8883);
        assert!(matches!(config.transport(), Ok(rumqttc::Transport::Tls(_))));

        let path = write_config(dir.path(), &format!("ca_file = {ca:?}\n"));
        let config = cli(&[&base[..], &["--config", &path]].concat());
        assert!(config.is_ok_and(|c| c.ca_pem.is_some()));
    }

    #[test]
    fn artifacts_must_be_signed_by_the_cluster_ca_which_defaults_to_the_broker_ca() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
            path.display().to_string()
        };
        let broker_ca = self_signed_ca_pem();
        let cluster_ca = self_signed_ca_pem();
        let broker_file = write("broker-ca.crt", &broker_ca);
        let cluster_file = write("cluster-ca.crt", &cluster_ca);
        let args = [
            "--server",
            "mqtts://mosquitto",
            "--token",
            "t",
            "--node-name",
            "n",
            "--ca-file",
            &broker_file,
        ];

        let shared = cli(&args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shared.artifact_signer(), Some(broker_ca.as_bytes()));

        let apart = cli(&[&args[..], &["--cluster-ca-file", &cluster_file]].concat())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(apart.artifact_signer(), Some(cluster_ca.as_bytes()));
        assert_eq!(apart.ca_pem.as_deref(), Some(broker_ca.as_bytes()));

        let from_file = write_config(dir.path(), &format!("cluster_ca_file = {cluster_file:?}\n"));
        let config =
            cli(&[&args[..], &["--config", &from_file]].concat()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.artifact_signer(), Some(cluster_ca.as_bytes()));

        let garbage = write("not-a-cert", "hello\n");
        let err = cli(&[&args[..], &["--cluster-ca-file", &garbage]].concat()).unwrap_err();
        assert!(err.contains("--cluster-ca-file"), "{err}");
    }

    #[test]
    fn an_unusable_ca_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let not_pem = dir.path().join("token-by-mistake");
        std::fs::write(&not_pem, "K10abc::server:secret\n").unwrap_or_else(|e| panic!("{e}"));
        let not_pem = not_pem.display().to_string();
        let args = [
            "--server",
            "mqtts://h",
            "--token",
            "t",
            "--node-name",
            "n",
            "--ca-file",
        ];
        let err = cli(&[&args[..], &[&not_pem]].concat()).unwrap_err();
        assert!(err.contains("invalid CA certificate"), "{err}");
        let err = cli(&[&args[..], &["/nonexistent/ca.crt"]].concat()).unwrap_err();
        assert!(err.contains("/nonexistent/ca.crt"), "{err}");
    }

    #[test]
    fn the_packaged_config_template_parses_and_asks_for_a_server_and_token() {
        let template = FileConfig::parse(include_str!("../../cross/deb/agent.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(template.server, None);
        assert_eq!(template.token, None);
        assert_eq!(template.node_name, None);
        assert_eq!(
            template.ca_file,
            Some(PathBuf::from("/etc/wasmfleet/ca.crt")),
            "install.sh puts the cluster CA there"
        );
        assert_eq!(
            template.data_dir,
            Some(PathBuf::from(DEFAULT_DATA_DIR)),
            "the package's data dir is the agent's default"
        );
    }
}
