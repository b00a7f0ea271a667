//! The wasm `s3` plugin against a native client sending the same signed requests, both to one
//! local moto server in one run: put and get of 1 KiB and 1 MiB; then the plugin behind a proxy
//! that adds 20 ms per request (real S3's latency), with 1, 8 and 64 concurrent clients.
//! Prints tables; figures go to BENCHMARKS.md.
//!
//! `cargo bench --bench s3` (moto from `.ci/run`'s venv or `STATEPLUG_MOTO_SERVER`).

use std::time::{Duration, Instant, SystemTime};

// The tests' set-up, of which a benchmark uses a part.
#[path = "../../../tests/all/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "support/timing.rs"]
mod timing;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use common::moto::{self, Moto};
use stateplug_runtime::{Grants, Precondition};
use timing::{interleaved_medians, median, timed};

const BUCKET: &str = "bench-bucket";

/// Benchmark-only native S3 client: reqwest, signed with aws-sigv4 exactly as the plugin signs.
struct NativeS3 {
    client: reqwest::Client,
    endpoint: String,
}

impl NativeS3 {
    async fn send(&self, method: &str, key: &str, body: Vec<u8>) -> Vec<u8> {
        let url = format!("{}/{BUCKET}/{key}", self.endpoint);
        // The same headers the plugin sends (signed, so the body's SHA-256 and no Content-MD5).
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-length", body.len());
        if method == "PUT" {
            request = request.header("content-type", "application/octet-stream");
        }
        let mut request = request.body(body).unwrap();
        let identity = Credentials::new("test", "test", None, None, "bench").into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let signable = SignableRequest::new(
            method,
            url.clone(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(request.body()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut request);
        let (parts, body) = request.into_parts();
        let response = self
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                &url,
            )
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap().to_vec()
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test` builds benches too; only `cargo bench` runs this.
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let moto =
        Moto::start_or_skip("the s3 benchmark").expect("the s3 benchmark needs moto (see above)");
    moto.create_bucket(BUCKET);
    let endpoint = moto.endpoint();
    let plugin = moto::open_s3(&endpoint, BUCKET, &[]).await;
    let native = NativeS3 {
        client: reqwest::Client::new(),
        endpoint,
    };

    // The same plugin with no host granted: a write fails at the host's hook, after the
    // plugin has hashed (MD5, SHA-256) and signed the body: its own work without the network.
    let denied_config = moto::s3_settings(&moto.endpoint(), BUCKET, &[]);
    let denied = common::builtin("s3")
        .await
        .open(denied_config, Grants::default())
        .await
        .unwrap();

    println!("| operation | wasm plugin | native client | ratio |");
    println!("|---|---|---|---|");
    for (label, size, rounds) in [("1 KiB", 1 << 10, 200), ("1 MiB", 1 << 20, 100)] {
        let data = vec![b'x'; size];
        let (key, native_key) = (format!("bench/{size}"), format!("native/{size}"));
        let [wasm_put, wasm_get, native_put, native_get] =
            interleaved_medians(rounds, async || {
                let write = plugin.write(&key, data.clone(), Precondition::None);
                let (put, written) = timed(write).await;
                written.unwrap();
                let (get, read) = timed(plugin.read(&key)).await;
                assert_eq!(read.unwrap().data.len(), size);
                let (n_put, _) = timed(native.send("PUT", &native_key, data.clone())).await;
                let (n_get, read) = timed(native.send("GET", &native_key, Vec::new())).await;
                assert_eq!(read.len(), size);
                [put, get, n_put, n_get]
            })
            .await;
        for (op, wasm, native) in [("put", wasm_put, native_put), ("get", wasm_get, native_get)] {
            if op == "put" {
                let mut samples = Vec::new();
                for _ in 0..rounds {
                    let started = Instant::now();
                    let refused = denied.write("x", data.clone(), Precondition::None).await;
                    assert!(refused.is_err());
                    samples.push(started.elapsed());
                }
                println!(
                    "| (plugin work before the network, put {label}) | {:.2} ms | | |",
                    median(samples).as_secs_f64() * 1e3
                );
            }
            println!(
                "| {op} {label} | {:.2} ms | {:.2} ms | {:.2}× |",
                wasm.as_secs_f64() * 1e3,
                native.as_secs_f64() * 1e3,
                wasm.as_secs_f64() / native.as_secs_f64()
            );
        }
    }
    over_a_slow_link(&moto).await;
}

/// What the link to S3 adds to every request in the concurrency part.
const LINK_LATENCY: Duration = Duration::from_millis(20);

/// A proxy on 127.0.0.1 that holds every request for [`LINK_LATENCY`] and then forwards it
/// to `upstream`: a stand-in for the latency of a real S3 endpoint. Returns its endpoint.
/// Without an upstream it answers by itself (a PUT stored, a GET 1 KiB), so that only the
/// host's own concurrency limits the throughput, not moto's.
async fn delaying_proxy(upstream: Option<String>) -> String {
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};

    let client = reqwest::Client::new();
    let forward = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            tokio::time::sleep(LINK_LATENCY).await;
            let Some(upstream) = upstream else {
                let mut answer = HeaderMap::new();
                answer.insert(header::ETAG, "\"bench\"".parse().unwrap());
                let body = if method == Method::GET {
                    vec![b'x'; 1 << 10]
                } else {
                    Vec::new()
                };
                return (StatusCode::OK, answer, Body::from(body));
            };
            let mut headers = headers;
            headers.remove(header::CONTENT_LENGTH);
            let sent = client
                .request(method, format!("{upstream}{uri}"))
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = StatusCode::from_u16(sent.status().as_u16()).unwrap();
            let mut answer = sent.headers().clone();
            answer.remove(header::CONTENT_LENGTH);
            answer.remove(header::TRANSFER_ENCODING);
            let body = sent.bytes().await.unwrap();
            (status, answer, Body::from(body))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(forward))
            .await
            .unwrap()
    });
    endpoint
}

/// Rounds per second (a 1 KiB write and a read of it, each client on its own object) that
/// `clients` concurrent clients complete through one backend.
async fn rounds_per_second(
    backend: &stateplug_runtime::Backend,
    clients: usize,
    rounds: usize,
) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let key = format!("workspace-{client}/terraform.tfstate");
                for _ in 0..rounds {
                    backend
                        .write(&key, vec![b'x'; 1 << 10], Precondition::None)
                        .await
                        .unwrap();
                    assert_eq!(backend.read(&key).await.unwrap().data.len(), 1 << 10);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (clients * rounds) as f64 / started.elapsed().as_secs_f64()
}

/// The s3 plugin over a link that adds [`LINK_LATENCY`] to each request: how throughput
/// grows from 1 to 64 concurrent clients on one backend (its default pool).
async fn over_a_slow_link(moto: &Moto) {
    for upstream in [Some(moto.endpoint()), None] {
        let proxy = delaying_proxy(upstream.clone()).await;
        let backend = moto::open_s3(&proxy, BUCKET, &[]).await;
        println!(
            "\n## s3 plugin, {LINK_LATENCY:?} added per request, one backend ({} instances), {}",
            backend.instances(),
            match upstream {
                Some(_) => "requests forwarded to moto",
                None => "answered by the proxy itself (no moto)",
            }
        );
        scaling(&backend).await;
    }
}

async fn scaling(backend: &stateplug_runtime::Backend) {
    println!("| clients | rounds/s (write + read, 1 KiB) | vs 1 client |");
    println!("|---|---|---|");
    rounds_per_second(backend, 16, 2).await; // connections and instances warm
    let one = rounds_per_second(backend, 1, 40).await;
    for clients in [1, 8, 64] {
        let rate = if clients == 1 {
            one
        } else {
            rounds_per_second(backend, clients, 640 / clients).await
        };
        println!("| {clients} | {rate:.1} | {:.2}× |", rate / one);
    }
}
