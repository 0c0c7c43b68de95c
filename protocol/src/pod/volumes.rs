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

    /// The mounts of container `name`.
    pub fn mounts_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Mount> + 'a {
        self.mounts.iter().filter(move |m| m.container == name)
    }
}
