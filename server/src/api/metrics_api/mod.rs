//! `metrics.k8s.io/v1beta1`, the resource metrics API that `kubectl top` reads
//! (metrics-server's API): NodeMetrics and PodMetrics, list and get, across all
//! namespaces or in one, with `labelSelector` and `fieldSelector` (matched against the
//! measured Node or Pod).
//!
//! Nothing is stored: each request joins the stored Nodes and Pods with the usage their
//! agents reported last ([`crate::fleet::usage`]), so a deleted pod or node drops out at
//! once, and only a fresh report counts. The kinds are not in the kind registry (their
//! resource names, `nodes` and `pods`, are the core kinds' store tables); discovery lists
//! them through [`group`] and [`resource_list`].
//!
//! - [`render`]: the objects and their quantities (pure).

pub mod render;

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::router::method_not_allowed;
use super::status::ApiError;
use super::table;
use super::{ApiContext, blocking};
use crate::k8s::selectors::Selector;
use crate::store::{ObjectKey, Scope};
use render::{API_VERSION, GROUP, VERSION};

/// The group's routes.
pub fn routes() -> Router<ApiContext> {
    let prefix = format!("/apis/{API_VERSION}");
    Router::new()
        .route(
            &format!("{prefix}/nodes"),
            get(list_nodes).fallback(method_not_allowed),
        )
        .route(
            &format!("{prefix}/nodes/{{name}}"),
            get(get_node).fallback(method_not_allowed),
        )
        .route(
            &format!("{prefix}/pods"),
            get(list_all_pods).fallback(method_not_allowed),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/pods"),
            get(list_pods).fallback(method_not_allowed),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/pods/{{name}}"),
            get(get_pod).fallback(method_not_allowed),
        )
}

/// The group's entry in `/apis`.
pub fn group() -> Value {
    let version = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

/// The group-version's resources, as `/apis/metrics.k8s.io/v1beta1` lists them.
pub fn resource_list() -> Value {
    let resource = |name: &str, singular: &str, kind: &str, namespaced: bool| {
        json!({"name": name, "singularName": singular, "namespaced": namespaced,
               "kind": kind, "verbs": ["get", "list"]})
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [
            resource("nodes", "", "NodeMetrics", false),
            resource("pods", "", "PodMetrics", true),
        ],
    })
}

type Params = Query<HashMap<String, String>>;

fn selector(query: &HashMap<String, String>) -> Result<Selector, ApiError> {
    Selector::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )
    .map_err(ApiError::bad_request)
}

/// `GET .../nodes`.
async fn list_nodes(
    State(ctx): State<ApiContext>,
    Query(query): Params,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let selector = selector(&query)?;
    let nodes = stored(&ctx, Scope::all("nodes"), selector).await?;
    let (fresh, now) = (ctx.usage.fresh(Instant::now()), jiff::Timestamp::now());
    let items = nodes
        .iter()
        .filter_map(|node| render::node_metrics(node, &fresh, now))
        .collect();
    Ok(answer("NodeMetricsList", items, &headers))
}

/// `GET .../nodes/{name}`.
async fn get_node(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::cluster("nodes", &name);
    let node = one(&ctx, key).await?;
    let fresh = ctx.usage.fresh(Instant::now());
    node.and_then(|node| render::node_metrics(&node, &fresh, jiff::Timestamp::now()))
        .map(|metrics| answer_one(metrics, &headers))
        .ok_or_else(|| not_found("nodemetrics", &name))
}

/// `GET .../pods` (all namespaces).
async fn list_all_pods(
    State(ctx): State<ApiContext>,
    Query(query): Params,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    pods(&ctx, Scope::all("pods"), &query, &headers).await
}

/// `GET .../namespaces/{ns}/pods`.
async fn list_pods(
    State(ctx): State<ApiContext>,
    Path(namespace): Path<String>,
    Query(query): Params,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    pods(&ctx, Scope::namespace("pods", &namespace), &query, &headers).await
}

/// `GET .../namespaces/{ns}/pods/{name}`.
async fn get_pod(
    State(ctx): State<ApiContext>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let pod = one(&ctx, ObjectKey::namespaced("pods", &namespace, &name)).await?;
    let fresh = ctx.usage.fresh(Instant::now());
    pod.and_then(|pod| render::pod_metrics(&pod, &fresh, jiff::Timestamp::now()))
        .map(|metrics| answer_one(metrics, &headers))
        .ok_or_else(|| not_found("podmetrics", &format!("{namespace}/{name}")))
}

async fn pods(
    ctx: &ApiContext,
    scope: Scope,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let selector = selector(query)?;
    let pods = stored(ctx, scope, selector).await?;
    let (fresh, now) = (ctx.usage.fresh(Instant::now()), jiff::Timestamp::now());
    let items = pods
        .iter()
        .filter_map(|pod| render::pod_metrics(pod, &fresh, now))
        .collect();
    Ok(answer("PodMetricsList", items, headers))
}

/// A list of `list_kind`, or the Table of its items when the client asked for one
/// (`kubectl get podmetrics`).
fn answer(list_kind: &str, items: Vec<Value>, headers: &HeaderMap) -> Json<Value> {
    match table::wants_table(headers) {
        true => Json(table_of(&items)),
        false => Json(render::list(list_kind, items)),
    }
}

/// One object, or its one-row Table.
fn answer_one(metrics: Value, headers: &HeaderMap) -> Json<Value> {
    match table::wants_table(headers) {
        true => Json(table_of(&[metrics])),
        false => Json(metrics),
    }
}

fn table_of(items: &[Value]) -> Value {
    let now = jiff::Timestamp::now();
    table::render_columns(render::COLUMNS, render::cells, items, None, now)
}

/// The stored objects of `scope` that `selector` matches.
async fn stored(
    ctx: &ApiContext,
    scope: Scope,
    selector: Selector,
) -> Result<Vec<Value>, ApiError> {
    let store = ctx.store.clone();
    blocking(move || {
        let listing = store.list(&scope)?;
        Ok(listing
            .items
            .into_iter()
            .filter(|obj| selector.matches(obj))
            .collect())
    })
    .await
}

/// The stored object at `key`, if any.
async fn one(ctx: &ApiContext, key: ObjectKey) -> Result<Option<Value>, ApiError> {
    let store = ctx.store.clone();
    blocking(move || Ok(store.get(&key)?)).await
}

/// 404 as metrics-server answers it: `podmetrics.metrics.k8s.io "default/web" not found`.
fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError {
        code: StatusCode::NOT_FOUND,
        reason: "NotFound",
        message: format!("{resource}.{GROUP} \"{name}\" not found"),
        details: Some(json!({"name": name, "group": GROUP, "kind": resource})),
    }
}
