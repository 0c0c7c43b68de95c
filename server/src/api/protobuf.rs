//! Just enough of the Kubernetes protobuf encoding for `kubectl create namespace`, which
//! always sends protobuf and never retries as JSON after a 415.
//!
//! Wire format: the magic `k8s\0`, then a `runtime.Unknown` {1: TypeMeta {1: apiVersion,
//! 2: kind}, 2: raw}. For a Namespace, raw = {1: ObjectMeta {1: name, 2: generateName,
//! 11: labels, 12: annotations (map entries {1: key, 2: value})}, ...}. Other kinds are
//! refused (the caller answers 415), and so is anything malformed.

use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// A protobuf field: a length-delimited one with its number and payload, or another kind
/// (varints, fixed-width numbers), which nothing here reads.
enum Field<'a> {
    Bytes(u32, &'a [u8]),
    Other,
}

/// Decodes a protobuf Namespace into its JSON form; `None` for anything else.
pub fn decode_namespace(body: &[u8]) -> Option<Value> {
    let unknown = body.strip_prefix(MAGIC)?;
    let (mut api_version, mut kind, mut raw) = (None, None, None);
    for field in fields(unknown)? {
        match field {
            Field::Bytes(1, type_meta) => {
                for f in fields(type_meta)? {
                    match f {
                        Field::Bytes(1, v) => api_version = Some(text(v)?),
                        Field::Bytes(2, v) => kind = Some(text(v)?),
                        _ => {}
                    }
                }
            }
            Field::Bytes(2, bytes) => raw = Some(bytes),
            _ => {}
        }
    }
    if kind? != "Namespace" || api_version.is_some_and(|v| v != "v1") {
        return None;
    }
    let mut metadata = Map::new();
    for field in fields(raw?)? {
        if let Field::Bytes(1, meta) = field {
            metadata = object_meta(meta)?;
        }
    }
    Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}))
}

fn object_meta(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut meta = Map::new();
    let (mut labels, mut annotations) = (Map::new(), Map::new());
    for field in fields(bytes)? {
        match field {
            Field::Bytes(1, v) => {
                meta.insert("name".into(), text(v)?.into());
            }
            Field::Bytes(2, v) => {
                meta.insert("generateName".into(), text(v)?.into());
            }
            Field::Bytes(11, entry) => {
                let (k, v) = map_entry(entry)?;
                labels.insert(k, v.into());
            }
            Field::Bytes(12, entry) => {
                let (k, v) = map_entry(entry)?;
                annotations.insert(k, v.into());
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Some(meta)
}

fn map_entry(bytes: &[u8]) -> Option<(String, String)> {
    let (mut key, mut value) = (String::new(), String::new());
    for field in fields(bytes)? {
        match field {
            Field::Bytes(1, k) => key = text(k)?,
            Field::Bytes(2, v) => value = text(v)?,
            _ => {}
        }
    }
    Some((key, value))
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// Splits a message into its fields; `None` if it is malformed.
fn fields(mut bytes: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        let number = u32::try_from(tag >> 3).ok()?;
        match tag & 7 {
            0 => {
                varint(&mut bytes)?;
                out.push(Field::Other);
            }
            1 => {
                bytes = bytes.get(8..)?;
                out.push(Field::Other);
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let (payload, rest) = (bytes.get(..len)?, bytes.get(len..)?);
                bytes = rest;
                out.push(Field::Bytes(number, payload));
            }
            5 => {
                bytes = bytes.get(4..)?;
                out.push(Field::Other);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn field(number: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, u8::try_from(payload.len()).unwrap()];
        out.extend_from_slice(payload);
        out
    }

    fn namespace(kind: &str) -> Vec<u8> {
        let type_meta = [field(1, b"v1"), field(2, kind.as_bytes())].concat();
        let label = [field(1, b"team"), field(2, b"edge")].concat();
        let meta = [field(1, b"x"), field(11, &label)].concat();
        let raw = field(1, &meta);
        [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat()
    }

    #[test]
    fn a_protobuf_namespace_decodes_with_name_and_labels() {
        let ns = decode_namespace(&namespace("Namespace")).unwrap();
        assert_eq!(ns["metadata"]["name"], "x");
        assert_eq!(ns["metadata"]["labels"]["team"], "edge");
    }

    #[test]
    fn other_kinds_and_garbage_are_refused() {
        assert!(decode_namespace(&namespace("ConfigMap")).is_none());
        assert!(decode_namespace(b"k8s\0\x0a\xff").is_none());
        assert!(decode_namespace(b"{}").is_none());
    }
}
