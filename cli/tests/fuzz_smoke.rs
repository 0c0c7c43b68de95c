//! The brief CI fuzz run of the CLI's target (see `fuzz/smoke.rs`).

#[path = "../../fuzz/smoke.rs"]
mod smoke;

#[test]
fn manifests_survive_their_corpus_and_mutations() {
    smoke::run("manifest", wasmfleet_cli::fuzzing::manifest);
}
