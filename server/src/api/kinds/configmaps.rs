//! ConfigMaps (core/v1): configuration data for pods, as env values or files. Admission
//! follows Kubernetes: keys like `[-._a-zA-Z0-9]+` of at most 253 characters, at most
//! 1 MiB of data in all, and an `immutable` object's data never changes. The rules for keys,
//! size and immutability are shared with Secrets ([`super::secrets`]).

use base64::Engine as _;
use serde_json::Value;

use super::{Column, Kind, READ_WRITE, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{self, METADATA, Shape};

/// ConfigMaps (namespaced).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    list_kind: "ConfigMapList",
    short_names: &["cm"],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[Column::new("Name"), DATA_COLUMN, Column::new("Age")],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

/// The DATA column: how many keys the object holds.
pub(super) const DATA_COLUMN: Column = Column {
    name: "Data",
    kind: "integer",
    priority: 0,
};

/// The most data a ConfigMap or Secret may hold, keys and values together (Kubernetes'
/// `MaxSecretSize`, which it applies to ConfigMaps too).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The longest key (a DNS subdomain's length).
const MAX_KEY_LENGTH: usize = 253;

const CONFIG_MAP: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("data", Shape::StringMap),
    ("binaryData", Shape::StringMap),
    ("immutable", Shape::Bool),
]);

fn admit_create(map: &mut Value) -> Result<(), ApiError> {
    let causes = validate(map);
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("ConfigMap", name_of(map), &causes)),
    }
}

fn admit_update(old: &Value, map: &mut Value) -> Result<(), ApiError> {
    let mut causes = validate(map);
    check_immutable(old, map, &["data", "binaryData"], &mut causes);
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("ConfigMap", name_of(map), &causes)),
    }
}

fn validate(map: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validation::check_shape(map, &CONFIG_MAP, "", &mut causes);
    validation::check_type_meta(map, "v1", "ConfigMap", &mut causes);
    validation::check_metadata(map, &mut causes);
    let mut size = 0;
    for (key, value) in entries(map, "data") {
        check_key(key, &format!("data[{key}]"), &mut causes);
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    for (key, value) in entries(map, "binaryData") {
        let field = format!("binaryData[{key}]");
        check_key(key, &field, &mut causes);
        if map["data"].get(key).is_some() {
            causes.push(Cause::new(
                "FieldValueInvalid",
                &field,
                format!("Invalid value: {key:?}: duplicate of key present in data"),
            ));
        }
        match value.as_str().map(decode_base64) {
            Some(Ok(bytes)) => size += key.len() + bytes.len(),
            _ => causes.push(not_base64(&field)),
        }
    }
    check_size(size, "data", &mut causes);
    causes
}

/// The `(key, value)` pairs of the map at `field` (none when it is absent or not a map).
pub(super) fn entries<'a>(
    obj: &'a Value,
    field: &str,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    obj.get(field)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

/// A key of a ConfigMap's or Secret's data, as Kubernetes' `IsConfigMapKey` checks it.
pub(super) fn check_key(key: &str, field: &str, causes: &mut Vec<Cause>) {
    let valid_chars = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let message = if key.len() > MAX_KEY_LENGTH {
        Some(format!("must be no more than {MAX_KEY_LENGTH} characters"))
    } else if !valid_chars {
        Some(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' \
             (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is \
             '[-._a-zA-Z0-9]+')"
                .to_owned(),
        )
    } else if key == "." || key == ".." {
        Some(format!("must not be '{key}'"))
    } else if key.starts_with("..") {
        Some("must not start with '..'".to_owned())
    } else {
        None
    };
    if let Some(message) = message {
        causes.push(Cause::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {key:?}: {message}"),
        ));
    }
}

/// Data of `size` bytes in all must fit [`MAX_DATA_BYTES`]; `field` names it.
pub(super) fn check_size(size: usize, field: &str, causes: &mut Vec<Cause>) {
    if size > MAX_DATA_BYTES {
        causes.push(Cause::new(
            "FieldValueTooLong",
            field,
            format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
        ));
    }
}

/// An object stored with `immutable: true` keeps it and the `fields` holding its data.
pub(super) fn check_immutable(old: &Value, new: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    if old["immutable"] != Value::Bool(true) {
        return;
    }
    let forbidden = |field: &str| {
        Cause::new(
            "FieldValueForbidden",
            field,
            "Forbidden: field is immutable when `immutable` is set",
        )
    };
    if new["immutable"] != Value::Bool(true) {
        causes.push(forbidden("immutable"));
    }
    for field in fields {
        let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|m| m.is_empty());
        let (a, b) = (&old[*field], &new[*field]);
        if a != b && !(empty(a) && empty(b)) {
            causes.push(forbidden(field));
        }
    }
}

/// Standard base64, as Kubernetes encodes `[]byte` in JSON.
pub(super) fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(text)
}

pub(super) fn not_base64(field: &str) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        field,
        "Invalid value: must be base64-encoded bytes",
    )
}

/// How many keys the object's `fields` hold together.
pub(super) fn key_count(obj: &Value, fields: &[&str]) -> Value {
    let count: usize = fields.iter().map(|f| entries(obj, f).count()).sum();
    count.into()
}

fn cells(map: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(map, "/metadata/name"),
        key_count(map, &["data", "binaryData"]),
        age(map, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(result: Result<(), ApiError>) -> Vec<String> {
        result.err().map(|e| e.cause_fields()).unwrap_or_default()
    }

    #[test]
    fn keys_are_checked_like_kubernetes() {
        let mut map = json!({"metadata": {"name": "c"}, "data": {
            "ok.key_1-x": "v", "bad/key": "v", "..hidden": "v", ".": "v"
        }});
        assert_eq!(
            fields(admit_create(&mut map)),
            ["data[.]", "data[..hidden]", "data[bad/key]"]
        );
        let long = "k".repeat(254);
        let mut map = json!({"metadata": {"name": "c"}, "data": {long.clone(): "v"}});
        assert_eq!(fields(admit_create(&mut map)), [format!("data[{long}]")]);
    }

    #[test]
    fn more_than_a_mebibyte_of_data_is_refused_naming_data() {
        let half = "x".repeat(MAX_DATA_BYTES / 2);
        let mut map = json!({"metadata": {"name": "c"}, "data": {"a": half, "b": half}});
        assert_eq!(fields(admit_create(&mut map)), ["data"]);
        let mut map = json!({"metadata": {"name": "c"}, "data": {"a": half}});
        assert!(admit_create(&mut map).is_ok());
    }

    #[test]
    fn binary_data_must_be_base64_and_not_repeat_a_data_key() {
        let mut map = json!({"metadata": {"name": "c"}, "data": {"a": "1"},
            "binaryData": {"a": "AAEC", "b": "not base64!"}});
        assert_eq!(
            fields(admit_create(&mut map)),
            ["binaryData[a]", "binaryData[b]"]
        );
    }

    #[test]
    fn an_immutable_config_map_keeps_its_data_and_flag() {
        let old = json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": true});
        let mut same = old.clone();
        same["metadata"]["labels"] = json!({"x": "y"});
        assert!(admit_update(&old, &mut same).is_ok());
        let mut changed = old.clone();
        changed["data"]["a"] = json!("2");
        assert_eq!(fields(admit_update(&old, &mut changed)), ["data"]);
        let mut unset = old.clone();
        unset["immutable"] = json!(false);
        assert_eq!(fields(admit_update(&old, &mut unset)), ["immutable"]);
        let mutable = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
        let mut changed = mutable.clone();
        changed["data"]["a"] = json!("2");
        assert!(admit_update(&mutable, &mut changed).is_ok());
    }
}
