//! From cumulative samples to a report's rates: each CPU figure is the CPU time used
//! between two samples divided by the time between them (what metrics-server computes from
//! two cAdvisor points), in nanocores; memory is the later sample's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wasmfleet_protocol::usage::{ContainerUsage, PodUsage, Usage, UsageReport};

use super::PodSample;
use super::host::HostSample;

/// Everything sampled at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When.
    pub at: Instant,
    /// The host's counters (`None` off Linux: the node is then the sum of its pods).
    pub host: Option<HostSample>,
    /// The running pods.
    pub pods: Vec<PodSample>,
}

/// The previous sample, which the next report's window starts at.
#[derive(Debug, Default)]
pub struct Rates {
    baseline: Option<Sample>,
}

impl Rates {
    /// Makes `sample` the start of the next window.
    pub fn start(&mut self, sample: Sample) {
        self.baseline = Some(sample);
    }

    /// The report of the window from the previous sample to `sample`, which starts the
    /// next one; `None` without a previous sample or for an empty window.
    ///
    /// A container the previous sample does not have started within the window (its meter
    /// counts from zero), so all its CPU time is the window's; one whose time went down
    /// was replaced (a new image restarts the pod on fresh meters) and is treated alike.
    pub fn report(&mut self, sample: Sample) -> Option<UsageReport> {
        let baseline = self.baseline.replace(sample);
        let (before, now) = (baseline?, self.baseline.as_ref()?);
        let window = now.at.checked_duration_since(before.at)?;
        let window_ms = u32::try_from(window.as_millis()).ok()?;
        if window_ms == 0 {
            return None;
        }
        let earlier: HashMap<(&str, &str), Duration> = before
            .pods
            .iter()
            .flat_map(|pod| {
                pod.containers
                    .iter()
                    .map(|c| ((pod.uid.as_str(), c.name.as_str()), c.cpu_time))
            })
            .collect();
        let pods: Vec<PodUsage> = now
            .pods
            .iter()
            .map(|pod| PodUsage {
                uid: pod.uid.clone(),
                containers: pod
                    .containers
                    .iter()
                    .map(|c| {
                        let then = earlier.get(&(pod.uid.as_str(), c.name.as_str()));
                        let used = match then {
                            Some(then) if *then <= c.cpu_time => c.cpu_time - *then,
                            _ => c.cpu_time,
                        };
                        ContainerUsage {
                            name: c.name.clone(),
                            usage: Usage {
                                cpu_nanocores: nanocores(used, window),
                                memory_bytes: c.memory_bytes,
                            },
                        }
                    })
                    .collect(),
            })
            .collect();
        let node = match (before.host, now.host) {
            (Some(then), Some(host)) => Usage {
                cpu_nanocores: nanocores(host.cpu_busy.saturating_sub(then.cpu_busy), window),
                memory_bytes: host.working_set_bytes,
            },
            _ => sum(&pods),
        };
        Some(UsageReport {
            window_ms,
            node,
            pods,
        })
    }
}

/// `used` CPU time over `window` in nanocores (10⁻⁹ core).
pub fn nanocores(used: Duration, window: Duration) -> u64 {
    let rate = used.as_nanos().saturating_mul(1_000_000_000) / window.as_nanos().max(1);
    u64::try_from(rate).unwrap_or(u64::MAX)
}

/// All containers together.
fn sum(pods: &[PodUsage]) -> Usage {
    pods.iter()
        .flat_map(|pod| &pod.containers)
        .fold(Usage::default(), |total, c| Usage {
            cpu_nanocores: total.cpu_nanocores.saturating_add(c.usage.cpu_nanocores),
            memory_bytes: total.memory_bytes.saturating_add(c.usage.memory_bytes),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::ContainerSample;

    fn pod(uid: &str, cpu_ms: u64, memory_bytes: u64) -> PodSample {
        PodSample {
            uid: uid.into(),
            containers: vec![ContainerSample {
                name: "main".into(),
                cpu_time: Duration::from_millis(cpu_ms),
                memory_bytes,
            }],
        }
    }

    fn sample(at: Instant, host: Option<(u64, u64)>, pods: Vec<PodSample>) -> Sample {
        Sample {
            at,
            host: host.map(|(busy_ms, working_set_bytes)| HostSample {
                cpu_busy: Duration::from_millis(busy_ms),
                working_set_bytes,
            }),
            pods,
        }
    }

    #[test]
    fn the_first_sample_only_starts_the_window() {
        let mut rates = Rates::default();
        assert_eq!(rates.report(sample(Instant::now(), None, vec![])), None);
    }

    #[test]
    fn cpu_is_the_time_used_in_the_window_over_the_window() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.start(sample(t0, Some((10_000, 0)), vec![pod("a", 1_000, 0)]));
        let later = t0 + Duration::from_secs(10);
        let report = rates
            .report(sample(
                later,
                Some((25_000, 7 << 30)),
                vec![pod("a", 6_000, 64 << 20), pod("b", 2_000, 1 << 20)],
            ))
            .expect("a window");
        assert_eq!(report.window_ms, 10_000);
        // 15 s of busy CPU in 10 s: one and a half cores.
        assert_eq!(report.node.cpu_nanocores, 1_500_000_000);
        assert_eq!(report.node.memory_bytes, 7 << 30);
        let a = report.pods[0].containers[0].usage;
        assert_eq!((a.cpu_nanocores, a.memory_bytes), (500_000_000, 64 << 20));
        // b started within the window: all of its time counts.
        assert_eq!(
            report.pods[1].containers[0].usage.cpu_nanocores,
            200_000_000
        );
    }

    #[test]
    fn a_meter_that_went_back_belongs_to_a_replaced_container() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.start(sample(t0, None, vec![pod("a", 9_000, 0)]));
        let report = rates
            .report(sample(
                t0 + Duration::from_secs(1),
                None,
                vec![pod("a", 100, 0)],
            ))
            .expect("a window");
        assert_eq!(
            report.pods[0].containers[0].usage.cpu_nanocores,
            100_000_000
        );
    }

    #[test]
    fn without_host_figures_the_node_is_the_sum_of_its_pods() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.start(sample(t0, None, vec![]));
        let report = rates
            .report(sample(
                t0 + Duration::from_secs(2),
                None,
                vec![pod("a", 1_000, 3), pod("b", 500, 4)],
            ))
            .expect("a window");
        assert_eq!(report.node.cpu_nanocores, 750_000_000);
        assert_eq!(report.node.memory_bytes, 7);
    }
}
