//! `labelSelector` and `fieldSelector`: parsing and matching, as pure functions; and the
//! object form of a label selector (`metav1.LabelSelector`: `matchLabels` plus
//! `matchExpressions`) that workloads carry in `spec.selector`.
//!
//! Label selectors support `k=v`, `k==v`, `k!=v`, `k` (exists), `!k` (does not exist),
//! `k in (a,b)` and `k notin (a,b)`, comma-separated (all must hold). Field selectors support
//! `=`, `==` and `!=` on `metadata.name`, `metadata.namespace`, `spec.nodeName`,
//! `status.phase`, and the Event fields `kubectl describe` asks by (`involvedObject.name`,
//! `.namespace`, `.uid`, `.kind`, ..., `reason`, `type`, `source`).

use serde_json::Value;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// One field requirement: a JSON pointer, a value, and whether it must (not) equal it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    pointer: &'static str,
    value: String,
    equal: bool,
}

/// A parsed `labelSelector` plus `fieldSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

impl Selector {
    /// Parses both query parameters. The error message says what was wrong.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        let labels = match labels {
            Some(text) => split_top_level(text)
                .into_iter()
                .map(parse_label_requirement)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(text) => split_top_level(text)
                .into_iter()
                .map(parse_field_requirement)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Self { labels, fields })
    }

    /// A `metav1.LabelSelector`; the error names the field (relative to the selector) and
    /// says what is wrong. Operators: `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub fn from_label_selector(selector: &Value) -> Result<Self, (String, String)> {
        let mut labels = Vec::new();
        if let Some(map) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in map {
                let value = value.as_str().unwrap_or_default().to_owned();
                labels.push(LabelRequirement::Equals(key.clone(), value));
            }
        }
        let expressions = selector.get("matchExpressions").and_then(Value::as_array);
        for (i, expression) in expressions.into_iter().flatten().enumerate() {
            let field = |name: &str| format!("matchExpressions[{i}].{name}");
            let key = expression["key"].as_str().unwrap_or_default().to_owned();
            if key.is_empty() {
                return Err((field("key"), "Required value".into()));
            }
            let values: Vec<String> = expression["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let operator = expression["operator"].as_str().unwrap_or_default();
            let needs_values = match operator {
                "In" | "NotIn" => true,
                "Exists" | "DoesNotExist" => false,
                other => {
                    return Err((
                        field("operator"),
                        format!(
                            "Unsupported value: {other:?}: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""
                        ),
                    ));
                }
            };
            if needs_values == values.is_empty() {
                let why = if needs_values {
                    "Required value: must be specified when `operator` is 'In' or 'NotIn'"
                } else {
                    "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                };
                return Err((field("values"), why.into()));
            }
            labels.push(match operator {
                "In" => LabelRequirement::In(key, values),
                "NotIn" => LabelRequirement::NotIn(key, values),
                "Exists" => LabelRequirement::Exists(key),
                _ => LabelRequirement::NotExists(key),
            });
        }
        Ok(Self {
            labels,
            fields: Vec::new(),
        })
    }

    /// Whether it has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The label requirements as kubectl prints them (`app=web,tier in (a,b)`).
    pub fn label_text(&self) -> String {
        let parts: Vec<String> = self
            .labels
            .iter()
            .map(|req| match req {
                LabelRequirement::Equals(k, v) => format!("{k}={v}"),
                LabelRequirement::NotEquals(k, v) => format!("{k}!={v}"),
                LabelRequirement::Exists(k) => k.clone(),
                LabelRequirement::NotExists(k) => format!("!{k}"),
                LabelRequirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                LabelRequirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            })
            .collect();
        parts.join(",")
    }

    /// Whether a label map (`metadata.labels`) satisfies every label requirement.
    pub fn matches_labels(&self, labels: Option<&Value>) -> bool {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.labels.iter().all(|req| match req {
            LabelRequirement::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelRequirement::Exists(k) => label(k).is_some(),
            LabelRequirement::NotExists(k) => label(k).is_none(),
            LabelRequirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelRequirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        })
    }

    /// Whether `obj` satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_labels(obj.pointer("/metadata/labels"))
            && self.fields.iter().all(|req| {
                let actual = obj
                    .pointer(req.pointer)
                    .and_then(Value::as_str)
                    .unwrap_or("");
                (actual == req.value) == req.equal
            })
    }
}

/// Splits at commas that are not inside parentheses; drops empty parts.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_label_requirement(text: &str) -> Result<LabelRequirement, String> {
    let bad = || format!("unable to parse requirement: {text:?}");
    if let Some((key, value)) = text.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(
            label_key(key)?,
            value.trim().to_owned(),
        ));
    }
    if let Some((key, value)) = text.split_once("==").or_else(|| text.split_once('=')) {
        return Ok(LabelRequirement::Equals(
            label_key(key)?,
            value.trim().to_owned(),
        ));
    }
    if let Some(key) = text.strip_prefix('!') {
        return Ok(LabelRequirement::NotExists(label_key(key)?));
    }
    let words: Vec<&str> = text.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => Ok(LabelRequirement::Exists(label_key(key)?)),
        [key, rest] => {
            let rest = rest.trim();
            let (negated, list) = if let Some(list) = rest.strip_prefix("notin") {
                (true, list)
            } else if let Some(list) = rest.strip_prefix("in") {
                (false, list)
            } else {
                return Err(bad());
            };
            let values = list
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(bad)?
                .split(',')
                .map(|v| v.trim().to_owned())
                .collect();
            let key = label_key(key)?;
            Ok(if negated {
                LabelRequirement::NotIn(key, values)
            } else {
                LabelRequirement::In(key, values)
            })
        }
        _ => Err(bad()),
    }
}

fn label_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn parse_field_requirement(text: &str) -> Result<FieldRequirement, String> {
    let (field, value, equal) = if let Some((f, v)) = text.split_once("!=") {
        (f, v, false)
    } else if let Some((f, v)) = text.split_once("==").or_else(|| text.split_once('=')) {
        (f, v, true)
    } else {
        return Err(format!("invalid field selector: {text:?}"));
    };
    let pointer = match field.trim() {
        "metadata.name" => "/metadata/name",
        "metadata.namespace" => "/metadata/namespace",
        "spec.nodeName" => "/spec/nodeName",
        "status.phase" => "/status/phase",
        "involvedObject.name" => "/involvedObject/name",
        "involvedObject.namespace" => "/involvedObject/namespace",
        "involvedObject.uid" => "/involvedObject/uid",
        "involvedObject.kind" => "/involvedObject/kind",
        "involvedObject.apiVersion" => "/involvedObject/apiVersion",
        "involvedObject.fieldPath" => "/involvedObject/fieldPath",
        "reason" => "/reason",
        "type" => "/type",
        "source" => "/source/component",
        other => return Err(format!("field label not supported: {other}")),
    };
    Ok(FieldRequirement {
        pointer,
        value: value.trim().to_owned(),
        equal,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "edge"}},
            "spec": {"nodeName": "pi-1"},
        })
    }

    fn matches(labels: Option<&str>, fields: Option<&str>) -> bool {
        Selector::parse(labels, fields).unwrap().matches(&pod())
    }

    #[test]
    fn the_empty_selector_matches_everything() {
        assert!(matches(None, None));
        assert!(matches(Some(""), Some("")));
    }

    #[test]
    fn equality_inequality_and_existence_combine() {
        assert!(matches(Some("app=web,tier!=core,tier"), None));
        assert!(matches(Some("app==web,!gpu"), None));
        assert!(!matches(Some("app=web,tier=core"), None));
        assert!(!matches(Some("gpu"), None));
        assert!(!matches(Some("!app"), None));
    }

    #[test]
    fn set_based_requirements_work() {
        assert!(matches(Some("app in (web, api),tier notin (core)"), None));
        assert!(!matches(Some("app in (api)"), None));
        assert!(matches(Some("gpu notin (yes)"), None));
    }

    #[test]
    fn field_selectors_match_name_and_node() {
        assert!(matches(None, Some("metadata.name=web,spec.nodeName=pi-1")));
        assert!(!matches(None, Some("spec.nodeName=pi-2")));
        assert!(matches(None, Some("spec.nodeName!=pi-2")));
        assert!(!matches(None, Some("status.phase=Running")));
    }

    #[test]
    fn label_selector_objects_match_and_print_like_kubectl() {
        let selector = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["edge", "core"]},
                {"key": "gpu", "operator": "DoesNotExist"},
            ],
        });
        let parsed = Selector::from_label_selector(&selector).unwrap();
        assert!(parsed.matches(&pod()));
        assert_eq!(parsed.label_text(), "app=web,tier in (edge,core),!gpu");
        let other = json!({"matchLabels": {"app": "api"}});
        assert!(
            !Selector::from_label_selector(&other)
                .unwrap()
                .matches(&pod())
        );
        assert!(
            Selector::from_label_selector(&json!({}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_label_selector_objects_name_the_field() {
        let bad = |selector: Value| Selector::from_label_selector(&selector).unwrap_err().0;
        let op = json!({"matchExpressions": [{"key": "a", "operator": "Near", "values": ["x"]}]});
        assert_eq!(bad(op), "matchExpressions[0].operator");
        let no_values = json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
        assert_eq!(bad(no_values), "matchExpressions[0].values");
        let no_key = json!({"matchExpressions": [{"operator": "Exists"}]});
        assert_eq!(bad(no_key), "matchExpressions[0].key");
    }

    #[test]
    fn unsupported_fields_and_garbage_are_refused() {
        assert!(Selector::parse(None, Some("spec.image=x")).is_err());
        assert!(Selector::parse(Some("a b c"), None).is_err());
        assert!(Selector::parse(Some("app in web"), None).is_err());
    }
}
