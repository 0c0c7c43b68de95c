#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmfleet_server::fuzzing::api_body(data));
