#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stormguard_fuzz::upstream_response::run(data));
