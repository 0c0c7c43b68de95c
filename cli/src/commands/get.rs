//! `wasmfleet get KIND [NAME]`: list objects or show one, as a table, JSON, YAML or names.

use std::io::Write;

use serde_json::{Value, json};

use super::{Session, check_name};
use crate::args::GetArgs;
use crate::client::{ClientError, Status};
use crate::kinds::{Kind, MODULES_PATH, Scope};
use crate::output::rows::{TableOptions, table};
use crate::output::{Format, to_json, to_yaml};

/// What `get` fetched: one object, or a list (with the list object for `-o json|yaml`).
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// `get KIND NAME` of a Kubernetes object.
    One(Value),
    /// A list response (`*List`, or a ModuleList) and its items.
    Many {
        /// The whole list object as the server sent it (possibly filtered).
        list: Value,
        /// Its items.
        items: Vec<Value>,
    },
}

/// Runs `get`, writing the result to `out` (and "No resources found" to stderr).
pub async fn run(session: &Session, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let kind = Kind::from_alias(&args.kind)?;
    let scope = if args.all_namespaces {
        Scope::All
    } else {
        Scope::Namespace(session.namespace.clone())
    };
    let fetched = fetch(session, kind, &scope, args.name.as_deref()).await?;
    if let Fetched::Many { items, .. } = &fetched
        && items.is_empty()
        && matches!(args.output, None | Some(Format::Wide | Format::Name))
    {
        eprintln!("{}", no_resources(kind, &scope));
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    out.write_all(render(kind, &fetched, args.output, &scope, now)?.as_bytes())?;
    Ok(())
}

async fn fetch(
    session: &Session,
    kind: Kind,
    scope: &Scope,
    name: Option<&str>,
) -> Result<Fetched, anyhow::Error> {
    let client = &session.client;
    if kind == Kind::Module {
        let list = client.get(MODULES_PATH).await?;
        return Ok(filter_modules(list, name)?);
    }
    if let Some(name) = name {
        let path = kind.item_path(&session.namespace, check_name(name)?);
        return Ok(Fetched::One(client.get(&path).await?));
    }
    let list = client.get(&kind.collection_path(scope)).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(Fetched::Many { list, items })
}

/// Keeps the modules named `name` (all when `None`); a name with no tags is NotFound.
pub fn filter_modules(mut list: Value, name: Option<&str>) -> Result<Fetched, ClientError> {
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    if let Some(name) = name {
        items.retain(|item| item["name"] == name);
        if items.is_empty() {
            return Err(ClientError::Status(Status {
                code: 404,
                reason: "NotFound".to_owned(),
                message: format!("modules {name:?} not found"),
            }));
        }
        list["items"] = json!(items);
    }
    Ok(Fetched::Many { list, items })
}

/// kubectl's message for an empty list.
pub fn no_resources(kind: Kind, scope: &Scope) -> String {
    match scope {
        Scope::Namespace(ns) if kind.namespaced() => {
            format!("No resources found in {ns} namespace.")
        }
        _ => "No resources found".to_owned(),
    }
}

/// Renders what was fetched in the requested format (pure apart from `now`).
pub fn render(
    kind: Kind,
    fetched: &Fetched,
    format: Option<Format>,
    scope: &Scope,
    now: jiff::Timestamp,
) -> Result<String, crate::output::OutputError> {
    let (whole, items): (&Value, &[Value]) = match fetched {
        Fetched::One(object) => (object, std::slice::from_ref(object)),
        Fetched::Many { list, items } => (list, items),
    };
    match format {
        Some(Format::Json) => to_json(whole),
        Some(Format::Yaml) => to_yaml(whole),
        Some(Format::Name) => Ok(items
            .iter()
            .map(|item| object_name(kind, item) + "\n")
            .collect()),
        Some(Format::Wide) | None => {
            let options = TableOptions {
                wide: format == Some(Format::Wide),
                all_namespaces: *scope == Scope::All,
                now,
            };
            Ok(table(kind, items, options).render())
        }
    }
}

fn object_name(kind: Kind, item: &Value) -> String {
    match kind {
        Kind::Module => format!(
            "module/{}:{}",
            item["name"].as_str().unwrap_or_default(),
            item["tag"].as_str().unwrap_or_default()
        ),
        _ => format!(
            "{}/{}",
            kind.singular(),
            item["metadata"]["name"].as_str().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-27T12:00:00Z".parse().expect("timestamp")
    }

    fn pod_list() -> Fetched {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hello", "namespace": "default", "creationTimestamp": "2026-11-27T11:59:00Z"},
            "spec": {"containers": [{"name": "c", "image": "hello:v1"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
                "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        Fetched::Many {
            list: json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [pod.clone()]}),
            items: vec![pod],
        }
    }

    fn default_ns() -> Scope {
        Scope::Namespace("default".to_owned())
    }

    #[test]
    fn a_pod_list_renders_as_a_table() {
        let text = render(Kind::Pod, &pod_list(), None, &default_ns(), now()).expect("renders");
        assert_eq!(
            text,
            "NAME    READY   STATUS      RESTARTS   AGE\nhello   0/1     Completed   0          60s\n"
        );
    }

    #[test]
    fn json_output_prints_the_whole_list() {
        let text = render(
            Kind::Pod,
            &pod_list(),
            Some(Format::Json),
            &default_ns(),
            now(),
        )
        .expect("renders");
        let value: Value = serde_json::from_str(&text).expect("valid json");
        assert_eq!(value["kind"], "PodList");
        assert_eq!(value["items"][0]["metadata"]["name"], "hello");
    }

    #[test]
    fn name_output_prints_kind_slash_name() {
        let text = render(
            Kind::Pod,
            &pod_list(),
            Some(Format::Name),
            &default_ns(),
            now(),
        )
        .expect("renders");
        assert_eq!(text, "pod/hello\n");
    }

    #[test]
    fn one_object_in_yaml_is_the_object_itself() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge"}});
        let text = render(
            Kind::Namespace,
            &Fetched::One(ns),
            Some(Format::Yaml),
            &Scope::All,
            now(),
        )
        .expect("renders");
        assert_eq!(
            text,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: edge\n"
        );
    }

    #[test]
    fn modules_filter_by_name_and_report_missing_ones() {
        let list = json!({"apiVersion": "wasmfleet.dev/v1", "kind": "ModuleList", "items": [
            {"name": "hello", "tag": "v1", "digest": "sha256:aa", "size": 10},
            {"name": "exerciser", "tag": "v1", "digest": "sha256:bb", "size": 20}]});
        let Ok(Fetched::Many {
            items,
            list: filtered,
        }) = filter_modules(list.clone(), Some("hello"))
        else {
            panic!("expected a filtered list");
        };
        assert_eq!(items.len(), 1);
        assert_eq!(filtered["items"].as_array().map(Vec::len), Some(1));
        let err = filter_modules(list, Some("nope")).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "Error from server (NotFound): modules \"nope\" not found"
        );
    }

    #[test]
    fn empty_lists_say_where_nothing_was_found() {
        assert_eq!(
            no_resources(Kind::Pod, &default_ns()),
            "No resources found in default namespace."
        );
        assert_eq!(no_resources(Kind::Pod, &Scope::All), "No resources found");
        assert_eq!(
            no_resources(Kind::Node, &default_ns()),
            "No resources found"
        );
    }
}
