//! What kubectl asks before anything else: `/version`, legacy discovery (`/api`, `/api/v1`,
//! `/apis`, `/apis/{group}/{version}`) and the routes of the OpenAPI v3 documents (built by
//! [`super::openapi`]). Everything but `/version` is drawn from the kind registry
//! ([`kinds::ALL`]).
//!
//! kubectl asks `/api` and `/apis` for aggregated discovery first; the plain answers here
//! make it fall back to one request per group-version (see
//! `shared/notes/kubectl-surface.md` §3).

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::kinds::{self, Kind};
use super::status::ApiError;
use super::{ApiContext, metrics_api};

/// The discovery and OpenAPI routes.
pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(api))
        .route("/api/{version}", get(core_resources))
        .route("/apis", get(apis))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/openapi/v3", get(openapi_root))
        .route("/openapi/v3/api/{version}", get(openapi_core))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi_group))
}

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
async fn api(headers: HeaderMap) -> Json<Value> {
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

/// `GET /apis`: the named groups, each with its one version.
async fn apis() -> Json<Value> {
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups()}))
}

fn groups() -> Vec<Value> {
    let mut groups: Vec<Value> = Vec::new();
    for kind in kinds::ALL.iter().filter(|k| !k.group.is_empty()) {
        if groups.iter().any(|g| g["name"] == kind.group) {
            continue;
        }
        let version = json!({"groupVersion": kind.api_version, "version": kind.version});
        groups.push(json!({
            "name": kind.group,
            "versions": [version.clone()],
            "preferredVersion": version,
        }));
    }
    groups.push(super::metrics_api::group());
    groups
}

/// `GET /api/{version}`: the core resources.
async fn core_resources(Path(version): Path<String>) -> Result<Json<Value>, ApiError> {
    resource_list("", &version)
}

/// `GET /apis/{group}/{version}`: a named group's resources.
async fn group_resources(
    Path((group, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    resource_list(&group, &version)
}

/// The kinds of one group-version; 404 when it serves none.
fn of_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Kind> {
    kinds::ALL
        .iter()
        .copied()
        .filter(move |k| k.group == group && k.version == version)
}

fn resource_list(group: &str, version: &str) -> Result<Json<Value>, ApiError> {
    if (group, version) == (metrics_api::render::GROUP, metrics_api::render::VERSION) {
        return Ok(Json(metrics_api::resource_list()));
    }
    let mut resources = Vec::new();
    for kind in of_group_version(group, version) {
        resources.push(json!({
            "name": kind.plural, "singularName": kind.singular, "namespaced": kind.namespaced,
            "kind": kind.kind, "verbs": kind.verbs, "shortNames": kind.short_names,
            "categories": kind.categories,
        }));
        resources.extend(kind.subresources.iter().map(|sub| {
            let mut entry = json!({
                "name": format!("{}/{}", kind.plural, sub.name), "singularName": "",
                "namespaced": kind.namespaced, "kind": sub.kind, "verbs": sub.verbs,
            });
            if let Some((group, version)) = sub.group_version {
                entry["group"] = group.into();
                entry["version"] = version.into();
            }
            entry
        }));
    }
    if resources.is_empty() {
        return Err(ApiError::no_route());
    }
    let group_version = match group {
        "" => version.to_owned(),
        group => format!("{group}/{version}"),
    };
    Ok(Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })))
}

/// `GET /openapi/v3`: one document per group-version.
async fn openapi_root() -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for path in super::openapi::group_versions() {
        let relative = path.trim_start_matches('/').to_owned();
        paths.insert(
            relative,
            json!({"serverRelativeURL": format!("/openapi/v3{path}")}),
        );
    }
    Json(json!({"paths": paths}))
}

/// `GET /openapi/v3/api/{version}`.
async fn openapi_core(Path(version): Path<String>) -> Result<Json<Value>, ApiError> {
    openapi_document("", &version)
}

/// `GET /openapi/v3/apis/{group}/{version}`.
async fn openapi_group(
    Path((group, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    openapi_document(&group, &version)
}

/// The group-version's document ([`super::openapi`]); 404 when it serves no kind.
fn openapi_document(group: &str, version: &str) -> Result<Json<Value>, ApiError> {
    super::openapi::document(group, version)
        .map(|doc| Json(doc.clone()))
        .ok_or_else(ApiError::no_route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_discovery_lists_every_core_kind_and_subresource() {
        let Ok(Json(list)) = resource_list("", "v1") else {
            panic!("core v1 is served");
        };
        let names: Vec<&str> = list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "namespaces",
                "nodes",
                "pods",
                "pods/log",
                "pods/eviction",
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "pods/ephemeralcontainers",
                "services",
                "endpoints",
                "configmaps",
                "secrets",
                "events",
                "serviceaccounts",
                "serviceaccounts/token"
            ]
        );
        let eviction = &list["resources"][4];
        assert_eq!(
            (&eviction["group"], &eviction["version"], &eviction["kind"]),
            (&json!("policy"), &json!("v1"), &json!("Eviction")),
            "drain needs the eviction subresource's group and kind"
        );
        assert!(resource_list("", "v2").is_err());
        assert!(resource_list("nope", "v1").is_err());
    }

    #[test]
    fn the_metrics_api_is_discovered_so_kubectl_top_finds_it() {
        let metrics = groups()
            .into_iter()
            .find(|g| g["name"] == "metrics.k8s.io")
            .expect("listed in /apis");
        assert_eq!(metrics["preferredVersion"]["version"], "v1beta1");
        let Ok(Json(list)) = resource_list("metrics.k8s.io", "v1beta1") else {
            panic!("metrics.k8s.io/v1beta1 is served");
        };
        let kinds: Vec<(&Value, &Value)> = list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (&r["name"], &r["kind"]))
            .collect();
        assert_eq!(
            kinds,
            [
                (&json!("nodes"), &json!("NodeMetrics")),
                (&json!("pods"), &json!("PodMetrics"))
            ]
        );
    }

    #[test]
    fn openapi_declares_field_validation_on_every_item_path() {
        let Ok(Json(doc)) = openapi_document("", "v1") else {
            panic!("core v1 is served");
        };
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(doc["paths"]["/api/v1/nodes/{name}"].is_object());
    }
}
