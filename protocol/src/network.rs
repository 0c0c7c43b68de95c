//! The pod network as both sides see it: the cluster's pod CIDR, a pod's IP and ports,
//! its egress allow-list, and the rule that maps a pod IP onto the host loopback alias
//! its sockets really use.
//!
//! Every pod gets a virtual IP from its node's `/24` of the cluster CIDR (the server
//! allocates it). On the agent, the pod's sockets live on the loopback alias
//! `127.b.c.d` of its IP `a.b.c.d` ([`loopback_alias`]): Linux routes all of `127/8` to
//! `lo`, binding an alias needs no setup, and the alias of a pod is the same on every
//! node. A cluster CIDR is accepted only when none of its aliases falls in `127.0/16`
//! (where `127.0.0.1` lives): see [`ClusterCidr`].
//!
//! Egress rules come from the pod annotation [`EGRESS_ANNOTATION`], parsed here once for
//! the server's admission and the agent's enforcement ([`parse_egress`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The default cluster CIDR (k3s's).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// Every node gets a `/24` of the cluster CIDR.
pub const NODE_PREFIX: u8 = 24;

/// The pod annotation that lists what a pod may reach beyond the cluster.
pub const EGRESS_ANNOTATION: &str = "wasmfleet.io/egress";

/// The most egress rules one pod may list.
pub const MAX_EGRESS_RULES: usize = 64;

/// A pod's network, delivered with the pod to its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    /// The pod's IP (`status.podIP`).
    pub ip: Ipv4Addr,
    /// The cluster's pod CIDR: every address in it is a pod, reachable by default.
    pub cluster_cidr: Ipv4Net,
    /// The declared `containerPorts` of every container.
    pub ports: Vec<PodPort>,
    /// What the pod may reach beyond the cluster ([`EGRESS_ANNOTATION`]).
    pub egress: Vec<EgressRule>,
}

/// One declared `containerPort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPort {
    /// The container that declares it.
    pub container: String,
    /// The port's name, if any (Services refer to it).
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Parses the Kubernetes spelling (`TCP`, `UDP`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }
}

/// One destination a pod may reach beyond the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EgressRule {
    /// Addresses in a CIDR (a single IP is a `/32`), on one port or any.
    Cidr {
        /// The addresses.
        net: Ipv4Net,
        /// The port, or any.
        port: Option<u16>,
    },
    /// A host name (`api.example.com`) or every subdomain of one (`*.example.com`),
    /// on one port or any: the pod may look it up, and connect to what it resolved to.
    Host {
        /// The lower-case name, `*.` included for a wildcard.
        name: String,
        /// The port, or any.
        port: Option<u16>,
    },
}

impl EgressRule {
    /// Whether this rule lets the pod connect to `ip:port`.
    pub fn allows_address(&self, ip: Ipv4Addr, port: u16) -> bool {
        match self {
            Self::Cidr { net, port: only } => net.contains(&ip) && only.is_none_or(|p| p == port),
            Self::Host { .. } => false,
        }
    }

    /// Whether this rule lets the pod look up `name` (lower case, no trailing dot).
    pub fn allows_name(&self, name: &str) -> bool {
        match self {
            Self::Host { name: rule, .. } => match rule.strip_prefix("*.") {
                Some(domain) => name
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => rule == name,
            },
            Self::Cidr { .. } => false,
        }
    }

    /// The port this rule is limited to, if any.
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Cidr { port, .. } | Self::Host { port, .. } => *port,
        }
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cidr { net, .. } => write!(f, "{net}")?,
            Self::Host { name, .. } => write!(f, "{name}")?,
        }
        match self.port() {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Why an egress annotation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid egress rule {entry:?}: {reason}")]
pub struct InvalidEgress {
    /// The offending entry.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses the [`EGRESS_ANNOTATION`] value: entries separated by commas or white space,
/// each a CIDR, an IPv4 address, a host name or `*.domain`, optionally followed by
/// `:PORT`. Example: `10.0.0.0/8, api.example.com:443, *.lan`.
pub fn parse_egress(text: &str) -> Result<Vec<EgressRule>, InvalidEgress> {
    let entries: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .collect();
    if entries.len() > MAX_EGRESS_RULES {
        return Err(InvalidEgress {
            entry: text.chars().take(40).collect(),
            reason: format!("at most {MAX_EGRESS_RULES} rules"),
        });
    }
    entries.into_iter().map(parse_rule).collect()
}

fn parse_rule(entry: &str) -> Result<EgressRule, InvalidEgress> {
    let invalid = |reason: &str| InvalidEgress {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let (target, port) = match entry.rsplit_once(':') {
        Some((target, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?;
            (target, Some(port))
        }
        None => (entry, None),
    };
    if let Ok(net) = Ipv4Net::from_str(target) {
        return Ok(EgressRule::Cidr {
            net: net.trunc(),
            port,
        });
    }
    if let Ok(ip) = Ipv4Addr::from_str(target) {
        let net = Ipv4Net::from(ip);
        return Ok(EgressRule::Cidr { net, port });
    }
    let name = target.to_ascii_lowercase();
    if valid_host_pattern(&name) {
        return Ok(EgressRule::Host { name, port });
    }
    Err(invalid(
        "expected an IPv4 address, a CIDR, a host name or *.domain, with an optional :PORT",
    ))
}

/// A DNS name of letters, digits and hyphens (labels of 1 to 63), optionally `*.`-prefixed.
fn valid_host_pattern(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && bare.bytes().any(|b| b.is_ascii_alphabetic())
}

/// The host loopback alias a pod's sockets use: `127.b.c.d` for pod IP `a.b.c.d`.
pub fn loopback_alias(pod_ip: Ipv4Addr) -> Ipv4Addr {
    let [_, b, c, d] = pod_ip.octets();
    Ipv4Addr::new(127, b, c, d)
}

/// A cluster CIDR the pod network can use (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCidr(Ipv4Net);

impl ClusterCidr {
    /// The CIDR.
    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    /// The pod IP whose loopback alias is `alias`, if it is one of this cluster's.
    pub fn pod_ip_of_alias(&self, alias: Ipv4Addr) -> Option<Ipv4Addr> {
        let [lo, b, c, d] = alias.octets();
        let ip = Ipv4Addr::new(self.0.network().octets()[0], b, c, d);
        (lo == 127 && self.0.contains(&ip)).then_some(ip)
    }
}

impl Default for ClusterCidr {
    fn default() -> Self {
        Self(Ipv4Net::new_assert(Ipv4Addr::new(10, 42, 0, 0), 16))
    }
}

impl TryFrom<Ipv4Net> for ClusterCidr {
    type Error = String;

    fn try_from(net: Ipv4Net) -> Result<Self, String> {
        let net = net.trunc();
        if !(8..=NODE_PREFIX).contains(&net.prefix_len()) {
            return Err(format!(
                "the cluster CIDR {net} must be a /8 to a /{NODE_PREFIX} (each node gets a /{NODE_PREFIX})"
            ));
        }
        if net.network().octets()[1] == 0 || net.network().is_loopback() {
            return Err(format!(
                "the cluster CIDR {net} has addresses whose loopback alias would be in \
                 127.0.0.0/16 (127.0.0.1 lives there): use one whose second octet is not 0, \
                 like the default {DEFAULT_CLUSTER_CIDR}"
            ));
        }
        Ok(Self(net))
    }
}

impl FromStr for ClusterCidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let net = Ipv4Net::from_str(text)
            .map_err(|_| format!("{text:?} is not an IPv4 CIDR like {DEFAULT_CLUSTER_CIDR}"))?;
        Self::try_from(net)
    }
}

impl fmt::Display for ClusterCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn a_pod_ip_maps_onto_a_loopback_alias_and_back() {
        let cluster = ClusterCidr::default();
        assert_eq!(loopback_alias(ip("10.42.3.17")), ip("127.42.3.17"));
        assert_eq!(
            cluster.pod_ip_of_alias(ip("127.42.3.17")),
            Some(ip("10.42.3.17"))
        );
        assert_eq!(cluster.pod_ip_of_alias(ip("127.0.0.1")), None);
        assert_eq!(cluster.pod_ip_of_alias(ip("127.43.0.5")), None);
    }

    #[test]
    fn cluster_cidrs_whose_aliases_could_hit_localhost_are_refused() {
        assert!("10.42.0.0/16".parse::<ClusterCidr>().is_ok());
        assert!("10.128.0.0/9".parse::<ClusterCidr>().is_ok());
        let err = "10.0.0.0/8".parse::<ClusterCidr>().unwrap_err();
        assert!(err.contains("127.0.0.0/16"), "{err}");
        assert!("10.0.0.0/16".parse::<ClusterCidr>().is_err());
        assert!("127.42.0.0/16".parse::<ClusterCidr>().is_err());
        assert!("10.42.0.0/25".parse::<ClusterCidr>().is_err());
        assert!("10.42.0.0".parse::<ClusterCidr>().is_err());
        assert!("fd00::/64".parse::<ClusterCidr>().is_err());
    }

    #[test]
    fn egress_rules_parse_cidrs_addresses_hosts_and_ports() {
        let rules = parse_egress("10.0.0.0/8, 1.1.1.1:53 api.Example.com:443,*.lan").unwrap();
        assert_eq!(rules.len(), 4);
        assert!(rules[0].allows_address(ip("10.9.9.9"), 80));
        assert!(!rules[0].allows_address(ip("11.0.0.1"), 80));
        assert!(rules[1].allows_address(ip("1.1.1.1"), 53));
        assert!(!rules[1].allows_address(ip("1.1.1.1"), 54));
        assert!(rules[2].allows_name("api.example.com"));
        assert!(!rules[2].allows_name("x.api.example.com"));
        assert!(rules[3].allows_name("nas.lan"));
        assert!(rules[3].allows_name("a.b.lan"));
        assert!(!rules[3].allows_name("lan"));
        assert!(!rules[3].allows_name("evillan"));
        assert_eq!(rules[2].to_string(), "api.example.com:443");
        assert_eq!(rules[0].to_string(), "10.0.0.0/8");
        assert!(parse_egress("").unwrap().is_empty());
    }

    #[test]
    fn bad_egress_rules_are_refused_naming_the_entry() {
        for bad in [
            "10.0.0.0/33",
            "host:0",
            "host:70000",
            "-bad-.com",
            "a..b",
            "x_y.com",
            "1.2.3",
        ] {
            let err = parse_egress(bad).unwrap_err();
            assert_eq!(err.entry, bad, "{bad}");
        }
        let many = vec!["a.com"; MAX_EGRESS_RULES + 1].join(",");
        assert!(parse_egress(&many).is_err());
    }

    #[test]
    fn the_network_travels_in_postcard() {
        let network = PodNetwork {
            ip: ip("10.42.0.2"),
            cluster_cidr: ClusterCidr::default().net(),
            ports: vec![PodPort {
                container: "echo".into(),
                name: Some("echo".into()),
                port: 7,
                protocol: Protocol::Tcp,
            }],
            egress: parse_egress("1.1.1.1:53").unwrap(),
        };
        let bytes = postcard::to_stdvec(&network).unwrap();
        assert_eq!(postcard::from_bytes::<PodNetwork>(&bytes).unwrap(), network);
    }
}
