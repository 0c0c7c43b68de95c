//! Inter-pod affinity and anti-affinity (`spec.affinity.podAffinity` and
//! `podAntiAffinity`), as kube-scheduler's `InterPodAffinity` plugin does them (pure).
//!
//! A term selects pods (`labelSelector` in `namespaces` plus the namespaces
//! `namespaceSelector` matches; the pod's own namespace when both are empty) and names a
//! `topologyKey`: a node label whose value is a domain (a host, a zone, a rack). A node
//! without the label is in no domain. Before the nodes are filtered for a pod, [`Domains`]
//! counts, per domain, the placed pods the pod's terms select and the placed pods whose
//! own terms select it; then, per node:
//!
//! - required affinity: the node has every term's key, and its domains hold a pod matching
//!   all the terms; unless no placed pod matches and the pod matches its own terms (the
//!   first pod of a group that attracts itself);
//! - required anti-affinity: no pod a term selects in the node's domain of that term;
//! - symmetry: no placed pod whose required anti-affinity selects this pod in a domain of
//!   the node;
//! - preference: the weights of preferred terms (minus those of preferred anti-affinity)
//!   per selected pod in the node's domains, and the same for the placed pods' terms that
//!   select this pod (a placed pod's required affinity counts 1), add up.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Affinity, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::view::{NodeView, PodDemand};
use crate::k8s::selectors::Selector;

/// The namespaces of the cluster and their labels (for `namespaceSelector`).
pub type NamespaceLabels = BTreeMap<String, Value>;

/// One `PodAffinityTerm`, resolved against the cluster's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// `labelSelector`; `None` (absent) selects no pod, as in Kubernetes.
    selector: Option<Selector>,
    /// The namespaces whose pods the term selects.
    namespaces: Namespaces,
    /// The node label whose value names the domain.
    pub topology_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Namespaces {
    /// An empty `namespaceSelector` (`{}`): every namespace.
    All,
    Listed(BTreeSet<String>),
}

/// A pod's own terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAffinity {
    /// `podAffinity.requiredDuringScheduling...`.
    pub required: Vec<Term>,
    /// `podAffinity.preferredDuringScheduling...` with their weights.
    pub preferred: Vec<(i64, Term)>,
    /// `podAntiAffinity.requiredDuringScheduling...`.
    pub required_anti: Vec<Term>,
    /// `podAntiAffinity.preferredDuringScheduling...` with their weights.
    pub preferred_anti: Vec<(i64, Term)>,
}

/// A pod placed on a node, as pod affinity and topology spreading see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Its namespace.
    pub namespace: String,
    /// Its `metadata.labels` (`null` when none).
    pub labels: Value,
    /// It is being deleted (topology spreading does not count it).
    pub terminating: bool,
    /// Its own pod (anti-)affinity, when it has any.
    pub affinity: Option<Box<PodAffinity>>,
}

fn label_selector(selector: Option<&LabelSelector>) -> Option<Selector> {
    let json = serde_json::to_value(selector?).ok()?;
    Selector::from_label_selector(&json).ok()
}

impl Term {
    /// Resolves a term of a pod in `own_namespace`.
    pub fn of(term: &PodAffinityTerm, own_namespace: &str, known: &NamespaceLabels) -> Self {
        let mut listed: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespaces = match label_selector(term.namespace_selector.as_ref()) {
            Some(selector) if selector.is_empty() => Namespaces::All,
            Some(selector) => {
                listed.extend(
                    known
                        .iter()
                        .filter(|(_, labels)| selector.matches_labels(Some(labels)))
                        .map(|(name, _)| name.clone()),
                );
                Namespaces::Listed(listed)
            }
            None if listed.is_empty() && term.namespace_selector.is_none() => {
                Namespaces::Listed(BTreeSet::from([own_namespace.to_owned()]))
            }
            None => Namespaces::Listed(listed),
        };
        Self {
            selector: label_selector(term.label_selector.as_ref()),
            namespaces,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether the term selects a pod in `namespace` with `labels`.
    pub fn selects(&self, namespace: &str, labels: &Value) -> bool {
        let in_namespace = match &self.namespaces {
            Namespaces::All => true,
            Namespaces::Listed(names) => names.contains(namespace),
        };
        in_namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches_labels(Some(labels)))
    }

    /// The node's domain for this term, if the node has the key.
    fn domain<'a>(&'a self, labels: &'a BTreeMap<String, String>) -> Option<Domain<'a>> {
        let value = labels.get(&self.topology_key)?;
        Some((self.topology_key.as_str(), value.as_str()))
    }
}

impl PodAffinity {
    /// The pod (anti-)affinity of a pod spec in `namespace`.
    pub fn of(affinity: Option<&Affinity>, namespace: &str, known: &NamespaceLabels) -> Self {
        let term = |t: &PodAffinityTerm| Term::of(t, namespace, known);
        let (with, against) = (
            affinity.and_then(|a| a.pod_affinity.as_ref()),
            affinity.and_then(|a| a.pod_anti_affinity.as_ref()),
        );
        Self {
            required: with
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(term)
                .collect(),
            preferred: with
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|p| (i64::from(p.weight), term(&p.pod_affinity_term)))
                .collect(),
            required_anti: against
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(term)
                .collect(),
            preferred_anti: against
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|p| (i64::from(p.weight), term(&p.pod_affinity_term)))
                .collect(),
        }
    }

    /// Whether the pod has no term at all.
    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.preferred.is_empty()
            && self.required_anti.is_empty()
            && self.preferred_anti.is_empty()
    }

    /// Whether a pod matches every required affinity term.
    fn required_select(&self, namespace: &str, labels: &Value) -> bool {
        self.required.iter().all(|t| t.selects(namespace, labels))
    }
}

/// A topology domain: a node label key and its value.
type Domain<'a> = (&'a str, &'a str);

/// Why pod affinity keeps a pod off a node, in the order Kubernetes checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// The required affinity is not satisfied there.
    Affinity,
    /// A pod the required anti-affinity selects is in a domain of the node.
    AntiAffinity,
    /// A placed pod's required anti-affinity selects this pod.
    ExistingAntiAffinity,
}

/// What the placed pods say about one incoming pod, per domain (kube-scheduler's
/// `PreFilter` and `PreScore` state for `InterPodAffinity`).
#[derive(Debug, Default)]
pub struct Domains<'a> {
    /// Placed pods matching all the required affinity terms, per domain of each term.
    affinity: HashMap<Domain<'a>, u32>,
    /// Placed pods a required anti-affinity term selects, per domain of that term.
    anti: HashMap<Domain<'a>, u32>,
    /// Domains holding a placed pod whose required anti-affinity selects the pod.
    repelled: HashSet<Domain<'a>>,
    /// The summed preference weights, per domain.
    weights: HashMap<Domain<'a>, i64>,
    /// Whether the pod matches all its own required affinity terms.
    self_affine: bool,
}

impl<'a> Domains<'a> {
    /// Counts the pods placed on `nodes` for `pod`. Cheap when neither the pod nor any
    /// placed pod has terms (the common case).
    pub fn count(pod: &'a PodDemand, nodes: &'a [NodeView]) -> Self {
        let own = &pod.pod_affinity;
        let mut domains = Domains {
            self_affine: own.required_select(&pod.namespace, &pod.labels),
            ..Domains::default()
        };
        for node in nodes {
            if own.is_empty() && node.affine == 0 {
                continue;
            }
            for placed in &node.neighbours {
                domains.add_placed(pod, node, placed);
            }
        }
        domains
    }

    fn add_placed(&mut self, pod: &'a PodDemand, node: &'a NodeView, placed: &'a Neighbour) {
        let own = &pod.pod_affinity;
        let selects = |t: &Term| t.selects(&placed.namespace, &placed.labels);
        if !own.required.is_empty() && own.required.iter().all(selects) {
            for domain in own.required.iter().filter_map(|t| t.domain(&node.labels)) {
                *self.affinity.entry(domain).or_default() += 1;
            }
        }
        for term in own.required_anti.iter().filter(|t| selects(t)) {
            if let Some(domain) = term.domain(&node.labels) {
                *self.anti.entry(domain).or_default() += 1;
            }
        }
        let preferences = own.preferred.iter().map(|(w, t)| (*w, t));
        let aversions = own.preferred_anti.iter().map(|(w, t)| (-*w, t));
        for (weight, term) in preferences.chain(aversions).filter(|(_, t)| selects(t)) {
            self.weigh(term.domain(&node.labels), weight);
        }
        if let Some(theirs) = &placed.affinity {
            self.add_placed_terms(pod, node, theirs);
        }
    }

    /// The placed pod's own terms that select the incoming pod (symmetry).
    fn add_placed_terms(&mut self, pod: &PodDemand, node: &'a NodeView, theirs: &'a PodAffinity) {
        let selects = |t: &Term| t.selects(&pod.namespace, &pod.labels);
        for term in theirs.required_anti.iter().filter(|t| selects(t)) {
            if let Some(domain) = term.domain(&node.labels) {
                self.repelled.insert(domain);
            }
        }
        // Kubernetes' `hardPodAffinityWeight` (1): a placed pod's required affinity.
        let hard = theirs.required.iter().map(|t| (1, t));
        let preferences = theirs.preferred.iter().map(|(w, t)| (*w, t));
        let aversions = theirs.preferred_anti.iter().map(|(w, t)| (-*w, t));
        for (weight, term) in hard.chain(preferences).chain(aversions) {
            if selects(term) {
                self.weigh(term.domain(&node.labels), weight);
            }
        }
    }

    fn weigh(&mut self, domain: Option<Domain<'a>>, weight: i64) {
        if let Some(domain) = domain {
            *self.weights.entry(domain).or_default() += weight;
        }
    }

    /// Whether the pod's terms and the placed pods' let it onto `node`.
    pub fn check(&self, pod: &PodDemand, node: &NodeView) -> Result<(), Violation> {
        let own = &pod.pod_affinity;
        let mut found = true;
        for term in &own.required {
            match term.domain(&node.labels) {
                None => return Err(Violation::Affinity),
                Some(domain) => found &= self.affinity.get(&domain).is_some_and(|n| *n > 0),
            }
        }
        // The first pod of a group that attracts itself may go anywhere the keys exist.
        let first_of_group = self.affinity.is_empty() && self.self_affine;
        if !(found || first_of_group) {
            return Err(Violation::Affinity);
        }
        let anti = own
            .required_anti
            .iter()
            .filter_map(|t| t.domain(&node.labels))
            .any(|d| self.anti.get(&d).is_some_and(|n| *n > 0));
        if anti {
            return Err(Violation::AntiAffinity);
        }
        let repelled = !self.repelled.is_empty()
            && node
                .labels
                .iter()
                .any(|(k, v)| self.repelled.contains(&(k.as_str(), v.as_str())));
        if repelled {
            return Err(Violation::ExistingAntiAffinity);
        }
        Ok(())
    }

    /// The preference weights of the node's domains (higher is better).
    pub fn preference(&self, node: &NodeView) -> i64 {
        if self.weights.is_empty() {
            return 0;
        }
        node.labels
            .iter()
            .filter_map(|(k, v)| self.weights.get(&(k.as_str(), v.as_str())))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::view::tests::{HOST, ZONE, pod, zoned};

    fn placed(app: &str) -> Neighbour {
        Neighbour {
            namespace: "default".into(),
            labels: json!({ "app": app }),
            terminating: false,
            affinity: None,
        }
    }

    fn place(node: &mut NodeView, neighbour: Neighbour) {
        node.affine += u32::from(neighbour.affinity.is_some());
        node.neighbours.push(neighbour);
    }

    fn affinity(json: Value) -> PodAffinity {
        let typed: Affinity = serde_json::from_value(json).expect("valid affinity");
        PodAffinity::of(Some(&typed), "default", &NamespaceLabels::new())
    }

    fn term(app: &str, key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn with(labels: Value, affinity: PodAffinity) -> PodDemand {
        PodDemand {
            labels,
            pod_affinity: affinity,
            ..pod(0)
        }
    }

    /// Which nodes let the pod on.
    fn allowed(pod: &PodDemand, nodes: &[NodeView]) -> Vec<Result<(), Violation>> {
        let domains = Domains::count(pod, nodes);
        nodes.iter().map(|n| domains.check(pod, n)).collect()
    }

    #[test]
    fn required_affinity_needs_a_selected_pod_in_the_nodes_zone() {
        let mut a = zoned("a", "z1");
        place(&mut a, placed("db"));
        let nodes = [a, zoned("b", "z1"), zoned("c", "z2"), zoned("d", "")];
        let web = with(
            json!({"app": "web"}),
            affinity(
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", ZONE)]}}),
            ),
        );
        assert_eq!(
            allowed(&web, &nodes),
            [
                Ok(()),
                Ok(()),
                Err(Violation::Affinity),
                Err(Violation::Affinity)
            ],
            "same zone as the db pod; a node without the zone label is in no zone"
        );
    }

    #[test]
    fn the_first_pod_of_a_self_attracting_group_may_go_where_the_key_exists() {
        let nodes = [zoned("a", "z1"), zoned("b", "")];
        let first = with(
            json!({"app": "cache"}),
            affinity(
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("cache", ZONE)]}}),
            ),
        );
        assert_eq!(allowed(&first, &nodes), [Ok(()), Err(Violation::Affinity)]);
        // A pod that does not match its own term waits for one that does.
        let follower = with(json!({"app": "web"}), first.pod_affinity.clone());
        assert_eq!(
            allowed(&follower, &nodes),
            [Err(Violation::Affinity), Err(Violation::Affinity)]
        );
    }

    #[test]
    fn required_anti_affinity_by_zone_keeps_the_whole_zone_free() {
        let mut a = zoned("a", "z1");
        place(&mut a, placed("web"));
        let nodes = [a, zoned("b", "z1"), zoned("c", "z2"), zoned("d", "")];
        let web = with(
            json!({"app": "web"}),
            affinity(
                json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", ZONE)]}}),
            ),
        );
        assert_eq!(
            allowed(&web, &nodes),
            [
                Err(Violation::AntiAffinity),
                Err(Violation::AntiAffinity),
                Ok(()),
                Ok(())
            ],
            "a node without the key is in no domain, so nothing there repels"
        );
    }

    #[test]
    fn a_placed_pods_anti_affinity_keeps_a_selected_pod_out_of_its_domain() {
        let mut a = zoned("a", "z1");
        let mut loner = placed("loner");
        loner.affinity = Some(Box::new(affinity(json!({"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("web", ZONE)]}}))));
        place(&mut a, loner);
        let nodes = [a, zoned("b", "z1"), zoned("c", "z2")];
        let web = with(json!({"app": "web"}), PodAffinity::default());
        assert_eq!(
            allowed(&web, &nodes),
            [
                Err(Violation::ExistingAntiAffinity),
                Err(Violation::ExistingAntiAffinity),
                Ok(())
            ]
        );
        let other = with(json!({"app": "other"}), PodAffinity::default());
        assert!(allowed(&other, &nodes).iter().all(Result::is_ok));
    }

    #[test]
    fn terms_select_the_pods_own_namespace_unless_told_otherwise() {
        let mut a = zoned("a", "z1");
        place(
            &mut a,
            Neighbour {
                namespace: "prod".into(),
                ..placed("db")
            },
        );
        let nodes = [a];
        let same_namespace = with(
            json!({}),
            affinity(
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", HOST)]}}),
            ),
        );
        assert_eq!(allowed(&same_namespace, &nodes), [Err(Violation::Affinity)]);
        let mut listed = term("db", HOST);
        listed["namespaces"] = json!(["prod"]);
        let listed = with(
            json!({}),
            affinity(
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [listed]}}),
            ),
        );
        assert_eq!(allowed(&listed, &nodes), [Ok(())]);

        let known = NamespaceLabels::from([
            ("prod".into(), json!({"tier": "prod"})),
            ("default".into(), json!({})),
        ]);
        let by_label: PodAffinityTerm = serde_json::from_value(json!({
            "labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOST,
            "namespaceSelector": {"matchLabels": {"tier": "prod"}}}))
        .expect("term");
        let resolved = Term::of(&by_label, "default", &known);
        assert!(resolved.selects("prod", &json!({"app": "db"})));
        assert!(!resolved.selects("default", &json!({"app": "db"})));
        let everywhere: PodAffinityTerm = serde_json::from_value(json!({
            "labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOST,
            "namespaceSelector": {}}))
        .expect("term");
        assert!(Term::of(&everywhere, "default", &known).selects("other", &json!({"app": "db"})));
    }

    #[test]
    fn a_term_without_a_label_selector_selects_nothing() {
        let bare: PodAffinityTerm =
            serde_json::from_value(json!({"topologyKey": HOST})).expect("term");
        let term = Term::of(&bare, "default", &NamespaceLabels::new());
        assert!(!term.selects("default", &json!({"app": "db"})));
    }

    #[test]
    fn preferences_add_weights_per_selected_pod_in_the_domain_both_ways() {
        let mut a = zoned("a", "z1");
        place(&mut a, placed("db"));
        place(&mut a, placed("web"));
        let mut c = zoned("c", "z2");
        let mut fan = placed("fan");
        fan.affinity = Some(Box::new(affinity(json!({"podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 7, "podAffinityTerm": term("web", ZONE)}]}}))));
        place(&mut c, fan);
        let nodes = [a, zoned("b", "z1"), c];
        let web = with(
            json!({"app": "web"}),
            affinity(json!({
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": term("db", ZONE)}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 4, "podAffinityTerm": term("web", ZONE)}]},
            })),
        );
        let domains = Domains::count(&web, &nodes);
        let scores: Vec<i64> = nodes.iter().map(|n| domains.preference(n)).collect();
        assert_eq!(scores, [10 - 4, 10 - 4, 7]);
    }
}
