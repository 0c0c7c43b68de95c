//! Node admission. Nodes are normally registered by the fleet when an agent joins; users
//! label, annotate or cordon them (`spec.unschedulable`). The fleet owns `status`, and the
//! broker owns the node's credential binding (the annotation
//! [`NODE_PASSWORD_HASH_ANNOTATION`]): no API client sets or changes it. Deleting the Node
//! forgets the binding, so a device may join under the name again.

use serde_json::Value;

use super::kinds::{keep_status, name_of};
use super::status::{ApiError, Cause};
use super::validation;
use crate::identity::{NODE_PASSWORD_HASH_ANNOTATION, bound_hash};

/// A node created through the API: only its name is checked, and it carries no credential.
pub fn admit_create(node: &mut Value) -> Result<(), ApiError> {
    let mut causes = validation::validate_object_name(node, false);
    if bound_hash(node).is_some() {
        causes.push(binding_cause("is set by the server when the node joins"));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Node", name_of(node), &causes))
    }
}

/// A changed node keeps the status the fleet reported and the credential it joined with.
pub fn admit_update(old: &Value, node: &mut Value) -> Result<(), ApiError> {
    if bound_hash(old) != bound_hash(node) {
        let cause = binding_cause(
            "is the node's credential and cannot be changed; delete the Node to let a device join under its name again",
        );
        return Err(ApiError::invalid("Node", name_of(node), &[cause]));
    }
    keep_status(old, node);
    Ok(())
}

fn binding_cause(message: &str) -> Cause {
    Cause::new(
        "FieldValueForbidden",
        format!("metadata.annotations[{NODE_PASSWORD_HASH_ANNOTATION}]"),
        message,
    )
}
