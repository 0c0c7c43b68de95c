//! The desired-state shapes of the first release, frozen: what older servers send and
//! older agents persisted. They decode as before and convert into the current shapes
//! (a pod without a network, containers without probes).

use serde::{Deserialize, Serialize};

use super::RestartPolicy;
use super::v2::ContainerSpec;

/// The first release's [`super::DesiredPods`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredPods {
    /// The store revision this snapshot was cut at.
    pub revision: u64,
    /// The pods.
    pub pods: Vec<PodAssignment>,
}

/// The first release's [`super::DesiredPod`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredPod {
    /// The index revision this content was published for.
    pub revision: u64,
    /// The pod.
    pub pod: PodAssignment,
}

/// The first release's [`super::PodAssignment`]: no network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAssignment {
    /// The pod's `metadata.uid`.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// What to do when a container exits.
    pub restart_policy: RestartPolicy,
    /// The containers, in spec order.
    pub containers: Vec<ContainerSpec>,
}

impl From<PodAssignment> for super::PodAssignment {
    fn from(old: PodAssignment) -> Self {
        Self {
            uid: old.uid,
            namespace: old.namespace,
            name: old.name,
            restart_policy: old.restart_policy,
            containers: old.containers.into_iter().map(Into::into).collect(),
            network: None,
            config: super::PodConfig::default(),
        }
    }
}

impl From<DesiredPod> for super::DesiredPod {
    fn from(old: DesiredPod) -> Self {
        Self {
            revision: old.revision,
            pod: old.pod.into(),
        }
    }
}

impl From<DesiredPods> for super::DesiredPods {
    fn from(old: DesiredPods) -> Self {
        Self {
            revision: old.revision,
            pods: old.pods.into_iter().map(Into::into).collect(),
        }
    }
}

/// The set as the first release shaped it, networks and probes dropped: what an older server sent
/// (for tests of the upgrade path).
impl From<super::DesiredPods> for DesiredPods {
    fn from(current: super::DesiredPods) -> Self {
        Self {
            revision: current.revision,
            pods: current
                .pods
                .into_iter()
                .map(|pod| PodAssignment {
                    uid: pod.uid,
                    namespace: pod.namespace,
                    name: pod.name,
                    restart_policy: pod.restart_policy,
                    containers: pod.containers.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }
    }
}
