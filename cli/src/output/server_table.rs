//! Printing the server's `meta.k8s.io/v1` `Table` the way kubectl's table printer does.
//!
//! The server decides the columns and computes every cell; this module only lays them out:
//! columns of priority 0 (all of them with `-o wide`), headers upper-cased, a leading
//! NAMESPACE column with `-A` and a trailing LABELS column with `--show-labels`, both read
//! from each row's object metadata. A server that answers a plain list instead gets
//! kubectl's fallback of NAME and AGE from the metadata ([`metadata_table`]).

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::age::age;
use super::table::Table;

/// The `Accept` header kubectl sends for human-readable output: a Table if the server
/// can, else the plain object or list.
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// How kubectl decorates the server's table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrintOptions {
    /// `-o wide`: also the columns of priority above 0.
    pub wide: bool,
    /// `-A` on a namespaced resource: a leading NAMESPACE column.
    pub with_namespace: bool,
    /// `--show-labels`: a trailing LABELS column.
    pub show_labels: bool,
}

/// An answer that is neither a Table nor a list of objects.
#[derive(Debug, thiserror::Error)]
#[error("the server's Table is not valid: {0}")]
pub struct InvalidTable(#[from] serde_json::Error);

/// `meta.k8s.io/v1` `Table` (what the printer reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerTable {
    #[serde(default)]
    column_definitions: Vec<ColumnDefinition>,
    #[serde(default)]
    rows: Vec<Row>,
}

/// `TableColumnDefinition`.
#[derive(Debug, Deserialize)]
struct ColumnDefinition {
    name: String,
    #[serde(default)]
    priority: i64,
}

/// `TableRow`: the cells and (partial) object of one row.
#[derive(Debug, Deserialize)]
struct Row {
    #[serde(default)]
    cells: Vec<Value>,
    #[serde(default)]
    object: Value,
}

/// Whether an answer to [`ACCEPT_TABLE`] is a Table (else the server sent the plain form).
pub fn is_table(answer: &Value) -> bool {
    answer["kind"] == "Table" && answer["apiVersion"] == "meta.k8s.io/v1"
}

/// How many rows a Table has.
pub fn row_count(table: &Value) -> usize {
    table["rows"].as_array().map_or(0, Vec::len)
}

/// Lays out the server's Table as kubectl prints it.
pub fn render(table: &Value, options: PrintOptions) -> Result<Table, InvalidTable> {
    let table = ServerTable::deserialize(table)?;
    let shown: Vec<usize> = (0..table.column_definitions.len())
        .filter(|&i| options.wide || table.column_definitions[i].priority == 0)
        .collect();
    let mut headers: Vec<String> = shown
        .iter()
        .map(|&i| table.column_definitions[i].name.to_uppercase())
        .collect();
    decorate(
        &mut headers,
        "NAMESPACE".to_owned(),
        "LABELS".to_owned(),
        options,
    );
    let rows = table
        .rows
        .iter()
        .map(|row| row_cells(row, &shown, options))
        .collect();
    Ok(Table { headers, rows })
}

fn row_cells(row: &Row, shown: &[usize], options: PrintOptions) -> Vec<String> {
    let mut cells: Vec<String> = shown
        .iter()
        .map(|&i| row.cells.get(i).map(cell_text).unwrap_or_default())
        .collect();
    let metadata = &row.object["metadata"];
    let namespace = metadata["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    decorate(
        &mut cells,
        namespace,
        format_labels(&metadata["labels"]),
        options,
    );
    cells
}

/// Puts NAMESPACE first and LABELS last when asked for (headers and cells alike).
fn decorate(line: &mut Vec<String>, namespace: String, labels: String, options: PrintOptions) {
    if options.with_namespace {
        line.insert(0, namespace);
    }
    if options.show_labels {
        line.push(labels);
    }
}

/// A cell as kubectl prints it: strings cut at the first line break (marked `...`),
/// escape characters made visible, other JSON values in their text form, null empty.
fn cell_text(cell: &Value) -> String {
    let text = match cell {
        Value::Null => return String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let escaped = |s: &str| s.replace('\x1b', "^[");
    match text.find(['\n', '\r', '\x0c']) {
        Some(end) => format!("{}...", escaped(&text[..end])),
        None => escaped(&text),
    }
}

/// `k=v,k2=v2` sorted by key, or `<none>`: Kubernetes' `labels.FormatLabels`.
fn format_labels(labels: &Value) -> String {
    let Some(labels) = labels.as_object().filter(|labels| !labels.is_empty()) else {
        return "<none>".to_owned();
    };
    let mut pairs: Vec<(&String, &str)> = labels
        .iter()
        .map(|(key, value)| (key, value.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// kubectl's fallback for a server without Table support: a Table of NAME and AGE read
/// from each object's metadata (`objects` is a list's items, or the one object).
pub fn metadata_table(objects: &[Value], now: Timestamp) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let metadata = &object["metadata"];
            json!({"cells": [metadata["name"], age(&metadata["creationTimestamp"], now)],
                   "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "columnDefinitions": [{"name": "Name", "type": "string", "format": "name", "priority": 0},
                              {"name": "Age", "type": "string", "priority": 0}],
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server answers for two pods (cells as its table module computes them).
    fn pod_table() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "9"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Ready", "type": "string", "priority": 0},
                {"name": "Status", "type": "string", "priority": 0},
                {"name": "Restarts", "type": "integer", "priority": 0},
                {"name": "Age", "type": "string", "priority": 0},
                {"name": "IP", "type": "string", "priority": 1},
                {"name": "Node", "type": "string", "priority": 1}],
            "rows": [
                {"cells": ["hello", "1/1", "Running", 0, "5m", "10.42.0.7", "pi-1"],
                 "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": {"name": "hello", "namespace": "default",
                                         "labels": {"tier": "edge", "app": "hello"}}}},
                {"cells": ["sensor-reader", "0/1", "Pending", 2, "12s", "<none>", "<none>"],
                 "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": {"name": "sensor-reader", "namespace": "edge"}}}]
        })
    }

    fn rendered(options: PrintOptions) -> String {
        render(&pod_table(), options).expect("valid table").render()
    }

    #[test]
    fn priority_zero_columns_by_default_with_upper_case_headers() {
        assert_eq!(
            rendered(PrintOptions::default()),
            "NAME            READY   STATUS    RESTARTS   AGE\n\
             hello           1/1     Running   0          5m\n\
             sensor-reader   0/1     Pending   2          12s\n"
        );
    }

    #[test]
    fn wide_adds_the_priority_one_columns() {
        let options = PrintOptions {
            wide: true,
            ..PrintOptions::default()
        };
        assert_eq!(
            rendered(options),
            "NAME            READY   STATUS    RESTARTS   AGE   IP          NODE\n\
             hello           1/1     Running   0          5m    10.42.0.7   pi-1\n\
             sensor-reader   0/1     Pending   2          12s   <none>      <none>\n"
        );
    }

    #[test]
    fn all_namespaces_and_show_labels_decorate_from_the_row_metadata() {
        let options = PrintOptions {
            with_namespace: true,
            show_labels: true,
            wide: false,
        };
        assert_eq!(
            rendered(options),
            "NAMESPACE   NAME            READY   STATUS    RESTARTS   AGE   LABELS\n\
             default     hello           1/1     Running   0          5m    app=hello,tier=edge\n\
             edge        sensor-reader   0/1     Pending   2          12s   <none>\n"
        );
    }

    #[test]
    fn cells_print_like_kubectl_whatever_their_json_type() {
        assert_eq!(cell_text(&json!("two\nlines")), "two...");
        assert_eq!(cell_text(&json!("\x1b[31mred")), "^[[31mred");
        assert_eq!(cell_text(&json!(3)), "3");
        assert_eq!(cell_text(&json!(true)), "true");
        assert_eq!(cell_text(&Value::Null), "");
    }

    #[test]
    fn short_rows_and_extra_cells_do_not_break_the_layout() {
        let table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "columnDefinitions": [{"name": "Name"}, {"name": "Status"}],
            "rows": [{"cells": ["a"]}, {"cells": ["b", "Ready", "extra"]}]});
        let text = render(&table, PrintOptions::default())
            .expect("valid")
            .render();
        assert_eq!(text, "NAME   STATUS\na\nb      Ready\n");
    }

    #[test]
    fn a_malformed_table_is_an_error_not_a_panic() {
        let bad =
            json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "columnDefinitions": "x"});
        assert!(render(&bad, PrintOptions::default()).is_err());
        assert!(is_table(&pod_table()));
        assert!(!is_table(&json!({"kind": "PodList", "items": []})));
        assert_eq!(row_count(&pod_table()), 2);
    }

    #[test]
    fn labels_are_sorted_by_key_like_format_labels() {
        let labels = json!({"a.b": "2", "a": "1", "kubernetes.io/os": "linux"});
        assert_eq!(format_labels(&labels), "a=1,a.b=2,kubernetes.io/os=linux");
        assert_eq!(format_labels(&json!({})), "<none>");
        assert_eq!(format_labels(&Value::Null), "<none>");
    }

    #[test]
    fn a_plain_list_falls_back_to_name_and_age() {
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().expect("time");
        let items = [json!({"metadata": {"name": "web", "namespace": "edge",
                                         "creationTimestamp": "2026-11-27T11:00:00Z",
                                         "labels": {"app": "web"}}})];
        let table = metadata_table(&items, now);
        let options = PrintOptions {
            with_namespace: true,
            show_labels: true,
            wide: true,
        };
        assert_eq!(
            render(&table, options).expect("valid").render(),
            "NAMESPACE   NAME   AGE   LABELS\nedge        web    60m   app=web\n"
        );
    }
}
