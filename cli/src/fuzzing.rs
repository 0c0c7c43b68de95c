//! The fuzz target for manifests (hidden from the docs).
//!
//! [`manifest`] takes arbitrary bytes as the text of a `-f` source (multi-document YAML, a
//! JSON stream, `List`s) and must never panic, hang or blow up; every object it accepts
//! has the fields the rest of the CLI relies on. The cargo-fuzz crate in `fuzz/` calls it,
//! and so does the brief replay in `tests/fuzz_smoke.rs`.

use crate::manifest;

/// A manifest's text through the CLI's parser.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(objects) = manifest::parse("fuzz.yaml", &text) else {
        return;
    };
    for object in objects {
        assert!(object.value["apiVersion"].is_string(), "{:?}", object.value);
        assert!(object.value["kind"].is_string(), "{:?}", object.value);
        assert!(
            object.value["metadata"]["name"].is_string(),
            "{:?}",
            object.value
        );
    }
}
