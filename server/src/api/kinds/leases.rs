//! Leases (coordination.k8s.io/v1): the fleet link keeps one per node in `kube-node-lease`
//! ([`crate::controllers::leases`]), its `renewTime` the node's last heartbeat. Served so that
//! `kubectl describe node` shows it and `kubectl get leases -n kube-node-lease` lists them;
//! clients may keep leases of their own (leader election), as in Kubernetes.

use serde_json::Value;

use super::{Column, Kind, READ_WRITE, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{self, METADATA, Shape};

/// Leases (namespaced).
pub const KIND: Kind = Kind {
    group: "coordination.k8s.io",
    version: "v1",
    api_version: "coordination.k8s.io/v1",
    plural: "leases",
    singular: "lease",
    kind: "Lease",
    list_kind: "LeaseList",
    short_names: &[],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Holder"),
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

const SPEC: Shape = Shape::Object(&[
    ("holderIdentity", Shape::Str),
    ("leaseDurationSeconds", Shape::Int),
    ("acquireTime", Shape::Str),
    ("renewTime", Shape::Str),
    ("leaseTransitions", Shape::Int),
    ("strategy", Shape::Str),
    ("preferredHolder", Shape::Str),
]);

const LEASE: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
]);

fn admit_create(lease: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_shape(lease, &LEASE, "", &mut causes);
    validation::check_type_meta(lease, KIND.api_version, KIND.kind, &mut causes);
    validation::check_metadata(lease, &mut causes);
    causes.extend(validation::validate_object_name(lease, false));
    let spec = &lease["spec"];
    if spec["leaseDurationSeconds"]
        .as_i64()
        .is_some_and(|s| s <= 0)
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.leaseDurationSeconds",
            "Invalid value: must be greater than 0",
        ));
    }
    if spec["leaseTransitions"].as_i64().is_some_and(|n| n < 0) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.leaseTransitions",
            "Invalid value: must be greater than or equal to 0",
        ));
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(KIND.kind, name_of(lease), &causes)),
    }
}

fn admit_update(_old: &Value, lease: &mut Value) -> Result<(), ApiError> {
    admit_create(lease)
}

fn cells(lease: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(lease, "/metadata/name"),
        text(lease, "/spec/holderIdentity"),
        age(lease, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controllers::leases::lease_object;

    fn fields(result: Result<(), ApiError>) -> Vec<String> {
        result.expect_err("refused").cause_fields()
    }

    #[test]
    fn the_node_leases_the_server_writes_pass_admission() {
        let mut lease = lease_object(
            "pi-1",
            std::time::Duration::from_secs(40),
            "2026-12-07T18:00:00.000000Z",
            None,
        );
        admit_create(&mut lease).expect("the server's own lease is valid");
        assert_eq!(cells(&lease, jiff::Timestamp::now())[1], json!("pi-1"));
    }

    #[test]
    fn a_lease_with_a_bad_duration_or_an_unknown_field_is_refused_by_name() {
        let mut lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "leader", "namespace": "default"},
            "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1, "holder": "me"},
        });
        assert_eq!(
            fields(admit_create(&mut lease)),
            [
                "spec.holder",
                "spec.leaseDurationSeconds",
                "spec.leaseTransitions"
            ]
        );
    }
}
