//! Timing that survives a noisy machine: medians, and rounds that interleave what they
//! compare, so drift in a server or the machine hits every side alike.

use std::time::{Duration, Instant};

/// The median of `samples`.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// How long `work` takes, and what it returned.
pub async fn timed<R>(work: impl Future<Output = R>) -> (Duration, R) {
    let started = Instant::now();
    let result = work.await;
    (started.elapsed(), result)
}

/// Runs `round` 5 times to warm up (connections, caches), then `rounds` times, and returns
/// the median of each of the `N` timings a round measures.
pub async fn interleaved_medians<const N: usize>(
    rounds: usize,
    mut round: impl AsyncFnMut() -> [Duration; N],
) -> [Duration; N] {
    for _ in 0..5 {
        round().await;
    }
    let mut samples: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(rounds));
    for _ in 0..rounds {
        for (kept, taken) in samples.iter_mut().zip(round().await) {
            kept.push(taken);
        }
    }
    samples.map(median)
}
