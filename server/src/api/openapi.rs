//! The OpenAPI v3 documents (`/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`):
//! the upstream Kubernetes schemas of the kinds wasmfleet serves, so that `kubectl explain`
//! describes every kind and field, and one PATCH per item path declaring `fieldValidation`,
//! so that `kubectl apply` validates on the server.
//!
//! The schemas are vendored in `openapi_schemas.json` (minified, about 250 KB): every schema
//! reachable from the kinds of the registry, trimmed from the upstream documents by
//! `server/openapi/trim.py` (its doc says where they come from and how to regenerate).
//! A group-version's document holds the schemas reachable from its kinds; each is built once,
//! on first use.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::kinds::{self, Kind};

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
    let mut documents = HashMap::new();
    for kind in described() {
        let path = kind.group_version_path();
        if documents.contains_key(&path) {
            continue;
        }
        let members: Vec<&Kind> = described()
            .filter(|k| k.group == kind.group && k.version == kind.version)
            .collect();
        documents.insert(path, build(&schemas, &members));
    }
    documents
}

/// The kinds the documents describe: all but the review kinds (`kinds::reviews`).
pub fn described() -> impl Iterator<Item = &'static Kind> {
    kinds::ALL
        .iter()
        .copied()
        .filter(|kind| !kinds::reviews::is_review(kind))
}

/// One document: the schemas reachable from `members`, and their PATCH operations.
fn build(schemas: &Map<String, Value>, members: &[&Kind]) -> Value {
    let mut paths = Map::new();
    for kind in members {
        let patch = json!({"patch": {
            "x-kubernetes-group-version-kind":
                {"group": kind.group, "version": kind.version, "kind": kind.kind},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}},
        }});
        paths.insert(kind.openapi_item_path(), patch);
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
fn declares(schema: &Value, kind: &Kind) -> bool {
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
        for kind in described() {
            let doc = document(kind.group, kind.version).unwrap_or(&Value::Null);
            let found = doc["components"]["schemas"]
                .as_object()
                .into_iter()
                .flatten()
                .find(|(_, schema)| declares(schema, kind));
            let (_, found) = found.unwrap_or_else(|| panic!("no schema for {}", kind.kind));
            assert!(found["description"].is_string(), "{}", kind.kind);
        }
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
