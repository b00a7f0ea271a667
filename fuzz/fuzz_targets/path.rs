//! The `path` target; the harness is `stateplug::fuzzing::path` (host/stateplug/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stateplug::fuzzing::path(data));
