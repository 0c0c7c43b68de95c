//! Where `emptyDir` volumes with `medium: Memory` live: under a tmpfs the agent finds, as
//! the kubelet mounts a tmpfs for them. The agent mounts nothing itself (it needs no
//! privilege): it uses `/dev/shm`, else `$XDG_RUNTIME_DIR`, when that is a tmpfs, and
//! keeps its pods' memory volumes in a directory of its own there (named after its data
//! directory, so agents sharing a host never touch each other's). Without one, a
//! container that mounts a memory volume does not start and its status says why.
//!
//! The bytes such a volume holds are memory: the server gives it a `sizeLimit` of at most
//! the pod's memory limit (Kubernetes' default for memory-backed volumes), which the
//! eviction task ([`super::volume_limits`]) enforces as for disk.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The tmpfs looked at first (glibc's POSIX shared memory, a tmpfs on most systems).
const SHM: &str = "/dev/shm";

/// The directory for this agent's memory volumes (not created yet), or why there is none.
pub fn root_for(data_dir: &Path) -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("cannot read /proc/self/mounts to find a tmpfs: {e}"))?;
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let tmpfs = find_tmpfs(&mounts, Path::new(SHM), runtime_dir.as_deref())?;
    let data_dir = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_owned());
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    Ok(tmpfs.join(format!("wasmfleet-volumes-{tag}")))
}

/// `shm`, else the runtime directory, if it is on a tmpfs according to `mounts` (the text
/// of `/proc/self/mounts`), or why neither is.
pub fn find_tmpfs(mounts: &str, shm: &Path, runtime_dir: Option<&Path>) -> Result<PathBuf, String> {
    let mut why = Vec::new();
    for candidate in std::iter::once(shm).chain(runtime_dir) {
        match filesystem_of(mounts, candidate) {
            Some("tmpfs") => return Ok(candidate.to_owned()),
            Some(other) => why.push(format!("{} is {other}", candidate.display())),
            None => why.push(format!("{} is not mounted", candidate.display())),
        }
    }
    if runtime_dir.is_none() {
        why.push("XDG_RUNTIME_DIR is not set".to_owned());
    }
    Err(format!(
        "medium Memory needs a tmpfs on the node and there is none ({})",
        why.join(", ")
    ))
}

/// The type of the filesystem `path` is on: the mount with the longest mount point that
/// contains it.
fn filesystem_of<'a>(mounts: &'a str, path: &Path) -> Option<&'a str> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let point = unescape(fields.next()?);
            let kind = fields.next()?;
            path.starts_with(&point).then_some((point, kind))
        })
        .max_by_key(|(point, _)| point.components().count())
        .map(|(_, kind)| kind)
}

/// A mount point as `/proc/self/mounts` escapes it (`\040` for a space, octal escapes).
fn unescape(field: &str) -> PathBuf {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    PathBuf::from(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
tmpfs /run/user/1000 tmpfs rw,nosuid,nodev,size=800k 0 0
/dev/sdb1 /run/user/1000/disk\\040here ext4 rw 0 0
";

    #[test]
    fn shm_then_the_runtime_directory_is_taken_on_a_tmpfs() {
        let runtime = Path::new("/run/user/1000/sub");
        assert_eq!(
            find_tmpfs(MOUNTS, Path::new("/dev/shm"), Some(runtime)),
            Ok(PathBuf::from("/dev/shm"))
        );
        assert_eq!(
            find_tmpfs(MOUNTS, Path::new("/dev/shm2"), Some(runtime)),
            Ok(runtime.to_owned())
        );
    }

    #[test]
    fn without_a_tmpfs_the_refusal_says_what_was_looked_at() {
        let no_shm = "/dev/sda1 / ext4 rw 0 0\n";
        let err = find_tmpfs(no_shm, Path::new("/dev/shm"), None).unwrap_err();
        assert_eq!(
            err,
            "medium Memory needs a tmpfs on the node and there is none \
             (/dev/shm is ext4, XDG_RUNTIME_DIR is not set)"
        );
        let disk = Path::new("/run/user/1000/disk here/x");
        let err = find_tmpfs(MOUNTS, disk, Some(disk)).unwrap_err();
        assert!(
            err.contains("(/run/user/1000/disk here/x is ext4, /run"),
            "{err}"
        );
    }
}
