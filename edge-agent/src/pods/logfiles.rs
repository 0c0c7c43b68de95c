//! Where pods' container logs live on disk: `<log dir>/<pod uid>/<container>.log` (plus
//! the previous segment, `<container>.log.1`).
//!
//! One file per container holds every run of it, across restarts of the container and of
//! the agent: a container that runs again appends to the lines of its earlier runs (as if
//! `kubectl logs` and `kubectl logs --previous` were one). A pod's directory is deleted
//! when the pod is removed from the node.
//!
//! The uid and container name come from the server; a name that is not a plain file name
//! (say, with a `/`) is not used as one, and that container's log stays in memory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::runtime::LogBuffer;

/// A pod's log directory under `log_dir`; `None` (memory-only logs) when the uid is not a
/// safe file name.
pub fn pod_dir(log_dir: &Path, uid: &str) -> Option<PathBuf> {
    if is_plain_name(uid) {
        Some(log_dir.join(uid))
    } else {
        tracing::warn!(
            uid,
            "pod uid is not a plain file name; keeping its logs in memory only"
        );
        None
    }
}

/// The log of container `name` of the pod whose directory is `pod_dir` (memory-only when
/// there is no directory or the name is not a safe file name).
pub fn container_log(pod_dir: Option<&Path>, name: &str) -> LogBuffer {
    match pod_dir {
        Some(dir) if is_plain_name(name) => LogBuffer::persistent(dir.join(format!("{name}.log"))),
        Some(dir) => {
            tracing::warn!(dir = %dir.display(), container = name,
                "container name is not a plain file name; keeping its log in memory only");
            LogBuffer::new()
        }
        None => LogBuffer::new(),
    }
}

/// Deletes a removed pod's log directory. The pod's logs must be detached from their
/// files first, so that a late line does not re-create them.
pub fn remove_pod_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(dir = %dir.display(), "deleted pod logs"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(dir = %dir.display(), %error, "cannot delete pod logs"),
    }
}

/// Deletes the log directories of pods not in `keep`: pods removed while the agent was
/// not running leave their logs behind, and nothing else would ever delete them.
pub fn remove_others(log_dir: &Path, keep: &HashSet<String>) {
    let entries = match std::fs::read_dir(log_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            tracing::warn!(dir = %log_dir.display(), %error, "cannot list pod logs");
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !name.to_str().is_some_and(|uid| keep.contains(uid)) {
            remove_pod_dir(&entry.path());
        }
    }
}

/// Whether `name` can be used as one path component as it is.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_and_dns_labels_are_plain_names() {
        assert!(is_plain_name("0b6f4c3e-1d2a-4f7b-9c1e-5a7d8e9f0a1b"));
        assert!(is_plain_name("main"));
        assert!(is_plain_name("web-1.v2"));
    }

    #[test]
    fn names_that_could_escape_the_log_dir_are_not_plain() {
        for name in ["", ".", "..", "../x", "a/b", ".hidden", "a\\b", "a b"] {
            assert!(!is_plain_name(name), "{name:?}");
        }
        assert!(!is_plain_name(&"x".repeat(201)));
    }

    #[test]
    fn only_the_directories_of_other_pods_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        for uid in ["keep", "gone"] {
            std::fs::create_dir_all(dir.path().join(uid)).expect("mkdir");
            std::fs::write(dir.path().join(uid).join("main.log"), "x\n").expect("write");
        }
        std::fs::write(dir.path().join("stray-file"), "").expect("write");
        remove_others(dir.path(), &HashSet::from(["keep".to_string()]));
        assert!(dir.path().join("keep/main.log").exists());
        assert!(!dir.path().join("gone").exists());
        assert!(dir.path().join("stray-file").exists());
    }
}
