//! The pause between attempts of a compare-and-swap that lost to another writer (documents,
//! key-value commits).

use std::time::Duration;

/// A short pause, longer with each failed attempt and jittered, so updaters that collided
/// do not collide again in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let ceiling_us = 200u64 << attempt.min(6);
    Duration::from_micros(u64::from(nanos) % ceiling_us)
}
