//! The `lock_info` target; the harness is `stateplug::fuzzing::lock_info` (host/stateplug/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stateplug::fuzzing::lock_info(data));
