//! The server's command line: one typed config, parsed once in `main` and passed down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use wasmfleet_protocol::broker_url::BrokerUrl;
use wasmfleet_protocol::network::{ClusterCidr, DEFAULT_CLUSTER_CIDR};
use wasmfleet_protocol::service::DEFAULT_SERVICE_CIDR;

/// `wasmfleet-server`: the control plane (API, state, scheduler, MQTT side) and, unless
/// `--no-local-agent`, an agent for this machine.
#[derive(Debug, Clone, Parser)]
#[command(name = "wasmfleet-server", version, about)]
pub struct ServerConfig {
    /// Where state, certificates, tokens and the admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/wasmfleet/server")]
    pub data_dir: PathBuf,

    /// Address of the HTTPS API.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub https_listen: SocketAddr,

    /// Address of the embedded MQTT broker (TLS only; agents join with
    /// `--server mqtts://HOST:PORT --ca-file <data-dir>/tls/ca.crt`).
    #[arg(long, default_value = "0.0.0.0:8883")]
    pub mqtt_listen: SocketAddr,

    /// Address of the relay that carries pod traffic to nodes that cannot be dialed (behind
    /// NAT); agents reach it at the broker's host on this port, unless `--relay-address`.
    #[arg(long, default_value = "0.0.0.0:10261")]
    pub relay_listen: SocketAddr,

    /// Where agents reach the relay (`HOST:PORT`), when that is not the broker's host and
    /// the relay's own port: with an external broker on another machine, or behind port
    /// forwarding. The host joins the serving certificate's names.
    #[arg(long, value_parser = HostPort::parse)]
    pub relay_address: Option<HostPort>,

    /// Use this external broker (`mqtts://host:port`, or `mqtt://host:port` for plain TCP)
    /// instead of the embedded one.
    #[arg(long)]
    pub mqtt_url: Option<BrokerUrl>,

    /// The CA certificate (PEM) of an external `mqtts://` broker (default: the cluster CA).
    #[arg(long, requires = "mqtt_url")]
    pub mqtt_ca_file: Option<PathBuf>,

    /// MQTT username of the server's own client.
    #[arg(long, default_value = "wasmfleet-server")]
    pub mqtt_username: String,

    /// MQTT password of the server's own client (default: the generated server password).
    #[arg(long, env = "WASMFLEET_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,

    /// Do not run an agent inside the server process.
    #[arg(long)]
    pub no_local_agent: bool,

    /// Node name of the in-process agent (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,

    /// The port the in-process agent serves Ingress traffic on (0: none). Ports below 1024
    /// need root or CAP_NET_BIND_SERVICE.
    #[arg(
        long,
        env = "WASMFLEET_INGRESS_PORT",
        default_value_t = wasmfleet_agent::config::DEFAULT_INGRESS_PORT
    )]
    pub ingress_port: u16,
    /// The port the in-process agent serves Ingress HTTPS on (0: none), once its node is
    /// sent certificates. Ports below 1024 need root or CAP_NET_BIND_SERVICE.
    #[arg(
        long,
        env = "WASMFLEET_INGRESS_HTTPS_PORT",
        default_value_t = wasmfleet_agent::config::DEFAULT_INGRESS_HTTPS_PORT
    )]
    pub ingress_https_port: u16,
    /// The port other nodes reach the in-process agent's pods at (0: none; they go through
    /// the relay).
    #[arg(
        long,
        env = "WASMFLEET_TUNNEL_PORT",
        default_value_t = wasmfleet_agent::config::DEFAULT_TUNNEL_PORT
    )]
    pub tunnel_port: u16,
    /// The in-process agent's node address (its `InternalIP`, where it serves NodePort and
    /// LoadBalancer Services) [default: the source address of the default route].
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,

    /// Replace the node join token with a new one at start (written to
    /// `<data-dir>/node-token`). Nodes that joined keep logging in with their own node
    /// passwords; new nodes need the new token.
    #[arg(long)]
    pub rotate_join_token: bool,

    /// Encrypt Secrets at rest with a new key from this start on (k3s `secrets-encrypt
    /// rotate-keys`): every stored Secret is resealed with it as the store opens, then the
    /// old key is removed from `<data-dir>/secrets-encryption.key`. Back up the data
    /// directory with its key file first; an older backup needs the older key file.
    #[arg(long)]
    pub rotate_secrets_key: bool,

    /// Nodes that join wait for an admin's approval: they are tainted
    /// `node.wasmfleet.io/unapproved:NoSchedule` until an admin removes the taint
    /// (`kubectl taint node NAME node.wasmfleet.io/unapproved:NoSchedule-`).
    #[arg(long)]
    pub node_approval: bool,

    /// Extra subject alternative name for the API certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,

    /// How long a node may be silent before it is marked NotReady (tests shorten it).
    #[arg(long, hide = true)]
    pub node_monitor_grace_ms: Option<u64>,

    /// The pod network: every node gets a range of it (`--node-cidr-mask-size`), every pod
    /// an IP from its node's range.
    #[arg(long, default_value = DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: ClusterCidr,
    /// The prefix length of each node's range of the cluster CIDR (kube-controller-manager's
    /// flag): 24 gives a node 253 pod IPs, 22 gives 1,021. Set it before the first node
    /// joins: nodes keep the range they got.
    #[arg(long, default_value_t = wasmfleet_protocol::network::NODE_PREFIX)]
    pub node_cidr_mask_size: u8,
    /// Services' virtual IPs (ClusterIPs) come from this range.
    #[arg(long, default_value = DEFAULT_SERVICE_CIDR)]
    pub service_cidr: ipnet::Ipv4Net,
    /// Print the ACL file an external Mosquitto needs (for `--mqtt-username`) and exit.
    #[arg(long)]
    pub print_mosquitto_acl: bool,

    /// How many store events watches can resume from (tests shrink it to reach 410 Gone).
    #[arg(long, hide = true, default_value_t = 10_000)]
    pub event_retention: u64,
}

/// A `HOST:PORT` pair (`[v6]:PORT` for an IPv6 address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A DNS name or an IP address, without brackets.
    pub host: String,
    /// A port other than 0.
    pub port: u16,
}

impl HostPort {
    /// Parses `HOST:PORT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("{port:?} is not a port (1-65535)"))?;
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(format!("{text:?} names no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl ServerConfig {
    /// A config with every default, for `data_dir` (tests then set ports to 0).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from(["wasmfleet-server"]);
        config.data_dir = data_dir.into();
        config
    }

    /// The node monitor grace, when overridden.
    pub fn node_monitor_grace(&self) -> Option<Duration> {
        self.node_monitor_grace_ms.map(Duration::from_millis)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_external_broker_url_may_be_tls_or_plain() {
        let config = ServerConfig::parse_from(["s", "--mqtt-url", "mqtts://broker.lan"]);
        let url = config.mqtt_url.unwrap();
        assert!(url.tls);
        assert_eq!(url.port, 8883);
        let config = ServerConfig::parse_from(["s", "--mqtt-url", "mqtt://10.0.0.1:1884"]);
        assert!(!config.mqtt_url.unwrap().tls);
        assert!(ServerConfig::try_parse_from(["s", "--mqtt-url", "tcp://x:1"]).is_err());
    }

    #[test]
    fn a_relay_address_is_a_host_and_a_port() {
        let config = ServerConfig::parse_from(["s", "--relay-address", "relay.lan:443"]);
        let relay = config.relay_address.unwrap();
        assert_eq!((relay.host.as_str(), relay.port), ("relay.lan", 443));
        let v6 = HostPort::parse("[fd00::1]:10261").unwrap();
        assert_eq!(v6.host, "fd00::1");
        for bad in [
            "relay.lan",
            ":443",
            "relay.lan:0",
            "relay.lan:http",
            "a b:1",
        ] {
            assert!(
                ServerConfig::try_parse_from(["s", "--relay-address", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = ServerConfig::with_data_dir("/tmp/x");
        assert_eq!(config.https_listen.port(), 6443);
        assert_eq!(config.mqtt_listen.port(), 8883);
        assert_eq!(config.mqtt_username, "wasmfleet-server");
        assert!(!config.no_local_agent);
    }

    #[test]
    fn tls_sans_repeat() {
        let config = ServerConfig::parse_from(["s", "--tls-san", "a.lan", "--tls-san", "10.0.0.9"]);
        assert_eq!(config.tls_sans, ["a.lan", "10.0.0.9"]);
    }
}
