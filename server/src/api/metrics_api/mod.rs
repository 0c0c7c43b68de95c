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
//! - [`render`]: the objects and their quantities (pure);
//! - [`watch`]: `?watch=true` on a collection: the metrics that changed whenever a report
//!   arrives (`kubectl get podmetrics -w`), which metrics-server does not offer.

pub mod render;
pub mod watch;

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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
               "kind": kind, "verbs": ["get", "list", "watch"]})
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

/// What a collection measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    /// NodeMetrics.
    Nodes,
    /// PodMetrics.
    Pods,
}

impl Measured {
    fn list_kind(self) -> &'static str {
        match self {
            Measured::Nodes => "NodeMetricsList",
            Measured::Pods => "PodMetricsList",
        }
    }
}

/// The metrics of the stored objects of `scope` that `selector` matches and that have a
/// fresh report.
pub async fn current(
    ctx: &ApiContext,
    measured: Measured,
    scope: Scope,
    selector: Selector,
) -> Result<Vec<Value>, ApiError> {
    let objects = stored(ctx, scope, selector).await?;
    let (fresh, now) = (ctx.usage.fresh(Instant::now()), jiff::Timestamp::now());
    let render = match measured {
        Measured::Nodes => render::node_metrics,
        Measured::Pods => render::pod_metrics,
    };
    Ok(objects
        .iter()
        .filter_map(|obj| render(obj, &fresh, now))
        .collect())
}

/// A list, or with `watch` a stream of the changes ([`watch`]).
async fn collection(
    ctx: &ApiContext,
    measured: Measured,
    scope: Scope,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let selector = selector(query)?;
    let as_table = table::wants_table(headers);
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        return watch::serve(ctx, measured, scope, selector, query, as_table);
    }
    let revision = ctx.usage.revision().to_string();
    let items = current(ctx, measured, scope, selector).await?;
    Ok(Json(match as_table {
        true => table_of(&items, Some(&revision)),
        false => {
            let mut list = render::list(measured.list_kind(), items);
            list["metadata"]["resourceVersion"] = revision.into();
            list
        }
    })
    .into_response())
}

/// `GET .../nodes`.
async fn list_nodes(
    State(ctx): State<ApiContext>,
    Query(query): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    collection(&ctx, Measured::Nodes, Scope::all("nodes"), &query, &headers).await
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
        .map(|metrics| answer_one(&ctx, metrics, &headers))
        .ok_or_else(|| not_found("nodemetrics", &name))
}

/// `GET .../pods` (all namespaces).
async fn list_all_pods(
    State(ctx): State<ApiContext>,
    Query(query): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    collection(&ctx, Measured::Pods, Scope::all("pods"), &query, &headers).await
}

/// `GET .../namespaces/{ns}/pods`.
async fn list_pods(
    State(ctx): State<ApiContext>,
    Path(namespace): Path<String>,
    Query(query): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = Scope::namespace("pods", &namespace);
    collection(&ctx, Measured::Pods, scope, &query, &headers).await
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
        .map(|metrics| answer_one(&ctx, metrics, &headers))
        .ok_or_else(|| not_found("podmetrics", &format!("{namespace}/{name}")))
}

/// One object, or its one-row Table (with the `resourceVersion` a watch goes on from:
/// `kubectl get podmetrics NAME -w`).
fn answer_one(ctx: &ApiContext, metrics: Value, headers: &HeaderMap) -> Json<Value> {
    match table::wants_table(headers) {
        true => Json(table_of(
            &[metrics],
            Some(&ctx.usage.revision().to_string()),
        )),
        false => Json(metrics),
    }
}

/// The Table of metrics-server's columns (`kubectl get podmetrics`).
fn table_of(items: &[Value], revision: Option<&str>) -> Value {
    let now = jiff::Timestamp::now();
    table::render_columns(render::COLUMNS, render::cells, items, revision, now)
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
