//! Node admission. Nodes are normally registered by the fleet when an agent joins; users
//! label, annotate or cordon them (`spec.unschedulable`). The fleet owns `status`.

use serde_json::Value;

use super::kinds::{keep_status, name_of};
use super::status::ApiError;
use super::validation;

/// A node created through the API: only its name is checked.
pub fn admit_create(node: &mut Value) -> Result<(), ApiError> {
    let causes = validation::validate_object_name(node, false);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Node", name_of(node), &causes))
    }
}

/// A changed node keeps the status the fleet reported.
pub fn admit_update(old: &Value, node: &mut Value) -> Result<(), ApiError> {
    keep_status(old, node);
    Ok(())
}
