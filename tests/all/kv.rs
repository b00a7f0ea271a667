//! The key-value API as users reach it: `stateplug serve` at `/api/v1/kv` (keys in namespaces,
//! apart from the workspaces and the objects) and `stateplug kv`, on the memory, local and s3
//! (moto) plugins. Each body takes the backend, so the same checks run on every plugin; where
//! the store can be seen from outside (local: the data directory, s3: the bucket), the bodies
//! also check what it holds, so the sweep is seen deleting an expired key's value.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{ETAG, HeaderMap};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::common::cli::{fails, ok, stateplug};
use crate::common::moto::{self, Moto};
use crate::common::{self, Server};

const USER: &str = "ci";
const PASSWORD: &str = "kv-pw";
/// The server's `body_limit` in these tests.
const BODY_LIMIT: usize = 64 << 10;
/// How long a body waits at most for what the server does in the background (expiry, the
/// sweep, run every second here): polled, never slept through.
const PATIENCE: Duration = Duration::from_secs(30);

// ---- The backends ----

/// Where a body's server keeps its key-values, and how a test sees the store's own objects.
enum Store<'a> {
    Memory,
    /// The embedded default: the local plugin in `./.stateplug/state`.
    Local,
    S3 {
        moto: &'a Moto,
        bucket: String,
    },
}

impl Store<'_> {
    /// `stateplug` arguments for this store (s3: a fresh bucket).
    fn args(&self) -> Vec<String> {
        match self {
            Store::Memory => vec!["--plugin".into(), "memory".into()],
            Store::Local => Vec::new(),
            Store::S3 { moto, bucket } => {
                let mut args = vec!["--plugin".to_string(), "s3".to_string()];
                for (key, value) in moto::s3_settings(&moto.endpoint(), bucket, &[]) {
                    args.push("-c".into());
                    args.push(format!("{key}={value}"));
                }
                args
            }
        }
    }

    /// The value objects the store holds for namespace `ns`, as the store lists them; `None`
    /// where the store cannot be seen from outside (memory).
    fn value_objects(&self, dir: &Path, ns: &str) -> Option<Vec<String>> {
        match self {
            Store::Memory => None,
            Store::Local => {
                let values = dir.join(".stateplug/state/~kv").join(ns).join("values");
                let Ok(entries) = std::fs::read_dir(&values) else {
                    return Some(Vec::new());
                };
                let mut names: Vec<String> = entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    // The local plugin's own temporary and guard files are not values.
                    .filter(|name| !name.starts_with('.'))
                    .collect();
                names.sort();
                Some(names)
            }
            Store::S3 { moto, bucket } => {
                let prefix = format!("stateplug/~kv/{ns}/values/");
                Some(moto.list_keys(bucket, &prefix))
            }
        }
    }
}

fn s3<'a>(moto: &'a Moto, bucket: &str) -> Store<'a> {
    moto.create_bucket(bucket);
    Store::S3 {
        moto,
        bucket: bucket.to_string(),
    }
}

// ---- A client of one server ----

/// A `stateplug serve` with Basic auth, a 64 KiB body limit and a sweep every second.
struct Api {
    client: Client,
    server: Server,
}

/// One answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn etag(&self) -> String {
        self.header(ETAG.as_str())
            .unwrap_or_else(|| panic!("no ETag in a {} answer: {}", self.status, self.text()))
    }

    fn header(&self, name: &str) -> Option<String> {
        let value = self.headers.get(name)?;
        Some(value.to_str().unwrap().to_string())
    }

    /// `Stateplug-Expires-At`, parsed.
    fn expires_at(&self) -> Option<SystemTime> {
        let at = self.header("stateplug-expires-at")?;
        Some(humantime::parse_rfc3339(&at).unwrap_or_else(|e| panic!("{at}: {e}")))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.status, self.text()))
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(value: &Value) -> Vec<u8> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is no string"));
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

impl Api {
    /// Writes the configuration into `dir` and starts `stateplug <args> serve` there.
    fn start(dir: &Path, store: &Store) -> Api {
        let config = format!(
            "[server]\nbody_limit = \"64KiB\"\nkv_sweep_interval = \"1s\"\n\
             [server.users.{USER}]\npassword = \"{PASSWORD}\"\n"
        );
        std::fs::write(dir.join("stateplug.toml"), config).unwrap();
        let args = store.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Api {
            client: Client::new(),
            server: Server::start(dir, &args),
        }
    }

    /// Sends `method` to `path` (under the server's URL) with `body`.
    async fn send(&self, method: &str, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let response = self
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.server.url),
            )
            .basic_auth(USER, Some(PASSWORD))
            .body(body)
            .send()
            .await
            .unwrap();
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    async fn get(&self, ns: &str, key: &str) -> Answer {
        self.send("GET", &format!("/api/v1/kv/{ns}/{key}"), "")
            .await
    }

    /// PUT of `value` at `ns`/`key` (`query` such as `?ttl=1s`); must succeed: its ETag.
    async fn set(&self, ns: &str, key: &str, query: &str, value: &[u8]) -> String {
        let url = format!("/api/v1/kv/{ns}/{key}{query}");
        let stored = self.send("PUT", &url, value.to_vec()).await;
        assert_eq!(
            stored.status,
            StatusCode::OK,
            "PUT {url}: {}",
            stored.text()
        );
        stored.etag()
    }

    /// A namespace's POST `?op=`.
    async fn op(&self, ns: &str, op: &str, body: &Value) -> Answer {
        self.send(
            "POST",
            &format!("/api/v1/kv/{ns}?op={op}"),
            body.to_string(),
        )
        .await
    }

    /// Every page of the keys of `ns` matching `pattern` (percent-encoded by the client).
    async fn list(&self, ns: &str, pattern: &str) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("match", pattern.to_string())];
            query.extend(cursor.clone().map(|c| ("cursor", c)));
            let response = self
                .client
                .get(format!("{}/api/v1/kv/{ns}", self.server.url))
                .query(&query)
                .basic_auth(USER, Some(PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "listing {ns}");
            let page: Value = response.json().await.unwrap();
            let keys: Vec<String> = serde_json::from_value(page["keys"].clone()).unwrap();
            pages.push(keys);
            match &page["next_cursor"] {
                Value::Null => return pages,
                Value::String(next) => {
                    assert_eq!(Some(next), pages.last().unwrap().last(), "{page}");
                    cursor = Some(next.clone());
                }
                other => panic!("next_cursor is {other}"),
            }
        }
    }

    /// Every key of `ns` with its value and ETag.
    async fn snapshot(&self, ns: &str) -> BTreeMap<String, (Vec<u8>, String)> {
        let mut seen = BTreeMap::new();
        for key in self.list(ns, "*").await.concat() {
            let read = self.get(ns, &key).await;
            assert_eq!(read.status, StatusCode::OK, "{key}: {}", read.text());
            seen.insert(key, (read.body.clone(), read.etag()));
        }
        seen
    }

    /// Sends the request exactly as given (no client normalizes `..` away), with `headers`
    /// lines (each ending in CRLF); returns status and body.
    async fn raw(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
        let headers = format!("Content-Length: {}\r\n{headers}", body.len());
        let credentials = (USER, PASSWORD);
        common::raw_request(
            &self.server.url,
            credentials,
            (method, path),
            &headers,
            body,
        )
        .await
    }
}

/// Polls `done` every 100 ms until it holds, for at most [`PATIENCE`]; panics with `what`.
async fn eventually<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- The tests: each body on memory and local here, on s3 below ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_expire_and_the_sweep_deletes_them_on_memory() {
    ttls_expire_and_are_swept(&Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_expire_and_the_sweep_deletes_them_on_local() {
    ttls_expire_and_are_swept(&Store::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globs_batches_and_clear_on_memory() {
    globs_batches_and_clear(&Store::Memory, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn globs_batches_and_clear_on_local() {
    globs_batches_and_clear(&Store::Local, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_changes_nothing_on_memory() {
    a_failed_transaction_changes_nothing(&Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_changes_nothing_on_local() {
    a_failed_transaction_changes_nothing(&Store::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_lose_nothing_on_memory() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &Store::Memory);
    concurrent_increments_lose_nothing(&[&api], 10).await;
}

/// Two replicas on one local directory: their transactions meet only in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_through_two_replicas_on_local_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (
        Api::start(dir.path(), &Store::Local),
        Api::start(dir.path(), &Store::Local),
    );
    concurrent_increments_lose_nothing(&[&one, &two], 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_value_requests_get_a_clear_4xx_on_memory() {
    bad_input_changes_nothing(&Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_value_requests_get_a_clear_4xx_on_local() {
    bad_input_changes_nothing(&Store::Local).await;
}

/// Every body on the s3 plugin, each on a bucket of its own of one moto server, and two
/// replicas on one bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_values_on_s3() {
    let Some(moto) = Moto::start_or_skip("key_values_on_s3") else {
        return;
    };
    ttls_expire_and_are_swept(&s3(&moto, "kv-ttl")).await;
    // 1000 values are 1000 PUTs to moto: paging is checked on memory and local.
    globs_batches_and_clear(&s3(&moto, "kv-globs"), false).await;
    a_failed_transaction_changes_nothing(&s3(&moto, "kv-transactions")).await;
    bad_input_changes_nothing(&s3(&moto, "kv-bad-input")).await;
    // What the bucket holds: the key-values under `~kv/`, apart from workspaces and objects.
    let keys = moto.list_keys("kv-transactions", "");
    assert!(
        keys.contains(&"stateplug/~kv/tx/manifest".to_string()),
        "{keys:?}"
    );

    let store = s3(&moto, "kv-replicas");
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (
        Api::start(dir.path(), &store),
        Api::start(dir.path(), &store),
    );
    concurrent_increments_lose_nothing(&[&one, &two], 3).await;
}

// ---- The bodies ----

/// A TTL read (`Stateplug-Expires-At`) and changed (PATCH); a PUT without `ttl` drops it; a
/// key whose TTL runs out reads as absent and is not listed, and the sweep deletes its value
/// from the store.
async fn ttls_expire_and_are_swept(store: &Store<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), store);
    let ns = "cache";
    let before = SystemTime::now();
    api.set(ns, "session/a", "?ttl=1s", b"short").await;
    let long = api.set(ns, "long", "?ttl=1h", b"an hour").await;
    api.set(ns, "kept", "", &[0, 255, 10]).await;

    let read = api.get(ns, "long").await;
    assert_eq!(
        (read.status, read.body.as_slice()),
        (StatusCode::OK, &b"an hour"[..])
    );
    assert_eq!(read.etag(), long, "GET's ETag is PUT's");
    let expires = read
        .expires_at()
        .expect("a key with a TTL says when it expires");
    let hour = Duration::from_secs(3600);
    assert!(
        expires >= before + hour - Duration::from_secs(1) && expires <= SystemTime::now() + hour,
        "{:?}",
        read.header("stateplug-expires-at")
    );
    let kept = api.get(ns, "kept").await;
    assert_eq!(kept.body, [0, 255, 10], "bytes come back as they were sent");
    assert_eq!(kept.expires_at(), None, "a key without TTL never expires");
    assert_eq!(
        kept.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    // HEAD: GET's headers, no body.
    let head = api.send("HEAD", &format!("/api/v1/kv/{ns}/long"), "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!((head.etag(), head.body.len()), (long.clone(), 0));
    assert_eq!(head.header("content-length").as_deref(), Some("7"));
    assert!(head.expires_at().is_some());

    // PATCH changes only the TTL: same bytes, same version, a later expiry.
    let patched = api
        .send("PATCH", &format!("/api/v1/kv/{ns}/long?ttl=2h"), "")
        .await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.text());
    let read = api.get(ns, "long").await;
    assert_eq!(
        (read.body.as_slice(), read.etag()),
        (&b"an hour"[..], long.clone())
    );
    assert!(read.expires_at().unwrap() >= expires + hour - Duration::from_secs(1));
    let absent = api
        .send("PATCH", &format!("/api/v1/kv/{ns}/missing?ttl=2h"), "")
        .await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND, "{}", absent.text());
    assert!(
        absent.text().contains("no key `missing`"),
        "{}",
        absent.text()
    );
    assert_eq!(api.get(ns, "missing").await.status, StatusCode::NOT_FOUND);
    // A PUT without `ttl` drops the TTL.
    let replaced = api.set(ns, "long", "", b"for good").await;
    assert_ne!(replaced, long);
    assert_eq!(api.get(ns, "long").await.expires_at(), None);

    // The short key expires: absent to GET and HEAD, not listed...
    let api = &api;
    eventually("the key with a 1s TTL reads as absent", || async move {
        api.get(ns, "session/a").await.status == StatusCode::NOT_FOUND
    })
    .await;
    let absent = api.get(ns, "session/a").await;
    assert!(
        absent
            .text()
            .contains("no key `session/a` in namespace `cache`"),
        "{}",
        absent.text()
    );
    let head = api
        .send("HEAD", &format!("/api/v1/kv/{ns}/session/a"), "")
        .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert_eq!(api.list(ns, "*").await.concat(), ["kept", "long"]);
    // ...and the sweep deletes its value object: the store holds the two others only.
    let root = dir.path();
    if store.value_objects(root, ns).is_some() {
        eventually("the sweep deletes the expired value", || async move {
            store.value_objects(root, ns).unwrap().len() == 2
        })
        .await;
    }
    assert_eq!(api.get(ns, "kept").await.body, [0, 255, 10]);
    assert_eq!(api.get(ns, "long").await.body, b"for good");
    // An expired key can be set again.
    api.set(ns, "session/a", "?ttl=1h", b"again").await;
    assert_eq!(api.get(ns, "session/a").await.body, b"again");
}

/// Glob listing (`*` matches `/`), pages of 1000 (when `paging`), batch get and set, DELETE
/// of a key and of a namespace; namespaces, workspaces and objects never meet.
async fn globs_batches_and_clear(store: &Store<'_>, paging: bool) {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), store);
    let ns = "dir";
    let keys = [
        "users/1/name",
        "users/2/name",
        "users/10/mail",
        "groups/a",
        "u",
    ];
    let values: BTreeMap<&str, String> = keys.iter().map(|k| (*k, b64(k.as_bytes()))).collect();
    let set = api
        .op(ns, "batch-set", &json!({"values": values, "ttl": "90s"}))
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    let versions = set.json()["versions"].clone();
    let versions: BTreeMap<String, String> = serde_json::from_value(versions).unwrap();
    assert_eq!(versions.len(), keys.len(), "{versions:?}");
    let read = api.get(ns, "users/10/mail").await;
    assert_eq!(read.body, b"users/10/mail");
    assert_eq!(read.etag(), format!("\"{}\"", versions["users/10/mail"]));
    assert!(read.expires_at().is_some(), "the batch's TTL");
    // The same keys in another namespace are other keys.
    api.set("other", "users/1/name", "", b"elsewhere").await;

    let list = |pattern: &'static str| {
        let api = &api;
        async move { api.list(ns, pattern).await.concat() }
    };
    assert_eq!(
        list("users/*").await,
        ["users/1/name", "users/10/mail", "users/2/name"]
    );
    assert_eq!(
        list("*name").await,
        ["users/1/name", "users/2/name"],
        "`*` matches `/`"
    );
    assert_eq!(list("users/?/name").await, ["users/1/name", "users/2/name"]);
    assert_eq!(list("[!u]*").await, ["groups/a"]);
    assert_eq!(list("nothing*").await, Vec::<String>::new());
    let all = api
        .send("GET", &format!("/api/v1/kv/{ns}"), "")
        .await
        .json();
    assert_eq!(
        all,
        json!({"keys": ["groups/a", "u", "users/1/name", "users/10/mail", "users/2/name"],
               "next_cursor": null}),
        "`match` defaults to `*`"
    );

    // Batch get: every key asked, null for the absent, from one moment.
    let got = api
        .op(
            ns,
            "batch-get",
            &json!({"keys": ["users/1/name", "u", "missing"]}),
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let got = got.json();
    assert_eq!(unb64(&got["values"]["users/1/name"]), b"users/1/name");
    assert_eq!(unb64(&got["values"]["u"]), b"u");
    assert_eq!(got["values"]["missing"], Value::Null);
    assert_eq!(got["values"].as_object().unwrap().len(), 3);
    // A batch set without TTL: the keys keep none.
    let binary = json!({"values": {"bin": b64(&[0, 1, 2, 255]), "u": b64(b"new u")}});
    let set = api.op(ns, "batch-set", &binary).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    let read = api.get(ns, "u").await;
    assert_eq!(
        (read.body.as_slice(), read.expires_at()),
        (&b"new u"[..], None)
    );
    assert_eq!(api.get(ns, "bin").await.body, [0, 1, 2, 255]);

    // DELETE of a key: 204, twice.
    for _ in 0..2 {
        let deleted = api.send("DELETE", &format!("/api/v1/kv/{ns}/u"), "").await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    }
    assert_eq!(api.get(ns, "u").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        list("u*").await,
        ["users/1/name", "users/10/mail", "users/2/name"]
    );

    // Key-values are no workspaces and no objects.
    let workspaces = api.send("GET", "/api/workspaces", "").await.json();
    let names: Vec<&str> = workspaces
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default"], "key-values are no workspaces");
    let objects = api.send("GET", "/api/v1/objects", "").await.json();
    assert_eq!(objects["paths"], json!([]), "key-values are no objects");
    let object = api
        .send("PUT", "/api/v1/objects/dir/users/1/name", "an object")
        .await;
    assert_eq!(object.status, StatusCode::OK, "{}", object.text());
    assert_eq!(api.get(ns, "users/1/name").await.body, b"users/1/name");

    // DELETE of the namespace clears it, and only it.
    let cleared = api.send("DELETE", &format!("/api/v1/kv/{ns}"), "").await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT, "{}", cleared.text());
    assert_eq!(list("*").await, Vec::<String>::new());
    assert_eq!(api.get(ns, "groups/a").await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("other", "users/1/name").await.body, b"elsewhere");
    let object = api
        .send("GET", "/api/v1/objects/dir/users/1/name", "")
        .await;
    assert_eq!(object.text(), "an object");
    if let Some(left) = store.value_objects(dir.path(), ns) {
        assert_eq!(left, Vec::<String>::new(), "clear removes the values");
    }
    let cleared = api.send("DELETE", "/api/v1/kv/never-used", "").await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT, "{}", cleared.text());

    if !paging {
        return;
    }
    // 1001 keys: a page of 1000, then one, in byte order.
    let many: BTreeMap<String, String> =
        (0..1000).map(|i| (format!("k{i:04}"), b64(b"1"))).collect();
    let set = api.op("big", "batch-set", &json!({"values": many})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    api.set("big", "k1000", "", b"1").await;
    let pages = api.list("big", "*").await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1000, 1]);
    let expected: Vec<String> = (0..=1000).map(|i| format!("k{i:04}")).collect();
    assert_eq!(pages.concat(), expected);
    assert_eq!(api.list("big", "k099?").await.concat().len(), 10);
}

/// A transaction whose second precondition fails changes nothing (409 naming it); the same
/// transaction on preconditions that hold applies every change at once.
async fn a_failed_transaction_changes_nothing(store: &Store<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), store);
    let ns = "tx";
    let balance = api.set(ns, "balance", "", b"10").await;
    api.set(ns, "owner", "", b"ann").await;
    let before = api.snapshot(ns).await;
    let stored_before = store.value_objects(dir.path(), ns);
    let unquoted = balance.trim_matches('"').to_string();
    let operations = json!([
        {"set": "balance", "value": b64(b"0")},
        {"delete": "owner"},
        {"set": "new", "value": b64(b"n"), "ttl": "1h"},
    ]);
    let failing = json!({
        "preconditions": [{"key": "balance", "version": unquoted}, {"key": "owner", "absent": true}],
        "operations": operations,
    });
    let refused = api.op(ns, "transaction", &failing).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains("nothing changed: key `owner` exists"),
        "{}",
        refused.text()
    );
    assert_eq!(
        api.snapshot(ns).await,
        before,
        "a refused transaction changed keys"
    );
    assert_eq!(api.get(ns, "new").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        store.value_objects(dir.path(), ns),
        stored_before,
        "the refused transaction's values are gone from the store"
    );
    // A stale version is named too.
    let stale = json!({
        "preconditions": [{"key": "balance", "version": "0000-not-it"}],
        "operations": operations,
    });
    let refused = api.op(ns, "transaction", &stale).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains("key `balance` is not at version `0000-not-it`"),
        "{}",
        refused.text()
    );
    assert_eq!(api.snapshot(ns).await, before);

    // Preconditions that hold (the version as the ETag gave it, quotes included): all of it.
    let holding = json!({
        "preconditions": [{"key": "balance", "version": balance}, {"key": "new", "absent": true}],
        "operations": operations,
    });
    let applied = api.op(ns, "transaction", &holding).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text());
    let versions = applied.json()["versions"].clone();
    assert_eq!(
        versions["owner"],
        Value::Null,
        "a deleted key has no version"
    );
    let read = api.get(ns, "balance").await;
    assert_eq!(read.body, b"0");
    assert_eq!(
        read.etag(),
        format!("\"{}\"", versions["balance"].as_str().unwrap())
    );
    assert_eq!(api.get(ns, "owner").await.status, StatusCode::NOT_FOUND);
    let new = api.get(ns, "new").await;
    assert_eq!(new.body, b"n");
    assert!(new.expires_at().is_some(), "an operation's own TTL");
    // The same again: its preconditions no longer hold.
    let again = api.op(ns, "transaction", &holding).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert_eq!(api.get(ns, "balance").await.body, b"0");
    // Preconditions alone check without changing anything.
    let check = json!({"preconditions": [{"key": "owner", "absent": true}]});
    let checked = api.op(ns, "transaction", &check).await;
    assert_eq!(
        (checked.status, checked.json()),
        (StatusCode::OK, json!({"versions": {}}))
    );
}

/// 16 clients each add `rounds` to one counter through `apis` (round robin), each step a
/// transaction on the version it read, again on 409: the counter ends at 16 × `rounds`, and
/// every step's own key is there.
async fn concurrent_increments_lose_nothing(apis: &[&Api], rounds: u64) {
    const CLIENTS: usize = 16;
    let clients: Vec<(Client, String)> = apis
        .iter()
        .map(|api| (api.client.clone(), api.server.url.clone()))
        .collect();
    let clients = Arc::new(clients);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let clients = clients.clone();
        tasks.spawn(async move {
            let (client, url) = &clients[i % clients.len()];
            let mut conflicts = 0u64;
            for n in 0..rounds {
                loop {
                    let read = client
                        .get(format!("{url}/api/v1/kv/count/total"))
                        .basic_auth(USER, Some(PASSWORD))
                        .send()
                        .await
                        .unwrap();
                    let (total, precondition) = match read.status() {
                        StatusCode::NOT_FOUND => (0, json!({"key": "total", "absent": true})),
                        StatusCode::OK => {
                            let etag = read.headers()[ETAG].to_str().unwrap().to_string();
                            let total: u64 = read.text().await.unwrap().parse().unwrap();
                            (total, json!({"key": "total", "version": etag}))
                        }
                        other => panic!("GET total: {other}"),
                    };
                    let transaction = json!({
                        "preconditions": [precondition],
                        "operations": [
                            {"set": "total", "value": b64((total + 1).to_string().as_bytes())},
                            {"set": format!("by/{i}/{n}"), "value": ""},
                        ],
                    });
                    let answer = client
                        .post(format!("{url}/api/v1/kv/count?op=transaction"))
                        .basic_auth(USER, Some(PASSWORD))
                        .body(transaction.to_string())
                        .send()
                        .await
                        .unwrap();
                    match answer.status() {
                        StatusCode::OK => break,
                        StatusCode::CONFLICT => conflicts += 1,
                        other => panic!("transaction: {other}: {}", answer.text().await.unwrap()),
                    }
                }
            }
            conflicts
        });
    }
    let mut conflicts = 0;
    while let Some(done) = tasks.join_next().await {
        conflicts += done.unwrap();
    }
    let expected = CLIENTS as u64 * rounds;
    for api in apis {
        let total = api.get("count", "total").await;
        assert_eq!(
            total.text(),
            expected.to_string(),
            "{conflicts} conflicts retried"
        );
        assert_eq!(
            api.list("count", "by/*").await.concat().len() as u64,
            expected
        );
    }
}

/// Bad namespaces, keys, TTLs, ops, bodies and batches of 1001 keys: each a clear 4xx naming
/// what is wrong, and nothing changed.
async fn bad_input_changes_nothing(store: &Store<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), store);
    let kept = api.set("app", "kept", "?ttl=1h", b"kept").await;
    api.set("app", "a/b", "", b"ab").await;
    let before = api.snapshot("app").await;
    let stored_before = store.value_objects(dir.path(), "app");

    let long_ns = "n".repeat(129);
    let thousand_and_one: Vec<String> = (0..=1000).map(|i| format!("k{i}")).collect();
    let big_get = json!({"keys": thousand_and_one}).to_string();
    let big_set = json!({"values": thousand_and_one.iter().map(|k| (k.clone(), b64(b"x")))
        .collect::<BTreeMap<_, _>>()})
    .to_string();
    let big_tx = json!({"operations": thousand_and_one.iter().map(|k| json!({"delete": k}))
        .collect::<Vec<_>>()})
    .to_string();
    let wide_tx = json!({
        "preconditions": thousand_and_one[..600].iter().map(|k| json!({"key": k, "absent": true}))
            .collect::<Vec<_>>(),
        "operations": thousand_and_one[600..].iter().map(|k| json!({"delete": k}))
            .collect::<Vec<_>>(),
    })
    .to_string();
    let huge = "x".repeat(BODY_LIMIT + 1);
    let wrong_md5 = format!("Content-MD5: {}\r\n", b64(&[0; 16]));
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str, String, u16, &str)> = vec![
        // Namespaces and keys.
        ("PUT", "/api/v1/kv/bad~ns/k".into(), "", "x".into(), 400, "namespace `bad~ns` is not valid"),
        ("PUT", format!("/api/v1/kv/{long_ns}/k"), "", "x".into(), 400, "use 1 to 128 letters"),
        ("PUT", "/api/v1/kv/../k".into(), "", "x".into(), 400, "namespace `..` is not valid"),
        ("GET", "/api/v1/kv/bad%20ns".into(), "", String::new(), 400, "namespace `bad ns` is not valid"),
        ("DELETE", "/api/v1/kv/a%2Fb".into(), "", String::new(), 400, "namespace `a/b` is not valid"),
        ("PUT", "/api/v1/kv/app/a/../kept".into(), "", "x".into(), 400, "`.` or `..` segment"),
        ("PUT", "/api/v1/kv/app/a//b".into(), "", "x".into(), 400, "empty segment"),
        ("PUT", "/api/v1/kv/app/x.tflock".into(), "", "x".into(), 400, "reserved for locks"),
        ("PUT", "/api/v1/kv/app/".into(), "", "x".into(), 400, "the URL names no key"),
        ("PUT", "/api/v1/kv/".into(), "", "x".into(), 400, "the URL names no namespace"),
        ("GET", "/api/v1/kv".into(), "", String::new(), 400, "the URL names no namespace"),
        // TTLs and query parameters.
        ("PUT", "/api/v1/kv/app/kept?ttl=abc".into(), "", "x".into(), 400, "`ttl` is `abc`: not a duration"),
        ("PUT", "/api/v1/kv/app/kept?ttl=0s".into(), "", "x".into(), 400, "`ttl` is `0s`: out of range"),
        ("PUT", "/api/v1/kv/app/kept?ttl=400d".into(), "", "x".into(), 400, "`ttl` is `400d`: out of range"),
        ("PUT", "/api/v1/kv/app/kept?ttl=".into(), "", "x".into(), 400, "`ttl` is ``"),
        ("PUT", "/api/v1/kv/app/kept?tll=5m".into(), "", "x".into(), 400, "unknown query parameter `tll`"),
        ("PUT", "/api/v1/kv/app/kept?ttl=1m&ttl=2m".into(), "", "x".into(), 400, "`ttl` is given twice"),
        ("PATCH", "/api/v1/kv/app/kept".into(), "", String::new(), 400, "needs `?ttl=<duration>`"),
        ("PATCH", "/api/v1/kv/app/kept?ttl=abc".into(), "", String::new(), 400, "`ttl` is `abc`"),
        ("PATCH", "/api/v1/kv/app/kept?ttl=366d".into(), "", String::new(), 400, "out of range"),
        ("GET", "/api/v1/kv/app/kept?version=1".into(), "", String::new(), 400, "unknown query parameter `version`"),
        ("DELETE", "/api/v1/kv/app?match=*".into(), "", String::new(), 400, "unknown query parameter `match`"),
        ("GET", "/api/v1/kv/app?match=%5B".into(), "", String::new(), 400, "the query parameter `match`"),
        ("GET", "/api/v1/kv/app?limit=5".into(), "", String::new(), 400, "unknown query parameter `limit`"),
        // Ops and their bodies.
        ("POST", "/api/v1/kv/app".into(), "", "{}".into(), 400, "needs ?op=batch-get"),
        ("POST", "/api/v1/kv/app?op=increment".into(), "", "{}".into(), 400, "unknown op `increment`"),
        ("POST", "/api/v1/kv/app?op=batch-get".into(), "", "not json".into(), 400, "not the JSON this op takes"),
        ("POST", "/api/v1/kv/app?op=batch-get".into(), "", r#"{"kys": ["a"]}"#.into(), 400, "unknown field `kys`"),
        ("POST", "/api/v1/kv/app?op=batch-set".into(), "", r#"{"values": {"kept": "***"}}"#.into(), 400, "the value of key `kept` is not base64"),
        ("POST", "/api/v1/kv/app?op=batch-set".into(), "", r#"{"values": {"kept": "eA=="}, "ttl": "abc"}"#.into(), 400, "`ttl` is `abc`"),
        ("POST", "/api/v1/kv/app?op=batch-set".into(), "", r#"{"values": {"../x": "eA=="}}"#.into(), 400, "`.` or `..` segment"),
        ("POST", "/api/v1/kv/app?op=transaction".into(), "", r#"{"preconditions": [{"key": "kept"}]}"#.into(), 400, "`preconditions[0]` (key `kept`)"),
        ("POST", "/api/v1/kv/app?op=transaction".into(), "", r#"{"operations": [{"delete": "a/b"}, {"set": "kept"}]}"#.into(), 400, "`operations[1]`"),
        ("POST", "/api/v1/kv/app?op=transaction".into(), "", r#"{"operations": [{"delete": "a/b"}, {"set": "kept", "value": "!"}]}"#.into(), 400, "`operations[1]`: the value of key `kept` is not base64"),
        ("POST", "/api/v1/kv/app?op=transaction".into(), "", r#"{"operations": [{"delete": "a/b"}, {"set": "kept", "value": "", "ttl": "0s"}]}"#.into(), 400, "`operations[1].ttl` is `0s`"),
        ("POST", "/api/v1/kv/app?op=transaction".into(), "", r#"{"operations": [{"delete": "a/b"}], "preconditons": []}"#.into(), 400, "unknown field `preconditons`"),
        // Too many keys.
        ("POST", "/api/v1/kv/app?op=batch-get".into(), "", big_get, 413, "1001 keys in one request; at most 1000"),
        ("POST", "/api/v1/kv/app?op=batch-set".into(), "", big_set, 413, "1001 keys in one request"),
        ("POST", "/api/v1/kv/app?op=transaction".into(), "", big_tx, 413, "1001 keys in one request"),
        ("POST", "/api/v1/kv/app?op=transaction".into(), "", wide_tx, 413, "1001 keys in one request"),
        // Methods, integrity, size.
        ("POST", "/api/v1/kv/app/kept".into(), "", "x".into(), 405, "use GET, HEAD, PUT, PATCH, DELETE"),
        ("PUT", "/api/v1/kv/app".into(), "", "x".into(), 405, "use GET, HEAD, POST, DELETE"),
        ("PUT", "/api/v1/kv/app/kept".into(), &wrong_md5, "else".into(), 400, "but its Content-MD5 header says"),
        ("PUT", "/api/v1/kv/app/kept".into(), "", huge.clone(), 413, "over this server's limit of 65536 bytes"),
        ("POST", "/api/v1/kv/app?op=batch-set".into(), "", huge, 413, "over this server's limit"),
    ];
    for (method, target, headers, body, status, says) in &cases {
        let (got, text) = api.raw(method, target, headers, body.as_bytes()).await;
        let shown = &target[..target.len().min(80)];
        assert_eq!(got, *status, "{method} {shown}: {text}");
        assert!(text.contains(says), "{method} {shown}: {text}");
    }

    // Without credentials: 401.
    let anonymous = [
        ("GET", "/api/v1/kv/app/kept"),
        ("PUT", "/api/v1/kv/app/kept"),
        ("GET", "/api/v1/kv/app"),
        ("DELETE", "/api/v1/kv/app"),
        ("POST", "/api/v1/kv/app?op=batch-get"),
    ];
    common::assert_needs_credentials(&api.server.url, &anonymous).await;

    let after = api.snapshot("app").await;
    assert_eq!(after, before, "a refused request changed keys");
    assert_eq!(after["kept"].1, kept);
    assert!(
        api.get("app", "kept").await.expires_at().is_some(),
        "its TTL is kept"
    );
    assert_eq!(store.value_objects(dir.path(), "app"), stored_before);
    for ns in ["bad~ns", "bad ns", "a", "..", long_ns.as_str()] {
        if let Some(values) = store.value_objects(dir.path(), ns) {
            assert_eq!(values, Vec::<String>::new(), "namespace {ns:?} got values");
        }
    }
    if matches!(store, Store::Local) {
        let namespaces: Vec<String> = std::fs::read_dir(dir.path().join(".stateplug/state/~kv"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect();
        assert_eq!(namespaces, ["app"], "no refused request made a namespace");
    }
}

// ---- `stateplug kv` ----

/// `stateplug kv` on the default local backend, then the same keys through `serve` on that
/// directory, and the CLI beside the running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_a_server_share_the_key_values_of_a_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let v1 = ok(
        dir,
        &["kv", "set", "app", "config/db", "postgres://db"],
        None,
    );
    let v1 = v1.trim().to_string();
    assert!(!v1.is_empty());
    let from_stdin = ok(
        dir,
        &["kv", "set", "app", "config/blob", "-"],
        Some(&[0, 159, 10]),
    );
    let blob_version = from_stdin.trim().to_string();
    let hyphen = ok(dir, &["kv", "set", "app", "neg", "-5"], None);
    assert!(!hyphen.trim().is_empty());
    ok(
        dir,
        &["kv", "set", "app", "session", "s", "--ttl", "1h"],
        None,
    );

    let read = stateplug(dir, &["kv", "get", "app", "config/db"], None);
    assert!(read.status.success());
    assert_eq!(read.stdout, b"postgres://db");
    assert!(
        String::from_utf8_lossy(&read.stderr).contains(&format!("version {v1}")),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let read = stateplug(dir, &["kv", "get", "app", "config/blob"], None);
    assert_eq!(
        read.stdout,
        [0, 159, 10],
        "bytes from stdin come back as they were"
    );
    assert_eq!(ok(dir, &["kv", "get", "app", "neg"], None), "-5");
    let session = stateplug(dir, &["kv", "get", "app", "session"], None);
    assert!(
        String::from_utf8_lossy(&session.stderr).contains("expires at"),
        "{}",
        String::from_utf8_lossy(&session.stderr)
    );
    let as_json: Value =
        serde_json::from_str(&ok(dir, &["kv", "get", "app", "session", "--json"], None)).unwrap();
    assert_eq!(unb64(&as_json["value"]), b"s");
    assert!(as_json["expires_at"].is_string(), "{as_json}");
    // Kept under `~kv/` in the backend's directory, not as a workspace.
    let values = dir.join(".stateplug/state/~kv/app/values");
    assert_eq!(std::fs::read(values.join(&v1)).unwrap(), b"postgres://db");
    let workspaces: Value =
        serde_json::from_str(&ok(dir, &["workspace", "list", "--json"], None)).unwrap();
    let names: Vec<&str> = workspaces
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default"], "key-values are no workspaces");

    // Absent: exit 1, a clear message.
    let (code, text) = fails(dir, &["kv", "get", "app", "config/none"], None);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("no key `config/none` in namespace `app`"),
        "{text}"
    );
    // Listing: one key per line, by glob, or JSON.
    assert_eq!(
        ok(dir, &["kv", "ls", "app"], None),
        "config/blob\nconfig/db\nneg\nsession\n"
    );
    assert_eq!(
        ok(dir, &["kv", "ls", "app", "--match", "*b*"], None),
        "config/blob\nconfig/db\n"
    );
    let listed: Value = serde_json::from_str(&ok(
        dir,
        &["kv", "ls", "app", "--match", "config/*", "--json"],
        None,
    ))
    .unwrap();
    assert_eq!(listed, json!(["config/blob", "config/db"]));

    // A server on the same directory sees what the CLI wrote.
    let api = Api::start(dir, &Store::Local);
    let read = api.get("app", "config/db").await;
    assert_eq!(read.body, b"postgres://db");
    assert_eq!(
        read.etag(),
        format!("\"{v1}\""),
        "the ETag is the version the CLI printed"
    );
    assert_eq!(
        api.get("app", "config/blob").await.etag(),
        format!("\"{blob_version}\"")
    );
    assert!(api.get("app", "session").await.expires_at().is_some());
    assert_eq!(
        api.list("app", "*").await.concat(),
        ["config/blob", "config/db", "neg", "session"]
    );

    // And the CLI beside it: it reads the server's writes, its own are served.
    api.set("app", "config/db", "", b"mysql://db").await;
    assert_eq!(
        ok(dir, &["kv", "get", "app", "config/db"], None),
        "mysql://db"
    );
    ok(dir, &["kv", "rm", "app", "config/blob"], None);
    ok(dir, &["kv", "rm", "app", "config/blob"], None);
    assert_eq!(
        api.get("app", "config/blob").await.status,
        StatusCode::NOT_FOUND
    );
    // `ls` reads every page: 1001 keys the server wrote.
    let many: BTreeMap<String, String> = (0..1000)
        .map(|i| (format!("bulk/{i:04}"), b64(b"b")))
        .collect();
    let set = api.op("app", "batch-set", &json!({"values": many})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    api.set("app", "bulk/1000", "", b"b").await;
    let listed = ok(dir, &["kv", "ls", "app", "--match", "bulk/*"], None);
    let expected: Vec<String> = (0..=1000).map(|i| format!("bulk/{i:04}")).collect();
    assert_eq!(listed.lines().collect::<Vec<_>>(), expected);

    // Refused with the rule that refused it.
    let (code, text) = fails(dir, &["kv", "set", "app", "a/../b", "x"], None);
    assert_eq!(code, 1);
    assert!(text.contains("`.` or `..` segment"), "{text}");
    let (code, text) = fails(dir, &["kv", "set", "bad~ns", "k", "x"], None);
    assert_eq!(code, 1);
    assert!(text.contains("namespace `bad~ns` is not valid"), "{text}");
    let (code, text) = fails(dir, &["kv", "set", "app", "k", "x", "--ttl", "400d"], None);
    assert_eq!(code, 1);
    assert!(text.contains("out of range"), "{text}");
    let (code, text) = fails(dir, &["kv", "set", "app", "k", "x", "--ttl", "abc"], None);
    assert_eq!(
        code, 2,
        "a TTL that is no duration is a usage error: {text}"
    );
    assert!(text.contains("--ttl"), "{text}");
    assert_eq!(api.get("app", "k").await.status, StatusCode::NOT_FOUND);
}

/// A server killed (SIGKILL) in the middle of a 1000-key batch: after a restart the namespace
/// holds all of the batch or none of it, never a part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_transaction_leaves_all_of_it_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let store = Store::Local;
    let values: serde_json::Map<String, Value> = (0..1000)
        .map(|i| {
            (
                format!("k/{i:04}"),
                Value::from(b64(format!("v{i}").as_bytes())),
            )
        })
        .collect();
    let batch = json!({ "values": values }).to_string();
    let mut caught_mid_way = 0;
    for (round, delay_ms) in [150u64, 300, 600, 1200].into_iter().enumerate() {
        let ns = format!("crash{round}");
        let api = Api::start(dir, &store);
        let url = format!("{}/api/v1/kv/{ns}?op=batch-set", api.server.url);
        let request = api
            .client
            .post(url)
            .basic_auth(USER, Some(PASSWORD))
            .body(batch.clone())
            .send();
        let sent = tokio::spawn(request);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        drop(api); // SIGKILL, whatever it was doing
        let _ = sent.await;

        let api = Api::start(dir, &store);
        let listed = api
            .send("GET", &format!("/api/v1/kv/{ns}?match=*"), "")
            .await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
        let keys = listed.json()["keys"].as_array().unwrap().len();
        let next = &listed.json()["next_cursor"];
        let visible = if next.is_null() { keys } else { 1000 };
        let written = store.value_objects(dir, &ns).unwrap().len();
        assert!(
            visible == 0 || visible == 1000,
            "round {round}: {visible} of the batch's 1000 keys are visible"
        );
        if visible == 0 && written > 0 {
            caught_mid_way += 1; // values written, no commit: invisible, as they must be
        }
        // The namespace takes new writes after the crash.
        api.set(&ns, "after", "", b"ok").await;
        drop(api);
    }
    assert!(
        caught_mid_way > 0,
        "no kill landed in the middle of the batch"
    );
}
