//! Assembling the node's desired set from its retained index and per-pod messages.
//!
//! Pure: the connection feeds every index and pod (or pod clearing) it receives, and gets a
//! complete [`DesiredPods`] back once it holds every pod the newest index lists, each at
//! the listed revision, so the agent never runs a half-updated set. Messages may arrive in
//! any order: a pod before its index is kept for it; an older index than the newest seen is
//! ignored. A pod is dropped when its topic is cleared, or once an index at least as new
//! as the pod does not list it (its clearing was missed while disconnected), which bounds
//! what is held to the pods the server currently retains for this node.

use std::collections::HashMap;

use wasmfleet_protocol::pod::{DesiredIndex, DesiredPod, DesiredPods};

/// The newest index and the pods received so far.
#[derive(Debug, Default)]
pub struct Assembler {
    index: Option<DesiredIndex>,
    pods: HashMap<String, DesiredPod>,
    /// The revision of the last set handed out, so each is handed out once.
    assembled: Option<u64>,
}

impl Assembler {
    /// An index arrived; returns the set if it is now complete.
    pub fn on_index(&mut self, index: DesiredIndex) -> Option<DesiredPods> {
        if self
            .index
            .as_ref()
            .is_some_and(|held| held.revision > index.revision)
        {
            tracing::debug!(
                revision = index.revision,
                "desired index older than the one held; ignored"
            );
            return None;
        }
        self.pods.retain(|uid, pod| !is_stale(&index, uid, pod));
        self.index = Some(index);
        self.assemble()
    }

    /// A pod arrived on `n/{node}/down/pod/{uid}`; returns the set if it is now complete.
    pub fn on_pod(&mut self, uid: &str, pod: DesiredPod) -> Option<DesiredPods> {
        if pod.pod.uid != uid {
            tracing::warn!(
                topic_uid = uid,
                pod_uid = %pod.pod.uid,
                "desired pod published under another uid; dropped"
            );
            return None;
        }
        if self
            .index
            .as_ref()
            .is_some_and(|index| is_stale(index, uid, &pod))
        {
            return None;
        }
        self.pods.insert(uid.to_owned(), pod);
        self.assemble()
    }

    /// The pod's retained message was cleared: it left the node.
    pub fn on_cleared(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// Whether the newest index held was assembled into a complete set.
    pub fn is_complete(&self) -> bool {
        self.index
            .as_ref()
            .is_some_and(|index| self.assembled == Some(index.revision))
    }

    /// The set the newest index describes, if every pod is held at its listed revision and
    /// the set was not handed out before.
    fn assemble(&mut self) -> Option<DesiredPods> {
        let index = self.index.as_ref()?;
        if self.assembled == Some(index.revision) {
            return None;
        }
        let pods = index
            .pods
            .iter()
            .map(|entry| {
                self.pods
                    .get(&entry.uid)
                    .filter(|held| held.revision == entry.revision)
                    .map(|held| held.pod.clone())
            })
            .collect::<Option<Vec<_>>>()?;
        self.assembled = Some(index.revision);
        Some(DesiredPods {
            revision: index.revision,
            pods,
        })
    }
}

/// A pod content published for an index no newer than `index`, which does not list it.
fn is_stale(index: &DesiredIndex, uid: &str, pod: &DesiredPod) -> bool {
    pod.revision <= index.revision && !index.pods.iter().any(|e| e.uid == uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::pod::{IndexEntry, PodAssignment, RestartPolicy};

    fn pod(uid: &str, revision: u64) -> DesiredPod {
        DesiredPod {
            revision,
            pod: PodAssignment {
                config: Default::default(),
                network: None,
                uid: uid.into(),
                namespace: "default".into(),
                name: format!("pod-{uid}"),
                restart_policy: RestartPolicy::Always,
                containers: vec![],
            },
        }
    }

    fn index(revision: u64, entries: &[(&str, u64)]) -> DesiredIndex {
        DesiredIndex {
            revision,
            pods: entries
                .iter()
                .map(|(uid, revision)| IndexEntry {
                    uid: (*uid).into(),
                    revision: *revision,
                })
                .collect(),
        }
    }

    fn uids(set: &DesiredPods) -> Vec<&str> {
        set.pods.iter().map(|p| p.uid.as_str()).collect()
    }

    #[test]
    fn an_index_applies_only_once_every_listed_pod_is_held() {
        let mut a = Assembler::default();
        assert!(!a.is_complete());
        assert_eq!(a.on_index(index(5, &[("a", 3), ("b", 5)])), None);
        assert_eq!(a.on_pod("a", pod("a", 3)), None);
        assert!(!a.is_complete());
        let set = a.on_pod("b", pod("b", 5)).expect("complete");
        assert!(a.is_complete());
        assert_eq!((set.revision, uids(&set)), (5, vec!["a", "b"]));
        // Handed out once.
        assert_eq!(a.on_pod("b", pod("b", 5)), None);
    }

    #[test]
    fn pods_arriving_before_their_index_are_kept_for_it() {
        let mut a = Assembler::default();
        assert_eq!(a.on_pod("a", pod("a", 7)), None);
        let set = a.on_index(index(7, &[("a", 7)])).expect("complete");
        assert_eq!(uids(&set), vec!["a"]);
    }

    #[test]
    fn a_pod_held_at_an_older_revision_does_not_complete_a_newer_index() {
        let mut a = Assembler::default();
        a.on_pod("a", pod("a", 3));
        assert!(a.on_index(index(3, &[("a", 3)])).is_some());
        // The pod changed at 8: the old content must not be taken for the new one.
        assert_eq!(a.on_index(index(8, &[("a", 8)])), None);
        let set = a.on_pod("a", pod("a", 8)).expect("complete");
        assert_eq!(set.revision, 8);
    }

    #[test]
    fn an_older_index_is_ignored() {
        let mut a = Assembler::default();
        a.on_pod("a", pod("a", 9));
        assert!(a.on_index(index(9, &[("a", 9)])).is_some());
        assert_eq!(a.on_index(index(4, &[])), None);
        assert!(a.index.as_ref().is_some_and(|i| i.revision == 9));
    }

    #[test]
    fn an_empty_index_applies_at_once_and_drops_the_pods_it_no_longer_lists() {
        let mut a = Assembler::default();
        a.on_pod("a", pod("a", 2));
        assert!(a.on_index(index(2, &[("a", 2)])).is_some());
        let set = a.on_index(index(6, &[])).expect("empty set");
        assert!(set.pods.is_empty());
        assert!(a.pods.is_empty(), "a stale pod is not kept");
        // A late copy of the stale pod is not taken either.
        a.on_pod("a", pod("a", 2));
        assert!(a.pods.is_empty());
    }

    #[test]
    fn a_pod_for_a_newer_index_survives_an_older_index_that_does_not_list_it() {
        let mut a = Assembler::default();
        a.on_pod("new", pod("new", 11));
        assert!(a.on_index(index(10, &[])).is_some());
        let set = a.on_index(index(11, &[("new", 11)])).expect("complete");
        assert_eq!(uids(&set), vec!["new"]);
    }

    #[test]
    fn a_cleared_pod_is_forgotten_and_a_pod_under_another_uid_is_dropped() {
        let mut a = Assembler::default();
        a.on_pod("a", pod("a", 1));
        a.on_cleared("a");
        assert_eq!(a.on_index(index(1, &[("a", 1)])), None);
        assert_eq!(a.on_pod("b", pod("a", 1)), None);
        assert!(a.on_pod("a", pod("a", 1)).is_some());
    }
}
