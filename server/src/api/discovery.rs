//! What kubectl asks before anything else: `/version`, legacy discovery (`/api`, `/api/v1`,
//! `/apis`) and a minimal OpenAPI v3 that declares `fieldValidation` on PATCH, so that
//! `kubectl apply` validates on the server instead of downloading a full schema.

use axum::Json;
use axum::http::HeaderMap;
use serde_json::{Value, json};

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `GET /version`. kubectl's dispatcher picks its client by `minor`.
pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("v1.32.0-wasmfleet.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

/// `GET /api`: the core group's versions.
pub async fn api(headers: HeaderMap) -> Json<Value> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    }))
}

/// `GET /apis`: no named groups are served through discovery yet.
pub async fn apis() -> Json<Value> {
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
}

/// `GET /api/v1`: the core resources served.
pub async fn api_v1() -> Json<Value> {
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": VERBS, "shortNames": ["po"], "categories": ["all"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod",
             "verbs": ["get"]},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node",
             "verbs": VERBS, "shortNames": ["no"]},
            {"name": "namespaces", "singularName": "namespace", "namespaced": false,
             "kind": "Namespace", "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
             "shortNames": ["ns"]},
        ],
    }))
}

/// `GET /openapi/v3`: the one group-version document there is.
pub async fn openapi_root() -> Json<Value> {
    Json(json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1"}}}))
}

/// `GET /openapi/v3/api/v1`: one PATCH operation per kind, declaring `fieldValidation`.
pub async fn openapi_v1() -> Json<Value> {
    let patch = |kind: &str| {
        json!({"patch": {
            "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}},
        }})
    };
    Json(json!({
        "openapi": "3.0.0",
        "info": {"title": "wasmfleet", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/api/v1/namespaces/{namespace}/pods/{name}": patch("Pod"),
            "/api/v1/nodes/{name}": patch("Node"),
            "/api/v1/namespaces/{name}": patch("Namespace"),
        },
    }))
}
