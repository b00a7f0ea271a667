//! The runtime's fixed costs: compiling each built-in plugin cold, loading it from the on-disk
//! compiled cache (warm start), loading it again in the same process, and host memory per open
//! backend (RSS with 1, 10 and 100 backends). Prints a table; figures go to BENCHMARKS.md.
//!
//! `cargo bench --bench runtime`

use std::time::{Duration, Instant};

use stateplug_runtime::{Grants, Plugin, Runtime, RuntimeOptions, builtin};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let with_cache = || {
        Runtime::with_options(RuntimeOptions {
            cache_dir: Some(cache.path().to_path_buf()),
            ..RuntimeOptions::default()
        })
        .unwrap()
    };

    println!("## loading a plugin (median of 5)");
    println!(
        "{:<8} {:>14} {:>14} {:>14}",
        "plugin", "cold compile", "warm (disk)", "same process"
    );
    for name in builtin::names() {
        let cold = median(
            (0..5)
                .map(|_| {
                    let runtime = Runtime::with_options(RuntimeOptions {
                        cache_dir: None,
                        ..RuntimeOptions::default()
                    })
                    .unwrap();
                    let started = Instant::now();
                    rt.block_on(Plugin::builtin(&runtime, name)).unwrap();
                    started.elapsed()
                })
                .collect(),
        );
        rt.block_on(Plugin::builtin(&with_cache(), name)).unwrap(); // fill the disk cache
        let warm = median(
            (0..5)
                .map(|_| {
                    let runtime = with_cache();
                    let started = Instant::now();
                    rt.block_on(Plugin::builtin(&runtime, name)).unwrap();
                    started.elapsed()
                })
                .collect(),
        );
        let runtime = with_cache();
        rt.block_on(Plugin::builtin(&runtime, name)).unwrap();
        let again = median(
            (0..5)
                .map(|_| {
                    let started = Instant::now();
                    rt.block_on(Plugin::builtin(&runtime, name)).unwrap();
                    started.elapsed()
                })
                .collect(),
        );
        println!("{name:<8} {cold:>14?} {warm:>14?} {again:>14?}");
    }

    println!("\n## host memory per open backend (memory plugin, one write of 1 KiB each)");
    println!(
        "{:>9} {:>12} {:>14}",
        "backends", "RSS growth", "per backend"
    );
    let runtime = with_cache();
    let plugin = rt.block_on(Plugin::builtin(&runtime, "memory")).unwrap();
    for count in [1usize, 10, 100] {
        let before = resident_bytes();
        let backends: Vec<_> = (0..count)
            .map(|_| {
                let backend = rt.block_on(plugin.open(vec![], Grants::default())).unwrap();
                rt.block_on(backend.write(
                    "x",
                    vec![1; 1024],
                    stateplug_runtime::Precondition::None,
                ))
                .unwrap();
                backend
            })
            .collect();
        let grown = resident_bytes().saturating_sub(before);
        println!(
            "{count:>9} {:>9.1} MiB {:>10.0} KiB",
            grown as f64 / f64::from(1 << 20),
            grown as f64 / 1024.0 / count as f64
        );
        drop(backends);
    }
}
