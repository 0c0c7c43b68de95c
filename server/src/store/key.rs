//! Object keys: which stored object a call is about.
//!
//! A key is `resource/namespace/name` (the namespace is empty for cluster-scoped resources).
//! The string form is the redb key, so one resource, or one namespace of it, is a contiguous
//! key range that a list scans without touching anything else.

use std::fmt;

/// Names one stored object: its resource (plural, lowercase: `pods`, `nodes`, `namespaces`),
/// its namespace (`None` for cluster-scoped resources) and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Plural resource name, as in the REST path (`pods`).
    pub resource: String,
    /// The namespace, or `None` for cluster-scoped resources.
    pub namespace: Option<String>,
    /// The object's `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// A key for a namespaced object (`pods` in `default` named `web`).
    pub fn namespaced(resource: &str, namespace: &str, name: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// A key for a cluster-scoped object (`nodes` named `pi-1`).
    pub fn cluster(resource: &str, name: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            namespace: None,
            name: name.to_owned(),
        }
    }

    /// The redb key: `resource/namespace/name`, with an empty namespace when cluster-scoped.
    pub(crate) fn encode(&self) -> String {
        format!(
            "{}/{}/{}",
            self.resource,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }

    /// Parses [`ObjectKey::encode`]'s output back; `None` for anything else.
    pub(crate) fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, '/');
        let resource = parts.next()?;
        let namespace = parts.next()?;
        let name = parts.next()?;
        Some(Self {
            resource: resource.to_owned(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.resource, self.name),
            None => write!(f, "{} {}", self.resource, self.name),
        }
    }
}

/// Which objects a list or a watch covers: one resource, optionally one namespace of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Plural resource name (`pods`).
    pub resource: String,
    /// Only this namespace; `None` means every namespace (or a cluster-scoped resource).
    pub namespace: Option<String>,
}

impl Scope {
    /// Every object of a resource, across namespaces.
    pub fn all(resource: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            namespace: None,
        }
    }

    /// The objects of a resource in one namespace.
    pub fn namespace(resource: &str, namespace: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            namespace: Some(namespace.to_owned()),
        }
    }

    /// The key range `[start, end)` holding exactly this scope's objects. `'0'` is the byte
    /// after `'/'`, so `"pods/"..'pods0'` is every key starting with `pods/`.
    pub(crate) fn key_range(&self) -> (String, String) {
        match &self.namespace {
            Some(ns) => (
                format!("{}/{ns}/", self.resource),
                format!("{}/{ns}0", self.resource),
            ),
            None => (format!("{}/", self.resource), format!("{}0", self.resource)),
        }
    }

    /// Whether `key` falls in this scope.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        key.resource == self.resource
            && (self.namespace.is_none() || self.namespace == key.namespace)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_encoding_for_both_scopes() {
        for key in [
            ObjectKey::namespaced("pods", "default", "web"),
            ObjectKey::cluster("nodes", "pi-1"),
        ] {
            assert_eq!(ObjectKey::decode(&key.encode()), Some(key));
        }
    }

    #[test]
    fn a_namespace_range_excludes_namespaces_sharing_its_prefix() {
        let (start, end) = Scope::namespace("pods", "a").key_range();
        let inside = ObjectKey::namespaced("pods", "a", "x").encode();
        let outside = ObjectKey::namespaced("pods", "ab", "x").encode();
        assert!(start <= inside && inside < end);
        assert!(!(start <= outside && outside < end));
    }

    #[test]
    fn a_resource_range_excludes_resources_sharing_its_prefix() {
        let (start, end) = Scope::all("pod").key_range();
        let outside = ObjectKey::namespaced("pods", "a", "x").encode();
        assert!(!(start <= outside && outside < end));
    }
}
