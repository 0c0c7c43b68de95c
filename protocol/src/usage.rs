//! What a node's pods use: CPU and memory per container and for the node as a whole,
//! which agents report periodically on `n/{node}/up/usage` and the server serves as
//! `metrics.k8s.io` (`kubectl top`).
//!
//! Best effort, like metrics-server's scrapes: not acked, not retained, a lost report is
//! replaced by the next. CPU is a rate the agent averaged over the window since its
//! previous sample (nanocores: 10⁻⁹ of a core), memory the bytes in use at the end of it.

use serde::{Deserialize, Serialize};

/// The most pods one report lists (a node's desired set holds at most this many).
pub const MAX_PODS: usize = 4096;

/// The most containers of one pod a report lists (a pod may have at most this many).
pub const MAX_CONTAINERS: usize = 64;

/// The longest container name a report carries (a DNS label).
pub const MAX_CONTAINER_NAME: usize = 63;

/// The longest window a report may average over: an hour.
pub const MAX_WINDOW_MS: u32 = 3_600_000;

/// The most CPU a report may claim for anything: 4096 cores.
pub const MAX_NANOCORES: u64 = 4096 * 1_000_000_000;

/// The most memory a report may claim for anything: 16 TiB.
pub const MAX_MEMORY_BYTES: u64 = 16 << 40;

/// One node's usage report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// How long the CPU rates were averaged over, in milliseconds (the time since the
    /// previous sample).
    pub window_ms: u32,
    /// The node as a whole: the host's CPU and working set, not only its pods'.
    pub node: Usage,
    /// Every running pod of the node, by uid.
    pub pods: Vec<PodUsage>,
}

/// CPU and memory of one thing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU used, averaged over the window, in nanocores (1,000,000,000 = one core).
    pub cpu_nanocores: u64,
    /// Memory in use at the end of the window, in bytes.
    pub memory_bytes: u64,
}

/// One pod's containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodUsage {
    /// The pod's `metadata.uid`.
    pub uid: String,
    /// Its containers, in spec order.
    pub containers: Vec<ContainerUsage>,
}

/// One container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUsage {
    /// The container's name.
    pub name: String,
    /// What it used.
    pub usage: Usage,
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUsage {
    /// The window is zero or longer than [`MAX_WINDOW_MS`].
    #[error("window of {0} ms is not within 1..={MAX_WINDOW_MS} ms")]
    Window(u32),
    /// More than [`MAX_PODS`] pods, or more than [`MAX_CONTAINERS`] in one pod.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// A uid or container name that cannot be one, or listed twice.
    #[error("invalid or repeated {what} {name:?}")]
    Name {
        /// `pod uid` or `container name`.
        what: &'static str,
        /// The offending value (cut to 64 characters).
        name: String,
    },
    /// CPU or memory beyond any device's.
    #[error("implausible usage: {0} nanocores, {1} bytes")]
    Implausible(u64, u64),
}

impl UsageReport {
    /// Checks the report's shape and bounds; a server keeps only reports that pass.
    pub fn validate(&self) -> Result<(), InvalidUsage> {
        if self.window_ms == 0 || self.window_ms > MAX_WINDOW_MS {
            return Err(InvalidUsage::Window(self.window_ms));
        }
        if self.pods.len() > MAX_PODS {
            return Err(InvalidUsage::TooMany("pods"));
        }
        self.node.validate()?;
        let mut uids = std::collections::HashSet::new();
        for pod in &self.pods {
            let valid = crate::names::validate_uid(&pod.uid).is_ok();
            if !valid || !uids.insert(pod.uid.as_str()) {
                return Err(bad_name("pod uid", &pod.uid));
            }
            pod.validate()?;
        }
        Ok(())
    }
}

impl PodUsage {
    fn validate(&self) -> Result<(), InvalidUsage> {
        if self.containers.len() > MAX_CONTAINERS {
            return Err(InvalidUsage::TooMany("containers"));
        }
        let mut names = std::collections::HashSet::new();
        for container in &self.containers {
            let name = container.name.as_str();
            let valid = !name.is_empty()
                && name.len() <= MAX_CONTAINER_NAME
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid || !names.insert(name) {
                return Err(bad_name("container name", name));
            }
            container.usage.validate()?;
        }
        Ok(())
    }
}

impl Usage {
    fn validate(&self) -> Result<(), InvalidUsage> {
        if self.cpu_nanocores > MAX_NANOCORES || self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(InvalidUsage::Implausible(
                self.cpu_nanocores,
                self.memory_bytes,
            ));
        }
        Ok(())
    }
}

fn bad_name(what: &'static str, name: &str) -> InvalidUsage {
    InvalidUsage::Name {
        what,
        name: name.chars().take(64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, decode, encode};

    fn report() -> UsageReport {
        UsageReport {
            window_ms: 15_000,
            node: Usage {
                cpu_nanocores: 250_000_000,
                memory_bytes: 512 << 20,
            },
            pods: vec![PodUsage {
                uid: "6b1c-77".into(),
                containers: vec![ContainerUsage {
                    name: "main".into(),
                    usage: Usage {
                        cpu_nanocores: 1_000,
                        memory_bytes: 1 << 20,
                    },
                }],
            }],
        }
    }

    #[test]
    fn a_report_survives_a_round_trip_and_passes_validation() {
        let message = Message::Usage(report());
        assert_eq!(decode(&encode(&message)), Ok(message));
        assert_eq!(report().validate(), Ok(()));
    }

    #[test]
    fn an_idle_nodes_report_is_a_few_bytes() {
        let idle = UsageReport {
            pods: vec![],
            ..report()
        };
        assert!(encode(&Message::Usage(idle)).len() < 16);
    }

    #[test]
    fn malformed_reports_are_refused() {
        let mut zero_window = report();
        zero_window.window_ms = 0;
        assert_eq!(zero_window.validate(), Err(InvalidUsage::Window(0)));
        let mut twice = report();
        twice.pods.push(twice.pods[0].clone());
        assert!(matches!(twice.validate(), Err(InvalidUsage::Name { .. })));
        let mut bad_uid = report();
        bad_uid.pods[0].uid = "a/b".into();
        assert!(matches!(bad_uid.validate(), Err(InvalidUsage::Name { .. })));
        let mut bad_container = report();
        bad_container.pods[0].containers[0].name = "Main!".into();
        assert!(matches!(
            bad_container.validate(),
            Err(InvalidUsage::Name { .. })
        ));
        let mut huge = report();
        huge.pods[0].containers[0].usage.cpu_nanocores = MAX_NANOCORES + 1;
        assert!(matches!(
            huge.validate(),
            Err(InvalidUsage::Implausible(..))
        ));
        let mut crowded = report();
        crowded.pods[0].containers = vec![ContainerUsage::default(); MAX_CONTAINERS + 1];
        assert_eq!(crowded.validate(), Err(InvalidUsage::TooMany("containers")));
    }
}
