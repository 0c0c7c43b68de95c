//! What the cache holds: every object of the followed resources by key, and the secondary
//! indexes readers ask for. Pure (no locks, no I/O): [`Index::apply`] is the one way an
//! object enters, changes or leaves, so the indexes can never disagree with the objects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::k8s::{owners, pods};
use crate::store::ObjectKey;

/// One object's change as the cache applied it: its state before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Which object.
    pub key: ObjectKey,
    /// The object before the change.
    pub old: Option<Arc<Value>>,
    /// The object after the change.
    pub new: Option<Arc<Value>>,
}

impl Change {
    /// The object after the change, or before it for a deletion.
    pub fn latest(&self) -> Option<&Value> {
        self.new.as_deref().or(self.old.as_deref())
    }
}

/// Objects by key, with indexes by node (pods' `spec.nodeName`; unbound pods apart), by
/// controller owner uid, by namespace, and the pods without a controller by namespace.
#[derive(Debug, Default)]
pub struct Index {
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    by_node: HashMap<String, BTreeSet<ObjectKey>>,
    unbound: BTreeSet<ObjectKey>,
    by_owner: HashMap<String, BTreeSet<ObjectKey>>,
    by_namespace: HashMap<String, BTreeSet<ObjectKey>>,
    /// Pods without a controller, by namespace: what workload controllers may adopt (so a
    /// ReplicaSet's reconcile does not read every pod of its namespace to find them).
    uncontrolled_pods: HashMap<String, BTreeSet<ObjectKey>>,
}

/// The index entries one object is filed under.
struct Entries<'a> {
    node: Option<Option<&'a str>>,
    owner: Option<&'a str>,
    namespace: Option<&'a str>,
    /// The namespace of a pod without a controller.
    uncontrolled_pod: Option<&'a str>,
}

fn entries<'a>(key: &'a ObjectKey, obj: &'a Value) -> Entries<'a> {
    let is_pod = key.resource == "pods";
    let owner = owners::controller_uid(obj);
    Entries {
        node: is_pod.then(|| pods::bound_node(obj)),
        owner,
        namespace: key.namespace.as_deref(),
        uncontrolled_pod: key
            .namespace
            .as_deref()
            .filter(|_| is_pod && owner.is_none()),
    }
}

fn file(map: &mut HashMap<String, BTreeSet<ObjectKey>>, at: &str, key: &ObjectKey) {
    map.entry(at.to_owned()).or_default().insert(key.clone());
}

fn unfile(map: &mut HashMap<String, BTreeSet<ObjectKey>>, at: &str, key: &ObjectKey) {
    if let Some(keys) = map.get_mut(at) {
        keys.remove(key);
        if keys.is_empty() {
            map.remove(at);
        }
    }
}

impl Index {
    /// Sets (`Some`) or removes (`None`) the object under `key`; returns the change, or
    /// `None` when the object was already exactly so.
    pub fn apply(&mut self, key: ObjectKey, new: Option<Value>) -> Option<Change> {
        let old = self.objects.get(&key).cloned();
        if old.as_deref() == new.as_ref() {
            return None;
        }
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        let new = new.map(Arc::new);
        match &new {
            Some(obj) => {
                self.index(&key, obj);
                self.objects.insert(key.clone(), Arc::clone(obj));
            }
            None => {
                self.objects.remove(&key);
            }
        }
        Some(Change { key, old, new })
    }

    /// Replaces everything of `resource` with `objects` (a fresh list); returns what
    /// changed.
    pub fn replace(&mut self, resource: &str, objects: Vec<(ObjectKey, Value)>) -> Vec<Change> {
        let listed: BTreeSet<ObjectKey> = objects.iter().map(|(key, _)| key.clone()).collect();
        let gone: Vec<ObjectKey> = self
            .keys(resource)
            .filter(|key| !listed.contains(*key))
            .cloned()
            .collect();
        let mut changes: Vec<Change> = gone
            .into_iter()
            .filter_map(|key| self.apply(key, None))
            .collect();
        for (key, obj) in objects {
            changes.extend(self.apply(key, Some(obj)));
        }
        changes
    }

    fn index(&mut self, key: &ObjectKey, obj: &Value) {
        let at = entries(key, obj);
        match at.node {
            Some(Some(node)) => file(&mut self.by_node, node, key),
            Some(None) => {
                self.unbound.insert(key.clone());
            }
            None => {}
        }
        if let Some(uid) = at.owner {
            file(&mut self.by_owner, uid, key);
        }
        if let Some(namespace) = at.namespace {
            file(&mut self.by_namespace, namespace, key);
        }
        if let Some(namespace) = at.uncontrolled_pod {
            file(&mut self.uncontrolled_pods, namespace, key);
        }
    }

    fn unindex(&mut self, key: &ObjectKey, obj: &Value) {
        let at = entries(key, obj);
        match at.node {
            Some(Some(node)) => unfile(&mut self.by_node, node, key),
            Some(None) => {
                self.unbound.remove(key);
            }
            None => {}
        }
        if let Some(uid) = at.owner {
            unfile(&mut self.by_owner, uid, key);
        }
        if let Some(namespace) = at.namespace {
            unfile(&mut self.by_namespace, namespace, key);
        }
        if let Some(namespace) = at.uncontrolled_pod {
            unfile(&mut self.uncontrolled_pods, namespace, key);
        }
    }

    fn keys<'a>(&'a self, resource: &'a str) -> impl Iterator<Item = &'a ObjectKey> + 'a {
        let start = ObjectKey {
            resource: resource.to_owned(),
            namespace: None,
            name: String::new(),
        };
        self.objects
            .range(start..)
            .map(|(key, _)| key)
            .take_while(move |key| key.resource == resource)
    }

    fn resolve<'a>(&self, keys: impl IntoIterator<Item = &'a ObjectKey>) -> Vec<Arc<Value>> {
        keys.into_iter()
            .filter_map(|key| self.objects.get(key).cloned())
            .collect()
    }

    /// The object under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.objects.get(key).cloned()
    }

    /// Every object of `resource`, ordered by namespace and name.
    pub fn list(&self, resource: &str) -> Vec<Arc<Value>> {
        self.resolve(self.keys(resource))
    }

    /// The pods whose `spec.nodeName` is `node` (being deleted or not).
    pub fn pods_on_node(&self, node: &str) -> Vec<Arc<Value>> {
        self.resolve(self.by_node.get(node).into_iter().flatten())
    }

    /// The names of the nodes at least one pod is bound to.
    pub fn nodes_with_pods(&self) -> Vec<String> {
        self.by_node.keys().cloned().collect()
    }

    /// The pods bound to no node.
    pub fn unbound_pods(&self) -> Vec<Arc<Value>> {
        self.resolve(&self.unbound)
    }

    /// The objects whose controller owner has `uid`.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<Value>> {
        self.resolve(self.by_owner.get(uid).into_iter().flatten())
    }

    /// The objects of `resource` in `namespace`.
    pub fn in_namespace(&self, resource: &str, namespace: &str) -> Vec<Arc<Value>> {
        let keys = self.by_namespace.get(namespace).into_iter().flatten();
        self.resolve(keys.filter(|key| key.resource == resource))
    }

    /// The pods in `namespace` without a controller owner.
    pub fn uncontrolled_pods(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.resolve(self.uncontrolled_pods.get(namespace).into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod_key(name: &str) -> ObjectKey {
        ObjectKey::namespaced("pods", "default", name)
    }

    fn pod(name: &str, node: Option<&str>, owner: Option<&str>) -> Value {
        let mut pod = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = node.into();
        }
        if let Some(uid) = owner {
            pod["metadata"]["ownerReferences"] = json!([{"uid": uid, "controller": true}]);
        }
        pod
    }

    fn names(objects: &[Arc<Value>]) -> Vec<&str> {
        objects
            .iter()
            .filter_map(|o| o.pointer("/metadata/name")?.as_str())
            .collect()
    }

    #[test]
    fn a_pod_moves_between_node_indexes_as_it_is_bound_and_deleted() {
        let mut index = Index::default();
        index.apply(pod_key("web"), Some(pod("web", None, None)));
        assert_eq!(names(&index.unbound_pods()), ["web"]);
        let change = index
            .apply(pod_key("web"), Some(pod("web", Some("pi-1"), None)))
            .expect("a change");
        assert!(change.old.is_some() && change.new.is_some());
        assert!(index.unbound_pods().is_empty());
        assert_eq!(names(&index.pods_on_node("pi-1")), ["web"]);
        assert_eq!(index.nodes_with_pods(), ["pi-1".to_owned()]);
        index.apply(pod_key("web"), None);
        assert!(index.pods_on_node("pi-1").is_empty());
        assert!(index.nodes_with_pods().is_empty());
        assert!(index.get(&pod_key("web")).is_none());
    }

    #[test]
    fn the_same_object_again_is_no_change() {
        let mut index = Index::default();
        assert!(
            index
                .apply(pod_key("a"), Some(pod("a", None, None)))
                .is_some()
        );
        assert!(
            index
                .apply(pod_key("a"), Some(pod("a", None, None)))
                .is_none()
        );
        assert!(index.apply(pod_key("b"), None).is_none());
    }

    #[test]
    fn objects_are_found_by_controller_owner_and_namespace() {
        let mut index = Index::default();
        index.apply(pod_key("a"), Some(pod("a", None, Some("rs-1"))));
        index.apply(pod_key("b"), Some(pod("b", None, Some("rs-2"))));
        let other = ObjectKey::namespaced("pods", "kube-system", "c");
        index.apply(other, Some(pod("c", None, Some("rs-1"))));
        assert_eq!(names(&index.owned_by("rs-1")), ["a", "c"]);
        assert_eq!(names(&index.in_namespace("pods", "default")), ["a", "b"]);
        assert!(index.uncontrolled_pods("default").is_empty());
        // Released: now a pod a controller may adopt, in its namespace only.
        index.apply(pod_key("a"), Some(pod("a", None, None)));
        assert_eq!(names(&index.owned_by("rs-1")), ["c"]);
        assert_eq!(names(&index.uncontrolled_pods("default")), ["a"]);
        assert!(index.uncontrolled_pods("kube-system").is_empty());
        // Adopted again, or deleted: no longer.
        index.apply(pod_key("a"), Some(pod("a", None, Some("rs-2"))));
        assert!(index.uncontrolled_pods("default").is_empty());
        index.apply(pod_key("b"), Some(pod("b", None, None)));
        index.apply(pod_key("b"), None);
        assert!(index.uncontrolled_pods("default").is_empty());
    }

    #[test]
    fn a_list_holds_one_resource_only() {
        let mut index = Index::default();
        index.apply(
            ObjectKey::cluster("nodes", "pi"),
            Some(json!({"metadata": {"name": "pi"}})),
        );
        index.apply(
            ObjectKey::cluster("nodesx", "x"),
            Some(json!({"metadata": {"name": "x"}})),
        );
        index.apply(pod_key("a"), Some(pod("a", None, None)));
        assert_eq!(names(&index.list("nodes")), ["pi"]);
        assert_eq!(names(&index.list("pods")), ["a"]);
    }

    #[test]
    fn replacing_a_resource_reports_what_appeared_changed_and_vanished() {
        let mut index = Index::default();
        index.apply(pod_key("kept"), Some(pod("kept", None, None)));
        index.apply(pod_key("gone"), Some(pod("gone", None, None)));
        index.apply(ObjectKey::cluster("nodes", "pi"), Some(json!({})));
        let changes = index.replace(
            "pods",
            vec![
                (pod_key("kept"), pod("kept", None, None)),
                (pod_key("new"), pod("new", Some("pi"), None)),
            ],
        );
        let keys: Vec<&str> = changes.iter().map(|c| c.key.name.as_str()).collect();
        assert_eq!(keys, ["gone", "new"]);
        assert_eq!(names(&index.list("pods")), ["kept", "new"]);
        assert_eq!(index.list("nodes").len(), 1);
    }
}
