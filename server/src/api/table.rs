//! Server-side `Table` rendering: what `kubectl get` prints in its human-readable formats.
//!
//! kubectl asks for it with `Accept: application/json;as=Table;...`. Columns follow upstream
//! (`-o wide` shows the columns with priority 1). Rows carry the object's metadata as a
//! `PartialObjectMetadata`, which `-A` and `--show-labels` read.

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::kinds::{Column, Kind};

/// Whether the client asked for a Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"))
}

/// A Table of `objects`, read at `revision`.
pub fn render(
    kind: &Kind,
    objects: &[Value],
    revision: Option<&str>,
    now: jiff::Timestamp,
) -> Value {
    render_columns(kind.columns, kind.cells, objects, revision, now)
}

/// A Table of `objects` with `columns`, a row of `cells` each (for what is not a [`Kind`]:
/// the metrics API).
pub fn render_columns(
    columns: &[Column],
    cells: fn(&Value, jiff::Timestamp) -> Vec<Value>,
    objects: &[Value],
    revision: Option<&str>,
    now: jiff::Timestamp,
) -> Value {
    let columns: Vec<Value> = columns
        .iter()
        .map(|column| {
            let format = if column.name == "Name" { "name" } else { "" };
            json!({"name": column.name, "type": column.kind, "format": format,
                   "description": "", "priority": column.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            json!({
                "cells": cells(obj, now),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                },
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some(revision) = revision {
        metadata["resourceVersion"] = revision.into();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The text at `pointer`, or `<none>` (kubectl's empty cell).
pub fn text(obj: &Value, pointer: &str) -> Value {
    str_at(obj, pointer).unwrap_or("<none>").into()
}

/// `text`, or `<none>` when it is empty (kubectl's empty cell for a joined list).
pub fn or_none(text: String) -> Value {
    match text.is_empty() {
        true => "<none>".into(),
        false => text.into(),
    }
}

/// The non-empty string at `pointer`.
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The integer at `pointer`, 0 when absent (kubectl prints absent counts as 0).
pub fn count(obj: &Value, pointer: &str) -> Value {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .into()
}

/// The AGE cell: time since `metadata.creationTimestamp`.
pub fn age(obj: &Value, now: jiff::Timestamp) -> Value {
    let created =
        str_at(obj, "/metadata/creationTimestamp").and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match created {
        Some(created) => human_duration(now.as_second().saturating_sub(created.as_second())).into(),
        None => "<unknown>".into(),
    }
}

/// kubectl's short durations: `42s`, `3m12s`, `15m`, `4h5m`, `20h`, `3d4h`, `12d`, `3y`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(4 * 3600 + 300), "4h5m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3d4h");
        assert_eq!(human_duration(-5), "0s");
    }
}
