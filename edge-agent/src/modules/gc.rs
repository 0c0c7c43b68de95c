//! Keeping the on-disk module cache within its budget: the kubelet's image garbage
//! collection, for modules and their compiled artifacts.
//!
//! [`plan`] is pure: given what is cached (with sizes and last use) and which modules the
//! node's pods still reference, it picks the modules to delete, least recently used first,
//! until the rest fits the budget. A module a pod references is never picked, even when
//! the pods alone exceed the budget. The pod manager executes the plan.

use std::collections::HashSet;
use std::time::SystemTime;

/// The default disk budget for downloaded modules plus their compiled artifacts.
pub const DEFAULT_BUDGET_BYTES: u64 = 1 << 30;

/// One cached module, as the garbage collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModule {
    /// Its sha256.
    pub digest: String,
    /// Bytes on disk: the module and its compiled artifacts.
    pub bytes: u64,
    /// When a pod last fetched it (the file's modification time).
    pub last_used: SystemTime,
}

/// The digests to delete so that the cache fits `budget` bytes, least recently used first.
/// Digests in `in_use` are kept whatever their size.
pub fn plan(mut cached: Vec<CachedModule>, in_use: &HashSet<String>, budget: u64) -> Vec<String> {
    let mut total: u64 = cached.iter().map(|m| m.bytes).sum();
    cached.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.digest.cmp(&b.digest)));
    let mut victims = Vec::new();
    for module in cached {
        if total <= budget {
            break;
        }
        if in_use.contains(&module.digest) {
            continue;
        }
        total -= module.bytes;
        victims.push(module.digest);
    }
    victims
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn module(digest: &str, bytes: u64, age_secs: u64) -> CachedModule {
        CachedModule {
            digest: digest.into(),
            bytes,
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - age_secs),
        }
    }

    fn none_in_use() -> HashSet<String> {
        HashSet::new()
    }

    #[test]
    fn a_cache_within_its_budget_is_left_alone() {
        let cached = vec![module("a", 10, 5), module("b", 10, 1)];
        assert!(plan(cached, &none_in_use(), 20).is_empty());
    }

    #[test]
    fn the_least_recently_used_modules_go_first_until_the_rest_fits() {
        let cached = vec![
            module("new", 10, 1),
            module("oldest", 10, 30),
            module("old", 10, 20),
            module("mid", 10, 10),
        ];
        assert_eq!(plan(cached, &none_in_use(), 25), ["oldest", "old"]);
    }

    #[test]
    fn modules_that_pods_use_are_kept_even_past_the_budget() {
        let cached = vec![module("used", 100, 50), module("idle", 10, 1)];
        let in_use = HashSet::from(["used".to_string()]);
        assert_eq!(plan(cached.clone(), &in_use, 50), ["idle"]);
        assert_eq!(plan(cached, &in_use, 0), ["idle"]);
    }

    #[test]
    fn a_zero_budget_empties_everything_unused() {
        let cached = vec![module("a", 1, 1), module("b", 1, 2)];
        assert_eq!(plan(cached, &none_in_use(), 0), ["b", "a"]);
    }
}
