//! Pod admission: validation against what wasmfleet supports, defaults, immutability.

use serde_json::{Value, json};

use super::kinds::{keep_status, name_of};
use super::status::{ApiError, Cause};
use super::{defaults, validation};
use crate::fleet::delivery;

/// A new pod: validated, defaulted, and `Pending` (whatever status the client sent).
pub fn admit_create(pod: &mut Value) -> Result<(), ApiError> {
    let causes = validation::validate_pod(pod);
    if !causes.is_empty() {
        return Err(ApiError::invalid("Pod", name_of(pod), &causes));
    }
    defaults::apply_pod_defaults(pod);
    check_deliverable(pod)?;
    if let Some(map) = pod.as_object_mut() {
        map.insert("status".into(), json!({"phase": "Pending"}));
    }
    Ok(())
}

/// A changed pod: valid, and differing from `old` only in images, labels and annotations.
pub fn admit_update(old: &Value, pod: &mut Value) -> Result<(), ApiError> {
    let mut causes = validation::validate_pod(pod);
    if causes.is_empty() {
        defaults::apply_pod_defaults(pod);
        causes = validation::validate_pod_update(old, pod);
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("Pod", name_of(pod), &causes));
    }
    check_deliverable(pod)?;
    keep_status(old, pod);
    Ok(())
}

/// Refuses a pod its node could not be sent (see [`delivery`]), naming the field.
fn check_deliverable(pod: &Value) -> Result<(), ApiError> {
    delivery::admit(pod).map_err(|why| {
        let reason = match why {
            delivery::Undeliverable::TooManyContainers { .. } => "FieldValueTooMany",
            delivery::Undeliverable::TooLarge { .. } => "FieldValueTooLong",
            _ => "FieldValueInvalid",
        };
        let cause = Cause::new(reason, why.field(), why.to_string());
        ApiError::invalid("Pod", name_of(pod), &[cause])
    })
}
