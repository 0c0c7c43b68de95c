//! The review kinds behind `kubectl auth can-i` and `kubectl auth whoami`:
//! `authorization.k8s.io/v1` SelfSubjectAccessReview and SelfSubjectRulesReview, and
//! `authentication.k8s.io/v1` SelfSubjectReview. They are only created (POST to the
//! collection), never stored: the answer is the posted object with a `status` filled from
//! the request's authenticated [`User`] and the [`Authorizer`]'s decision (or, for
//! `--list`, the rules it holds in the namespace asked about).
//!
//! They are in the registry for discovery (`kubectl` finds the API through it); the router
//! sends their collections to [`create`] instead of the stored objects' handlers, and the
//! OpenAPI documents leave them out (no schemas are vendored for them).

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Column, Kind};
use crate::api::ApiContext;
use crate::api::auth::{Attributes, Authorizer, User};
use crate::api::body::{self, MAX_OBJECT_BODY};
use crate::api::rbac::PolicyRule;
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
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read_limited(&headers, body, MAX_OBJECT_BODY).await?;
    let mut review = body::decode_object(&headers, bytes).await?;
    let status = match kind.kind {
        "SelfSubjectAccessReview" => access_status(&ctx.authorizer, &user, &review),
        "SelfSubjectRulesReview" => rules_status(&ctx.authorizer, &user, &review),
        _ => json!({"userInfo": {"username": user.name, "uid": user.uid, "groups": user.groups}}),
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
fn access_status(authorizer: &Authorizer, user: &User, review: &Value) -> Value {
    let field = |path: &str| {
        review
            .pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let attributes = if review.pointer("/spec/resourceAttributes").is_some() {
        let at = |name: &str| field(&format!("/spec/resourceAttributes/{name}"));
        Attributes {
            verb: at("verb"),
            resource_request: true,
            group: at("group"),
            resource: at("resource"),
            subresource: at("subresource"),
            namespace: at("namespace"),
            name: at("name"),
            path: String::new(),
        }
    } else {
        Attributes {
            verb: field("/spec/nonResourceAttributes/verb"),
            path: field("/spec/nonResourceAttributes/path"),
            ..Attributes::default()
        }
    };
    let decision = authorizer.authorize(user, &attributes);
    json!({"allowed": decision.allowed, "reason": decision.reason})
}

/// What `user` may do in `spec.namespace`, as rules.
fn rules_status(authorizer: &Authorizer, user: &User, review: &Value) -> Value {
    let namespace = review
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rules = authorizer.rules(user, namespace);
    let (urls, resources): (Vec<&PolicyRule>, Vec<&PolicyRule>) = rules
        .iter()
        .partition(|rule| !rule.non_resource_urls.is_empty());
    let resource_rules: Vec<Value> = resources
        .iter()
        .map(|r| {
            let mut rule =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                rule["resourceNames"] = json!(r.resource_names);
            }
            rule
        })
        .collect();
    let non_resource_rules: Vec<Value> = urls
        .iter()
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    })
}
