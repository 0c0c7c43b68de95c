//! Pod volumes on the node's disk, mapped into guests as WASI preopened directories.
//!
//! Each volume is a directory `<volume dir>/<pod uid>/<volume name>`. A `Files` volume
//! (a ConfigMap's, a Secret's, the downward API's, as the server resolved them) is kept
//! equal to its files: a changed file is written to a temporary name and renamed over the
//! old one, a file no longer listed is deleted, and the directory itself stays (a guest's
//! preopened handle keeps seeing it, so a ConfigMap update reaches running containers). An
//! `emptyDir` is created once and kept across container restarts. Both go when the pod
//! leaves the node. What WASI shows of them: files and directories with their content; the
//! permission bits are set on the host but WASI has no modes, so a guest sees only whether
//! it may write (a mount is read-only for `readOnly`, and always for server-given files).
//! A `hostPath` volume has no directory here: it is the node's own directory, mounted only
//! if the agent's [`HostPathPolicy`] allows it (else the container waits with
//! `CreateContainerConfigError` saying why). An `emptyDir` with `medium: Memory` lives
//! under the memory root instead ([`VolumeRoots::memory`], on a tmpfs: see
//! [`super::memory_volumes`]); without one, its containers wait with
//! `CreateContainerConfigError` saying why.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use wasmfleet_protocol::pod::PodConfig;
use wasmfleet_protocol::pod::volumes::{VolumeFile, VolumeSource};

use super::host_paths::HostPathPolicy;
use super::lifecycle::WaitingReason;
use crate::runtime::Preopen;

/// Why a container's mounts cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError {
    /// `CreateContainerConfigError` (the pod asks for what this node refuses) or
    /// `CreateContainerError`.
    pub reason: WaitingReason,
    /// Why, in words.
    pub message: String,
}

impl MountError {
    fn other(message: String) -> Self {
        Self {
            reason: WaitingReason::CreateContainerError,
            message,
        }
    }
}

/// Where pods' volumes live: `<root>/<pod uid>/<volume>`, on the node's disk, or for
/// `medium: Memory` under a tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRoots {
    /// The root on disk (`<data dir>/volumes`).
    pub disk: PathBuf,
    /// The root of memory-backed `emptyDir`s, or why this node has none.
    pub memory: Result<PathBuf, String>,
}

impl VolumeRoots {
    /// The roots of an agent whose data directory is `data_dir`.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self {
            disk: data_dir.join("volumes"),
            memory: super::memory_volumes::root_for(data_dir),
        }
    }

    /// Volumes on disk only (`medium: Memory` refused).
    pub fn on_disk(disk: &Path) -> Self {
        Self {
            disk: disk.to_owned(),
            memory: Err("this agent keeps no memory volumes".to_owned()),
        }
    }

    /// The roots that exist: the disk's, and the memory one if there is one.
    fn all(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.disk.as_path()).chain(self.memory.as_deref().ok())
    }

    /// The directory of volume `name` of pod `uid` (on the root its medium says), or why
    /// there is none.
    pub fn volume_dir(&self, config: &PodConfig, uid: &str, name: &str) -> Result<PathBuf, String> {
        let root = match config.in_memory(name) {
            true => self.memory.as_deref().map_err(|why| why.clone())?,
            false => self.disk.as_path(),
        };
        pod_dir(root, uid)
            .map(|dir| dir.join(name))
            .ok_or_else(|| format!("pod uid {uid:?} cannot name a directory"))
    }
}

/// The directory of one pod's volumes (`None` for a uid that could name another path).
pub fn pod_dir(root: &Path, uid: &str) -> Option<PathBuf> {
    let plain = !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plain.then(|| root.join(uid))
}

/// Brings the pod's volume directories to what `config` says: files written (only those
/// that changed), files no longer listed removed, empty directories created (a memory
/// one only where there is a tmpfs: its containers say why otherwise).
pub fn sync(roots: &VolumeRoots, uid: &str, config: &PodConfig) -> io::Result<()> {
    for volume in &config.volumes {
        let path = || {
            roots
                .volume_dir(config, uid, &volume.name)
                .map_err(io::Error::other)
        };
        match &volume.source {
            VolumeSource::Files(files) => {
                let path = path()?;
                fs::create_dir_all(&path)?;
                sync_files(&path, files)?;
            }
            VolumeSource::EmptyDir => {
                if let Ok(path) = roots.volume_dir(config, uid, &volume.name) {
                    create_private(&path)?;
                }
            }
            VolumeSource::HostPath(_) => {}
        }
    }
    Ok(())
}

/// Creates `dir` and its parents, the parents readable by their owner only (a memory
/// root is in a directory every user of the node can list).
fn create_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn sync_files(dir: &Path, files: &[VolumeFile]) -> io::Result<()> {
    let mut wanted = HashSet::new();
    for file in files {
        let Some(relative) = relative(&file.path) else {
            continue; // the server never sends such a path
        };
        let path = dir.join(&relative);
        wanted.insert(path.clone());
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
            let mut ancestor = parent;
            while ancestor != dir {
                wanted.insert(ancestor.to_owned());
                ancestor = ancestor.parent().unwrap_or(dir);
            }
        }
        let same = fs::read(&path).is_ok_and(|old| old == file.data);
        if !same {
            let tmp = path.with_file_name(format!(
                ".{}.tmp",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
            ));
            fs::write(&tmp, &file.data)?;
            fs::rename(&tmp, &path)?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode & 0o777))?;
    }
    remove_unwanted(dir, &wanted)
}

/// Deletes what is under `dir` and not in `wanted` (depth first).
fn remove_unwanted(dir: &Path, wanted: &HashSet<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if !wanted.contains(&path) {
            match path.is_dir() {
                true => fs::remove_dir_all(&path)?,
                false => fs::remove_file(&path)?,
            }
        } else if path.is_dir() {
            remove_unwanted(&path, wanted)?;
        }
    }
    Ok(())
}

/// `path` as a relative path of plain components (`None` for `..`, absolute or empty).
fn relative(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.as_os_str().is_empty()).then(|| path.to_owned())
}

/// The preopened directories of `container`: one per mount, its `subPath` inside the
/// volume if it names one (which must be a directory: WASI preopens only directories).
pub fn preopens(
    roots: Option<&VolumeRoots>,
    host_paths: &HostPathPolicy,
    uid: &str,
    config: &PodConfig,
    container: &str,
) -> Result<Vec<Preopen>, MountError> {
    let mut preopens = Vec::new();
    for mount in config.mounts_of(container) {
        let source = config.volumes.iter().find(|v| v.name == mount.volume);
        let (mut host, writable) = match source.map(|v| &v.source) {
            Some(VolumeSource::HostPath(host_path)) => {
                let granted = host_paths
                    .check(&host_path.path)
                    .map_err(|message| MountError {
                        reason: WaitingReason::CreateContainerConfigError,
                        message: format!("volume {:?}: {message}", mount.volume),
                    })?;
                if host_path.must_be_directory && !granted.path.is_dir() {
                    return Err(MountError::other(format!(
                        "volume {:?}: hostPath {:?} is not a directory",
                        mount.volume, host_path.path
                    )));
                }
                (granted.path, granted.writable)
            }
            _ => {
                let Some(roots) = roots else {
                    return Err(MountError::other("this agent keeps no volumes".to_owned()));
                };
                let dir = roots
                    .volume_dir(config, uid, &mount.volume)
                    .map_err(|message| MountError {
                        reason: WaitingReason::CreateContainerConfigError,
                        message: format!("volume {:?}: {message}", mount.volume),
                    })?;
                (dir, true)
            }
        };
        if !mount.sub_path.is_empty() {
            let Some(sub) = relative(&mount.sub_path) else {
                return Err(MountError::other(format!(
                    "subPath {:?} is not a relative path",
                    mount.sub_path
                )));
            };
            host = host.join(sub);
            if !host.exists() && writable {
                fs::create_dir_all(&host)
                    .map_err(|e| MountError::other(format!("subPath {:?}: {e}", mount.sub_path)))?;
            }
        }
        if !host.is_dir() {
            return Err(MountError::other(format!(
                "volume {:?} mounted at {:?}: {} is not a directory (WASI mounts only directories)",
                mount.volume,
                mount.mount_path,
                match mount.sub_path.is_empty() {
                    true => "the volume".to_owned(),
                    false => format!("subPath {:?}", mount.sub_path),
                }
            )));
        }
        preopens.push(Preopen {
            host,
            guest: mount.mount_path.clone(),
            read_only: mount.read_only || !writable,
        });
    }
    Ok(preopens)
}

/// Removes a pod's volumes (on disk and in memory).
pub fn remove(roots: &VolumeRoots, uid: &str) {
    for root in roots.all() {
        if let Some(dir) = pod_dir(root, uid)
            && let Err(err) = fs::remove_dir_all(&dir)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(%uid, %err, "cannot remove the pod's volumes");
        }
    }
}

/// Removes the volumes of every pod not in `keep` (left by pods that went while the agent
/// was down).
pub fn remove_others(roots: &VolumeRoots, keep: &HashSet<String>) {
    for root in roots.all() {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name)
                && let Some(dir) = pod_dir(root, &name)
                && let Err(err) = fs::remove_dir_all(&dir)
            {
                tracing::warn!(uid = %name, %err, "cannot remove the pod's volumes");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::pod::volumes::{Mount, Volume};

    fn file(path: &str, data: &str) -> VolumeFile {
        VolumeFile {
            path: path.into(),
            mode: 0o640,
            data: data.as_bytes().to_vec(),
        }
    }

    fn config(files: Vec<VolumeFile>) -> PodConfig {
        PodConfig {
            volumes: vec![
                Volume {
                    name: "conf".into(),
                    source: VolumeSource::Files(files),
                },
                Volume {
                    name: "scratch".into(),
                    source: VolumeSource::EmptyDir,
                },
            ],
            mounts: vec![
                Mount {
                    container: "c".into(),
                    volume: "conf".into(),
                    mount_path: "/etc/conf".into(),
                    sub_path: String::new(),
                    read_only: true,
                },
                Mount {
                    container: "c".into(),
                    volume: "scratch".into(),
                    mount_path: "/work".into(),
                    sub_path: "a".into(),
                    read_only: false,
                },
            ],
            size_limits: Vec::new(),
            memory_volumes: Vec::new(),
        }
    }

    #[test]
    fn files_are_written_updated_in_place_and_removed_when_unlisted() {
        let root = tempfile::tempdir().unwrap();
        let first = config(vec![file("app.conf", "v1"), file("sub/extra", "x")]);
        let roots = VolumeRoots::on_disk(root.path());
        sync(&roots, "u-1", &first).unwrap();
        let conf = root.path().join("u-1/conf");
        assert_eq!(fs::read_to_string(conf.join("app.conf")).unwrap(), "v1");
        let mode = fs::metadata(conf.join("app.conf"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        fs::write(root.path().join("u-1/scratch/kept"), "guest data").unwrap();

        sync(&roots, "u-1", &config(vec![file("app.conf", "v2")])).unwrap();
        assert_eq!(fs::read_to_string(conf.join("app.conf")).unwrap(), "v2");
        assert!(!conf.join("sub").exists());
        assert!(
            root.path().join("u-1/scratch/kept").exists(),
            "emptyDir is kept"
        );

        let opened =
            preopens(Some(&roots), &HostPathPolicy::default(), "u-1", &first, "c").unwrap();
        assert_eq!(opened[0].host, conf);
        assert!(opened[0].read_only);
        assert_eq!(opened[1].host, root.path().join("u-1/scratch/a"));
        assert_eq!(opened[1].guest, "/work");
        assert!(
            preopens(
                Some(&roots),
                &HostPathPolicy::default(),
                "u-1",
                &first,
                "other"
            )
            .unwrap()
            .is_empty()
        );

        remove_others(&roots, &HashSet::new());
        assert!(!root.path().join("u-1").exists());
    }

    #[test]
    fn a_sub_path_naming_a_file_cannot_be_mounted() {
        let root = tempfile::tempdir().unwrap();
        let mut config = config(vec![file("app.conf", "v1")]);
        config.mounts[0].sub_path = "app.conf".into();
        let roots = VolumeRoots::on_disk(root.path());
        sync(&roots, "u-2", &config).unwrap();
        let err = preopens(
            Some(&roots),
            &HostPathPolicy::default(),
            "u-2",
            &config,
            "c",
        )
        .unwrap_err();
        assert!(err.message.contains("not a directory"), "{err:?}");
        assert!(preopens(None, &HostPathPolicy::default(), "u-2", &config, "c").is_err());
        assert!(pod_dir(root.path(), "../x").is_none());
    }

    #[test]
    fn a_host_path_is_mounted_only_where_allowed_and_read_only_unless_writable() {
        use super::super::host_paths::HostPathRule;
        use wasmfleet_protocol::pod::volumes::HostPath;
        let host = tempfile::tempdir().unwrap();
        let sensors = host.path().join("sensors");
        fs::create_dir(&sensors).unwrap();
        let config = |path: &Path, read_only: bool| PodConfig {
            volumes: vec![Volume {
                name: "dev".into(),
                source: VolumeSource::HostPath(HostPath {
                    path: path.display().to_string(),
                    must_be_directory: true,
                }),
            }],
            mounts: vec![Mount {
                container: "c".into(),
                volume: "dev".into(),
                mount_path: "/dev/sensors".into(),
                sub_path: String::new(),
                read_only,
            }],
            size_limits: Vec::new(),
            memory_volumes: Vec::new(),
        };
        let rule = |suffix: &str| {
            HostPathPolicy::new(vec![
                HostPathRule::parse(&format!("{}{suffix}", sensors.display())).unwrap(),
            ])
        };
        let mount = |policy: &HostPathPolicy, config: &PodConfig| {
            preopens(None, policy, "u-3", config, "c")
        };
        let opened = mount(&rule(""), &config(&sensors, false)).unwrap();
        assert_eq!(opened[0].host, sensors.canonicalize().unwrap());
        assert!(opened[0].read_only, "read-only unless the rule says :rw");
        assert!(!mount(&rule(":rw"), &config(&sensors, false)).unwrap()[0].read_only);
        assert!(mount(&rule(":rw"), &config(&sensors, true)).unwrap()[0].read_only);

        let refused = mount(&rule(""), &config(host.path(), false)).unwrap_err();
        assert_eq!(refused.reason, WaitingReason::CreateContainerConfigError);
        assert!(
            refused.message.contains("is not allowed on this node"),
            "{refused:?}"
        );
        sync(
            &VolumeRoots::on_disk(host.path()),
            "u-3",
            &config(&sensors, false),
        )
        .unwrap();
        assert!(
            !host.path().join("u-3/dev").exists(),
            "no directory of its own"
        );
    }
    #[test]
    fn a_memory_volume_lives_on_the_memory_root_or_says_why_not() {
        let disk = tempfile::tempdir().unwrap();
        let memory = tempfile::tempdir().unwrap();
        let mut config = config(vec![]);
        config.memory_volumes.push("scratch".into());
        let roots = VolumeRoots {
            disk: disk.path().to_owned(),
            memory: Ok(memory.path().to_owned()),
        };
        sync(&roots, "u-4", &config).unwrap();
        let opened = preopens(
            Some(&roots),
            &HostPathPolicy::default(),
            "u-4",
            &config,
            "c",
        );
        assert_eq!(opened.unwrap()[1].host, memory.path().join("u-4/scratch/a"));
        assert!(!disk.path().join("u-4/scratch").exists());
        remove(&roots, "u-4");
        assert!(!memory.path().join("u-4").exists());

        let roots = VolumeRoots::on_disk(disk.path());
        sync(&roots, "u-5", &config).unwrap();
        let refused = preopens(
            Some(&roots),
            &HostPathPolicy::default(),
            "u-5",
            &config,
            "c",
        );
        let refused = refused.unwrap_err();
        assert_eq!(refused.reason, WaitingReason::CreateContainerConfigError);
        assert_eq!(
            refused.message,
            "volume \"scratch\": this agent keeps no memory volumes"
        );
    }
}
