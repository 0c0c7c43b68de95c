//! Graceful deletion of pods: the one home of the rules deciding when a pod being deleted
//! goes away.
//!
//! A DELETE of a pod that may be running on a node does not remove the object: it marks it
//! (`metadata.deletionTimestamp` = now + grace, `metadata.deletionGracePeriodSeconds` =
//! grace), `kubectl get` shows it `Terminating`, the desired-state publisher stops sending it
//! to its node ([`super::pods::running_node`]), the node stops it and reports the pod gone,
//! and only then is the object removed ([`confirmed_gone`]). A pod that cannot be running
//! anywhere (never bound, or finished) and a delete with a grace period of 0 (`kubectl
//! delete --grace-period=0 --force`) remove it at once ([`plan`]). Nothing removes a pod
//! because its deadline passed: a node that stays unreachable keeps its pods `Terminating`
//! until it comes back or someone force-deletes them, as in Kubernetes.

use serde_json::Value;

use super::pods::bound_node;
use super::time::rfc3339;

/// The grace period of a pod whose spec names none (Kubernetes' default).
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// What a DELETE of a pod does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Remove the object now.
    Now,
    /// Mark it: its node stops it and the object is removed once the node says so.
    Graceful {
        /// `metadata.deletionGracePeriodSeconds`.
        grace_seconds: i64,
        /// `metadata.deletionTimestamp` (now + grace).
        deadline: String,
    },
}

/// Whether the pod is being deleted (`metadata.deletionTimestamp` set).
pub fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|at| !at.is_null())
}

/// What deleting `pod` with the `DeleteOptions.gracePeriodSeconds` `requested` does at
/// `now`. The grace period is the requested one (a negative one counts as 1 s), else the
/// pod's `spec.terminationGracePeriodSeconds`, else 30 s. The pod goes at once when the grace
/// period is 0, when it is bound to no node (it runs nowhere) or when it has finished
/// (`Succeeded`/`Failed`). A pod already terminating keeps its deadline unless the new one
/// is earlier (a grace period may only be shortened).
pub fn plan(pod: &Value, requested: Option<i64>, now: jiff::Timestamp) -> Deletion {
    let grace = match requested {
        Some(seconds) if seconds < 0 => 1,
        Some(seconds) => seconds,
        None => pod
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .map_or(DEFAULT_GRACE_SECONDS, |s| s.max(0)),
    };
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    if grace == 0 || bound_node(pod).is_none() || finished {
        return Deletion::Now;
    }
    let deadline = now
        .checked_add(jiff::SignedDuration::from_secs(grace))
        .unwrap_or(now);
    let current = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|at| at.parse::<jiff::Timestamp>().ok());
    let kept_grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    match (current, kept_grace) {
        (Some(current), Some(kept)) if current <= deadline => Deletion::Graceful {
            grace_seconds: kept.min(grace),
            deadline: rfc3339(current),
        },
        _ => Deletion::Graceful {
            grace_seconds: grace,
            deadline: rfc3339(deadline),
        },
    }
}

/// Marks `pod` as [`plan`] decided (a no-op for [`Deletion::Now`]).
pub fn mark(pod: &mut Value, deletion: &Deletion) {
    let Deletion::Graceful {
        grace_seconds,
        deadline,
    } = deletion
    else {
        return;
    };
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("deletionTimestamp".into(), deadline.clone().into());
        meta.insert("deletionGracePeriodSeconds".into(), (*grace_seconds).into());
    }
}

/// Whether a terminating pod bound to `node` may be removed now that `node`'s current
/// session reported its pods and did not list this one (`listed` false): the node has
/// stopped it (an agent keeps a pod in its reports until its containers have ended) or
/// never had it. A pod that is not terminating, or is bound elsewhere, is never removed by a
/// node's report.
pub fn confirmed_gone(pod: &Value, node: &str, listed: bool) -> bool {
    is_terminating(pod) && bound_node(pod) == Some(node) && !listed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("time")
    }

    fn bound() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"nodeName": "pi"},
               "status": {"phase": "Running"}})
    }

    #[test]
    fn a_bound_running_pod_gets_the_spec_grace_period_or_thirty_seconds() {
        assert_eq!(
            plan(&bound(), None, now()),
            Deletion::Graceful {
                grace_seconds: 30,
                deadline: "2026-01-01T00:00:30Z".into()
            }
        );
        let mut short = bound();
        short["spec"]["terminationGracePeriodSeconds"] = 5.into();
        assert_eq!(
            plan(&short, None, now()),
            Deletion::Graceful {
                grace_seconds: 5,
                deadline: "2026-01-01T00:00:05Z".into()
            }
        );
        assert_eq!(
            plan(&short, Some(-3), now()),
            Deletion::Graceful {
                grace_seconds: 1,
                deadline: "2026-01-01T00:00:01Z".into()
            }
        );
    }

    #[test]
    fn zero_grace_unbound_and_finished_pods_go_at_once() {
        assert_eq!(plan(&bound(), Some(0), now()), Deletion::Now);
        let mut pending = bound();
        pending["spec"]["nodeName"] = "".into();
        assert_eq!(plan(&pending, None, now()), Deletion::Now);
        let mut done = bound();
        done["status"]["phase"] = "Succeeded".into();
        assert_eq!(plan(&done, Some(10), now()), Deletion::Now);
        let mut zero_spec = bound();
        zero_spec["spec"]["terminationGracePeriodSeconds"] = 0.into();
        assert_eq!(plan(&zero_spec, None, now()), Deletion::Now);
    }

    #[test]
    fn a_second_delete_may_only_shorten_the_grace_period() {
        let mut pod = bound();
        mark(&mut pod, &plan(&bound(), Some(10), now()));
        assert_eq!(pod["metadata"]["deletionTimestamp"], "2026-01-01T00:00:10Z");
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 10);
        let later = plan(&pod, Some(60), now());
        assert_eq!(
            later,
            Deletion::Graceful {
                grace_seconds: 10,
                deadline: "2026-01-01T00:00:10Z".into()
            }
        );
        let sooner = plan(&pod, Some(2), now());
        assert_eq!(
            sooner,
            Deletion::Graceful {
                grace_seconds: 2,
                deadline: "2026-01-01T00:00:02Z".into()
            }
        );
        assert_eq!(plan(&pod, Some(0), now()), Deletion::Now);
    }

    #[test]
    fn only_the_pods_node_confirms_and_only_by_leaving_it_out() {
        let mut pod = bound();
        assert!(!confirmed_gone(&pod, "pi", false), "not terminating");
        mark(&mut pod, &plan(&bound(), None, now()));
        assert!(confirmed_gone(&pod, "pi", false));
        assert!(!confirmed_gone(&pod, "pi", true), "still listed");
        assert!(!confirmed_gone(&pod, "other", false), "another node");
    }
}
