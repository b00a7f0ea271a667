//! Health checks and metrics of `stateplug serve`: `/healthz` and `/readyz` without auth, the
//! reasons `/readyz` gives when the backend cannot answer, `/metrics` parsed as Prometheus'
//! text format after real requests (routes by template, plugin calls, lock conflicts, traps
//! and deadline hits of hostile plugins), and the separate `metrics_listen` address.

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::{Client, Method, StatusCode};

use crate::common::protocol::{lock_info, state};
use crate::common::{self, Server};

const USER: &str = "ci";
const PASSWORD: &str = "s3cret-pw";

/// One sample line of the text format: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape: its samples and the `# TYPE` of each metric family.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses Prometheus' text exposition format, refusing any line that is not in it.
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    let name = words.next().expect("a TYPE line names its metric");
                    let kind = words.next().expect("a TYPE line names its type");
                    types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            samples.push(parse_sample(line));
        }
        Scrape { samples, types }
    }

    /// The samples of `name` whose labels include all of `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<&Sample> = self
            .find(name, labels)
            .into_iter()
            .filter(|s| s.labels.len() == labels.len())
            .collect();
        match matching.as_slice() {
            [one] => one.value,
            _ => panic!("expected one sample {name} {labels:?}, found {matching:?}"),
        }
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line:?}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inside) = rest.strip_prefix('{') {
        let mut chars = inside.char_indices().peekable();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            if c == '}' {
                end = Some(at);
                break;
            }
            if c == ',' {
                continue;
            }
            // label="value" with \\, \" and \n escaped.
            let key_start = at;
            let mut key_end = at;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    key_end = i;
                    break;
                }
            }
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "in {line:?}");
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(c),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            }
            labels.insert(inside[key_start..key_end].to_string(), value);
            if key_start == key_end {
                panic!("empty label name in {line:?}");
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated labels in {line:?}"));
        rest = &inside[end + 1..];
    }
    let value = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("stateplug.toml"), text).unwrap();
}

fn users() -> String {
    format!("[server.users.{USER}]\npassword = \"{PASSWORD}\"\n")
}

/// `method url` with `body`, with credentials when `auth`; the status and the text.
async fn send(method: &str, url: &str, body: String, auth: bool) -> (StatusCode, String) {
    let request = Client::new()
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
        .body(body);
    let request = if auth {
        request.basic_auth(USER, Some(PASSWORD))
    } else {
        request
    };
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn get(url: &str, auth: bool) -> (StatusCode, String) {
    send("GET", url, String::new(), auth).await
}

/// `/metrics` of `base`, parsed.
async fn scrape_metrics(base: &str, auth: bool) -> Scrape {
    let response = Client::new().get(format!("{base}/metrics"));
    let response = if auth {
        response.basic_auth(USER, Some(PASSWORD))
    } else {
        response
    };
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape::parse(&response.text().await.unwrap())
}

/// A config of the hostile test plugin as backend `h`, attacking with `attack` on every read
/// (`exists` reads too), its calls limited to `timeout`.
fn hostile(dir: &Path, attack: &str, timeout: &str) {
    let plugin = common::test_plugin_path("hostile");
    write_config(
        dir,
        &format!(
            "[backends.h]\nplugin = {:?}\nattack = \"{attack}\"\ntimeout = \"{timeout}\"\n",
            plugin.to_str().unwrap()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_need_no_credentials_where_everything_else_does() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("[backends.mem]\nplugin = \"memory\"\n\n{}", users()),
    );
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        get(&format!("{}/healthz", server.url), false).await,
        (StatusCode::OK, "ok\n".to_string())
    );
    assert_eq!(
        get(&format!("{}/readyz", server.url), false).await,
        (StatusCode::OK, "ready\n".to_string())
    );
    common::assert_needs_credentials(
        &server.url,
        &[
            ("GET", "/metrics"),
            ("GET", "/state/ws"),
            ("LOCK", "/state/ws"),
            ("GET", "/api/workspaces"),
            ("GET", "/api/v1/objects/a/b"),
            ("GET", "/no/such/endpoint"),
        ],
    )
    .await;
    let (status, text) = get(&format!("{}/no/such/endpoint", server.url), true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        text.contains("/healthz") && text.contains("/metrics"),
        "{text}"
    );
}

/// A backend that refuses connections, and one that never answers: 503, and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_why_the_backend_cannot_answer() {
    // A port nothing listens on (taken from the OS, then let go).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[backends.s3]\nplugin = \"s3\"\nbucket = \"state-bucket\"\nendpoint = \"http://{closed}\"\n\
             use_path_style = true\nregion = \"us-east-1\"\naccess_key = \"test\"\n\
             secret_key = \"test\"\ntimeout = \"3s\"\n"
        ),
    );
    let server = Server::start(dir.path(), &[]);
    let (status, text) = get(&format!("{}/readyz", server.url), false).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(
        text.starts_with("not ready: the backend failed a cheap call: plugin `s3`")
            && text.contains(&closed.to_string()),
        "{text}"
    );
    // The process itself is fine.
    assert_eq!(
        get(&format!("{}/healthz", server.url), false).await.0,
        StatusCode::OK
    );
    drop(server);

    // A call that sleeps in a host call, where only the host's wait can stop it: its own
    // deadline is far, so readiness stops waiting first.
    let dir = tempfile::tempdir().unwrap();
    hostile(dir.path(), "sleep", "60s");
    let server = Server::start(dir.path(), &[]);
    let (status, text) = get(&format!("{}/readyz", server.url), false).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(text, "not ready: the backend gave no answer within 5 s\n");
    // The check given up on still holds the instance: the next probe does not queue another.
    let (status, text) = get(&format!("{}/readyz", server.url), false).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(
        text.contains("has not answered the previous readiness check yet"),
        "{text}"
    );
}

/// Requests of Terraform's protocol, a lock conflict and a write under someone else's lock,
/// then `/metrics`: every family the README names, with the route's template as its label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_plugin_calls_and_lock_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("[backends.mem]\nplugin = \"memory\"\n\n{}", users()),
    );
    let server = Server::start(dir.path(), &[]);
    let ws = server.state_url("ws");
    let ok = |answer: (StatusCode, String)| assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    ok(send("POST", &ws, state(1, "L"), true).await);
    ok(get(&ws, true).await);
    ok(get(&ws, true).await);
    ok(send("LOCK", &ws, lock_info("first", "first"), true).await);
    let (status, _) = send("LOCK", &ws, lock_info("second", "second"), true).await;
    assert_eq!(status, StatusCode::LOCKED);
    let (status, _) = send("POST", &format!("{ws}?ID=second"), state(2, "L"), true).await;
    assert_eq!(status, StatusCode::LOCKED);
    assert_eq!(
        get(&format!("{}/no/such/endpoint", server.url), true)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let scrape = scrape_metrics(&server.url, true).await;
    let route = ("route", "/state/{workspace}");
    let get_ok = [route, ("method", "GET"), ("status", "200")];
    let requests = scrape.value("stateplug_http_requests_total", &get_ok);
    assert!(requests >= 2.0, "{requests}");
    assert!(
        scrape.value(
            "stateplug_http_requests_total",
            &[route, ("method", "POST"), ("status", "200")]
        ) >= 1.0
    );
    assert!(
        scrape.value(
            "stateplug_http_requests_total",
            &[route, ("method", "LOCK"), ("status", "423")]
        ) >= 1.0
    );
    assert!(
        scrape.value(
            "stateplug_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ) >= 1.0
    );
    // The raw path is never a label: its cardinality is the clients'.
    assert!(
        scrape.samples.iter().all(|s| s
            .labels
            .get("route")
            .is_none_or(|r| !r.contains("/state/ws"))),
        "{scrape:?}"
    );
    // The histogram: typed, with buckets up to +Inf, whose count is the requests'.
    let histogram = "stateplug_http_request_duration_seconds";
    assert_eq!(scrape.types[histogram], "histogram");
    assert_eq!(scrape.types["stateplug_http_requests_total"], "counter");
    let buckets = scrape.find(&format!("{histogram}_bucket"), &get_ok);
    assert!(buckets.len() > 1, "{buckets:?}");
    let inf = buckets
        .iter()
        .find(|b| b.labels["le"] == "+Inf")
        .expect("a +Inf bucket");
    assert_eq!(inf.value, requests);
    assert_eq!(
        scrape.value(&format!("{histogram}_count"), &get_ok),
        requests
    );
    assert!(scrape.value(&format!("{histogram}_sum"), &get_ok) >= 0.0);

    let backend = [("backend", "mem"), ("plugin", "memory")];
    let calls = |operation: &'static str, outcome: &'static str| {
        let mut labels = backend.to_vec();
        labels.extend([("operation", operation), ("outcome", outcome)]);
        scrape.value("stateplug_plugin_calls_total", &labels)
    };
    assert!(calls("write", "ok") >= 1.0);
    assert!(calls("read", "ok") >= 2.0);
    assert!(calls("lock", "ok") >= 1.0);
    assert!(
        calls("lock", "locked") >= 1.0,
        "the second LOCK met the first"
    );
    assert_eq!(scrape.types["stateplug_plugin_calls_total"], "counter");

    assert!(scrape.value("stateplug_lock_conflicts_total", &[("operation", "lock")]) >= 1.0);
    assert!(scrape.value("stateplug_lock_conflicts_total", &[("operation", "write")]) >= 1.0);
    // The object API's conflicts count too.
    let conflicts = scrape.value("stateplug_lock_conflicts_total", &[("operation", "delete")]);
    let object = format!("{}/api/v1/objects/tree/a", server.url);
    ok(send("PUT", &object, "a".into(), true).await);
    ok(send("LOCK", &object, lock_info("third", "third"), true).await);
    let (status, _) = send("DELETE", &object, String::new(), true).await;
    assert_eq!(status, StatusCode::LOCKED);
    let after = scrape_metrics(&server.url, true).await;
    let deletes = after.value("stateplug_lock_conflicts_total", &[("operation", "delete")]);
    assert_eq!(deletes, conflicts + 1.0);

    assert_eq!(scrape.types["stateplug_plugin_instances_in_use"], "gauge");
    let in_use = scrape.value("stateplug_plugin_instances_in_use", &backend);
    assert!(in_use >= 0.0, "{in_use}");
    // The memory plugin keeps its data in its one instance.
    assert_eq!(
        scrape.value("stateplug_plugin_instances_max", &backend),
        1.0
    );
}

/// A plugin that panics counts as a trap, one that spins past its deadline as a deadline hit,
/// each under its backend and plugin; `/readyz` names the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_and_deadline_hits_are_counted_by_plugin() {
    let labels = [("backend", "h"), ("plugin", "hostile")];

    let dir = tempfile::tempdir().unwrap();
    hostile(dir.path(), "panic", "30s");
    let server = Server::start(dir.path(), &[]);
    let (status, text) = get(&server.state_url("ws"), false).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let scrape = scrape_metrics(&server.url, false).await;
    assert!(scrape.value("stateplug_plugin_traps_total", &labels) >= 1.0);
    assert!(
        scrape
            .find("stateplug_plugin_deadline_hits_total", &labels)
            .iter()
            .all(|s| s.value == 0.0),
        "a panic is no deadline hit"
    );
    let mut crashed = labels.to_vec();
    crashed.extend([("operation", "read"), ("outcome", "crashed")]);
    assert!(scrape.value("stateplug_plugin_calls_total", &crashed) >= 1.0);
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    hostile(dir.path(), "loop", "1s");
    let server = Server::start(dir.path(), &[]);
    let (status, text) = get(&format!("{}/readyz", server.url), false).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("ran past its deadline of 1s"), "{text}");
    let scrape = scrape_metrics(&server.url, false).await;
    assert!(scrape.value("stateplug_plugin_deadline_hits_total", &labels) >= 1.0);
    let mut crashed = labels.to_vec();
    crashed.extend([("operation", "exists"), ("outcome", "crashed")]);
    assert!(scrape.value("stateplug_plugin_calls_total", &crashed) >= 1.0);
}

/// A `stateplug serve` with `metrics_listen`, and the address it printed for it on stderr
/// (before its `listening on` line, so it is there once [`Server::start`] returns).
fn start_with_metrics_address(dir: &Path) -> (Server, String) {
    let log = dir.join("serve.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let server = Server::start_with_stderr(dir, &[], stderr.into());
    let printed = std::fs::read_to_string(&log).unwrap();
    let metrics_url = printed
        .lines()
        .find_map(|line| line.strip_prefix("health and metrics without auth at "))
        .and_then(|rest| rest.split_once("/metrics"))
        .map(|(url, _)| url.to_string())
        .unwrap_or_else(|| panic!("no metrics address on stderr:\n{printed}"));
    (server, metrics_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_address_needs_no_auth_and_the_main_one_does() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[backends.mem]\nplugin = \"memory\"\n\n[server]\nmetrics_listen = \"127.0.0.1:0\"\n{}",
            users()
        ),
    );
    let (server, metrics_url) = start_with_metrics_address(dir.path());
    assert_ne!(server.url, metrics_url);
    let (status, _) = send(
        "POST",
        &format!("{}/state/ws", server.url),
        state(1, "L"),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let scrape = scrape_metrics(&metrics_url, false).await;
    let posted = [
        ("route", "/state/{workspace}"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert!(scrape.value("stateplug_http_requests_total", &posted) >= 1.0);
    for path in ["/healthz", "/readyz"] {
        let (status, text) = get(&format!("{}{path}", metrics_url), false).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
    }
    // Only health and metrics there.
    let (status, text) = get(&format!("{}/state/ws", metrics_url), true).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("metrics_listen"), "{text}");

    // On the main address, /metrics needs credentials; the health checks do not.
    assert_eq!(
        get(&format!("{}/metrics", server.url), false).await.0,
        StatusCode::UNAUTHORIZED
    );
    let main = scrape_metrics(&server.url, true).await;
    assert!(main.value("stateplug_http_requests_total", &posted) >= 1.0);
    assert_eq!(
        get(&format!("{}/readyz", server.url), false).await.0,
        StatusCode::OK
    );
}
