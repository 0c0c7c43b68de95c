//! Writes during faults, and the rule that no acknowledged write is lost.
//!
//! A writer thread applies and deletes pods `churn-0`..`churn-{K-1}` through the real
//! `wasmfleet` CLI while faults happen, each apply with a new `chaos-gen` label value. Per
//! pod, the model remembers the state of the last write that got a success answer and the
//! states of the writes after it whose outcome is unknown (an error answer or none: a crashed
//! server may or may not have committed them). The final state must be one of those; any
//! other state means an acknowledged write was lost (or a write appeared from nowhere).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::rng::Rng;
use crate::cluster::Clients;
use crate::manifests::pod_labelled;

/// How many churn pods the writer works on.
pub const CHURN_PODS: usize = 6;

/// The label each apply sets to a fresh value.
pub const GEN_LABEL: &str = "chaos-gen";

/// The pause between two writes (a CLI call takes about as long).
const PACE: Duration = Duration::from_millis(50);

/// What a churn pod looks like from the API.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodState {
    /// No such pod.
    Absent,
    /// The pod exists with this `chaos-gen` label value.
    Present(String),
}

/// What the writes so far allow each churn pod to be.
#[derive(Debug, Clone, Default)]
pub struct WriteModel {
    pods: BTreeMap<String, Allowed>,
    /// Writes answered with success.
    pub acknowledged: u64,
    /// Writes with an unknown outcome.
    pub unknown: u64,
    next_gen: u64,
}

#[derive(Debug, Clone)]
struct Allowed {
    acknowledged: PodState,
    unknown_since: Vec<PodState>,
}

impl Default for Allowed {
    fn default() -> Self {
        Allowed {
            acknowledged: PodState::Absent,
            unknown_since: Vec::new(),
        }
    }
}

impl WriteModel {
    /// Records a write of `state` to pod `name` that got a success answer.
    pub fn acknowledge(&mut self, name: &str, state: PodState) {
        self.acknowledged += 1;
        let allowed = self.pods.entry(name.to_owned()).or_default();
        allowed.acknowledged = state;
        allowed.unknown_since.clear();
    }

    /// Records a write of `state` to pod `name` whose outcome is unknown.
    pub fn unknown(&mut self, name: &str, state: PodState) {
        self.unknown += 1;
        self.pods
            .entry(name.to_owned())
            .or_default()
            .unknown_since
            .push(state);
    }

    /// The next fresh label value.
    pub fn fresh_gen(&mut self) -> String {
        self.next_gen += 1;
        format!("g{}", self.next_gen)
    }

    /// Compares the churn pods that exist (`actual`: name → state) with the model; one
    /// message per pod in a state no write allows.
    pub fn violations(&self, actual: &BTreeMap<String, PodState>) -> Vec<String> {
        let mut out = Vec::new();
        for (name, allowed) in &self.pods {
            let state = actual.get(name).cloned().unwrap_or(PodState::Absent);
            let ok = state == allowed.acknowledged || allowed.unknown_since.contains(&state);
            if !ok {
                out.push(format!(
                    "acknowledged write lost: {name} is {state:?}, the last acknowledged write \
                     made it {:?} (unacknowledged since: {:?})",
                    allowed.acknowledged, allowed.unknown_since
                ));
            }
        }
        for name in actual.keys().filter(|name| !self.pods.contains_key(*name)) {
            out.push(format!("{name} exists although it was never written"));
        }
        out
    }
}

/// The churn pods' states in a `PodList`.
pub fn churn_states(pods: &[Value]) -> BTreeMap<String, PodState> {
    pods.iter()
        .filter_map(|pod| {
            let name = pod["metadata"]["name"].as_str()?;
            name.starts_with("churn-").then(|| {
                let gen_value = pod["metadata"]["labels"][GEN_LABEL]
                    .as_str()
                    .unwrap_or_default();
                (name.to_owned(), PodState::Present(gen_value.to_owned()))
            })
        })
        .collect()
}

/// Applies and deletes churn pods until `stop` is set; returns the model with every write
/// recorded.
pub fn write_until(
    clients: &Clients,
    mut rng: Rng,
    mut model: WriteModel,
    stop: &Arc<AtomicBool>,
) -> WriteModel {
    while !stop.load(Ordering::Relaxed) {
        let name = format!("churn-{}", rng.below(CHURN_PODS));
        if rng.percent(70) {
            apply(clients, &name, &mut model);
        } else {
            delete(clients, &name, &mut model);
        }
        std::thread::sleep(PACE);
    }
    model
}

fn apply(clients: &Clients, name: &str, model: &mut WriteModel) {
    let gen_value = model.fresh_gen();
    let manifest = pod_labelled(
        name,
        &[(GEN_LABEL, &gen_value)],
        None,
        "exerciser:v1",
        &["print", "100000000"],
        "Always",
    );
    let out = clients.cli_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    let state = PodState::Present(gen_value);
    if out.success {
        model.acknowledge(name, state);
    } else {
        model.unknown(name, state);
    }
}

/// Force-deletes (`--grace-period=0 --force`): the object goes with the DELETE, so the next
/// apply of the name creates a new pod. A graceful delete leaves the pod `Terminating` until
/// its node confirms (for the whole of a partition), and an apply meanwhile would update the
/// terminating pod, which then goes: acknowledged, yet lost, as in Kubernetes (where
/// `kubectl delete` waits by default). Nodes still stop force-deleted pods.
fn delete(clients: &Clients, name: &str, model: &mut WriteModel) {
    let args = ["delete", "pod", name, "--grace-period=0", "--force"];
    let out = clients.kubectl_with_stdin(&args, None);
    // A NotFound answer is an acknowledged observation that the pod is absent.
    if out.success || out.stderr.contains("NotFound") {
        model.acknowledge(name, PodState::Absent);
    } else {
        model.unknown(name, PodState::Absent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(g: &str) -> PodState {
        PodState::Present(g.to_owned())
    }

    fn actual(entries: &[(&str, PodState)]) -> BTreeMap<String, PodState> {
        entries
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.clone()))
            .collect()
    }

    #[test]
    fn the_last_acknowledged_write_must_hold() {
        let mut model = WriteModel::default();
        model.acknowledge("churn-0", present("g1"));
        model.acknowledge("churn-0", present("g2"));
        assert!(
            model
                .violations(&actual(&[("churn-0", present("g2"))]))
                .is_empty()
        );
        assert_eq!(
            model
                .violations(&actual(&[("churn-0", present("g1"))]))
                .len(),
            1
        );
        assert_eq!(model.violations(&actual(&[])).len(), 1);
    }

    #[test]
    fn unknown_outcomes_after_it_are_allowed_but_not_before() {
        let mut model = WriteModel::default();
        model.unknown("churn-1", present("g1"));
        model.acknowledge("churn-1", PodState::Absent);
        model.unknown("churn-1", present("g2"));
        assert!(model.violations(&actual(&[])).is_empty());
        assert!(
            model
                .violations(&actual(&[("churn-1", present("g2"))]))
                .is_empty()
        );
        assert_eq!(
            model
                .violations(&actual(&[("churn-1", present("g1"))]))
                .len(),
            1
        );
    }

    #[test]
    fn a_pod_nobody_wrote_is_a_violation() {
        let model = WriteModel::default();
        assert_eq!(
            model
                .violations(&actual(&[("churn-5", present("g9"))]))
                .len(),
            1
        );
    }
}
