//! The `router` target; the harness is `stateplug::fuzzing::router` (host/stateplug/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stateplug::fuzzing::router(data));
