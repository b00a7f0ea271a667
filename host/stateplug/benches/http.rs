//! GET throughput of `stateplug serve` against nginx serving the same bytes as a static file,
//! measured with wrk, side by side in one run: 1 KiB and 1 MiB states, 8 and 64 connections,
//! the `local` plugin (the embedded default) and the `memory` plugin, and a bare axum server
//! answering the bytes from memory (the floor of the stack the server is built on). Targets
//! take turns in rounds; figures are medians over the rounds. Prints a table; figures go to
//! BENCHMARKS.md.
//!
//! `cargo bench --bench http` (wrk and nginx from Debian: `apt-get install wrk nginx`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[path = "../../../tests/all/common/mod.rs"]
#[allow(dead_code)]
mod common;

use common::Server;

/// How long wrk loads each target in a round.
const DURATION: &str = "3s";
/// Rounds, each loading every target once in turn: a figure is the median over the rounds,
/// and each ratio the median of the rounds' ratios (neighbours on this VM drift by 30%).
const ROUNDS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A Terraform state of about `size` bytes.
fn state(size: usize) -> Vec<u8> {
    let head = r#"{"version":4,"terraform_version":"1.0.3","serial":1,"lineage":"bench","outputs":{},"resources":[],"padding":""#;
    let padding = "x".repeat(size.saturating_sub(head.len() + 2));
    format!("{head}{padding}\"}}").into_bytes()
}

/// Finds `tool` on PATH, or stops the bench naming the package that brings it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        eprintln!("the http bench needs {name}: install it with `apt-get install wrk nginx`");
        std::process::exit(1)
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx in the foreground serving `root` on 127.0.0.1, every path of its own under `dir`.
struct Nginx {
    child: Child,
    url: String,
}

impl Nginx {
    fn start(dir: &Path, root: &Path) -> Nginx {
        let port = free_port();
        let d = dir.display();
        // Two workers, as many as the server's runtime threads on this machine; no access log
        // (stateplug serve logs no request either at its default level).
        let conf = format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log stderr error;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  default_type application/json;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {}; }}\n}}\n",
            root.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(tool("nginx"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx { child, url };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(Nginx {
            child,
            url: url.clone(),
        });
        panic!("nginx did not listen on {url}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would leave them running).
        // SAFETY: kill(2) on the pid of our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A bare axum server (the framework `stateplug serve` is built on, on a tokio runtime with as
/// many workers as the server's) answering every GET with the bytes of `files` from memory:
/// what any server on this stack gets, without stateplug's work. Returns its URL.
fn bare_axum(files: Vec<(usize, Vec<u8>)>) -> String {
    use axum::body::Bytes;
    use axum::extract::Path as UrlPath;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let files: std::collections::HashMap<usize, Bytes> = files
        .into_iter()
        .map(|(size, data)| (size, Bytes::from(data)))
        .collect();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/{size}",
                axum::routing::get(move |UrlPath(size): UrlPath<usize>| {
                    let body = files.get(&size).cloned().unwrap_or_default();
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    url
}

/// Requests per second wrk completes against `url` with `connections` open connections.
fn wrk(url: &str, connections: usize) -> f64 {
    let out = Command::new(tool("wrk"))
        .args(["-t2", &format!("-c{connections}"), &format!("-d{DURATION}")])
        .arg(url)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    // Any non-2xx answer would make the figure meaningless.
    assert!(!text.contains("Non-2xx"), "{url} answered errors:\n{text}");
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    // nginx's workers run as `nobody` when started by root: they must read the files.
    for path in [dir.path(), root.as_path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sizes = [("1 KiB", 1usize << 10), ("1 MiB", 1 << 20)];
    for (_, size) in sizes {
        std::fs::write(root.join(format!("{size}")), state(size)).unwrap();
    }
    let nginx = Nginx::start(dir.path(), &root);
    let axum = bare_axum(
        sizes
            .iter()
            .map(|(_, size)| (*size, state(*size)))
            .collect(),
    );

    let local_dir = dir.path().join("local");
    let memory_dir = dir.path().join("memory");
    std::fs::create_dir_all(&local_dir).unwrap();
    std::fs::create_dir_all(&memory_dir).unwrap();
    let local = Server::start(&local_dir, &[]);
    let memory = Server::start(&memory_dir, &["--plugin", "memory"]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = reqwest::Client::new();
        for server in [&local, &memory] {
            for (_, size) in sizes {
                let response = client
                    .post(server.state_url(&format!("s{size}")))
                    .body(state(size))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", response.status());
            }
        }
    });

    println!(
        "## GET of a state: stateplug serve vs nginx serving the same file \
         (wrk -t2, {DURATION} each, median of {ROUNDS} rounds)"
    );
    println!(
        "{:<6} {:>5} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7}",
        "size", "conns", "nginx", "axum", "local", "memory", "axum×", "local×", "memory×"
    );
    for (name, size) in sizes {
        for connections in [8, 64] {
            let targets = [
                format!("{}/{size}", nginx.url),
                format!("{axum}/{size}"),
                local.state_url(&format!("s{size}")),
                memory.state_url(&format!("s{size}")),
            ];
            // rates[target][round]
            let mut rates = vec![Vec::new(); targets.len()];
            for _ in 0..ROUNDS {
                for (target, url) in targets.iter().enumerate() {
                    rates[target].push(wrk(url, connections));
                }
            }
            let ratio = |target: usize| {
                median(
                    (0..ROUNDS)
                        .map(|r| rates[target][r] / rates[0][r])
                        .collect(),
                )
            };
            let rate = |target: usize| median(rates[target].clone());
            println!(
                "{name:<6} {connections:>5} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>7.2} {:>7.2} {:>7.2}",
                rate(0),
                rate(1),
                rate(2),
                rate(3),
                ratio(1),
                ratio(2),
                ratio(3)
            );
        }
    }
}
