//! The runtime's fixed costs: compiling each built-in plugin cold, loading it from the on-disk
//! compiled cache (warm start), loading it again in the same process, host memory per open
//! backend (RSS with 1, 10 and 100 backends), and 100 backends of the s3 plugin with their
//! whole default pools started (RSS per idle instance). Prints tables; figures go to
//! BENCHMARKS.md.
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

// Medians (the other helpers are the comparing benches').
#[path = "support/timing.rs"]
#[allow(dead_code)]
mod timing;

use timing::median;

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

    rt.block_on(idle_instances(&runtime));
}

/// An HTTP server on 127.0.0.1 that answers every request `404` after `pause`: slow enough
/// that concurrent calls of the s3 plugin each need an instance of their own.
async fn slow_not_found(pause: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(read) = socket.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    // Bodiless GETs: a request ends at its blank line.
                    while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        request.drain(..end + 4);
                        tokio::time::sleep(pause).await;
                        let answer = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    endpoint
}

/// Host memory (RSS growth) per idle instance, and for 100 backends of the s3 plugin each
/// with its whole default pool started (concurrent calls, then idle).
async fn idle_instances(runtime: &Runtime) {
    let endpoint = slow_not_found(Duration::from_millis(300)).await;
    let grants = Grants {
        allow_hosts: stateplug_runtime::HostGrant::from_endpoint(&endpoint).unwrap(),
        ..Grants::default()
    };
    let s3_config: Vec<(String, String)> = [
        ("bucket", "idle"),
        ("endpoint", endpoint.as_str()),
        ("use_path_style", "true"),
        ("region", "us-east-1"),
        ("access_key", "test"),
        ("secret_key", "test"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let s3 = Plugin::builtin(runtime, "s3").await.unwrap();
    let backends_count = 100;
    let before = resident_bytes();
    let mut backends = Vec::new();
    for _ in 0..backends_count {
        let backend = s3.open(s3_config.clone(), grants.clone()).await.unwrap();
        let calls: Vec<_> = (0..backend.instances())
            .map(|i| {
                let backend = backend.clone();
                tokio::spawn(async move { backend.read(&format!("x{i}")).await })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().is_err(), "the server answers 404");
        }
        backends.push(backend);
    }
    let grown = resident_bytes().saturating_sub(before);
    let instances: usize = backends.iter().map(|b| b.instances()).sum();
    let held: usize = backends.iter().map(|b| b.memory_held()).sum();
    println!("\n## 100 backends of the s3 plugin, each with its default pool started");
    println!(
        "{backends_count} backends x {} instances = {instances} idle instances: RSS growth {:.1} MiB \
         ({:.0} KiB per instance; their linear memories {:.1} MiB)",
        instances / backends_count,
        grown as f64 / f64::from(1 << 20),
        grown as f64 / 1024.0 / instances as f64,
        held as f64 / f64::from(1 << 20)
    );
}
