//! `stateplug serve` end to end: Terraform apply through the server (local plugin) against
//! Terraform's own local backend, and server throughput for GET and POST of a 1 MiB state with
//! 1, 8 and 64 concurrent clients. Prints a table; figures go to BENCHMARKS.md.
//!
//! `cargo bench --bench server` (Terraform from `.ci/run`'s venv or `STATEPLUG_TERRAFORM`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

// The tests' set-up, of which a benchmark uses a part.
#[path = "../../../tests/all/common/mod.rs"]
#[allow(dead_code)]
mod common;

use common::Server;

// Load through a server: shared with the postgres bench.
#[path = "support/load.rs"]
mod load;

use load::{load, state};

// Medians (the other helpers are the comparing benches').
#[path = "support/timing.rs"]
#[allow(dead_code)]
mod timing;

use timing::median;

/// Median wall time of `terraform apply` with a changing output, per backend block.
fn terraform_apply(terraform: &Path, backend: &str, runs: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "terraform {{\n{backend}\n}}\nvariable \"n\" {{\n  default = 0\n}}\noutput \"n\" {{\n  value = var.n\n}}\n"
    );
    std::fs::write(dir.path().join("main.tf"), main).unwrap();
    let tf = |args: &[&str]| {
        let out = Command::new(terraform)
            .args(args)
            .current_dir(dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tf(&["init", "-input=false"]);
    let samples = (0..runs)
        .map(|i| {
            let var = format!("n={i}");
            let started = Instant::now();
            tf(&["apply", "-auto-approve", "-input=false", "-var", &var]);
            started.elapsed()
        })
        .collect();
    median(samples)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would not: run only under bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    println!(
        "## terraform apply (median of 7), stateplug serve + local plugin vs Terraform's local backend"
    );
    match common::terraform_binary() {
        Some(tf) => {
            let url = format!("{}/state/apply", server.url);
            let http = format!(
                "  backend \"http\" {{\n    address = \"{url}\"\n    lock_address = \"{url}\"\n    unlock_address = \"{url}\"\n  }}"
            );
            let through_server = terraform_apply(&tf, &http, 7);
            let local = terraform_apply(&tf, "  backend \"local\" {}", 7);
            println!(
                "stateplug {through_server:?}  local {local:?}  ratio {:.2}",
                through_server.as_secs_f64() / local.as_secs_f64()
            );
        }
        None => println!("skipped: Terraform not found (run .ci/run or set STATEPLUG_TERRAFORM)"),
    }

    println!("\n## 1 MiB state through stateplug serve (local plugin, history 10)");
    println!(
        "{:<6} {:>8} {:>10} {:>12}",
        "method", "clients", "req/s", "p99"
    );
    rt.block_on(async {
        let seed = reqwest::Client::new();
        let padding = "x".repeat(1 << 20);
        seed.post(format!("{}/state/read", server.url))
            .body(state(1, &padding))
            .send()
            .await
            .unwrap();
        for clients in [1, 8, 64] {
            for post in [false, true] {
                let requests = if post { 128 } else { 512 }.max(clients);
                let (rate, p99) = load(&server.url, clients, requests, post, 1 << 20).await;
                println!(
                    "{:<6} {:>8} {:>10.1} {:>12?}",
                    if post { "POST" } else { "GET" },
                    clients,
                    rate,
                    p99
                );
            }
        }
    });
}
