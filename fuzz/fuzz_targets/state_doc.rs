//! The `state_doc` target; the harness is `stateplug::fuzzing::state_doc` (host/stateplug/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stateplug::fuzzing::state_doc(data));
