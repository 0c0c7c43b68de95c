//! What a pod's containers see besides their module: its volumes, resolved on the server
//! (a ConfigMap's, a Secret's or the downward API's files travel with the pod, so a node
//! receives configuration only inside the pods bound to it), and where each container
//! mounts them. The agent maps every mount to a WASI preopened directory.

use serde::{Deserialize, Serialize};

/// A pod's volumes and mounts ([`super::PodAssignment::config`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodConfig {
    /// The pod's volumes, by name.
    pub volumes: Vec<Volume>,
    /// Every container's mounts.
    pub mounts: Vec<Mount>,
    /// The `sizeLimit` of each `emptyDir` that has one (for `medium: Memory`, at most the
    /// pod's memory limit). Appended after the volumes' release ([`crate::tail`]): older
    /// servers send none, older agents ignore them (and do not enforce them).
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub size_limits: Vec<SizeLimit>,
    /// The `emptyDir`s with `medium: Memory`, by name: the agent keeps them on a tmpfs.
    /// Appended after `size_limits` ([`crate::tail`]): older servers send none, older
    /// agents keep these volumes on disk (within the same limits). Keep it the last field.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub memory_volumes: Vec<String>,
}

/// An `emptyDir`'s `sizeLimit`: a pod whose volume uses more is evicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeLimit {
    /// The volume's name.
    pub volume: String,
    /// The limit in bytes.
    pub bytes: u64,
    /// The limit as the spec wrote it (`1Mi`), for the eviction message.
    pub quantity: String,
}

/// One volume of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The volume's name in the pod spec.
    pub name: String,
    /// What it holds.
    pub source: VolumeSource,
}

/// Where a volume's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// Files the server resolved (`configMap`, `secret`, `downwardAPI`, `projected`); the
    /// agent keeps the directory equal to them, updating files in place.
    Files(Vec<VolumeFile>),
    /// An empty directory of the pod's own (`emptyDir`): kept across container restarts,
    /// removed with the pod.
    EmptyDir,
    /// A directory of the node's own (`hostPath`), mounted only if the agent's
    /// administrator allows its path (appended: older agents cannot decode a pod with one).
    HostPath(HostPath),
}

/// A `hostPath` volume: a directory on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPath {
    /// The absolute path on the node.
    pub path: String,
    /// Whether the spec's `type` asks for a directory that must exist (`Directory`);
    /// otherwise (`""`) nothing is checked before mounting.
    pub must_be_directory: bool,
}

/// One file of a [`VolumeSource::Files`] volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFile {
    /// Relative path inside the volume (`app.conf`, `conf/app.conf`), never `..`.
    pub path: String,
    /// Unix permission bits (`defaultMode`/`mode`, 0644 by default).
    pub mode: u32,
    /// The content.
    pub data: Vec<u8>,
}

/// One container's mount of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The container.
    pub container: String,
    /// The volume's name.
    pub volume: String,
    /// The guest path the directory is preopened at (`/etc/config`).
    pub mount_path: String,
    /// A directory inside the volume to mount instead of its root (`""`: the root).
    pub sub_path: String,
    /// Read-only for the guest.
    pub read_only: bool,
}

impl PodConfig {
    /// Whether the pod has no volumes and no mounts.
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty() && self.mounts.is_empty()
    }

    /// The `sizeLimit` of volume `name`, if it has one.
    pub fn size_limit(&self, name: &str) -> Option<&SizeLimit> {
        self.size_limits.iter().find(|l| l.volume == name)
    }

    /// Whether volume `name` is an `emptyDir` with `medium: Memory`.
    pub fn in_memory(&self, name: &str) -> bool {
        self.memory_volumes.iter().any(|v| v == name)
    }

    /// The mounts of container `name`.
    pub fn mounts_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Mount> + 'a {
        self.mounts.iter().filter(move |m| m.container == name)
    }
}
