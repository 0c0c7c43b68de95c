//! The desired-state shapes of the pod network's release (`Message::DesiredPodV2`),
//! frozen: what servers from before probes send and agents from before probes persisted.
//! They decode as before and convert into the current shapes (containers without probes).

use serde::{Deserialize, Serialize};

use super::{ModuleRef, Probes, RestartPolicy};
use crate::network::PodNetwork;

/// The pod network release's [`super::DesiredPod`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredPod {
    /// The index revision this content was published for.
    pub revision: u64,
    /// The pod.
    pub pod: PodAssignment,
}

/// The pod network release's [`super::PodAssignment`]: containers without probes.
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
    /// The pod's network.
    pub network: Option<PodNetwork>,
}

/// The first two releases' [`super::ContainerSpec`]: no probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container name, unique in the pod.
    pub name: String,
    /// The image as the user wrote it.
    pub image: String,
    /// The module to run.
    pub module: ModuleRef,
    /// Kubernetes `command`.
    pub command: Vec<String>,
    /// Arguments after `command`.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// `resources.limits.memory`, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// `resources.limits.cpu`, millicores.
    pub cpu_limit_millis: Option<u64>,
}

impl From<ContainerSpec> for super::ContainerSpec {
    fn from(old: ContainerSpec) -> Self {
        Self {
            name: old.name,
            image: old.image,
            module: old.module,
            command: old.command,
            args: old.args,
            env: old.env,
            memory_limit_bytes: old.memory_limit_bytes,
            cpu_limit_millis: old.cpu_limit_millis,
            probes: Probes::default(),
        }
    }
}

/// A container as the earlier releases shaped it, probes dropped: what an older server
/// sent (for tests of the upgrade path).
impl From<super::ContainerSpec> for ContainerSpec {
    fn from(current: super::ContainerSpec) -> Self {
        Self {
            name: current.name,
            image: current.image,
            module: current.module,
            command: current.command,
            args: current.args,
            env: current.env,
            memory_limit_bytes: current.memory_limit_bytes,
            cpu_limit_millis: current.cpu_limit_millis,
        }
    }
}

impl From<PodAssignment> for super::PodAssignment {
    fn from(old: PodAssignment) -> Self {
        Self {
            uid: old.uid,
            namespace: old.namespace,
            name: old.name,
            restart_policy: old.restart_policy,
            containers: old.containers.into_iter().map(Into::into).collect(),
            network: old.network,
            config: super::PodConfig::default(),
        }
    }
}

impl From<super::PodAssignment> for PodAssignment {
    fn from(current: super::PodAssignment) -> Self {
        Self {
            uid: current.uid,
            namespace: current.namespace,
            name: current.name,
            restart_policy: current.restart_policy,
            containers: current.containers.into_iter().map(Into::into).collect(),
            network: current.network,
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

impl From<super::DesiredPod> for DesiredPod {
    fn from(current: super::DesiredPod) -> Self {
        Self {
            revision: current.revision,
            pod: current.pod.into(),
        }
    }
}
