//! The `config` target; the harness is `stateplug::fuzzing::config` (host/stateplug/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stateplug::fuzzing::config(data));
