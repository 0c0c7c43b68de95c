#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmfleet_protocol::fuzzing::mqtt(data));
