//! The module store (`wasmfleet.dev/v1` modules): fixed paths, like the join tokens.
//!
//! The store is not a Kubernetes resource (its items are `name:tag` records, not objects
//! with metadata) and the server neither lists it in discovery nor prints it as a Table,
//! so `get modules` reads the list and lays out its four fields here, and `push` uploads
//! to [`tag_path`].

use std::io::Write;

use indicatif::HumanBytes;
use serde_json::{Value, json};

use super::Session;
use crate::args::GetArgs;
use crate::client::{ClientError, Status};
use crate::output::table::Table;
use crate::output::{Format, OutputError, to_json, to_yaml};

/// Path of the module collection on the server.
pub const MODULES_PATH: &str = "/apis/wasmfleet.dev/v1/modules";

/// Whether `get`/`delete` were given the module store rather than a Kubernetes resource.
pub fn is_modules(typed: &str) -> bool {
    matches!(
        typed.to_ascii_lowercase().as_str(),
        "modules" | "module" | "mod"
    )
}

/// Path of one module tag (`PUT` uploads the bytes).
pub fn tag_path(name: &str, tag: &str) -> String {
    format!("{MODULES_PATH}/{name}/tags/{tag}")
}

/// `get modules [NAME]`: every tag (of NAME), in the requested format.
pub async fn get(session: &Session, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let list = session.client.get(MODULES_PATH).await?;
    let (list, items) = filter(list, args.name.as_deref())?;
    if items.is_empty() && matches!(args.output, None | Some(Format::Wide | Format::Name)) {
        eprintln!("No resources found");
        return Ok(());
    }
    out.write_all(render(&list, &items, args)?.as_bytes())?;
    Ok(())
}

/// Keeps the modules named `name` (all when `None`); a name with no tags is NotFound.
pub fn filter(mut list: Value, name: Option<&str>) -> Result<(Value, Vec<Value>), ClientError> {
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
    Ok((list, items))
}

fn render(list: &Value, items: &[Value], args: &GetArgs) -> Result<String, OutputError> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    match args.output {
        Some(Format::Json) => to_json(list),
        Some(Format::Yaml) => to_yaml(list),
        Some(Format::Name) => Ok(items
            .iter()
            .map(|item| format!("module/{}:{}\n", text(&item["name"]), text(&item["tag"])))
            .collect()),
        Some(Format::Wide) | None => {
            let table = table(items);
            Ok(if args.no_headers {
                table.render_without_headers()
            } else {
                table.render()
            })
        }
    }
}

/// `NAME  TAG  DIGEST  SIZE`.
pub fn table(items: &[Value]) -> Table {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let mut table = Table::new(&["NAME", "TAG", "DIGEST", "SIZE"]);
    table.rows = items
        .iter()
        .map(|module| {
            let size = module["size"]
                .as_u64()
                .map_or_else(|| "<unknown>".to_owned(), |s| HumanBytes(s).to_string());
            vec![
                text(&module["name"]),
                text(&module["tag"]),
                text(&module["digest"]),
                size,
            ]
        })
        .collect();
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_filter_by_name_and_report_missing_ones() {
        let list = json!({"apiVersion": "wasmfleet.dev/v1", "kind": "ModuleList", "items": [
            {"name": "hello", "tag": "v1", "digest": "sha256:aa", "size": 10},
            {"name": "exerciser", "tag": "v1", "digest": "sha256:bb", "size": 20}]});
        let (filtered, items) = filter(list.clone(), Some("hello")).expect("found");
        assert_eq!(items.len(), 1);
        assert_eq!(filtered["items"].as_array().map(Vec::len), Some(1));
        let err = filter(list, Some("nope")).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "Error from server (NotFound): modules \"nope\" not found"
        );
    }

    #[test]
    fn modules_show_name_tag_digest_and_human_size() {
        let items = [json!({"name": "hello", "tag": "v1", "digest": "sha256:ab12", "size": 46889})];
        assert_eq!(
            table(&items).render(),
            "NAME    TAG   DIGEST        SIZE\nhello   v1    sha256:ab12   45.79 KiB\n"
        );
    }

    #[test]
    fn module_names_are_the_store_not_a_discovered_resource() {
        for typed in ["modules", "module", "mod", "Modules"] {
            assert!(is_modules(typed), "{typed}");
        }
        assert!(!is_modules("pods"));
        assert_eq!(
            tag_path("hello", "v1"),
            "/apis/wasmfleet.dev/v1/modules/hello/tags/v1"
        );
    }
}
