//! The brief CI fuzz run of the protocol crate's target (see `fuzz/smoke.rs`).

#[path = "../../fuzz/smoke.rs"]
mod smoke;

#[test]
fn mqtt_topics_and_payloads_survive_their_corpus_and_mutations() {
    smoke::run("mqtt", wasmfleet_protocol::fuzzing::mqtt);
}
