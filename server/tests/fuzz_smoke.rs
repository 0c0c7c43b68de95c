//! The brief CI fuzz run of the server's targets, the agent's decoders included through
//! `link` (see `fuzz/smoke.rs`).

#[path = "../../fuzz/smoke.rs"]
mod smoke;

use wasmfleet_server::fuzzing;

#[test]
fn api_bodies_survive_their_corpus_and_mutations() {
    smoke::run("api_body", fuzzing::api_body);
}

#[test]
fn selectors_quantities_and_images_survive_their_corpus_and_mutations() {
    smoke::run("selectors", fuzzing::selectors);
}

#[test]
fn wasm_modules_survive_their_corpus_and_mutations() {
    smoke::run("wasm", fuzzing::wasm);
}

#[test]
fn mqtt_link_decoding_on_both_ends_survives_its_corpus_and_mutations() {
    smoke::run("link", fuzzing::link);
}
