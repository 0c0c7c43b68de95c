//! What the agent says about its machine in the birth message ([`NodeInfo`]).
//!
//! Facts come from `/proc` and `/etc/os-release`; each is parsed by a pure function so the
//! parsing is tested without the files. A fact that cannot be read is reported as empty
//! (or zero) and logged, rather than keeping the agent from joining.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use wasmfleet_protocol::broker_url::BrokerUrl;

use wasmfleet_protocol::node::{EngineInfo, NodeInfo, Resources};
use wasmfleet_protocol::quantity::ResourceAmounts;

/// The pod capacity of a node unless `--max-pods` says otherwise: the kubelet's default.
pub const MAX_PODS: u32 = 110;

/// Memory kept back from pods for the agent and the OS, as a fraction (1/10) of the total…
const MEMORY_RESERVE_DIVISOR: u64 = 10;
/// …but never more than this.
const MEMORY_RESERVE_MAX: u64 = 512 << 20;
/// CPU kept back for the agent itself, in millicores.
const CPU_RESERVE_MILLIS: u64 = 100;

/// `--system-reserved` asks for all of a resource the machine has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--system-reserved {resource}={reserved} leaves nothing for pods: the machine has {capacity} \
     (bytes of memory, millicores of CPU)"
)]
pub struct ReserveTooLarge {
    /// `memory` or `cpu`.
    pub resource: &'static str,
    /// What was asked for.
    pub reserved: u64,
    /// What the machine has.
    pub capacity: u64,
}

/// Collects the node's identity and capacity (`max_pods` pods) from the running machine;
/// allocatable is the capacity minus `reserved` (see [`allocatable`]).
pub fn collect(
    labels: BTreeMap<String, String>,
    engine: EngineInfo,
    reserved: ResourceAmounts,
    max_pods: u32,
) -> Result<NodeInfo, ReserveTooLarge> {
    let capacity = Resources {
        memory_bytes: read_or_log("/proc/meminfo", parse_mem_total),
        cpu_millis: cpu_millis(),
        pods: max_pods,
    };
    Ok(NodeInfo {
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        architecture: kubernetes_arch(std::env::consts::ARCH).to_owned(),
        operating_system: std::env::consts::OS.to_owned(),
        kernel_version: read_or_log("/proc/sys/kernel/osrelease", |s| Some(s.trim().to_owned())),
        os_image: read_or_log("/etc/os-release", parse_pretty_name),
        hostname: hostname().unwrap_or_default(),
        capacity,
        allocatable: allocatable(capacity, reserved)?,
        labels,
        engine,
        addresses: Vec::new(),
        tunnel: None,
    })
}

/// Any address outside this machine: asking the kernel for a route to it gives the
/// default route's source address (TEST-NET-3; no packet is ever sent to it).
const DEFAULT_ROUTE_PROBE: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 9);

/// The node's `InternalIP` when `--node-ip` is not given, as the kubelet picks it: the
/// source address of the route to the broker or, when that is loopback (the server's
/// in-process agent, an agent beside its broker), of the default route; loopback when
/// the machine has neither.
pub async fn detect_node_ip(broker: &BrokerUrl) -> IpAddr {
    let to_broker = match tokio::net::lookup_host((broker.host.as_str(), broker.port)).await {
        Ok(mut addrs) => addrs.next().and_then(source_address),
        Err(err) => {
            tracing::warn!(host = %broker.host, %err, "cannot resolve the broker to find the node's address");
            None
        }
    };
    match to_broker {
        Some(ip) if !ip.is_loopback() => ip,
        _ => source_address(DEFAULT_ROUTE_PROBE).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

/// The local address the kernel would send packets to `to` from (a connected UDP socket
/// sends nothing).
fn source_address(to: SocketAddr) -> Option<IpAddr> {
    let any: IpAddr = match to {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = std::net::UdpSocket::bind((any, 0)).ok()?;
    socket.connect(to).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The machine's host name.
pub fn hostname() -> std::io::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))?;
    Ok(name.trim().to_owned())
}

/// Maps a Rust `target_arch` to the name Kubernetes uses (`kubernetes.io/arch`).
pub fn kubernetes_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let amount: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => amount.checked_mul(1024),
        Some(_) => None,
    }
}

/// `PRETTY_NAME` of an os-release file, unquoted.
pub fn parse_pretty_name(os_release: &str) -> Option<String> {
    let value = os_release
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))?;
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    Some(unquoted.replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// What pods may use: the capacity minus what is `reserved` for the agent and the OS. A
/// resource the reserve leaves out keeps a small default: a tenth of the memory (at most
/// 512 MiB), and 100m of CPU (at most half of it). An explicit reserve must leave something
/// (unless the capacity itself could not be read).
pub fn allocatable(
    capacity: Resources,
    reserved: ResourceAmounts,
) -> Result<Resources, ReserveTooLarge> {
    let memory_reserve = reserved.memory_bytes.unwrap_or_else(|| {
        (capacity.memory_bytes / MEMORY_RESERVE_DIVISOR).min(MEMORY_RESERVE_MAX)
    });
    let cpu_reserve = reserved
        .cpu_millis
        .unwrap_or_else(|| CPU_RESERVE_MILLIS.min(capacity.cpu_millis / 2));
    let left = |resource, capacity: u64, reserve: u64| match capacity.checked_sub(reserve) {
        Some(left) if left > 0 || capacity == 0 => Ok(left),
        _ => Err(ReserveTooLarge {
            resource,
            reserved: reserve,
            capacity,
        }),
    };
    Ok(Resources {
        memory_bytes: left("memory", capacity.memory_bytes, memory_reserve)?,
        cpu_millis: left("cpu", capacity.cpu_millis, cpu_reserve)?,
        pods: capacity.pods,
    })
}

fn cpu_millis() -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    u64::try_from(cpus).unwrap_or(1).saturating_mul(1000)
}

/// Reads a file and parses it, logging (once, here) and defaulting when either fails.
fn read_or_log<T: Default>(path: &str, parse: impl FnOnce(&str) -> Option<T>) -> T {
    match std::fs::read_to_string(Path::new(path)) {
        Ok(text) => parse(&text).unwrap_or_else(|| {
            tracing::warn!(path, "cannot parse node fact; reporting it as empty");
            T::default()
        }),
        Err(err) => {
            tracing::warn!(path, %err, "cannot read node fact; reporting it as empty");
            T::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_node_address_is_the_source_of_a_route() {
        let lo: SocketAddr = "127.0.0.1:9".parse().unwrap_or(DEFAULT_ROUTE_PROBE);
        assert_eq!(source_address(lo), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // A broker on this machine: the default route's source, if there is one.
        let local: BrokerUrl = "mqtts://127.0.0.1:8883"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let expected = source_address(DEFAULT_ROUTE_PROBE).unwrap_or(Ipv4Addr::LOCALHOST.into());
        assert_eq!(detect_node_ip(&local).await, expected);
    }

    #[test]
    fn rust_architectures_get_their_kubernetes_names() {
        assert_eq!(kubernetes_arch("x86_64"), "amd64");
        assert_eq!(kubernetes_arch("aarch64"), "arm64");
        assert_eq!(kubernetes_arch("arm"), "arm");
        assert_eq!(kubernetes_arch("riscv64"), "riscv64");
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemTotal:        3884380 kB\nMemFree:          123 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(3_884_380 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn pretty_name_is_unquoted() {
        let os_release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            parse_pretty_name(os_release).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_pretty_name("PRETTY_NAME=Alpine").as_deref(),
            Some("Alpine")
        );
        assert_eq!(parse_pretty_name("ID=x"), None);
    }

    #[test]
    fn allocatable_keeps_a_small_reserve() {
        let pi = Resources {
            memory_bytes: 8 << 30,
            cpu_millis: 4000,
            pods: 110,
        };
        let a = allocatable(pi, ResourceAmounts::default()).expect("fits");
        // A tenth of the memory, capped at 512 MiB.
        assert_eq!(a.memory_bytes, (8 << 30) - (512 << 20));
        assert_eq!(a.cpu_millis, 3900);
        assert_eq!(a.pods, 110);
        let tiny = Resources {
            memory_bytes: 512 << 20,
            cpu_millis: 100,
            pods: 110,
        };
        let a = allocatable(tiny, ResourceAmounts::default()).expect("fits");
        assert_eq!(a.memory_bytes, (512 << 20) - (512 << 20) / 10);
        assert_eq!(a.cpu_millis, 50);
    }

    #[test]
    fn an_explicit_reserve_is_taken_exactly_but_must_leave_something() {
        let pi = Resources {
            memory_bytes: 1 << 30,
            cpu_millis: 4000,
            pods: 110,
        };
        let reserve = |memory: u64, cpu: u64| ResourceAmounts {
            memory_bytes: Some(memory),
            cpu_millis: Some(cpu),
        };
        let a = allocatable(pi, reserve(768 << 20, 1500)).expect("fits");
        assert_eq!(a.memory_bytes, 256 << 20);
        assert_eq!(a.cpu_millis, 2500);
        let only_cpu = ResourceAmounts {
            memory_bytes: None,
            cpu_millis: Some(0),
        };
        let a = allocatable(pi, only_cpu).expect("fits");
        assert_eq!(a.memory_bytes, (1 << 30) - (1 << 30) / 10);
        assert_eq!(a.cpu_millis, 4000);
        let err = allocatable(pi, reserve(1 << 30, 0)).expect_err("nothing left");
        assert_eq!(err.resource, "memory");
        assert!(err.to_string().contains("leaves nothing for pods"), "{err}");
        assert!(allocatable(pi, reserve(0, 5000)).is_err());
    }

    #[test]
    fn this_machine_reports_a_plausible_node() {
        let engine = EngineInfo {
            wasmtime_version: "48.0.8".into(),
            target: "x".into(),
            compatibility_key: "00".into(),
            can_compile: true,
        };
        let info = collect(
            BTreeMap::new(),
            engine,
            ResourceAmounts::default(),
            MAX_PODS,
        )
        .expect("fits");
        assert!(info.capacity.memory_bytes > 0);
        assert!(info.capacity.cpu_millis >= 1000);
        assert!(info.allocatable.memory_bytes < info.capacity.memory_bytes);
        assert!(!info.kernel_version.is_empty());
        assert_eq!(info.operating_system, "linux");
    }
}
