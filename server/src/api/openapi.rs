//! The OpenAPI v3 documents (`/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`):
//! the upstream Kubernetes schemas of the kinds wasmfleet serves, so that `kubectl explain`
//! describes every kind and field, and one PATCH per item path declaring `fieldValidation`,
//! so that `kubectl apply` validates on the server.
//!
//! The schemas are vendored in `openapi_schemas.json` (minified, about 250 KB): every schema
//! reachable from the kinds of the registry, trimmed from the upstream documents by
//! `server/openapi/trim.py` (its doc says where they come from and how to regenerate).
//! A group-version's document holds the schemas reachable from its kinds; each is built once,
//! on first use. Besides the registry's kinds, the documents describe the read-only kinds of
//! `metrics.k8s.io` ([`super::metrics_api`]), which the registry does not hold.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::kinds::{self, Kind};
use super::metrics_api::render as metrics;

/// The vendored schemas, by name (`io.k8s.api.apps.v1.Deployment`).
const SCHEMAS: &str = include_str!("openapi_schemas.json");

/// The documents, by group-version path (`/api/v1`), built on first use.
static DOCUMENTS: OnceLock<HashMap<String, Value>> = OnceLock::new();

/// The document of one group-version; `None` when it serves no kind.
pub fn document(group: &str, version: &str) -> Option<&'static Value> {
    let path = match group {
        "" => format!("/api/{version}"),
        group => format!("/apis/{group}/{version}"),
    };
    DOCUMENTS.get_or_init(build_all).get(&path)
}

fn build_all() -> HashMap<String, Value> {
    let schemas: Map<String, Value> = match serde_json::from_str(SCHEMAS) {
        Ok(schemas) => schemas,
        Err(err) => {
            tracing::error!(%err, "the vendored OpenAPI schemas do not parse");
            Map::new()
        }
    };
    let all = members();
    group_versions()
        .into_iter()
        .map(|path| {
            let members: Vec<&Member> = all.iter().filter(|m| m.path() == path).collect();
            let document = build(&schemas, &members);
            (path, document)
        })
        .collect()
}

/// The group-version paths (`/api/v1`, `/apis/apps/v1`) that have a document.
pub fn group_versions() -> BTreeSet<String> {
    members().iter().map(Member::path).collect()
}

/// One kind a document describes.
struct Member {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    /// Its item path (`{namespace}`, `{name}`), where kubectl finds the kind.
    item_path: String,
    /// Whether it is only read (no PATCH, so nothing for `kubectl apply` to validate).
    read_only: bool,
}

impl Member {
    fn path(&self) -> String {
        kinds::group_version_path(self.group, self.version)
    }
}

/// Every kind the documents describe: the [`described`] kinds of the registry, and the
/// metrics kinds.
fn members() -> Vec<Member> {
    let registered = described().map(|kind| Member {
        group: kind.group,
        version: kind.version,
        kind: kind.kind,
        item_path: kind.openapi_item_path(),
        read_only: false,
    });
    let read_only = metrics::KINDS.iter().map(|kind| Member {
        group: metrics::GROUP,
        version: metrics::VERSION,
        kind,
        item_path: metrics::item_path(kind),
        read_only: true,
    });
    registered.chain(read_only).collect()
}

/// The kinds the documents describe: all but the review kinds (`kinds::reviews`).
pub fn described() -> impl Iterator<Item = &'static Kind> {
    kinds::ALL
        .iter()
        .copied()
        .filter(|kind| !kinds::reviews::is_review(kind))
}

/// One document: the schemas reachable from `members`, and one operation per item path
/// naming its kind: PATCH declaring `fieldValidation`, or GET for a read-only kind.
fn build(schemas: &Map<String, Value>, members: &[&Member]) -> Value {
    let mut paths = Map::new();
    for kind in members {
        let gvk = json!({"group": kind.group, "version": kind.version, "kind": kind.kind});
        let ok = json!({"200": {"description": "OK"}});
        let operation = match kind.read_only {
            true => json!({"get": {"x-kubernetes-group-version-kind": gvk, "responses": ok}}),
            false => json!({"patch": {
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "responses": ok,
            }}),
        };
        paths.insert(kind.item_path.clone(), operation);
    }
    let roots = schemas
        .iter()
        .filter(|(_, schema)| members.iter().any(|kind| declares(schema, kind)))
        .map(|(name, _)| name.clone());
    let components: Map<String, Value> = reachable(schemas, roots)
        .into_iter()
        .filter_map(|name| Some((name.clone(), schemas.get(&name)?.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "wasmfleet", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": components},
    })
}

/// Whether `schema` is the schema of `kind` (its `x-kubernetes-group-version-kind`).
fn declares(schema: &Value, kind: &Member) -> bool {
    schema["x-kubernetes-group-version-kind"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|gvk| {
            gvk["group"] == kind.group && gvk["version"] == kind.version && gvk["kind"] == kind.kind
        })
}

/// The names of `roots` and of every schema they reference, transitively.
fn reachable(
    schemas: &Map<String, Value>,
    roots: impl Iterator<Item = String>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = schemas.get(&name) {
            collect_refs(schema, &mut todo);
        }
    }
    seen
}

fn collect_refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        out.extend(target.rsplit('/').next().map(str::to_owned));
                    }
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc["components"]["schemas"][name]
    }

    #[test]
    fn every_served_kind_has_its_schema_with_descriptions() {
        for kind in members() {
            let doc = document(kind.group, kind.version).unwrap_or(&Value::Null);
            let found = doc["components"]["schemas"]
                .as_object()
                .into_iter()
                .flatten()
                .find(|(_, schema)| declares(schema, &kind));
            let (_, found) = found.unwrap_or_else(|| panic!("no schema for {}", kind.kind));
            assert!(found["description"].is_string(), "{}", kind.kind);
        }
    }

    #[test]
    fn the_metrics_kinds_have_a_read_only_document() {
        let Some(doc) = document("metrics.k8s.io", "v1beta1") else {
            panic!("metrics.k8s.io/v1beta1 has a document");
        };
        let pod = schema(doc, "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics");
        assert!(pod["properties"]["containers"]["description"].is_string());
        let container = schema(
            doc,
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics",
        );
        assert!(container["properties"]["usage"]["description"].is_string());
        assert!(schema(doc, "io.k8s.apimachinery.pkg.api.resource.Quantity").is_object());
        let pods = &doc["paths"]["/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(
            pods["get"]["x-kubernetes-group-version-kind"]["kind"],
            "PodMetrics"
        );
        assert!(pods["patch"].is_null(), "nothing to PATCH");
        assert!(group_versions().contains("/apis/metrics.k8s.io/v1beta1"));
    }

    #[test]
    fn documents_resolve_every_reference_and_hold_only_their_groups_kinds() {
        let Some(apps) = document("apps", "v1") else {
            panic!("apps/v1 is served");
        };
        let strategy = schema(apps, "io.k8s.api.apps.v1.DeploymentStrategy");
        assert!(strategy["properties"]["rollingUpdate"]["description"].is_string());
        assert!(schema(apps, "io.k8s.api.core.v1.PodSpec").is_object());
        assert!(schema(apps, "io.k8s.api.batch.v1.Job").is_null());
        let mut refs = Vec::new();
        collect_refs(&apps["components"], &mut refs);
        for name in refs {
            assert!(
                schema(apps, &name).is_object(),
                "{name} is referenced but missing"
            );
        }
        let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(patch["patch"]["parameters"][0]["name"], "fieldValidation");
        assert!(document("nope", "v1").is_none());
    }
}
