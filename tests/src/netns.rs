//! Network namespaces for fault injection: agents run in namespaces of their own, joined to
//! the host by a bridge, so a partition between one agent and the server/broker is a pair of
//! nftables drop rules inside that agent's namespace. Packets vanish silently (no reset, no
//! ICMP), as on a cut cable or a dead Wi-Fi link: both ends only notice through timeouts.
//!
//! Everything here needs root, `ip` (iproute2) and `nft` (nftables); `scripts/test` installs
//! them. When they are missing or the kernel refuses, [`Network::create`] fails with a message
//! saying so: a chaos test never passes without its partitions.
//!
//! Layout for network index `k` (0..=250, taken atomically by creating the bridge):
//! bridge `wfchaos{k}` holds `10.213.{k}.1/24` in the host namespace, where the broker listens;
//! namespace `wfchaos{k}-{agent}` holds one end of a veth pair with `10.213.{k}.{n+2}/24`.
//! Dropping the [`Network`] deletes the namespaces, veths and the bridge; a network left
//! behind by a killed test process (its pid is in the bridge's alias) is reclaimed.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

/// The highest network index (the third octet of `10.213.k.0/24`).
const MAX_INDEX: u8 = 250;

/// The nftables table a partition installs in an agent's namespace.
const PARTITION_TABLE: &str = "wasmfleet_partition";

/// The nftables table that lets a namespace only dial out.
const NAT_TABLE: &str = "wasmfleet_nat";

/// A bridge in the host namespace that agents' namespaces hang off.
pub struct Network {
    index: u8,
    namespaces: Vec<String>,
}

/// One agent's network namespace.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// The namespace's name (for `ip netns exec`).
    pub name: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
}

impl Network {
    /// Creates a bridge on a free `10.213.k.0/24`, after checking the tools and rights.
    pub fn create() -> anyhow::Result<Network> {
        require_tools()?;
        for index in 0..=MAX_INDEX {
            if try_claim(index)? {
                let network = Network {
                    index,
                    namespaces: Vec::new(),
                };
                network.configure_bridge()?;
                return Ok(network);
            }
        }
        bail!("no free chaos network: bridges wfchaos0..wfchaos{MAX_INDEX} all exist")
    }

    /// The host's address on the bridge: where the broker listens for namespaced agents.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.index, 1)
    }

    /// Gives the host a second address on the bridge (`10.213.k.254`), for a service that
    /// must not be found at the broker's address.
    pub fn add_host_addr(&self) -> anyhow::Result<Ipv4Addr> {
        let [a, b, c, _] = self.host_addr().octets();
        let addr = Ipv4Addr::new(a, b, c, 254);
        let bridge = bridge_name(self.index);
        ip(&["addr", "add", &format!("{addr}/24"), "dev", &bridge])?;
        Ok(addr)
    }

    /// Creates a namespace for `agent`, wired to the bridge.
    pub fn add_namespace(&mut self, agent: &str) -> anyhow::Result<Namespace> {
        let n = self.namespaces.len();
        let octet = u8::try_from(n + 2)
            .ok()
            .filter(|o| *o < 255)
            .context("too many namespaces on one chaos network")?;
        let name = format!("{}-{agent}", bridge_name(self.index));
        let host_end = format!("wfc{}h{n}", self.index);
        let ns_end = format!("wfc{}n{n}", self.index);
        let addr = Ipv4Addr::new(10, 213, self.index, octet);
        ip(&["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        // A veth of an earlier network with this index may outlive it for a moment.
        let _ = ip(&["link", "del", &host_end]);
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
        ])?;
        ip(&["link", "set", &ns_end, "netns", &name])?;
        ip(&["link", "set", &host_end, "master", &bridge_name(self.index)])?;
        ip(&["link", "set", &host_end, "up"])?;
        let cidr = format!("{addr}/24");
        in_ns(&name, &["ip", "addr", "add", &cidr, "dev", &ns_end])?;
        in_ns(&name, &["ip", "link", "set", &ns_end, "up"])?;
        in_ns(&name, &["ip", "link", "set", "lo", "up"])?;
        Ok(Namespace { name, addr })
    }

    fn configure_bridge(&self) -> anyhow::Result<()> {
        let bridge = bridge_name(self.index);
        ip(&["link", "set", &bridge, "alias", &owner_alias()])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.host_addr()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        remove_network(self.index, &self.namespaces);
    }
}

impl Namespace {
    /// Cuts the namespace off: every packet in or out (but loopback) is dropped silently.
    pub fn partition(&self) -> anyhow::Result<()> {
        let rules = format!(
            "table inet {PARTITION_TABLE} {{\n\
             chain input {{ type filter hook input priority 0; policy drop; iifname \"lo\" accept; }}\n\
             chain output {{ type filter hook output priority 0; policy drop; oifname \"lo\" accept; }}\n\
             }}\n"
        );
        nft(&self.name, &rules)
    }

    /// Puts the namespace behind a NAT-like firewall: it may dial out (and get answers), but
    /// no connection from outside is let in.
    pub fn only_dial_out(&self) -> anyhow::Result<()> {
        nft(
            &self.name,
            &format!(
                "table inet {NAT_TABLE} {{\n\
                 chain input {{ type filter hook input priority 0; policy drop; \
                 iifname \"lo\" accept; ct state established,related accept; }}\n\
                 }}\n"
            ),
        )
    }

    /// Ends a partition.
    pub fn heal(&self) -> anyhow::Result<()> {
        in_ns(
            &self.name,
            &["nft", "delete", "table", "inet", PARTITION_TABLE],
        )
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec!["netns".into(), "exec".into(), self.name.clone()]
    }
}

/// Loads nftables `rules` in namespace `ns`.
fn nft(ns: &str, rules: &str) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(rules.as_bytes())?;
            }
            child.wait_with_output()
        })
        .context("run nft")?;
    if !out.status.success() {
        bail!(
            "nft could not load rules in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Fails with a clear message unless `ip`, `nft` and the right to create namespaces exist.
fn require_tools() -> anyhow::Result<()> {
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            bail!(
                "chaos tests need `{tool}` to build network partitions: apt-get install {package} \
                 (scripts/test installs it)"
            );
        }
    }
    let out = Command::new("id").arg("-u").output().context("run id -u")?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        bail!("chaos tests need root: they create network namespaces and nftables rules");
    }
    Ok(())
}

/// Creates bridge `wfchaos{index}`; `false` when another live process owns it. A bridge
/// whose owner is dead is removed with its namespaces and claimed.
fn try_claim(index: u8) -> anyhow::Result<bool> {
    let bridge = bridge_name(index);
    if ip(&["link", "add", &bridge, "type", "bridge"]).is_ok() {
        return Ok(true);
    }
    if !owner_is_dead(&bridge) {
        return Ok(false);
    }
    let stale: Vec<String> = list_namespaces()
        .into_iter()
        .filter(|ns| ns.starts_with(&format!("{bridge}-")))
        .collect();
    remove_network(index, &stale);
    Ok(ip(&["link", "add", &bridge, "type", "bridge"]).is_ok())
}

fn owner_alias() -> String {
    format!("wasmfleet-chaos pid {}", std::process::id())
}

/// Whether the bridge's alias names a process that no longer exists (an alias-less bridge
/// is one being set up right now: not dead).
fn owner_is_dead(bridge: &str) -> bool {
    let Ok(out) = Command::new("ip")
        .args(["-o", "link", "show", bridge])
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text
        .split("alias wasmfleet-chaos pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse::<u32>().ok());
    pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn list_namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes the network's veth pairs (from the host end: the kernel destroys a namespace,
/// and the veths in it, only asynchronously), its namespaces and its bridge.
fn remove_network(index: u8, namespaces: &[String]) {
    let prefix = format!("wfc{index}h");
    for link in list_links().iter().filter(|l| l.starts_with(&prefix)) {
        let _ = ip(&["link", "del", link]);
    }
    for ns in namespaces {
        let _ = ip(&["netns", "del", ns]);
    }
    let _ = ip(&["link", "del", &bridge_name(index)]);
}

/// The names of the host namespace's network links.
fn list_links() -> Vec<String> {
    Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| line.split(": ").nth(1))
                .map(|name| name.split('@').next().unwrap_or(name).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn bridge_name(index: u8) -> String {
    format!("wfchaos{index}")
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

fn in_ns(ns: &str, command: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(command);
    run("ip", &args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
