//! The wasm `s3` plugin against a native client sending the same signed requests, both to one
//! local moto server in one run: put and get of 1 KiB and 1 MiB. Prints a table; figures go
//! to BENCHMARKS.md.
//!
//! `cargo bench --bench s3` (moto from `.ci/run`'s venv or `STATEPLUG_MOTO_SERVER`).

use std::time::{Duration, Instant, SystemTime};

// The tests' set-up, of which a benchmark uses a part.
#[path = "../../../tests/all/common/mod.rs"]
#[allow(dead_code)]
mod common;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use common::moto::{self, Moto};
use stateplug_runtime::{Grants, Precondition};

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

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
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
        let (mut wasm_put, mut wasm_get, mut native_put, mut native_get) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Interleaved, so drift in moto or the machine hits both sides alike.
        for round in 0..rounds + 5 {
            let key = format!("bench/{size}");
            let started = Instant::now();
            plugin
                .write(&key, data.clone(), Precondition::None)
                .await
                .unwrap();
            let put = started.elapsed();
            let started = Instant::now();
            assert_eq!(plugin.read(&key).await.unwrap().data.len(), size);
            let get = started.elapsed();
            let native_key = format!("native/{size}");
            let started = Instant::now();
            native.send("PUT", &native_key, data.clone()).await;
            let n_put = started.elapsed();
            let started = Instant::now();
            assert_eq!(
                native.send("GET", &native_key, Vec::new()).await.len(),
                size
            );
            let n_get = started.elapsed();
            if round >= 5 {
                // The first rounds warm up connections and caches on both sides.
                wasm_put.push(put);
                wasm_get.push(get);
                native_put.push(n_put);
                native_get.push(n_get);
            }
        }
        for (op, wasm, native) in [("put", wasm_put, native_put), ("get", wasm_get, native_get)] {
            let (wasm, native) = (median(wasm), median(native));
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
}
