//! The host's own figures for the node's line of `kubectl top node`, read from `/proc`
//! (Linux), each parsed by a pure function.
//!
//! - CPU: the busy time of all CPUs together, from the first line of `/proc/stat`: `user +
//!   nice + system + irq + softirq + steal` (not `idle`, not `iowait`; `guest` is already
//!   inside `user`). The counters are in `USER_HZ` ticks, which Linux fixes at 100 per
//!   second for user space on every architecture wasmfleet runs on.
//! - Memory: the working set as metrics-server reports it for a node (the root cgroup's
//!   usage minus its inactive file cache), computed from `/proc/meminfo` as `MemTotal −
//!   MemFree − Inactive(file)`: memory in use, page cache the kernel would keep under
//!   pressure included, cache it would drop first left out. The root cgroup is not
//!   readable the same way on cgroup v1 and v2 hosts, `/proc/meminfo` is.

use std::time::Duration;

/// Nanoseconds per `USER_HZ` tick of `/proc/stat`.
const NANOS_PER_TICK: u64 = 1_000_000_000 / 100;

/// The host's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSample {
    /// Busy CPU time of all CPUs together since boot.
    pub cpu_busy: Duration,
    /// The memory working set, bytes.
    pub working_set_bytes: u64,
}

/// Reads the host's counters; `None` where `/proc` does not have them (not Linux).
pub fn sample() -> Option<HostSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(HostSample {
        cpu_busy: parse_cpu_busy(&stat)?,
        working_set_bytes: parse_working_set(&meminfo)?,
    })
}

/// The busy time of the `cpu` line (all CPUs) of `/proc/stat`.
pub fn parse_cpu_busy(stat: &str) -> Option<Duration> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0))
        .fold(0u64, u64::saturating_add);
    (ticks.len() >= 4).then(|| Duration::from_nanos(busy.saturating_mul(NANOS_PER_TICK)))
}

/// `MemTotal − MemFree − Inactive(file)` of `/proc/meminfo`, in bytes.
pub fn parse_working_set(meminfo: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line
            .strip_prefix(name)?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib.saturating_mul(1024))
    };
    let total = field("MemTotal:")?;
    let free = field("MemFree:")?;
    let inactive_file = field("Inactive(file):").unwrap_or(0);
    Some(total.saturating_sub(free).saturating_sub(inactive_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 40 3 2 1 7 0\ncpu0 50 2 25 4500 20 1 1 0 3 0\nintr 1\n";
        // 100 + 5 + 50 + 3 + 2 + 1 = 161 ticks of 10 ms.
        assert_eq!(parse_cpu_busy(stat), Some(Duration::from_millis(1610)));
        assert_eq!(parse_cpu_busy("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_cpu_busy("cpu  a b c d\n"), None);
    }

    #[test]
    fn the_working_set_keeps_active_cache_and_drops_inactive_cache() {
        let meminfo = "MemTotal:        8000000 kB\nMemFree:         1000000 kB\n\
                       MemAvailable:    5000000 kB\nInactive(file):  2000000 kB\n";
        assert_eq!(parse_working_set(meminfo), Some(5_000_000 * 1024));
        assert_eq!(parse_working_set("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn this_host_reports_plausible_figures() {
        if let Some(host) = sample() {
            assert!(host.cpu_busy > Duration::ZERO);
            assert!(host.working_set_bytes > 0);
        }
    }
}
