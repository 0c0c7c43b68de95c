//! The `pods/eviction` subresource (policy/v1 `Eviction`): how `kubectl drain` removes pods.
//! An eviction is a delete that PodDisruptionBudgets may refuse (429, naming the budget)
//! when the pod is Ready and taking it would leave fewer Ready pods than a budget selecting
//! it requires. Evictions are checked and applied one at a time, so two cannot both spend
//! the last allowed disruption.

use std::sync::Mutex;

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde_json::{Value, json};

use super::kinds::{Kind, Subresource};
use super::objects::{DeleteOptions, Target};
use super::status::ApiError;
use super::{ApiContext, blocking, body, router};
use crate::k8s::disruption::Budget;
use crate::k8s::pods;
use crate::k8s::selectors::Selector;
use crate::store::{ObjectKey, Scope, Store, StoreError};

/// `pods/eviction`.
pub const SUBRESOURCE: Subresource = Subresource {
    name: "eviction",
    kind: "Eviction",
    group_version: Some(("policy", "v1")),
    verbs: &["create"],
    route,
};

/// One eviction at a time (check and delete together).
static EVICTING: Mutex<()> = Mutex::new(());

fn route() -> MethodRouter<ApiContext> {
    post(evict).fallback(router::method_not_allowed)
}

async fn evict(
    Extension(kind): Extension<&'static Kind>,
    State(ctx): State<ApiContext>,
    params: RawPathParams,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = Target::from(&params).key(kind)?;
    // The body names the pod again, and may carry `deleteOptions` (a grace period,
    // preconditions, a dry run) for the delete the eviction does.
    let bytes = body::read_limited(&headers, body, 64 * 1024).await?;
    let options = delete_options_of(uri.query(), &bytes)?;
    let store = ctx.store.clone();
    blocking(move || {
        let _one_at_a_time = EVICTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        check_budgets(&store, &key)?;
        // Graceful, like any pod delete: the node stops the pod, then it goes.
        super::kinds::pods::delete(&store, &key, &options)
    })
    .await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    Ok((StatusCode::CREATED, axum::Json(status)).into_response())
}

/// The Eviction's `deleteOptions` (none when the body has none), with `dryRun` from the
/// query too.
fn delete_options_of(query: Option<&str>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let eviction: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|err| ApiError::bad_request(format!("invalid Eviction body: {err}")))?
    };
    let options = match eviction.get("deleteOptions") {
        None | Some(Value::Null) => Vec::new(),
        Some(options) => options.to_string().into_bytes(),
    };
    super::objects::delete_options(query, &options)
}

/// 429 when a budget selecting the pod allows no disruption now (only a Ready pod spends
/// one).
fn check_budgets(store: &Store, key: &ObjectKey) -> Result<(), ApiError> {
    let pod = store
        .get(key)?
        .ok_or_else(|| StoreError::NotFound(key.clone()))?;
    if !pods::is_ready(&pod) {
        return Ok(());
    }
    let namespace = key.namespace.as_deref().unwrap_or("default");
    let budgets = store
        .list(&Scope::namespace("poddisruptionbudgets", namespace))?
        .items;
    let selecting: Vec<&Value> = budgets
        .iter()
        .filter(|pdb| {
            Selector::from_label_selector(&pdb["spec"]["selector"])
                .is_ok_and(|s| s.matches_labels(pod.pointer("/metadata/labels")))
        })
        .collect();
    if selecting.is_empty() {
        return Ok(());
    }
    let namespace_pods = store.list(&Scope::namespace("pods", namespace))?.items;
    for pdb in selecting {
        let Some(budget) = Budget::of(pdb, namespace_pods.iter()) else {
            continue;
        };
        if budget.disruptions_allowed() == 0 {
            let name = pdb["metadata"]["name"].as_str().unwrap_or("");
            let message = format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                budget.desired_healthy, budget.healthy
            );
            return Err(ApiError::disruption_budget(&key.name, name, message));
        }
    }
    Ok(())
}
