//! Secrets (core/v1): like ConfigMaps, for credentials. `stringData` is folded into the
//! base64 `data` on every write (and never stored), the `type` is fixed at creation and its
//! required keys are checked as Kubernetes does (`kubernetes.io/tls` needs `tls.crt` and
//! `tls.key`, ...); wasmfleet only stores these types, it gives none of them a meaning.
//! The store keeps Secrets encrypted ([`crate::store::SecretsCipher`]) and the fleet sends
//! one only to nodes whose pods use it.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::configmaps::{
    DATA_COLUMN, check_immutable, check_key, check_size, decode_base64, entries, key_count,
    not_base64,
};
use super::{Column, Kind, READ_WRITE, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{self, METADATA, Shape};

/// Secrets (namespaced).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    list_kind: "SecretList",
    short_names: &[],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Type"),
        DATA_COLUMN,
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

/// The type of a Secret that names none.
pub const OPAQUE: &str = "Opaque";

const SECRET: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("data", Shape::StringMap),
    ("stringData", Shape::StringMap),
    ("type", Shape::Str),
    ("immutable", Shape::Bool),
]);

/// The keys (or annotation) each well-known type requires, as Kubernetes checks them.
const REQUIRED_KEYS: &[(&str, &[&str])] = &[
    ("kubernetes.io/tls", &["tls.crt", "tls.key"]),
    ("kubernetes.io/dockercfg", &[".dockercfg"]),
    ("kubernetes.io/dockerconfigjson", &[".dockerconfigjson"]),
    ("kubernetes.io/ssh-auth", &["ssh-privatekey"]),
];

/// The annotation a `kubernetes.io/service-account-token` Secret must carry.
const SERVICE_ACCOUNT_NAME: &str = "kubernetes.io/service-account.name";

fn admit_create(secret: &mut Value) -> Result<(), ApiError> {
    let mut causes = normalize(secret);
    validate(secret, &mut causes);
    result(secret, &causes)
}

fn admit_update(old: &Value, secret: &mut Value) -> Result<(), ApiError> {
    let mut causes = normalize(secret);
    validate(secret, &mut causes);
    if old["type"] != secret["type"] {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "type",
            format!("Invalid value: {}: field is immutable", secret["type"]),
        ));
    }
    check_immutable(old, secret, &["data"], &mut causes);
    result(secret, &causes)
}

fn result(secret: &Value, causes: &[Cause]) -> Result<(), ApiError> {
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("Secret", name_of(secret), causes)),
    }
}

/// Folds `stringData` into `data` (its values base64-encoded; a key in both takes the
/// `stringData` value, as in Kubernetes) and defaults `type` to `Opaque`.
fn normalize(secret: &mut Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(object) = secret.as_object_mut() else {
        return causes;
    };
    if object.get("type").is_none_or(|t| t.as_str() == Some("")) {
        object.insert("type".into(), OPAQUE.into());
    }
    let Some(string_data) = object.remove("stringData") else {
        return causes;
    };
    let Some(string_data) = string_data.as_object().filter(|m| !m.is_empty()) else {
        return causes;
    };
    let data = object
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if data.is_null() {
        *data = Value::Object(Map::new());
    }
    let Some(data) = data.as_object_mut() else {
        return causes; // the shape check names `data`
    };
    for (key, value) in string_data {
        match value.as_str() {
            Some(text) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                data.insert(key.clone(), encoded.into());
            }
            None => causes.push(Cause::new(
                "FieldValueInvalid",
                format!("stringData[{key}]"),
                "Invalid value: expected a string",
            )),
        }
    }
    causes
}

fn validate(secret: &Value, causes: &mut Vec<Cause>) {
    validation::check_shape(secret, &SECRET, "", causes);
    validation::check_type_meta(secret, "v1", "Secret", causes);
    validation::check_metadata(secret, causes);
    let mut size = 0;
    for (key, value) in entries(secret, "data") {
        let field = format!("data[{key}]");
        check_key(key, &field, causes);
        match value.as_str().map(decode_base64) {
            Some(Ok(bytes)) => size += key.len() + bytes.len(),
            _ => causes.push(not_base64(&field)),
        }
    }
    check_size(size, "data", causes);
    check_type(secret, causes);
}

/// The keys (or annotation) the Secret's type requires.
fn check_type(secret: &Value, causes: &mut Vec<Cause>) {
    let kind = secret["type"].as_str().unwrap_or(OPAQUE);
    let has = |key: &str| secret["data"].get(key).is_some();
    if let Some((_, keys)) = REQUIRED_KEYS.iter().find(|(t, _)| *t == kind) {
        for key in keys.iter().filter(|k| !has(k)) {
            causes.push(validation::required(&format!("data[{key}]")));
        }
    }
    if kind == "kubernetes.io/dockerconfigjson" {
        let json = secret["data"][".dockerconfigjson"]
            .as_str()
            .map(decode_base64);
        if let Some(Ok(bytes)) = json
            && let Err(err) = serde_json::from_slice::<Value>(&bytes)
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "data[.dockerconfigjson]",
                format!("Invalid value: \"<secret contents redacted>\": {err}"),
            ));
        }
    }
    let annotated = secret
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SERVICE_ACCOUNT_NAME))
        .and_then(Value::as_str)
        .is_some_and(|name| !name.is_empty());
    if kind == "kubernetes.io/service-account-token" && !annotated {
        causes.push(validation::required(&format!(
            "metadata.annotations[{SERVICE_ACCOUNT_NAME}]"
        )));
    }
}

fn cells(secret: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(secret, "/metadata/name"),
        text(secret, "/type"),
        key_count(secret, &["data"]),
        age(secret, now),
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
    fn string_data_is_folded_into_base64_data_and_the_type_defaults_to_opaque() {
        let mut secret = json!({"metadata": {"name": "s"},
            "data": {"a": "MQ==", "b": "Mg=="}, "stringData": {"b": "two", "c": "three"}});
        admit_create(&mut secret).unwrap();
        assert_eq!(
            secret,
            json!({"metadata": {"name": "s"}, "type": "Opaque",
                "data": {"a": "MQ==", "b": "dHdv", "c": "dGhyZWU="}})
        );
    }

    #[test]
    fn data_must_be_base64_with_valid_keys() {
        let mut secret = json!({"metadata": {"name": "s"},
            "data": {"a": "not base64!", "b/c": "MQ=="}});
        assert_eq!(fields(admit_create(&mut secret)), ["data[a]", "data[b/c]"]);
    }

    #[test]
    fn well_known_types_need_their_keys() {
        let mut tls = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": "x"}});
        assert_eq!(fields(admit_create(&mut tls)), ["data[tls.key]"]);
        let mut docker = json!({"metadata": {"name": "s"},
            "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{"}});
        assert_eq!(
            fields(admit_create(&mut docker)),
            ["data[.dockerconfigjson]"]
        );
        let mut token = json!({"metadata": {"name": "s"},
            "type": "kubernetes.io/service-account-token", "data": {}});
        assert_eq!(
            fields(admit_create(&mut token)),
            [format!("metadata.annotations[{SERVICE_ACCOUNT_NAME}]")]
        );
        let mut good = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": "{\"auths\": {}}"}});
        assert!(admit_create(&mut good).is_ok());
    }

    #[test]
    fn the_type_is_fixed_and_immutable_data_stays() {
        let old = json!({"metadata": {"name": "s"}, "type": "Opaque",
            "data": {"a": "MQ=="}, "immutable": true});
        let mut retyped = old.clone();
        retyped["type"] = json!("kubernetes.io/basic-auth");
        assert_eq!(fields(admit_update(&old, &mut retyped)), ["type"]);
        let mut changed = old.clone();
        changed["stringData"] = json!({"a": "2"});
        assert_eq!(fields(admit_update(&old, &mut changed)), ["data"]);
    }

    #[test]
    fn more_than_a_mebibyte_after_decoding_is_refused() {
        let big = "x".repeat(super::super::configmaps::MAX_DATA_BYTES);
        let mut secret = json!({"metadata": {"name": "s"}, "stringData": {"a": big}});
        assert_eq!(fields(admit_create(&mut secret)), ["data"]);
    }
}
