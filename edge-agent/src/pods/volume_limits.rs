//! `emptyDir` `sizeLimit`s, enforced as the kubelet's eviction manager does: writes are
//! not stopped; every check interval the agent measures each limited volume (the disk
//! blocks its files take, as `du` counts them) and evicts a pod whose volume is over its
//! limit: its containers stop and it ends `Failed`, reason `Evicted`, with Kubernetes'
//! message. One task checks every pod ([`super::PodManager::enforce_volume_limits`]).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use wasmfleet_protocol::pod::PodConfig;

/// The kubelet's default housekeeping interval, which its eviction manager follows.
pub const DEFAULT_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The pod status reason of an eviction.
pub const EVICTED: &str = "Evicted";

/// The eviction message of the first `emptyDir` of `config` that `usage` (bytes used by a
/// volume, by name) finds over its limit.
pub fn exceeded(config: &PodConfig, mut usage: impl FnMut(&str) -> u64) -> Option<String> {
    config
        .size_limits
        .iter()
        .find(|limit| usage(&limit.volume) > limit.bytes)
        .map(|limit| {
            format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                limit.volume, limit.quantity
            )
        })
}

/// The bytes of disk the files under `dir` take (symlinks are not followed; an unreadable
/// entry counts as nothing).
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => meta.blocks() * 512 + disk_usage(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wasmfleet_protocol::pod::volumes::SizeLimit;

    #[test]
    fn a_volume_over_its_limit_is_named_with_the_spec_quantity() {
        let config = PodConfig {
            size_limits: vec![SizeLimit {
                volume: "scratch".into(),
                bytes: 1 << 20,
                quantity: "1Mi".into(),
            }],
            ..PodConfig::default()
        };
        assert_eq!(exceeded(&config, |_| 1 << 20), None);
        assert_eq!(
            exceeded(&config, |name| if name == "scratch" { 2 << 20 } else { 0 }).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ")
        );
        assert_eq!(exceeded(&PodConfig::default(), |_| u64::MAX), None);
    }

    #[test]
    fn disk_usage_counts_the_files_below_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/a"), vec![1u8; 300 * 1024]).unwrap();
        fs::write(dir.path().join("b"), vec![1u8; 100 * 1024]).unwrap();
        let used = disk_usage(dir.path());
        assert!(used >= 400 * 1024, "{used}");
        assert_eq!(disk_usage(&dir.path().join("missing")), 0);
    }
}
