//! Pod disruption budgets (policy/v1): how many of the pods a budget selects may be
//! disrupted (evicted) now. One rule, used by the eviction subresource and the budget's
//! status controller.

use serde_json::{Value, json};

use super::intstr::IntOrPercent;
use super::pods;
use super::selectors::Selector;

/// A budget's view of its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Pods the budget selects (not finished, not being deleted).
    pub expected: u32,
    /// Of those, Ready.
    pub healthy: u32,
    /// How many must stay Ready.
    pub desired_healthy: u32,
}

impl Budget {
    /// Evaluates `pdb` against the pods of its namespace; `None` when its selector is
    /// malformed.
    pub fn of<'a>(
        pdb: &Value,
        namespace_pods: impl IntoIterator<Item = &'a Value>,
    ) -> Option<Self> {
        let selector = Selector::from_label_selector(&pdb["spec"]["selector"]).ok()?;
        let selected: Vec<&Value> = namespace_pods
            .into_iter()
            .filter(|pod| selector.matches_labels(pod.pointer("/metadata/labels")))
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
            .filter(|pod| {
                !matches!(
                    pod["status"]["phase"].as_str(),
                    Some("Succeeded" | "Failed")
                )
            })
            .collect();
        let expected = u32::try_from(selected.len()).unwrap_or(u32::MAX);
        let healthy = u32::try_from(selected.iter().filter(|p| pods::is_ready(p)).count())
            .unwrap_or(u32::MAX);
        let spec = &pdb["spec"];
        let desired_healthy = if let Ok(min) = IntOrPercent::parse(&spec["minAvailable"]) {
            min.scaled(expected, true)
        } else if let Ok(max) = IntOrPercent::parse(&spec["maxUnavailable"]) {
            expected.saturating_sub(max.scaled(expected, true))
        } else {
            0
        };
        Some(Self {
            expected,
            healthy,
            desired_healthy,
        })
    }

    /// How many more pods may be disrupted now.
    pub fn disruptions_allowed(&self) -> u32 {
        self.healthy.saturating_sub(self.desired_healthy)
    }

    /// The budget's `status`.
    pub fn status(&self, generation: Option<&Value>) -> Value {
        let mut status = json!({
            "currentHealthy": self.healthy,
            "desiredHealthy": self.desired_healthy,
            "expectedPods": self.expected,
            "disruptionsAllowed": self.disruptions_allowed(),
        });
        if let Some(generation) = generation {
            status["observedGeneration"] = generation.clone();
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: bool) -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "status": {"phase": "Running", "conditions": [
                   {"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn min_available_and_max_unavailable_allow_what_kubernetes_allows() {
        let pods = [pod(true), pod(true), pod(true), pod(false)];
        let min = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2}});
        let budget = Budget::of(&min, pods.iter()).expect("valid");
        assert_eq!(
            (
                budget.expected,
                budget.healthy,
                budget.disruptions_allowed()
            ),
            (4, 3, 1)
        );
        let max =
            json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "maxUnavailable": "25%"}});
        // 25% of 4 is 1: 3 must stay healthy, and 3 are.
        assert_eq!(
            Budget::of(&max, pods.iter())
                .expect("valid")
                .disruptions_allowed(),
            0
        );
        let other =
            json!({"spec": {"selector": {"matchLabels": {"app": "api"}}, "minAvailable": 1}});
        assert_eq!(Budget::of(&other, pods.iter()).expect("valid").expected, 0);
    }
}
