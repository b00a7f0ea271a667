//! The object API as users reach it: `stateplug serve` at `/api/v1/objects` (a key space apart
//! from the workspaces) and `stateplug object`, on the memory, local and s3 (moto) plugins.
//! Each body takes the backend's `serve` arguments, so the same checks run on every plugin.

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::header::{ETAG, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::common::cli::{fails, ok, stateplug};
use crate::common::moto::{self, Moto};
use crate::common::protocol::{lock_info, state};
use crate::common::{self, Server};

const USER: &str = "ci";
const PASSWORD: &str = "objects-pw";
/// The server's `body_limit` in these tests.
const BODY_LIMIT: usize = 64 << 10;

/// A `stateplug serve` with Basic auth and a 64 KiB body limit, and a client.
struct Api {
    client: Client,
    server: Server,
}

/// One answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn etag(&self) -> String {
        self.headers
            .get(ETAG)
            .unwrap_or_else(|| panic!("no ETag in a {} answer: {}", self.status, self.body))
            .to_str()
            .unwrap()
            .to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.status, self.body))
    }
}

impl Api {
    /// Starts `stateplug <backend> serve` in `dir`.
    fn start(dir: &Path, backend: &[&str]) -> Api {
        let config = format!(
            "[server]\nbody_limit = \"64KiB\"\n[server.users.{USER}]\npassword = \"{PASSWORD}\"\n"
        );
        std::fs::write(dir.join("stateplug.toml"), config).unwrap();
        Api {
            client: Client::new(),
            server: Server::start(dir, backend),
        }
    }

    /// Sends `method` to `path` (under the server's URL) with `headers` and `body`.
    async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = self
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.server.url),
            )
            .basic_auth(USER, Some(PASSWORD))
            .body(body);
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn send(&self, method: &str, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        self.send_with(method, path, &[], body).await
    }

    /// GET of the object at `path`.
    async fn get(&self, path: &str) -> Answer {
        self.send("GET", &format!("/api/v1/objects/{path}"), "")
            .await
    }

    /// PUT of `body` at `path`, with conditional `headers`.
    async fn put(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        self.send_with(
            "PUT",
            &format!("/api/v1/objects/{path}"),
            headers,
            body.to_string(),
        )
        .await
    }

    /// Every page of the listing under `prefix` (percent-encoded by the client).
    async fn list(&self, prefix: &str, limit: Option<usize>) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("prefix", prefix.to_string())];
            query.extend(limit.map(|l| ("limit", l.to_string())));
            query.extend(cursor.clone().map(|c| ("cursor", c)));
            let response = self
                .client
                .get(format!("{}/api/v1/objects", self.server.url))
                .query(&query)
                .basic_auth(USER, Some(PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let page: Value = response.json().await.unwrap();
            let paths: Vec<String> = serde_json::from_value(page["paths"].clone()).unwrap();
            pages.push(paths);
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

    /// The whole listing under `prefix`, each path with its content and ETag.
    async fn snapshot(&self, prefix: &str) -> BTreeMap<String, (String, String)> {
        let mut seen = BTreeMap::new();
        for path in self.list(prefix, None).await.concat() {
            let answer = self.get(&format!("{prefix}{path}")).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
            seen.insert(path, (answer.body.clone(), answer.etag()));
        }
        seen
    }

    /// Sends the request exactly as given (no client normalizes `..` or `%2e%2e` away), with
    /// `headers` lines (each ending in CRLF); returns status and body.
    async fn raw(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
        let credentials = (USER, PASSWORD);
        common::raw_request(&self.server.url, credentials, (method, path), headers, body).await
    }
}

// ---- The backends ----

const MEMORY: &[&str] = &["--plugin", "memory"];
/// The embedded default: the local plugin in `./.stateplug/state`.
const LOCAL: &[&str] = &[];

/// `--plugin s3 -c ...` on a fresh bucket of `moto`.
fn s3_args(moto: &Moto, bucket: &str) -> Vec<String> {
    moto.create_bucket(bucket);
    let mut args = vec!["--plugin".to_string(), "s3".to_string()];
    for (key, value) in moto::s3_settings(&moto.endpoint(), bucket, &[]) {
        args.push("-c".into());
        args.push(format!("{key}={value}"));
    }
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_of_state_files_over_http_on_memory() {
    the_tree_over_http(MEMORY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_of_state_files_over_http_on_local() {
    the_tree_over_http(LOCAL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconditions_and_locks_over_http_on_memory() {
    preconditions_and_locks(MEMORY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconditions_and_locks_over_http_on_local() {
    preconditions_and_locks(LOCAL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_object_requests_get_a_clear_4xx_on_memory() {
    bad_input_changes_nothing(MEMORY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_object_requests_get_a_clear_4xx_on_local() {
    bad_input_changes_nothing(LOCAL).await;
}

/// The three bodies on the s3 plugin, each on a bucket of its own of one moto server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_object_api_on_s3() {
    let Some(moto) = Moto::start_or_skip("the_object_api_on_s3") else {
        return;
    };
    let tree = s3_args(&moto, "objects-tree");
    the_tree_over_http(&strs(&tree)).await;
    // What the bucket holds: the objects under `~objects/`, the workspace apart.
    let keys = moto.list_keys("objects-tree", "");
    assert!(
        keys.contains(&"stateplug/~objects/datacenters/eu/datacenter.state.json".to_string()),
        "{keys:?}"
    );
    let preconditions = s3_args(&moto, "objects-preconditions");
    preconditions_and_locks(&strs(&preconditions)).await;
    let bad = s3_args(&moto, "objects-bad-input");
    bad_input_changes_nothing(&strs(&bad)).await;
}

/// cldctl's tree of state files: datacenters, their environments, modules and resources.
fn cldctl_tree() -> Vec<String> {
    let mut paths = Vec::new();
    for dc in ["eu", "us"] {
        paths.push(format!("datacenters/{dc}/datacenter.state.json"));
        for env in ["prod", "staging"] {
            let base = format!("datacenters/{dc}/environments/{env}");
            paths.push(format!("{base}/modules/net.state.json"));
            paths.push(format!("{base}/modules/dns.state.json"));
            paths.push(format!("{base}/resources/api/db.state.json"));
            paths.push(format!("{base}/resources/api/queue.state.json"));
        }
    }
    paths
}

async fn the_tree_over_http(backend: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), backend);
    let tree = cldctl_tree();
    let mut etags = BTreeMap::new();
    for path in &tree {
        let stored = api.put(path, &[], &format!("{{\"at\": \"{path}\"}}")).await;
        assert_eq!(stored.status, StatusCode::OK, "{path}: {}", stored.body);
        etags.insert(path.clone(), stored.etag());
    }
    for path in &tree {
        let read = api.get(path).await;
        assert_eq!(read.status, StatusCode::OK, "{path}");
        assert_eq!(read.body, format!("{{\"at\": \"{path}\"}}"));
        assert_eq!(read.etag(), etags[path], "{path}: GET's ETag is PUT's");
        let etag = read.etag();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    }

    // A datacenter's environments, as paths relative to the prefix, sorted.
    let listed = api.list("datacenters/eu/environments/", None).await;
    assert_eq!(
        listed,
        [[
            "prod/modules/dns.state.json",
            "prod/modules/net.state.json",
            "prod/resources/api/db.state.json",
            "prod/resources/api/queue.state.json",
            "staging/modules/dns.state.json",
            "staging/modules/net.state.json",
            "staging/resources/api/db.state.json",
            "staging/resources/api/queue.state.json",
        ]]
    );
    let everything = api.list("", None).await.concat();
    let mut sorted = tree.clone();
    sorted.sort();
    assert_eq!(everything, sorted, "no prefix lists every object");
    // A prefix may end mid-segment.
    assert_eq!(
        api.list("datacenters/u", None).await.concat().len(),
        tree.len() / 2
    );

    // HEAD: the headers of GET, no body.
    let dc = "datacenters/us/datacenter.state.json";
    let head = api.send("HEAD", &format!("/api/v1/objects/{dc}"), "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.etag(), etags[dc]);
    assert_eq!(head.body, "");
    assert_eq!(
        head.headers["content-length"].to_str().unwrap(),
        format!("{{\"at\": \"{dc}\"}}").len().to_string()
    );
    let absent = api
        .send(
            "HEAD",
            "/api/v1/objects/datacenters/ap/datacenter.state.json",
            "",
        )
        .await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);
    let absent = api.get("datacenters/ap/datacenter.state.json").await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);
    assert!(
        absent
            .body
            .contains("no object at `datacenters/ap/datacenter.state.json`")
    );

    // DELETE twice: 204 both times, and it is gone.
    for _ in 0..2 {
        let deleted = api
            .send("DELETE", &format!("/api/v1/objects/{dc}"), "")
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    }
    let head = api.send("HEAD", &format!("/api/v1/objects/{dc}"), "").await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.list("datacenters/us/", None).await.concat().len(),
        tree.len() / 2 - 1
    );

    // The object at the path where workspace `default` keeps its state is not that state.
    let shadow = api
        .put("default/terraform.tfstate", &[], "not a state")
        .await;
    assert_eq!(shadow.status, StatusCode::OK, "{}", shadow.body);
    // Nor is one named like a workspace's state at the top.
    let top = api.put("terraform.tfstate", &[], "nor this").await;
    assert_eq!(top.status, StatusCode::OK, "{}", top.body);
    let default = api.send("GET", "/state/default", "").await;
    assert_eq!(default.status, StatusCode::NOT_FOUND, "{}", default.body);
    // A workspace write never shows up as an object, and leaves the object as it was.
    for workspace in ["default", "dev"] {
        let stored = api
            .send("POST", &format!("/state/{workspace}"), state(1, "tree"))
            .await;
        assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    }
    assert_eq!(
        api.get("default/terraform.tfstate").await.body,
        "not a state"
    );
    assert_eq!(
        api.get("dev/terraform.tfstate").await.status,
        StatusCode::NOT_FOUND
    );
    let default = api.send("GET", "/state/default", "").await;
    assert_eq!(default.body, state(1, "tree"));
    let mut expected = sorted.clone();
    expected.retain(|p| p != dc);
    expected.push("default/terraform.tfstate".into());
    expected.push("terraform.tfstate".into());
    expected.sort();
    assert_eq!(api.list("", None).await.concat(), expected);
    let workspaces = api.send("GET", "/api/workspaces", "").await.json();
    let names: Vec<&str> = workspaces
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "dev"], "objects are no workspaces");
}

async fn preconditions_and_locks(backend: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), backend);
    let path = "datacenters/eu/environments/prod/modules/net.state.json";
    let url = format!("/api/v1/objects/{path}");

    // Create only.
    let created = api.put(path, &[("If-None-Match", "*")], "v1").await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let v1 = created.etag();
    let again = api.put(path, &[("If-None-Match", "*")], "other").await;
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        again
            .body
            .contains(&format!("object `{path}` exists (ETag {v1})")),
        "{}",
        again.body
    );
    assert_eq!(api.get(path).await.body, "v1", "412 changed the object");

    // Replace a known version; a stale one is refused.
    let replaced = api.put(path, &[("If-Match", &v1)], "v2").await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    let v2 = replaced.etag();
    assert_ne!(v1, v2);
    let stale = api.put(path, &[("If-Match", &v1)], "v3").await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert!(stale.body.contains("GET it again"), "{}", stale.body);
    let read = api.get(path).await;
    assert_eq!((read.body.as_str(), read.etag()), ("v2", v2.clone()));
    // A list of tags, or `*`, holds when one is the current version.
    let listed = format!("{v1}, {v2}");
    let replaced = api.put(path, &[("If-Match", &listed)], "v3").await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    let replaced = api.put(path, &[("If-Match", "*")], "v4").await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    let v4 = replaced.etag();
    // A conditional GET of the current version: 304, no body.
    let cached = api
        .send_with("GET", &url, &[("If-None-Match", &v4)], "")
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!((cached.etag(), cached.body.as_str()), (v4.clone(), ""));
    let changed = api
        .send_with("GET", &url, &[("If-None-Match", &v1)], "")
        .await;
    assert_eq!(
        (changed.status, changed.body.as_str()),
        (StatusCode::OK, "v4")
    );

    // DELETE with a stale If-Match: 412, still there.
    let refused = api
        .send_with("DELETE", &url, &[("If-Match", &v2)], "")
        .await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(api.get(path).await.body, "v4");

    // LOCK: the holder's writes need its id; anyone else gets 423 and the holder.
    let locked = api.send("LOCK", &url, lock_info("id-1", "alice")).await;
    assert_eq!(locked.status, StatusCode::OK, "{}", locked.body);
    let again = api.send("LOCK", &url, lock_info("id-1", "alice")).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "asking again for one's own lock"
    );
    let taken = api.send("LOCK", &url, lock_info("id-2", "bob")).await;
    assert_eq!(taken.status, StatusCode::LOCKED);
    assert_eq!(
        (taken.json()["ID"].clone(), taken.json()["Who"].clone()),
        (json!("id-1"), json!("alice"))
    );
    for id in ["", "?ID=id-2"] {
        let blocked = api
            .send("PUT", &format!("{url}{id}"), "by someone else")
            .await;
        assert_eq!(blocked.status, StatusCode::LOCKED, "{id}: {}", blocked.body);
        assert_eq!(blocked.json()["ID"], "id-1");
        assert_eq!(blocked.json()["Who"], "alice");
        let blocked = api.send("DELETE", &format!("{url}{id}"), "").await;
        assert_eq!(blocked.status, StatusCode::LOCKED, "{id}: {}", blocked.body);
        assert_eq!(blocked.json()["ID"], "id-1");
    }
    assert_eq!(api.get(path).await.body, "v4", "423 changed the object");
    // The lock is no object.
    assert_eq!(
        api.list("datacenters/", None).await.concat(),
        ["eu/environments/prod/modules/net.state.json"]
    );
    let held = api
        .send_with("PUT", &format!("{url}?ID=id-1"), &[("If-Match", &v4)], "v5")
        .await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.body);
    let v5 = held.etag();
    assert_eq!(api.get(path).await.body, "v5");

    // UNLOCK by someone else: 409 with the holder; by the holder: 200 (and again: nothing to
    // release, as for workspaces).
    let other = api.send("UNLOCK", &url, lock_info("id-2", "bob")).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.json()["ID"], "id-1");
    assert_eq!(other.json()["Who"], "alice");
    let blocked = api.send("PUT", &url, "still locked").await;
    assert_eq!(blocked.status, StatusCode::LOCKED, "409 released the lock");
    for _ in 0..2 {
        let released = api.send("UNLOCK", &url, lock_info("id-1", "alice")).await;
        assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    }
    let free = api.send_with("PUT", &url, &[("If-Match", &v5)], "v6").await;
    assert_eq!(free.status, StatusCode::OK, "{}", free.body);
    let v6 = free.etag();

    // A lock on an object that does not exist yet guards its creation.
    let future = "datacenters/eu/environments/prod/modules/new.state.json";
    let future_url = format!("/api/v1/objects/{future}");
    let locked = api
        .send("LOCK", &future_url, lock_info("id-3", "carol"))
        .await;
    assert_eq!(locked.status, StatusCode::OK, "{}", locked.body);
    let blocked = api.put(future, &[("If-None-Match", "*")], "x").await;
    assert_eq!(blocked.status, StatusCode::LOCKED);
    assert_eq!(api.get(future).await.status, StatusCode::NOT_FOUND);
    let created = api
        .send_with(
            "PUT",
            &format!("{future_url}?ID=id-3"),
            &[("If-None-Match", "*")],
            "x",
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let released = api
        .send("UNLOCK", &future_url, lock_info("id-3", "carol"))
        .await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);

    // DELETE of the current version; then If-Match cannot hold, and a plain DELETE succeeds.
    let deleted = api
        .send_with("DELETE", &url, &[("If-Match", &v6)], "")
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(api.get(path).await.status, StatusCode::NOT_FOUND);
    for if_match in [v6.as_str(), "*"] {
        let gone = api
            .send_with("DELETE", &url, &[("If-Match", if_match)], "")
            .await;
        assert_eq!(gone.status, StatusCode::PRECONDITION_FAILED, "{if_match}");
        assert!(gone.body.contains("If-None-Match: *"), "{}", gone.body);
        let gone = api.put(path, &[("If-Match", if_match)], "x").await;
        assert_eq!(gone.status, StatusCode::PRECONDITION_FAILED, "{if_match}");
    }
    assert_eq!(api.get(path).await.status, StatusCode::NOT_FOUND);
    let deleted = api.send("DELETE", &url, "").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
}

async fn bad_input_changes_nothing(backend: &[&str]) {
    use base64::Engine as _;
    use md5::Digest;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), backend);
    for path in ["a/kept.json", "b/other.json"] {
        assert_eq!(api.put(path, &[], "kept").await.status, StatusCode::OK);
    }
    let before = api.snapshot("").await;
    let md5 = |body: &str| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body));
    let content = |body: &str| format!("Content-Length: {}\r\n", body.len());

    // (method, raw path and query, header lines, body, status, what the answer says)
    let huge = "x".repeat(BODY_LIMIT + 1);
    let lock = lock_info("id-1", "alice");
    let wrong_md5 = format!("Content-Length: 4\r\nContent-MD5: {}\r\n", md5("sent"));
    let cases: Vec<(&str, String, String, &str, u16, &str)> = vec![
        (
            "PUT",
            "/api/v1/objects/a/../b/x".into(),
            content("x"),
            "x",
            400,
            "`.` or `..` segment",
        ),
        (
            "PUT",
            "/api/v1/objects/a/%2e%2e/x".into(),
            content("x"),
            "x",
            400,
            "`.` or `..` segment",
        ),
        (
            "PUT",
            "/api/v1/objects/../x".into(),
            content("x"),
            "x",
            400,
            "`.` or `..` segment",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json/.".into(),
            content("x"),
            "x",
            400,
            "`.` or `..` segment",
        ),
        (
            "PUT",
            "/api/v1/objects/a//x".into(),
            content("x"),
            "x",
            400,
            "empty segment",
        ),
        (
            "PUT",
            "/api/v1/objects/a/x/".into(),
            content("x"),
            "x",
            400,
            "empty segment",
        ),
        (
            "PUT",
            "/api/v1/objects/a%5Cx".into(),
            content("x"),
            "x",
            400,
            "not allowed",
        ),
        (
            "PUT",
            "/api/v1/objects/a/%0Ax".into(),
            content("x"),
            "x",
            400,
            "control characters",
        ),
        (
            "PUT",
            "/api/v1/objects/x.tflock".into(),
            content("x"),
            "x",
            400,
            "reserved for locks",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json.tflock".into(),
            content("x"),
            "x",
            400,
            "reserved for locks",
        ),
        (
            "LOCK",
            "/api/v1/objects/x.tflock".into(),
            content(&lock),
            &lock,
            400,
            "reserved for locks",
        ),
        (
            "PUT",
            format!("/api/v1/objects/{}", "a".repeat(1100)),
            content("x"),
            "x",
            400,
            "longer than",
        ),
        (
            "PUT",
            "/api/v1/objects/".into(),
            content("x"),
            "x",
            400,
            "the URL names no object",
        ),
        (
            "GET",
            "/api/v1/objects?limit=0".into(),
            String::new(),
            "",
            400,
            "`limit` is `0`",
        ),
        (
            "GET",
            "/api/v1/objects?limit=5000".into(),
            String::new(),
            "",
            400,
            "`limit` is `5000`",
        ),
        (
            "GET",
            "/api/v1/objects?limit=abc".into(),
            String::new(),
            "",
            400,
            "`limit` is `abc`",
        ),
        (
            "GET",
            "/api/v1/objects?limit=1001".into(),
            String::new(),
            "",
            400,
            "from 1 to 1000",
        ),
        (
            "GET",
            "/api/v1/objects?prefix=../".into(),
            String::new(),
            "",
            400,
            "`.` or `..` segment",
        ),
        (
            "GET",
            "/api/v1/objects?prefx=a/".into(),
            String::new(),
            "",
            400,
            "unknown query parameter `prefx`",
        ),
        (
            "GET",
            "/api/v1/objects?limit=1&limit=2".into(),
            String::new(),
            "",
            400,
            "`limit` is given twice",
        ),
        (
            "POST",
            "/api/v1/objects".into(),
            content("x"),
            "x",
            405,
            "PUT",
        ),
        (
            "PATCH",
            "/api/v1/objects/a/kept.json".into(),
            content("x"),
            "x",
            405,
            "use GET, HEAD, PUT",
        ),
        (
            "POST",
            "/api/v1/objects/a/kept.json".into(),
            content("x"),
            "x",
            405,
            "writes with PUT",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json?version=2".into(),
            content("x"),
            "x",
            400,
            "only `ID`",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json".into(),
            format!("If-Match: abc\r\n{}", content("x")),
            "x",
            400,
            "quoted entity tags",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json".into(),
            format!("If-None-Match: \"1\"\r\n{}", content("x")),
            "x",
            400,
            "only `*`",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json".into(),
            format!("If-None-Match: *\r\nIf-Match: *\r\n{}", content("x")),
            "x",
            400,
            "not both",
        ),
        (
            "DELETE",
            "/api/v1/objects/a/kept.json".into(),
            "If-None-Match: *\r\n".into(),
            "",
            400,
            "not If-None-Match",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json".into(),
            format!("If-Match: \"%zz\"\r\n{}", content("x")),
            "x",
            412,
            "not an ETag this server gave",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json".into(),
            format!("If-Match: W/\"1\"\r\n{}", content("x")),
            "x",
            412,
            "compares strongly",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json".into(),
            wrong_md5,
            "else",
            400,
            "but its Content-MD5 header says",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json".into(),
            "Content-Length: 1\r\nContent-MD5: not-base64!\r\n".into(),
            "x",
            400,
            "`not-base64!` is not the base64",
        ),
        (
            "LOCK",
            "/api/v1/objects/a/kept.json".into(),
            content("not json"),
            "not json",
            400,
            "not LockInfo JSON",
        ),
        (
            "LOCK",
            "/api/v1/objects/a/kept.json".into(),
            content("{\"Who\":\"x\"}"),
            "{\"Who\":\"x\"}",
            400,
            "missing field `ID`",
        ),
        (
            "LOCK",
            "/api/v1/objects/a/kept.json".into(),
            content("{\"ID\":\"\",\"Who\":\"x\"}"),
            "{\"ID\":\"\",\"Who\":\"x\"}",
            400,
            "the lock has no ID",
        ),
        (
            "UNLOCK",
            "/api/v1/objects/a/kept.json".into(),
            content(""),
            "",
            400,
            "no force-unlock",
        ),
        (
            "UNLOCK",
            "/api/v1/objects/a/kept.json".into(),
            content("{\"ID\":\"\"}"),
            "{\"ID\":\"\"}",
            400,
            "has no ID",
        ),
        (
            "PUT",
            "/api/v1/objects/a/kept.json".into(),
            content(&huge),
            &huge,
            413,
            "over this server's limit of 65536 bytes",
        ),
        (
            "PUT",
            "/api/v1/objects/a/big.json".into(),
            content(&huge),
            &huge,
            413,
            "nothing was stored",
        ),
    ];
    for (method, target, headers, body, status, says) in &cases {
        let (got, text) = api.raw(method, target, headers, body.as_bytes()).await;
        let shown = &target[..target.len().min(80)];
        assert_eq!(got, *status, "{method} {shown}: {text}");
        assert!(text.contains(says), "{method} {shown}: {text}");
    }

    // A body over the limit sent without a length is cut at the limit.
    let mut chunked = format!("{:x}\r\n", huge.len()).into_bytes();
    chunked.extend_from_slice(huge.as_bytes());
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (got, text) = api
        .raw(
            "PUT",
            "/api/v1/objects/a/big.json",
            "Transfer-Encoding: chunked\r\n",
            &chunked,
        )
        .await;
    assert_eq!(got, 413, "{text}");

    // Without credentials: 401, for the listing and for objects.
    let anonymous = [
        ("GET", "/api/v1/objects"),
        ("GET", "/api/v1/objects/a/kept.json"),
        ("PUT", "/api/v1/objects/a/kept.json"),
        ("DELETE", "/api/v1/objects/a/kept.json"),
    ];
    common::assert_needs_credentials(&api.server.url, &anonymous).await;

    assert_eq!(
        api.snapshot("").await,
        before,
        "a refused request changed objects"
    );
    // And no refused LOCK left a lock.
    let url = "/api/v1/objects/a/kept.json";
    let locked = api.send("LOCK", url, lock_info("after", "check")).await;
    assert_eq!(locked.status, StatusCode::OK, "{}", locked.body);
    let released = api.send("UNLOCK", url, lock_info("after", "check")).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
}

/// 2500 objects: pages of 1000, 1000 and 500, each continuing after the last path of the one
/// before, in byte order together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_come_in_pages_of_at_most_a_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let api = std::sync::Arc::new(Api::start(dir.path(), MEMORY));
    // Names whose byte order is not their numeric order (`10` before `9`), some non-ASCII.
    let names: Vec<String> = (0..2500)
        .map(|i| match i % 3 {
            0 => format!("many/{i}"),
            1 => format!("many/Z-{i}.state.json"),
            _ => format!("many/é-{i}"),
        })
        .collect();
    let mut writers = tokio::task::JoinSet::new();
    for chunk in names.chunks(250) {
        let (api, chunk) = (api.clone(), chunk.to_vec());
        writers.spawn(async move {
            for name in chunk {
                let stored = api.put(&name, &[], "x").await;
                assert_eq!(stored.status, StatusCode::OK, "{name}: {}", stored.body);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    assert_eq!(
        api.put("other/outside", &[], "x").await.status,
        StatusCode::OK
    );

    let pages = api.list("many/", None).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    let mut expected: Vec<String> = names
        .iter()
        .map(|n| n.strip_prefix("many/").unwrap().to_string())
        .collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(
        pages.concat(),
        expected,
        "pages together: every path once, in byte order"
    );
    assert!(expected.iter().position(|p| p == "10") < expected.iter().position(|p| p == "9"));

    // Smaller pages, and the cursor as the last page gave it.
    let small = api.list("many/", Some(700)).await;
    let sizes: Vec<usize> = small.iter().map(Vec::len).collect();
    assert_eq!(sizes, [700, 700, 700, 400]);
    assert_eq!(small.concat(), expected);
    // The last page says there is none after it.
    let last = api
        .client
        .get(format!("{}/api/v1/objects", api.server.url))
        .query(&[("prefix", "many/"), ("cursor", &expected[2498])])
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let last: Value = last.json().await.unwrap();
    assert_eq!(
        last,
        json!({"paths": [expected[2499]], "next_cursor": null})
    );
}

// ---- `stateplug object` ----

/// `stateplug object` on the default local backend, then the same objects through `serve` on
/// that directory, and the CLI beside a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_a_server_share_the_objects_of_a_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let dc = "datacenters/eu/datacenter.state.json";
    let module = "datacenters/eu/environments/prod/modules/net.state.json";
    std::fs::write(dir.join("dc.json"), b"{\"dc\": \"eu\"}").unwrap();

    let v1 = ok(dir, &["object", "put", dc, "dc.json"], None);
    let v1 = v1.trim().to_string();
    assert!(!v1.is_empty());
    let from_stdin = ok(dir, &["object", "put", module, "-"], Some(b"net"));
    let module_version = from_stdin.trim().to_string();
    let read = stateplug(dir, &["object", "get", dc], None);
    assert!(read.status.success());
    assert_eq!(read.stdout, b"{\"dc\": \"eu\"}");
    assert!(
        String::from_utf8_lossy(&read.stderr).contains(&format!("version {v1}")),
        "get names the version for --if-version"
    );
    // Kept under `~objects/` in the backend's directory, not as a workspace.
    let kept = dir.join(".stateplug/state/~objects").join(dc);
    assert_eq!(std::fs::read(kept).unwrap(), b"{\"dc\": \"eu\"}");
    let workspaces = ok(dir, &["workspace", "list"], None);
    let rows: Vec<&str> = workspaces.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{workspaces}");
    assert!(rows[0].starts_with("default "), "{workspaces}");

    // Conditional writes.
    let (code, text) = fails(dir, &["object", "put", dc, "-", "--if-absent"], Some(b"x"));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("object `{dc}` was not changed")),
        "{text}"
    );
    let v2 = ok(
        dir,
        &["object", "put", dc, "-", "--if-version", &v1],
        Some(b"{\"dc\": \"eu\", \"v\": 2}"),
    );
    let v2 = v2.trim().to_string();
    assert_ne!(v1, v2);
    let (code, text) = fails(
        dir,
        &["object", "put", dc, "-", "--if-version", &v1],
        Some(b"stale"),
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("read it again and retry"), "{text}");
    assert_eq!(
        ok(dir, &["object", "get", dc], None),
        "{\"dc\": \"eu\", \"v\": 2}"
    );

    // Listing: relative paths, one per line, or JSON.
    assert_eq!(
        ok(dir, &["object", "ls", "datacenters/eu/"], None),
        "datacenter.state.json\nenvironments/prod/modules/net.state.json\n"
    );
    let listed: Value = serde_json::from_str(&ok(
        dir,
        &["object", "ls", "datacenters/eu/environments/", "--json"],
        None,
    ))
    .unwrap();
    assert_eq!(listed, json!(["prod/modules/net.state.json"]));

    // Locks: the id is printed; others are refused with exit code 3, naming the holder.
    let id = ok(dir, &["object", "lock", module, "--who", "ops@ci"], None);
    let id = id.trim().to_string();
    let (code, text) = fails(dir, &["object", "put", module, "-"], Some(b"blocked"));
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("ops@ci"), "{text}");
    let (code, text) = fails(
        dir,
        &["object", "rm", module, "--lock-id", "not-mine"],
        None,
    );
    assert_eq!(code, 3, "{text}");
    let (code, _) = fails(dir, &["object", "lock", module], None);
    assert_eq!(code, 3);
    let (code, text) = fails(dir, &["object", "unlock", module, "not-mine"], None);
    assert_eq!(code, 3, "{text}");
    let under_lock = ok(
        dir,
        &["object", "put", module, "-", "--lock-id", &id],
        Some(b"net v2"),
    );
    let module_v2 = under_lock.trim().to_string();
    assert_ne!(module_v2, module_version);

    // A server on the same directory sees what the CLI wrote, and the CLI's lock.
    let api = Api::start(dir, LOCAL);
    let read = api.get(dc).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, "{\"dc\": \"eu\", \"v\": 2}");
    assert_eq!(
        read.etag(),
        format!("\"{v2}\""),
        "the ETag is the version the CLI printed"
    );
    assert_eq!(
        api.list("datacenters/eu/", None).await.concat(),
        [
            "datacenter.state.json",
            "environments/prod/modules/net.state.json"
        ]
    );
    let blocked = api.put(module, &[], "over http").await;
    assert_eq!(blocked.status, StatusCode::LOCKED);
    assert_eq!(blocked.json()["Who"], "ops@ci");
    assert_eq!(blocked.json()["ID"], id.as_str());
    let url = format!("/api/v1/objects/{module}?ID={id}");
    let stored = api.send("PUT", &url, "over http").await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);

    // And the CLI beside the running server: it reads the server's writes, and releases.
    assert_eq!(ok(dir, &["object", "get", module], None), "over http");
    let (code, text) = fails(
        dir,
        &["object", "get", "datacenters/ap/datacenter.state.json"],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        text.contains("no object at `datacenters/ap/datacenter.state.json`"),
        "{text}"
    );
    ok(dir, &["object", "unlock", module, &id], None);
    let (code, text) = fails(dir, &["object", "unlock", module, &id], None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("is not locked"), "{text}");
    let stored = api.put(module, &[], "unlocked").await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);

    // `ls` reads every page: 1001 objects the server wrote.
    let api = std::sync::Arc::new(api);
    let mut writers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let api = api.clone();
        writers.spawn(async move {
            for i in (worker..1001).step_by(4) {
                let stored = api.put(&format!("bulk/{i:04}"), &[], "b").await;
                assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let listed = ok(dir, &["object", "ls", "bulk/"], None);
    let lines: Vec<&str> = listed.lines().collect();
    let expected: Vec<String> = (0..1001).map(|i| format!("{i:04}")).collect();
    assert_eq!(lines, expected);

    // rm: idempotent, and the server no longer has it.
    for _ in 0..2 {
        ok(dir, &["object", "rm", dc], None);
    }
    assert_eq!(api.get(dc).await.status, StatusCode::NOT_FOUND);
    let (code, _) = fails(dir, &["object", "get", dc], None);
    assert_eq!(code, 1);
    // Bad paths are refused by the CLI too, with the rule that refused them.
    let (code, text) = fails(dir, &["object", "put", "a/../b", "-"], Some(b"x"));
    assert_eq!(code, 1);
    assert!(text.contains("`.` or `..` segment"), "{text}");
    let (code, text) = fails(dir, &["object", "put", "x.tflock", "-"], Some(b"x"));
    assert_eq!(code, 1);
    assert!(text.contains("reserved for locks"), "{text}");
}
