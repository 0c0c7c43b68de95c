//! The `wasmfleet-sim` command line, and the [`SimConfig`] it resolves to.
//!
//! Hollow agents keep no files: their local state lives in memory, and their node
//! passwords are derived from the join token and the node name ([`node_password`]), so a
//! simulator started again under the same names logs in as the same nodes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sha2::{Digest, Sha256};
use wasmfleet_agent::config::{parse_labels, read_ca_file, read_token_file, validate_label};
use wasmfleet_agent::node_info::MAX_PODS;
use wasmfleet_protocol::broker_url::BrokerUrl;
use wasmfleet_protocol::login::{NodeLogin, validate_node_password};
use wasmfleet_protocol::names::validate_node_name;

/// The `wasmfleet-sim` command line.
#[derive(Debug, Parser)]
#[command(
    name = "wasmfleet-sim",
    version,
    about = "Runs many hollow wasmfleet agents in one process against a real server and broker."
)]
pub struct Cli {
    /// How many hollow agents to run.
    #[arg(long)]
    pub agents: u32,
    /// The broker, as agents reach it: `mqtts://HOST:PORT` (or `mqtt://` without TLS).
    #[arg(long)]
    pub server: String,
    /// The CA certificate the broker's certificate chains to (the server's `tls/ca.crt`
    /// with the embedded broker).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The node join token (the server's `node-token`): each simulated node joins with it
    /// and a password derived from it and the node's name.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The node password every simulated node logs in with, for a broker that keeps node
    /// identities itself (Mosquitto: one user per simulated node name, all with this
    /// password); instead of `--token-file`.
    #[arg(long)]
    pub node_password_file: Option<PathBuf>,
    /// The pod capacity each hollow node advertises (the kubelet's maxPods). Pods come from
    /// what you apply with kubectl; this only bounds how many the scheduler places on a node.
    #[arg(long, default_value_t = MAX_PODS)]
    pub pods_per_agent: u32,
    /// Node names are `PREFIX-00001`, `PREFIX-00002`, ...
    #[arg(long, default_value = "sim")]
    pub name_prefix: String,
    /// How many agents start connecting per second, each at a random moment of its slot, so
    /// thousands of TLS handshakes do not arrive at once.
    #[arg(long, default_value_t = 200)]
    pub connect_rate: u32,
    /// Labels every simulated node asks for, as `key=value,key2=value2`.
    #[arg(long)]
    pub labels: Option<String>,
    /// Seconds between summary lines.
    #[arg(long, default_value_t = 5)]
    pub summary_interval_secs: u64,
    /// The heartbeat interval in milliseconds, as the agent's.
    #[arg(long, default_value_t = 10_000)]
    pub heartbeat_interval_ms: u64,
    /// Seconds between usage reports (`kubectl top`), as the agent's `--usage-interval`; a
    /// node without pods reports every fourth interval.
    #[arg(long, default_value_t = 15)]
    pub usage_interval: u64,
}

/// Why the command line cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimConfigError {
    /// A flag's value is unusable.
    #[error("--{flag}: {why}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Neither a join token nor a node password.
    #[error("give --token-file (a broker nodes join with a token) or --node-password-file")]
    NoLogin,
}

/// How simulated nodes log in.
#[derive(Clone)]
pub enum Login {
    /// With the join token and a password derived from it and the node name.
    JoinToken(String),
    /// With one node password for every node (an external broker's users).
    NodePassword(String),
}

/// A resolved, validated command line.
#[derive(Clone)]
pub struct SimConfig {
    /// How many agents.
    pub agents: u32,
    /// The broker.
    pub mqtt: BrokerUrl,
    /// How to reach it (one TLS configuration shared by every agent).
    pub transport: rumqttc::Transport,
    /// How nodes log in.
    pub login: Login,
    /// Each node's pod capacity.
    pub pods_per_agent: u32,
    /// The node name prefix.
    pub name_prefix: String,
    /// Agents started per second.
    pub connect_rate: u32,
    /// Labels of every node.
    pub labels: BTreeMap<String, String>,
    /// Between summary lines.
    pub summary_interval: Duration,
    /// Between heartbeats.
    pub heartbeat_interval: Duration,
    /// Between usage reports.
    pub usage_interval: Duration,
}

impl Cli {
    /// Reads the files, checks every value.
    pub fn into_config(self) -> Result<SimConfig, SimConfigError> {
        let invalid = |flag, why: String| SimConfigError::Invalid { flag, why };
        if self.agents == 0 || self.agents > 99_999 {
            return Err(invalid("agents", "between 1 and 99999".into()));
        }
        if self.connect_rate == 0 {
            return Err(invalid("connect-rate", "at least 1 per second".into()));
        }
        if self.heartbeat_interval_ms == 0
            || self.summary_interval_secs == 0
            || self.usage_interval == 0
        {
            return Err(invalid("*-interval*", "must not be zero".into()));
        }
        validate_node_name(&node_name(&self.name_prefix, self.agents))
            .map_err(|e| invalid("name-prefix", e.to_string()))?;
        let mqtt: BrokerUrl =
            self.server
                .parse()
                .map_err(|e: wasmfleet_protocol::broker_url::BrokerUrlError| {
                    invalid("server", e.to_string())
                })?;
        let ca_pem = self
            .ca_file
            .as_deref()
            .map(read_ca_file)
            .transpose()
            .map_err(|e| invalid("ca-file", e.to_string()))?;
        let transport = wasmfleet_protocol::transport::transport(&mqtt, ca_pem.as_deref())
            .map_err(|e| invalid("ca-file", e.to_string()))?;
        let login = self.login()?;
        let labels = match &self.labels {
            Some(labels) => parse_labels(labels).map_err(|e| invalid("labels", e.to_string()))?,
            None => BTreeMap::new(),
        };
        for (key, value) in &labels {
            validate_label(key, value).map_err(|why| invalid("labels", why))?;
        }
        Ok(SimConfig {
            agents: self.agents,
            mqtt,
            transport,
            login,
            pods_per_agent: self.pods_per_agent,
            name_prefix: self.name_prefix,
            connect_rate: self.connect_rate,
            labels,
            summary_interval: Duration::from_secs(self.summary_interval_secs),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            usage_interval: Duration::from_secs(self.usage_interval),
        })
    }

    fn login(&self) -> Result<Login, SimConfigError> {
        let invalid = |flag, why: String| SimConfigError::Invalid { flag, why };
        match (&self.node_password_file, &self.token_file) {
            (Some(path), _) => {
                let password = read_token_file(path)
                    .map_err(|e| invalid("node-password-file", e.to_string()))?;
                validate_node_password(&password)
                    .map_err(|e| invalid("node-password-file", e.to_string()))?;
                Ok(Login::NodePassword(password))
            }
            (None, Some(path)) => {
                let token =
                    read_token_file(path).map_err(|e| invalid("token-file", e.to_string()))?;
                if token.is_empty() {
                    return Err(invalid("token-file", "the file is empty".into()));
                }
                Ok(Login::JoinToken(token))
            }
            (None, None) => Err(SimConfigError::NoLogin),
        }
    }
}

impl SimConfig {
    /// The name of agent `index` (1-based).
    pub fn node_name(&self, index: u32) -> String {
        node_name(&self.name_prefix, index)
    }

    /// The MQTT password of `node`.
    pub fn mqtt_password(&self, node: &str) -> String {
        match &self.login {
            Login::NodePassword(password) => password.clone(),
            Login::JoinToken(token) => NodeLogin {
                join_token: Some(token),
                node_password: &node_password(token, node),
            }
            .to_password(),
        }
    }
}

/// `PREFIX-00042`.
pub fn node_name(prefix: &str, index: u32) -> String {
    format!("{prefix}-{index:05}")
}

/// A simulated node's password: SHA-256 over the join token and the node name, hex. Anyone
/// with the join token can compute it, which is why the simulator is for test clusters
/// (see SECURITY.md): it keeps 10,000 nodes' identities without 10,000 files.
pub fn node_password(join_token: &str, node: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"wasmfleet-sim node password\0");
    hash.update(join_token.as_bytes());
    hash.update(b"\0");
    hash.update(node.as_bytes());
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_numbered_with_five_digits() {
        assert_eq!(node_name("sim", 7), "sim-00007");
        assert_eq!(node_name("edge", 12345), "edge-12345");
    }

    #[test]
    fn a_node_password_is_stable_per_token_and_name_and_differs_between_nodes() {
        let a = node_password("token", "sim-00001");
        assert_eq!(a, node_password("token", "sim-00001"));
        assert_ne!(a, node_password("token", "sim-00002"));
        assert_ne!(a, node_password("other", "sim-00001"));
        assert!(validate_node_password(&a).is_ok());
    }
}
