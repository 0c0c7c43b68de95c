//! Kubernetes status conditions on JSON objects (`status.conditions[]`), shared by the
//! scheduler, the controllers and the fleet's status writer.

use serde_json::{Map, Value, json};

/// A condition to set: `type`, `status` (`True`/`False`/`Unknown`), `reason`, `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition<'a> {
    /// The condition type (`Ready`, `PodScheduled`, ...).
    pub type_: &'a str,
    /// `True`, `False` or `Unknown`.
    pub status: &'a str,
    /// A CamelCase reason, or empty.
    pub reason: &'a str,
    /// A human message, or empty.
    pub message: &'a str,
}

/// The `status` of the condition of `type_` in `obj`, if present.
pub fn condition_status<'v>(obj: &'v Value, type_: &str) -> Option<&'v str> {
    condition(obj, type_)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
}

/// The condition of `type_` in `obj`'s status, if present.
pub fn condition<'v>(obj: &'v Value, type_: &str) -> Option<&'v Value> {
    in_status(obj.get("status")?, type_)
}

/// The condition of `type_` in a `status` object, if present.
pub fn in_status<'v>(status: &'v Value, type_: &str) -> Option<&'v Value> {
    status
        .get("conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// Sets a condition on `obj`, keeping `lastTransitionTime` unless the status changes.
/// Extra fields (such as `lastHeartbeatTime`) are left alone. Returns whether anything
/// changed; an identical condition is not touched, so repeated calls write nothing.
pub fn set_condition(obj: &mut Value, condition: &Condition<'_>, now: &str) -> bool {
    let Some(conditions) = conditions_mut(obj) else {
        return false;
    };
    let existing = conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(condition.type_));
    match existing {
        Some(Value::Object(current)) => update(current, condition, now),
        _ => {
            conditions.push(json!({
                "type": condition.type_,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": now,
            }));
            true
        }
    }
}

fn update(current: &mut Map<String, Value>, condition: &Condition<'_>, now: &str) -> bool {
    let same = |field: &str, value: &str| current.get(field).and_then(Value::as_str) == Some(value);
    if same("status", condition.status)
        && same("reason", condition.reason)
        && same("message", condition.message)
    {
        return false;
    }
    if !same("status", condition.status) || !current.contains_key("lastTransitionTime") {
        current.insert("lastTransitionTime".into(), now.into());
    }
    current.insert("status".into(), condition.status.into());
    current.insert("reason".into(), condition.reason.into());
    current.insert("message".into(), condition.message.into());
    true
}

/// `status.conditions` as a mutable array, creating `status` and the array if needed.
fn conditions_mut(obj: &mut Value) -> Option<&mut Vec<Value>> {
    let map = obj.as_object_mut()?;
    let status = map
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    let conditions = status
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !conditions.is_array() {
        *conditions = Value::Array(Vec::new());
    }
    conditions.as_array_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: Condition<'static> = Condition {
        type_: "Ready",
        status: "True",
        reason: "AgentReady",
        message: "agent is posting ready status",
    };

    #[test]
    fn a_missing_condition_is_added_with_its_transition_time() {
        let mut node = json!({"metadata": {"name": "n"}});
        assert!(set_condition(&mut node, &READY, "t1"));
        assert_eq!(condition_status(&node, "Ready"), Some("True"));
        assert_eq!(node["status"]["conditions"][0]["lastTransitionTime"], "t1");
    }

    #[test]
    fn setting_the_same_condition_again_changes_nothing() {
        let mut node = json!({});
        set_condition(&mut node, &READY, "t1");
        let before = node.clone();
        assert!(!set_condition(&mut node, &READY, "t2"));
        assert_eq!(node, before);
    }

    #[test]
    fn a_status_change_moves_the_transition_time_and_a_message_change_does_not() {
        let mut node = json!({});
        set_condition(&mut node, &READY, "t1");
        let reworded = Condition {
            message: "still ready",
            ..READY
        };
        assert!(set_condition(&mut node, &reworded, "t2"));
        assert_eq!(node["status"]["conditions"][0]["lastTransitionTime"], "t1");
        let unknown = Condition {
            status: "Unknown",
            ..READY
        };
        assert!(set_condition(&mut node, &unknown, "t3"));
        assert_eq!(node["status"]["conditions"][0]["lastTransitionTime"], "t3");
        assert_eq!(condition_status(&node, "Ready"), Some("Unknown"));
    }
}
