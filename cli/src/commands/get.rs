//! `wasmfleet get RESOURCE [NAME]`: list objects or show one, as the server's table, JSON,
//! YAML or names.
//!
//! The resource is resolved through the server's discovery. Tables are what the server
//! prints: the request asks for a `Table` like kubectl ([`ACCEPT_TABLE`]) and the CLI only
//! lays it out ([`server_table`]); `-o json|yaml|name` read the full objects.

use std::io::Write;

use serde_json::Value;

use super::{Session, check_name, modules};
use crate::args::GetArgs;
use crate::discovery::{Resource, Scope};
use crate::output::server_table::{self, ACCEPT_TABLE, PrintOptions};
use crate::output::{Format, OutputError, to_json, to_yaml};

/// Runs `get`, writing the result to `out` (and "No resources found" to stderr).
pub async fn run(session: &Session, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if modules::is_modules(&args.kind) {
        return modules::get(session, args, out).await;
    }
    let resource = session.discovery().await?.resolve(&args.kind)?;
    let scope = if args.all_namespaces {
        Scope::All
    } else {
        Scope::Namespace(session.namespace.clone())
    };
    let path = match &args.name {
        Some(name) => resource.item_path(&session.namespace, check_name(name)?),
        None => resource.collection_path(&scope),
    };
    let text = match args.output {
        Some(Format::Json | Format::Yaml | Format::Name) => {
            let answer = session.client.get(&path).await?;
            objects_text(resource, &answer, args.output)?
        }
        Some(Format::Wide) | None => {
            let answer = session.client.get_accepting(&path, ACCEPT_TABLE).await?;
            let table = as_table(answer, jiff::Timestamp::now());
            table_text(&table, args, resource.namespaced && args.all_namespaces)?
        }
    };
    match text {
        Some(text) => out.write_all(text.as_bytes())?,
        None => eprintln!("{}", no_resources(resource, &scope)),
    }
    Ok(())
}

/// The server's Table, or kubectl's NAME/AGE table from a plain list or object (a server
/// that does not print tables answers those).
pub fn as_table(answer: Value, now: jiff::Timestamp) -> Value {
    if server_table::is_table(&answer) {
        return answer;
    }
    match answer["items"].as_array() {
        Some(items) => server_table::metadata_table(items, now),
        None => server_table::metadata_table(std::slice::from_ref(&answer), now),
    }
}

/// The table as text, or `None` when it has no rows.
pub fn table_text(
    table: &Value,
    args: &GetArgs,
    with_namespace: bool,
) -> Result<Option<String>, server_table::InvalidTable> {
    if server_table::row_count(table) == 0 {
        return Ok(None);
    }
    let options = PrintOptions {
        wide: args.output == Some(Format::Wide),
        with_namespace,
        show_labels: args.show_labels,
    };
    let table = server_table::render(table, options)?;
    Ok(Some(if args.no_headers {
        table.render_without_headers()
    } else {
        table.render()
    }))
}

/// An object or list as JSON, YAML or names; `None` for names of an empty list.
pub fn objects_text(
    resource: &Resource,
    answer: &Value,
    format: Option<Format>,
) -> Result<Option<String>, OutputError> {
    match format {
        Some(Format::Json) => to_json(answer).map(Some),
        Some(Format::Yaml) => to_yaml(answer).map(Some),
        _ => {
            let objects = answer["items"]
                .as_array()
                .map_or(std::slice::from_ref(answer), Vec::as_slice);
            let names: String = objects
                .iter()
                .map(|object| object_name(resource, object) + "\n")
                .collect();
            Ok((!names.is_empty()).then_some(names))
        }
    }
}

/// `pod/hello`, `deployment.apps/web`: kubectl's `-o name`.
pub fn object_name(resource: &Resource, object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    format!("{}/{name}", resource.qualified_kind())
}

/// kubectl's message for an empty list.
pub fn no_resources(resource: &Resource, scope: &Scope) -> String {
    match scope {
        Scope::Namespace(ns) if resource.namespaced => {
            format!("No resources found in {ns} namespace.")
        }
        _ => "No resources found".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> Resource {
        Resource {
            group: String::new(),
            version: "v1".into(),
            name: "pods".into(),
            singular: "pod".into(),
            short_names: vec!["po".into()],
            kind: "Pod".into(),
            namespaced: true,
        }
    }

    fn args(output: Option<Format>) -> GetArgs {
        GetArgs {
            kind: "pods".into(),
            name: None,
            output,
            all_namespaces: false,
            show_labels: false,
            no_headers: false,
        }
    }

    fn pod_list() -> Value {
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "hello", "namespace": "default", "creationTimestamp": "2026-11-27T11:59:00Z"}}]})
    }

    fn now() -> jiff::Timestamp {
        "2026-11-27T12:00:00Z".parse().expect("timestamp")
    }

    #[test]
    fn a_server_table_is_printed_as_it_came() {
        let table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "columnDefinitions": [{"name": "Name", "priority": 0}, {"name": "Mood", "priority": 0}],
            "rows": [{"cells": ["hello", "Sunny"], "object": {"metadata": {"name": "hello"}}}]});
        let text = table_text(&as_table(table, now()), &args(None), false).expect("valid");
        assert_eq!(text.as_deref(), Some("NAME    MOOD\nhello   Sunny\n"));
    }

    #[test]
    fn a_plain_list_or_object_prints_name_and_age() {
        let text = table_text(&as_table(pod_list(), now()), &args(None), false).expect("valid");
        assert_eq!(text.as_deref(), Some("NAME    AGE\nhello   60s\n"));
        let one = pod_list()["items"][0].clone();
        let mut no_headers = args(None);
        no_headers.no_headers = true;
        let text = table_text(&as_table(one, now()), &no_headers, false).expect("valid");
        assert_eq!(text.as_deref(), Some("hello   60s\n"));
    }

    #[test]
    fn an_empty_table_prints_nothing() {
        let empty = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                           "columnDefinitions": [{"name": "Name"}], "rows": []});
        assert_eq!(table_text(&empty, &args(None), false).expect("valid"), None);
        let empty_list = json!({"kind": "PodList", "items": []});
        assert_eq!(
            table_text(&as_table(empty_list, now()), &args(None), false).expect("valid"),
            None
        );
    }

    #[test]
    fn json_prints_the_whole_list_and_name_prints_kind_slash_name() {
        let text = objects_text(&pods(), &pod_list(), Some(Format::Json)).expect("renders");
        let value: Value = serde_json::from_str(&text.unwrap_or_default()).expect("json");
        assert_eq!(value["kind"], "PodList");
        let names = objects_text(&pods(), &pod_list(), Some(Format::Name)).expect("renders");
        assert_eq!(names.as_deref(), Some("pod/hello\n"));
        let mut deployments = pods();
        deployments.group = "apps".into();
        deployments.kind = "Deployment".into();
        let web = json!({"metadata": {"name": "web"}});
        assert_eq!(object_name(&deployments, &web), "deployment.apps/web");
    }

    #[test]
    fn one_object_in_yaml_is_the_object_itself() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge"}});
        let text = objects_text(&pods(), &ns, Some(Format::Yaml)).expect("renders");
        assert_eq!(
            text.as_deref(),
            Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: edge\n")
        );
    }

    #[test]
    fn empty_lists_say_where_nothing_was_found() {
        let ns = Scope::Namespace("default".to_owned());
        assert_eq!(
            no_resources(&pods(), &ns),
            "No resources found in default namespace."
        );
        assert_eq!(no_resources(&pods(), &Scope::All), "No resources found");
        let mut nodes = pods();
        nodes.namespaced = false;
        assert_eq!(no_resources(&nodes, &ns), "No resources found");
    }
}
