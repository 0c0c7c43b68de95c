//! Which node directories pods may mount as `hostPath` volumes: the administrator's
//! decision, per agent (`--host-path-allow PATH[:rw]`). A path is allowed when it resolves
//! (symlinks and `..` followed) to the allowed directory or one below it; it is read-only
//! for the guest unless its rule says `:rw` (and a `readOnly` mount stays read-only).
//! An agent with no rules mounts no `hostPath` at all.

use std::fmt;
use std::path::{Path, PathBuf};

/// One allowed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPathRule {
    /// The directory, absolute.
    pub prefix: PathBuf,
    /// Whether guests may write below it.
    pub writable: bool,
}

impl HostPathRule {
    /// Parses `PATH` or `PATH:rw` (`PATH:ro` is the default, spelled out); the path must
    /// be absolute.
    pub fn parse(rule: &str) -> Result<Self, String> {
        let (path, writable) = match rule.rsplit_once(':') {
            Some((path, "rw")) => (path, true),
            Some((path, "ro")) => (path, false),
            _ => (rule, false),
        };
        if !path.starts_with('/') {
            return Err(format!(
                "host path rule {rule:?}: the path must be absolute (PATH or PATH:rw)"
            ));
        }
        Ok(Self {
            prefix: PathBuf::from(path),
            writable,
        })
    }
}

impl fmt::Display for HostPathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.writable { ":rw" } else { "" };
        write!(f, "{}{mode}", self.prefix.display())
    }
}

/// The allowed directories of this agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPathPolicy {
    rules: Vec<HostPathRule>,
}

/// What a pod may do with a host directory it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The directory, resolved.
    pub path: PathBuf,
    /// Whether the guest may write to it (before the mount's own `readOnly`).
    pub writable: bool,
}

impl HostPathPolicy {
    /// A policy allowing `rules`.
    pub fn new(rules: Vec<HostPathRule>) -> Self {
        Self { rules }
    }

    /// Whether `path` may be mounted, and how; the error says why not, in words a pod's
    /// status can show. A path that does not exist is refused (nothing is created).
    pub fn check(&self, path: &str) -> Result<Granted, String> {
        let not_allowed = || {
            let allowed: Vec<String> = self.rules.iter().map(ToString::to_string).collect();
            match allowed.is_empty() {
                true => format!(
                    "hostPath {path:?} is not allowed on this node (its agent allows no host paths: --host-path-allow)"
                ),
                false => format!(
                    "hostPath {path:?} is not allowed on this node (its agent allows {})",
                    allowed.join(", ")
                ),
            }
        };
        let resolved =
            Path::new(path)
                .canonicalize()
                .map_err(|err| match self.rule_for(Path::new(path)) {
                    Some(_) => format!("hostPath {path:?}: {err}"),
                    None => not_allowed(),
                })?;
        let rule = self.rule_for(&resolved).ok_or_else(not_allowed)?;
        Ok(Granted {
            path: resolved,
            writable: rule.writable,
        })
    }

    /// The most specific rule covering `path` (compared component by component, the rule's
    /// prefix resolved too).
    fn rule_for(&self, path: &Path) -> Option<&HostPathRule> {
        self.rules
            .iter()
            .filter(|rule| {
                let prefix = rule
                    .prefix
                    .canonicalize()
                    .unwrap_or_else(|_| rule.prefix.clone());
                path.starts_with(&prefix)
            })
            .max_by_key(|rule| rule.prefix.components().count())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_an_optional_write_suffix() {
        let rule = HostPathRule::parse("/sys/class/thermal").unwrap();
        assert!(!rule.writable);
        let rule = HostPathRule::parse("/var/lib/data:rw").unwrap();
        assert_eq!(
            (rule.prefix.to_str(), rule.writable),
            (Some("/var/lib/data"), true)
        );
        assert!(HostPathRule::parse("data:rw").is_err());
        assert_eq!(rule.to_string(), "/var/lib/data:rw");
    }

    #[test]
    fn only_paths_under_an_allowed_directory_are_granted() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("sensors");
        let data = root.path().join("data");
        std::fs::create_dir_all(allowed.join("t0")).unwrap();
        std::fs::create_dir_all(data.join("in")).unwrap();
        std::fs::create_dir_all(root.path().join("secret")).unwrap();
        let policy = HostPathPolicy::new(vec![
            HostPathRule::parse(allowed.to_str().unwrap()).unwrap(),
            HostPathRule::parse(&format!("{}:rw", data.display())).unwrap(),
        ]);
        let granted = policy.check(allowed.join("t0").to_str().unwrap()).unwrap();
        assert!(!granted.writable);
        assert!(
            policy
                .check(data.join("in").to_str().unwrap())
                .unwrap()
                .writable
        );

        let escape = format!("{}/../secret", allowed.display());
        let err = policy.check(&escape).unwrap_err();
        assert!(err.contains("is not allowed on this node"), "{err}");
        let sibling = format!("{}-x", allowed.display());
        assert!(policy.check(&sibling).is_err());
        std::os::unix::fs::symlink(root.path().join("secret"), allowed.join("link")).unwrap();
        assert!(
            policy
                .check(allowed.join("link").to_str().unwrap())
                .is_err()
        );

        let missing = policy
            .check(allowed.join("nope").to_str().unwrap())
            .unwrap_err();
        assert!(missing.contains("No such file"), "{missing}");
        let none = HostPathPolicy::default().check("/tmp").unwrap_err();
        assert!(none.contains("allows no host paths"), "{none}");
    }
}
