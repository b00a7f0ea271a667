//! Load on a running `stateplug serve`: states of a given size, GETs of one workspace or POSTs
//! to one workspace per client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A state of `serial` whose `padding` makes it as large as needed.
pub fn state(serial: u64, padding: &str) -> Vec<u8> {
    format!("{{\"version\":4,\"serial\":{serial},\"lineage\":\"bench\",\"padding\":\"{padding}\"}}")
        .into_bytes()
}

/// `requests` requests of states of `size` bytes spread over `clients` concurrent clients;
/// returns (req/s, p99). GETs read workspace `read`, which must exist.
pub async fn load(
    url: &str,
    clients: usize,
    requests: usize,
    post: bool,
    size: usize,
) -> (f64, Duration) {
    let client = reqwest::Client::new();
    let padding: Arc<str> = "x".repeat(size).into();
    // Each run POSTs to workspaces of its own, whose serials start at 1.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, padding) = (client.clone(), padding.clone());
            // POSTs go to one workspace per client, each moving its own serial forward.
            let target = if post {
                format!("{url}/state/post-{run}-{c}")
            } else {
                format!("{url}/state/read")
            };
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in 0..requests / clients {
                    let sent = Instant::now();
                    let response = if post {
                        client
                            .post(&target)
                            .body(state(i as u64 + 1, &padding))
                            .send()
                            .await
                            .unwrap()
                    } else {
                        client.get(&target).send().await.unwrap()
                    };
                    assert!(response.status().is_success(), "{}", response.status());
                    response.bytes().await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    (latencies.len() as f64 / elapsed.as_secs_f64(), p99)
}
