//! Fuzz targets for what the agent decodes from the server (hidden from the docs).
//!
//! [`link`] takes arbitrary bytes and must never panic, hang or blow up: the first byte
//! picks the classification of one publish, a sequence of desired-state messages through
//! the [`Assembler`], or the check of an artifact offer's signature. The cargo-fuzz crate in
//! `fuzz/` calls it (through the server's `link` target), and so does the brief replay in
//! the server's `tests/fuzz_smoke.rs`.

use wasmfleet_protocol::artifact::{ArtifactRequest, verify};
use wasmfleet_protocol::pod::{DesiredIndex, DesiredPods};
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_protocol::{Message, decode};

use crate::link::assembly::Assembler;
use crate::link::inbound::classify;

/// The node the fuzzed publishes arrive at.
const NODE: &str = "pi-1";

/// A throwaway P-256 CA certificate (its key was discarded) to check signatures against.
const CA_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIUbMS+TcoKRJeQuvAkbnGYKfMR/50wCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRd2FzbWZsZWV0IGZ1enogQ0EwIBcNMjYxMjA2MTgyNzU0WhgP
MjEyNjExMTIxODI3NTRaMBwxGjAYBgNVBAMMEXdhc21mbGVldCBmdXp6IENBMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWPL0ezjiGGjBbazNmF9m6QC9gkrUIq+d
WX/kweUxbshz21LLO69Cm5lDy1KTMSW9ZQsJgCc3CgDNC4BiI4MLl6NTMFEwHQYD
VR0OBBYEFBtH6spE3G5JSupItCzLD5VQvc1oMB8GA1UdIwQYMBaAFBtH6spE3G5J
SupItCzLD5VQvc1oMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg
GSkc52CAfdl3PDcYoRrr9OxttI+MXUK0YQ/H3d91+XwCICczbFyv5DNHa88mS/s8
ClauUqbf37u8sIG4uBhe9gRe
-----END CERTIFICATE-----
";

/// The agent's decoding of what arrives on its subscriptions.
pub fn link(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => publish(rest),
        1 => assemble(rest),
        _ => signature(rest),
    }
}

/// One publish on one of the agent's topics (the second byte picks it), payload the rest.
fn publish(data: &[u8]) {
    let Some((&which, payload)) = data.split_first() else {
        return;
    };
    let topics = [
        topic::SERVER_STATE.to_owned(),
        topic::down(NODE, Down::Desired),
        topic::down(NODE, Down::Ack),
        topic::down(NODE, Down::Blob),
        topic::down(NODE, Down::Cmd),
        topic::down_pod(NODE, "6b1c-77"),
        topic::down("pi-2", Down::Desired),
    ];
    let _ = classify(NODE, &topics[usize::from(which) % topics.len()], payload);
}

/// Frames (`kind`, `u16` length, payload) fed to an [`Assembler`]; every set it hands out
/// is the newest accepted index, with the pods it lists in its order.
fn assemble(mut data: &[u8]) {
    let mut assembler = Assembler::default();
    let mut index = None;
    while let [kind, high, low, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(rest.len());
        let (payload, next) = rest.split_at(len);
        data = next;
        let set = match (kind % 3, decode(payload)) {
            (0, Ok(Message::DesiredIndex(new))) => {
                if index
                    .as_ref()
                    .is_none_or(|held: &DesiredIndex| held.revision <= new.revision)
                {
                    index = Some(new.clone());
                }
                assembler.on_index(new)
            }
            (1, Ok(Message::DesiredPodV3(pod))) => {
                let uid = if kind & 0x80 == 0 {
                    pod.pod.uid.clone()
                } else {
                    "x".into()
                };
                assembler.on_pod(&uid, pod)
            }
            (2, _) => {
                assembler.on_cleared(&String::from_utf8_lossy(payload));
                None
            }
            _ => None,
        };
        if let (Some(set), Some(index)) = (set, &index) {
            assert_matches_index(&set, index);
        }
    }
}

fn assert_matches_index(set: &DesiredPods, index: &DesiredIndex) {
    assert_eq!(set.revision, index.revision, "assembled revision");
    let uids: Vec<&str> = set.pods.iter().map(|p| p.uid.as_str()).collect();
    let listed: Vec<&str> = index.pods.iter().map(|e| e.uid.as_str()).collect();
    assert_eq!(uids, listed, "assembled pods");
}

/// An artifact offer's signature (the bytes) checked against a CA: refused, never a panic.
fn signature(data: &[u8]) {
    let request = ArtifactRequest {
        module_digest: "ab".repeat(32),
        target: "aarch64-unknown-linux-gnu".into(),
        wasmtime_version: "48.0.8".into(),
    };
    assert!(verify(CA_PEM, &request, &"cd".repeat(32), data).is_err());
}
