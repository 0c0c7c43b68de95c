//! Errors as Kubernetes `Status` objects, the only error shape `kubectl` prints well.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::StoreError;

/// One invalid field, as in `Status.details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Machine-readable reason (`FieldValueRequired`, `FieldValueNotSupported`, ...).
    pub reason: &'static str,
    /// What is wrong, printed after the field path.
    pub message: String,
    /// The field path (`spec.containers[0].ports`).
    pub field: String,
}

impl Cause {
    /// A cause with a reason, a field path and a message.
    pub fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            field: field.into(),
        }
    }
}

/// An API failure, rendered as a `Status` with the matching HTTP code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub code: StatusCode,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Invalid`, ...).
    pub reason: &'static str,
    /// The human-readable message kubectl prints.
    pub message: String,
    /// `Status.details`, when there is something to say about the object.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 401 Unauthorized saying why a credential that was good is refused (a revoked
    /// certificate), so its holder knows to ask for a new one.
    pub fn unauthorized_because(why: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", why)
    }

    /// 404 NotFound for an object: `deployments.apps "web" not found`, with the name,
    /// group and resource in `details` as kube-apiserver gives them.
    pub fn not_found(resource: &str, name: &str) -> Self {
        let (qualified, details) = object_details(resource, name);
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{qualified} \"{name}\" not found"),
        )
        .with_details(details)
    }

    /// 404 NotFound for a path the server does not serve (empty `details`, as
    /// kube-apiserver answers for a subresource it does not have).
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 409 Conflict for a request that contradicts the current state.
    pub fn conflict(resource: &str, name: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
            .with_details(object_details(resource, name).1)
    }

    /// 429 TooManyRequests: an eviction a disruption budget does not allow now.
    pub fn disruption_budget(pod: &str, budget: &str, message: String) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
        .with_details(json!({"name": pod, "kind": "pods", "causes": [
            {"reason": "DisruptionBudget", "message": message, "field": budget}
        ]}))
    }

    /// The fields its causes name (what tests of admission compare).
    #[cfg(test)]
    pub fn cause_fields(&self) -> Vec<String> {
        self.details.as_ref().map_or_else(Vec::new, |d| {
            d["causes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["field"].as_str().map(str::to_owned))
                .collect()
        })
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 403 Forbidden by the authorizer, in kube-apiserver's shape: `pods "web" is
    /// forbidden: {why}` (`deployments.apps is forbidden: ...` for a collection,
    /// `forbidden: ...` for a non-resource path), with name, group and resource in
    /// `details`.
    pub fn forbidden_request(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let qualified = match group {
            "" => resource.to_owned(),
            group => format!("{resource}.{group}"),
        };
        let message = match (qualified.as_str(), name) {
            ("", _) => format!("forbidden: {why}"),
            (qualified, "") => format!("{qualified} is forbidden: {why}"),
            (qualified, name) => format!("{qualified} \"{name}\" is forbidden: {why}"),
        };
        Self::forbidden(message)
            .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// 422 Invalid: `The Pod "web" is invalid: spec.containers[0].ports: ...`.
    pub fn invalid(kind: &str, name: &str, causes: &[Cause]) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let message = match summary.as_slice() {
            [one] => format!("{kind} \"{name}\" is invalid: {one}"),
            many => format!("{kind} \"{name}\" is invalid: [{}]", many.join(", ")),
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
            .with_details(json!({"name": name, "kind": kind, "causes": causes}))
    }

    /// 410 Expired (a watch from a compacted revision).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// 500 InternalError; the cause is logged, not sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "an internal error occurred; see the server log",
        )
    }

    /// 503 ServiceUnavailable (a part of the server that is not running).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The `Status` object. It always has `details` (empty when there is nothing to say
    /// about an object): kubectl reads `details.name` of some errors without checking that
    /// `details` is there (`kubectl debug` crashed on a 404 without it).
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details.clone().unwrap_or_else(|| json!({})),
            "code": self.code.as_u16(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, axum::Json(self.to_status())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(key) => Self::not_found(&key.resource, &key.name),
            StoreError::AlreadyExists(key) => {
                let (qualified, details) = object_details(&key.resource, &key.name);
                Self::new(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{qualified} \"{}\" already exists", key.name),
                )
                .with_details(details)
            }
            StoreError::Conflict { key, .. } => Self::conflict(
                &key.resource,
                &key.name,
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
                     please apply your changes to the latest version and try again",
                    key.resource, key.name
                ),
            ),
            StoreError::PreconditionFailed { ref key, .. } => Self::conflict(
                &key.resource,
                &key.name,
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {err}",
                    key.resource, key.name
                ),
            ),
            StoreError::Refused { key, reason } => {
                let (qualified, details) = object_details(&key.resource, &key.name);
                Self::forbidden(format!(
                    "{qualified} \"{}\" is forbidden: {reason}",
                    key.name
                ))
                .with_details(details)
            }
            StoreError::Gone { requested, oldest } => {
                Self::expired(format!("too old resource version: {requested} ({oldest})"))
            }
            other => Self::internal(&other),
        }
    }
}

/// The resource qualified by its group (`deployments.apps`, `pods`), and the `details` of a
/// Status about one object of it (name, group, and the resource as `kind`, as
/// kube-apiserver fills them).
fn object_details(resource: &str, name: &str) -> (String, Value) {
    let group = super::kinds::ALL
        .iter()
        .find(|kind| kind.plural == resource)
        .map_or("", |kind| kind.group);
    let qualified = match group {
        "" => resource.to_owned(),
        group => format!("{resource}.{group}"),
    };
    (
        qualified,
        json!({"name": name, "group": group, "kind": resource}),
    )
}

/// A `{"kind":"Status","status":"Success"}` body (DELETE of a namespace, for example).
pub fn success(resource: &str, name: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "kind": resource},
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_kind_object_and_field() {
        let err = ApiError::invalid(
            "Pod",
            "web",
            &[Cause::new(
                "FieldValueNotSupported",
                "spec.x",
                "Unsupported value",
            )],
        );
        let status = err.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(
            status["message"],
            "Pod \"web\" is invalid: spec.x: Unsupported value"
        );
        assert_eq!(status["details"]["causes"][0]["field"], "spec.x");
    }

    #[test]
    fn every_status_has_details_and_not_found_names_the_group() {
        for err in [
            ApiError::no_route(),
            ApiError::bad_request("x"),
            ApiError::unauthorized(),
        ] {
            assert_eq!(err.to_status()["details"], json!({}), "{err:?}");
        }
        let status = ApiError::not_found("deployments", "web").to_status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(
            status["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
        let status = ApiError::not_found("pods", "p").to_status();
        assert_eq!(status["message"], "pods \"p\" not found");
    }

    #[test]
    fn store_conflicts_become_409_and_gone_becomes_410() {
        let key = crate::store::ObjectKey::cluster("nodes", "n");
        let err = ApiError::from(StoreError::AlreadyExists(key));
        assert_eq!((err.code.as_u16(), err.reason), (409, "AlreadyExists"));
        let err = ApiError::from(StoreError::Gone {
            requested: 1,
            oldest: 5,
        });
        assert_eq!(err.code.as_u16(), 410);
    }
}
