//! Pod admission: validation against what wasmfleet supports, defaults, immutability.

use serde_json::{Value, json};

use super::kinds::{keep_status, name_of};
use super::status::ApiError;
use super::validation;

/// A new pod: validated, defaulted, and `Pending` (whatever status the client sent).
pub fn admit_create(pod: &mut Value) -> Result<(), ApiError> {
    let causes = validation::validate_pod(pod);
    if !causes.is_empty() {
        return Err(ApiError::invalid("Pod", name_of(pod), &causes));
    }
    validation::apply_pod_defaults(pod);
    if let Some(map) = pod.as_object_mut() {
        map.insert("status".into(), json!({"phase": "Pending"}));
    }
    Ok(())
}

/// A changed pod: valid, and differing from `old` only in images, labels and annotations.
pub fn admit_update(old: &Value, pod: &mut Value) -> Result<(), ApiError> {
    let mut causes = validation::validate_pod(pod);
    if causes.is_empty() {
        validation::apply_pod_defaults(pod);
        causes = validation::validate_pod_update(old, pod);
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("Pod", name_of(pod), &causes));
    }
    keep_status(old, pod);
    Ok(())
}
