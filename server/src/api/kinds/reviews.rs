//! The review kinds behind `kubectl auth can-i` and `kubectl auth whoami`:
//! `authorization.k8s.io/v1` SelfSubjectAccessReview and SelfSubjectRulesReview, and
//! `authentication.k8s.io/v1` SelfSubjectReview. They are only created (POST to the
//! collection), never stored: the answer is the posted object with a `status` filled from
//! the request's authenticated [`User`] and the [`auth::authorize`] decision.
//!
//! They are in the registry for discovery (`kubectl` finds the API through it); the router
//! sends their collections to [`create`] instead of the stored objects' handlers, and the
//! OpenAPI documents leave them out (no schemas are vendored for them).

use axum::Extension;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Column, Kind};
use crate::api::auth::{self, Attributes, User};
use crate::api::body::{self, MAX_OBJECT_BODY};
use crate::api::status::ApiError;
use crate::api::table::text;

/// `kubectl auth can-i VERB RESOURCE`.
pub const ACCESS: Kind = review(
    "authorization.k8s.io",
    "authorization.k8s.io/v1",
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    "SelfSubjectAccessReview",
    "SelfSubjectAccessReviewList",
);

/// `kubectl auth can-i --list`.
pub const RULES: Kind = review(
    "authorization.k8s.io",
    "authorization.k8s.io/v1",
    "selfsubjectrulesreviews",
    "selfsubjectrulesreview",
    "SelfSubjectRulesReview",
    "SelfSubjectRulesReviewList",
);

/// `kubectl auth whoami`.
pub const SUBJECT: Kind = review(
    "authentication.k8s.io",
    "authentication.k8s.io/v1",
    "selfsubjectreviews",
    "selfsubjectreview",
    "SelfSubjectReview",
    "SelfSubjectReviewList",
);

/// The review kinds (create-only, never stored).
pub const ALL: &[&Kind] = &[&ACCESS, &RULES, &SUBJECT];

/// Whether `kind` is one of the review kinds.
pub fn is_review(kind: &Kind) -> bool {
    ALL.iter().any(|review| review.plural == kind.plural)
}

const NAME_ONLY: &[Column] = &[Column::new("Name")];

const fn review(
    group: &'static str,
    api_version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    list_kind: &'static str,
) -> Kind {
    Kind {
        group,
        version: "v1",
        api_version,
        plural,
        singular,
        kind,
        list_kind,
        short_names: &[],
        categories: &[],
        namespaced: false,
        verbs: &["create"],
        subresources: &[],
        columns: NAME_ONLY,
        cells: |obj, _| vec![text(obj, "/metadata/name")],
        admit_create: |_| Err(not_stored()),
        admit_update: |_, _| Err(not_stored()),
        allocate: None,
        delete: |_, _, _| Err(not_stored()),
    }
}

fn not_stored() -> ApiError {
    ApiError::method_not_allowed()
}

/// POST of a review: the posted object (JSON, YAML or protobuf) answered with its status.
pub async fn create(
    Extension(kind): Extension<&'static Kind>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read_limited(&headers, body, MAX_OBJECT_BODY).await?;
    let mut review = body::decode_object(&headers, bytes).await?;
    let status = match kind.kind {
        "SelfSubjectAccessReview" => access_status(&user, &review),
        "SelfSubjectRulesReview" => rules_status(&user),
        _ => json!({"userInfo": {"username": user.name, "groups": user.groups}}),
    };
    if let Some(map) = review.as_object_mut() {
        map.insert("apiVersion".into(), kind.api_version.into());
        map.insert("kind".into(), kind.kind.into());
        map.insert("status".into(), status);
        map.entry("metadata").or_insert_with(|| json!({}));
    }
    Ok((StatusCode::CREATED, axum::Json(review)).into_response())
}

/// The decision on a `spec.resourceAttributes` or `spec.nonResourceAttributes`.
fn access_status(user: &User, review: &Value) -> Value {
    let field = |path: &str| {
        review
            .pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let attributes = if review.pointer("/spec/resourceAttributes").is_some() {
        Attributes {
            verb: field("/spec/resourceAttributes/verb"),
            group: field("/spec/resourceAttributes/group"),
            resource: field("/spec/resourceAttributes/resource"),
            namespace: field("/spec/resourceAttributes/namespace"),
            path: String::new(),
        }
    } else {
        Attributes {
            verb: field("/spec/nonResourceAttributes/verb"),
            path: field("/spec/nonResourceAttributes/path"),
            ..Attributes::default()
        }
    };
    let (allowed, reason) = auth::authorize(user, &attributes);
    json!({"allowed": allowed, "reason": reason})
}

/// What `user` may do, as rules (everything for the admin, nothing otherwise).
fn rules_status(user: &User) -> Value {
    let (allowed, _) = auth::authorize(user, &Attributes::default());
    if allowed {
        json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        })
    } else {
        json!({"resourceRules": [], "nonResourceRules": [], "incomplete": false})
    }
}
