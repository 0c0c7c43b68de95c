//! Fuzz targets for what the server decodes from outside (hidden from the docs).
//!
//! Each target takes arbitrary bytes and must never panic, hang or blow up; where it is
//! cheap it also checks a property (a round trip, or that a pre-check agrees with the
//! parser). The cargo-fuzz crate in `fuzz/` calls them, and so does the brief replay in
//! `tests/fuzz_smoke.rs`. Where a target covers several decoders, the first byte of the
//! input picks one.

use serde_json::{Value, json};

use wasmfleet_protocol::topic::{self, ServerInbound, Up};

use crate::api::body::{self, Patch};
use crate::api::kinds::pods;
use crate::api::{apply, nesting, validation};
use crate::fleet::inbound::expected_on;
use crate::k8s::selectors::Selector;
use crate::modules::{self, ImageRef};
use wasmfleet_protocol::quantity;

/// The media types of object bodies, then of patches, that the first byte picks from.
const MEDIA: [&str; 7] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
];

/// An API body through decoding and the pure part of admission.
pub fn api_body(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let media = MEDIA[usize::from(selector) % MEDIA.len()];
    check_nesting_agrees(media, body);
    if usize::from(selector) % MEDIA.len() < 3 {
        if let Ok(mut object) = body::parse_object(media, body) {
            admit(&mut object);
        }
    } else if let Ok(patch) = body::parse_patch(media, body) {
        patch_a_pod(&patch);
    }
}

/// What the nesting pre-scan lets through never trips the parser's own recursion limit,
/// so depth is always refused by the pre-scan, in linear time, with its clear message.
/// YAML aliases (`*name`) are the exception: an alias can nest deeper than the text shows,
/// and serde_yaml_ng's own limits (depth 128, alias expansions) bound those.
fn check_nesting_agrees(media: &str, body: &[u8]) {
    // The parsers' own message, not just any message quoting the document's text (the
    // long run found a key spelling "recursion limit").
    let too_deep =
        |err: &dyn std::fmt::Display| err.to_string().starts_with("recursion limit exceeded");
    if media.ends_with("yaml") && !body.contains(&b'*') {
        if nesting::check_yaml(body).is_ok()
            && let Err(err) = serde_yaml_ng::from_slice::<Value>(body)
        {
            assert!(!too_deep(&err), "YAML pre-scan passed, parser: {err}");
        }
    } else if media.ends_with("json")
        && nesting::check_json(body).is_ok()
        && let Err(err) = serde_json::from_slice::<Value>(body)
    {
        assert!(!too_deep(&err), "JSON pre-scan passed, parser: {err}");
    }
}

/// Admission as a create of each kind the body could be.
fn admit(object: &mut Value) {
    let _ = validation::validate_object_name(object, true);
    let _ = validation::validate_object_name(object, false);
    let _ = pods::admit_create(object);
}

/// A patch applied to a valid pod, then admitted as an update of it.
fn patch_a_pod(patch: &Patch) {
    let old = sample_pod();
    let mut new = old.clone();
    let patched = match patch {
        // Over a pod another manager has written, so that conflicts and removals run.
        Patch::Apply(applied) => {
            let mut old = old.clone();
            let writer = |manager: &str| apply::Writer {
                manager: manager.into(),
                api_version: "v1".into(),
                time: "2026-01-01T00:00:00Z".into(),
                subresource: String::new(),
            };
            apply::record_update(None, &mut old, &writer("other"));
            let force = applied.get("force").is_some();
            apply::apply(Some(&old), applied, &writer("fuzz"), force, "pods")
                .map(|applied| new = applied)
        }
        _ => patch.apply(&mut new),
    };
    if patched.is_ok() {
        let _ = pods::admit_update(&old, &mut new);
    }
}

/// A small valid pod (after defaults), as the store holds it.
fn sample_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"}},
        "spec": {
            "restartPolicy": "Always",
            "containers": [{
                "name": "c", "image": "hello:v1",
                "env": [{"name": "A", "value": "1"}],
                "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}
            }]
        },
        "status": {"phase": "Pending"}
    })
}

/// Label and field selectors, quantities and image references: the short grammars in
/// query parameters and fields. The first byte picks one.
pub fn selectors(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 4 {
        0 => label_and_field_selectors(&text),
        1 => memory(&text),
        2 => cpu(&text),
        _ => image(&text),
    }
}

/// `labels\nfields`: a selector that parses can be matched against any object.
fn label_and_field_selectors(text: &str) {
    let (labels, fields) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(selector) = Selector::parse(Some(labels), Some(fields)) {
        let _ = selector.matches(&sample_pod());
        let _ = selector.matches(&json!({"metadata": {"labels": [1]}}));
    }
}

/// A memory quantity that parses prints as one that parses to the same bytes.
fn memory(text: &str) {
    if let Ok(bytes) = quantity::memory_bytes(text) {
        let printed = quantity::format_memory(bytes);
        assert_eq!(quantity::memory_bytes(&printed), Ok(bytes), "{printed}");
    }
}

/// A CPU quantity that parses prints as one that parses to the same millicores.
fn cpu(text: &str) {
    if let Ok(millis) = quantity::cpu_millis(text) {
        let printed = quantity::format_cpu(millis);
        assert_eq!(quantity::cpu_millis(&printed), Ok(millis), "{printed}");
    }
}

/// An image reference that parses names a module by name and tag, or by digest.
fn image(text: &str) {
    match modules::parse_image(text) {
        Ok(ImageRef::Tagged { name, tag }) if text.contains(':') => {
            assert_eq!(format!("{name}:{tag}"), text);
        }
        Ok(ImageRef::Tagged { name, tag }) => {
            assert_eq!((name.as_str(), tag.as_str()), (text, "latest"))
        }
        Ok(ImageRef::Digest(hex)) => assert_eq!(format!("sha256:{hex}"), text),
        Err(_) => {}
    }
}

/// Module validation at push (HTTPS and MQTT): any bytes in, a verdict out.
pub fn wasm(data: &[u8]) {
    let _ = modules::validate_wasm(data);
}

/// The MQTT link's decoding on both ends: the first byte picks the server's (a publish on
/// one of its topics, the second byte picking the topic) or the agent's
/// (`wasmfleet_agent::fuzzing::link`).
pub fn link(data: &[u8]) {
    match data.split_first() {
        Some((selector, rest)) if selector % 2 == 0 => server_inbound(rest),
        Some((_, rest)) => wasmfleet_agent::fuzzing::link(rest),
        None => {}
    }
}

/// What the dispatcher (node topics) and the MQTT front door (manifests, modules) do with
/// a publish before they touch the store.
fn server_inbound(data: &[u8]) {
    let Some((&which, payload)) = data.split_first() else {
        return;
    };
    let topics = [
        topic::up("pi-1", Up::State),
        topic::up("pi-1", Up::Heartbeat),
        topic::up("pi-1", Up::Status),
        topic::up("pi-1", Up::BlobRequest),
        topic::up("pi-1", Up::Logs),
        topic::APPLY.to_owned(),
        topic::module_upload("hello", "v1"),
        "wf/v1/modules/hello".to_owned(),
    ];
    let chosen = &topics[usize::from(which) % topics.len()];
    match topic::parse_server_inbound(chosen) {
        Some(ServerInbound::FromNode { kind, .. }) => {
            if let Ok(message) = wasmfleet_protocol::decode(payload) {
                let _ = expected_on(kind, &message);
            }
        }
        None => front_door(chosen, payload),
    }
}

/// The front door's decision about a publish, then its manifest reading or module check.
fn front_door(topic_name: &str, payload: &[u8]) {
    use crate::fleet::front_door::request::{Decision, Incoming, Request, Work, decide};
    let payload = bytes::Bytes::copy_from_slice(payload);
    let incoming = Incoming {
        topic: topic_name,
        payload: &payload,
        retain: false,
        response_topic: Some("wf/v1/apply/result/fuzz"),
        correlation: None,
    };
    match decide(&incoming) {
        Decision::Accept(Request {
            work: Work::Apply(bytes),
            ..
        }) => {
            let _ = crate::fleet::front_door::manifests::resolve_all(&bytes);
        }
        Decision::Accept(Request {
            work: Work::Module { bytes, .. },
            ..
        }) => wasm(&bytes),
        Decision::Refuse { .. } | Decision::Ignore => {}
    }
}
