//! `stateplug serve` at the HTTP level: every status code of Terraform's http backend
//! protocol, and bad input that must be refused with a clear 4xx while storage stays as it was.

use crate::common;

use crate::common::Server;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const USER: &str = "ci";
const PASSWORD: &str = "s3cret-pw";

fn config(dir: &std::path::Path, body_limit: &str) {
    let text = format!(
        "[backends.mem]\nplugin = \"memory\"\n\n[server]\nbody_limit = \"{body_limit}\"\n\
         [server.users.{USER}]\npassword = \"{PASSWORD}\"\n"
    );
    std::fs::write(dir.join("stateplug.toml"), text).unwrap();
}

struct Api {
    client: Client,
    server: Server,
}

impl Api {
    fn start(dir: &std::path::Path) -> Api {
        config(dir, "64KiB");
        Api {
            client: Client::new(),
            server: Server::start(dir, &[]),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, String) {
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
        (response.status(), response.text().await.unwrap())
    }

    /// Sends the request exactly as given: no client normalizes `%2e%2e` or `..` away.
    async fn raw(&self, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let length = format!("Content-Length: {}\r\n", body.len());
        self.raw_with(method, path, &length, body).await
    }

    /// [`Api::raw`] with the given header lines (each ending in CRLF) instead of the body's
    /// own `Content-Length`, so a request can announce more than it sends.
    async fn raw_with(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> (StatusCode, String) {
        use base64::Engine as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.server.url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {auth}\r\n\
             {headers}Connection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        // The server may close before it has read what was announced: a reset after the
        // answer is not an error here.
        let _ = stream.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response).into_owned();
        let status: u16 = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (StatusCode::from_u16(status).unwrap(), body)
    }

    async fn state(&self, workspace: &str) -> (StatusCode, String) {
        self.send("GET", &format!("/state/{workspace}"), "").await
    }

    async fn locks(&self) -> Value {
        serde_json::from_str(&self.send("GET", "/api/locks", "").await.1).unwrap()
    }
}

fn state(serial: u64, lineage: &str, output: &str) -> String {
    json!({
        "version": 4, "terraform_version": "1.0.3", "serial": serial, "lineage": lineage,
        "outputs": { "greeting": { "value": output, "type": "string" } }, "resources": []
    })
    .to_string()
}

fn lock_info(id: &str, who: &str) -> String {
    json!({
        "ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": who,
        "Version": "1.0.3", "Created": "2026-11-23T10:00:00Z", "Path": ""
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_answers_with_terraforms_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());

    assert_eq!(
        api.state("dev").await.0,
        StatusCode::NOT_FOUND,
        "no state yet"
    );
    assert_eq!(
        api.send("POST", "/state/dev", state(1, "L", "a")).await.0,
        StatusCode::OK
    );
    assert_eq!(api.state("dev").await, (StatusCode::OK, state(1, "L", "a")));
    assert_eq!(
        api.send("PUT", "/state/dev", state(2, "L", "b")).await.0,
        StatusCode::OK
    );

    // LOCK, then a refused LOCK answers 423 with the holder's LockInfo.
    assert_eq!(
        api.send("LOCK", "/state/dev", lock_info("id-1", "alice"))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = api
        .send("LOCK", "/state/dev", lock_info("id-2", "bob"))
        .await;
    assert_eq!(status, StatusCode::LOCKED);
    let holder: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (holder["ID"].as_str(), holder["Who"].as_str()),
        (Some("id-1"), Some("alice"))
    );

    // Writes while locked need the holder's id.
    assert_eq!(
        api.send("POST", "/state/dev", state(3, "L", "c")).await.0,
        StatusCode::LOCKED
    );
    assert_eq!(
        api.send("POST", "/state/dev?ID=id-2", state(3, "L", "c"))
            .await
            .0,
        StatusCode::LOCKED
    );
    assert_eq!(
        api.send("POST", "/state/dev?ID=id-1", state(3, "L", "c"))
            .await
            .0,
        StatusCode::OK
    );

    // UNLOCK with another id: 409 and the holder's info; with the holder's: 200.
    let (status, body) = api
        .send("UNLOCK", "/state/dev", lock_info("id-2", "bob"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("\"ID\":\"id-1\""), "{body}");
    assert_eq!(
        api.send("UNLOCK", "/state/dev", lock_info("id-1", "alice"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(api.locks().await, json!([]));

    // Terraform's force-unlock: UNLOCK with an empty body breaks any lock.
    api.send("LOCK", "/state/dev", lock_info("id-3", "carol"))
        .await;
    assert_eq!(api.send("UNLOCK", "/state/dev", "").await.0, StatusCode::OK);
    assert_eq!(api.locks().await, json!([]));
    // Who broke which lock is recorded.
    let (_, broken) = api
        .send("GET", "/api/workspaces/dev/broken-locks", "")
        .await;
    let broken: Value = serde_json::from_str(&broken).unwrap();
    assert_eq!(broken[0]["lock"]["ID"], "id-3");
    assert_eq!(broken[0]["by"], "user `ci` via HTTP force-unlock");
    // OpenTofu's: only the ID, which must be the holder's.
    api.send("LOCK", "/state/dev", lock_info("id-4", "dave"))
        .await;
    assert_eq!(
        api.send("UNLOCK", "/state/dev", r#"{"ID":"id-9"}"#).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.send("UNLOCK", "/state/dev", r#"{"ID":"id-4"}"#).await.0,
        StatusCode::OK
    );
    assert_eq!(api.locks().await, json!([]));

    // The JSON API sees what was written.
    let (_, list) = api.send("GET", "/api/workspaces", "").await;
    let list: Value = serde_json::from_str(&list).unwrap();
    let dev = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "dev")
        .unwrap();
    assert_eq!(
        (dev["serial"].as_u64(), dev["lineage"].as_str()),
        (Some(3), Some("L"))
    );
    let (_, history) = api.send("GET", "/api/workspaces/dev/history", "").await;
    let serials: Vec<u64> = serde_json::from_str::<Vec<Value>>(&history)
        .unwrap()
        .iter()
        .map(|e| e["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials, [3, 2, 1]);

    // DELETE (a state without resources), then it is gone.
    assert_eq!(api.send("DELETE", "/state/dev", "").await.0, StatusCode::OK);
    assert_eq!(api.state("dev").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    let stored = json!({"version": 4, "serial": 5, "lineage": "L", "resources": [{"type": "x"}]})
        .to_string();
    assert_eq!(
        api.send("POST", "/state/ws", stored.clone()).await.0,
        StatusCode::OK
    );
    let huge = "x".repeat(70 << 10);
    let long_name = "a".repeat(300);

    let cases: Vec<(&str, String, String, StatusCode, &str)> = vec![
        (
            "POST",
            "/state/ws".into(),
            "not json".into(),
            StatusCode::CONFLICT,
            "not valid JSON",
        ),
        (
            "POST",
            "/state/ws".into(),
            "".into(),
            StatusCode::CONFLICT,
            "not valid JSON",
        ),
        (
            "POST",
            "/state/ws".into(),
            "[1,2]".into(),
            StatusCode::CONFLICT,
            "not an object",
        ),
        (
            "POST",
            "/state/ws".into(),
            "{}".into(),
            StatusCode::CONFLICT,
            "the state has no `version`",
        ),
        (
            "POST",
            "/state/ws".into(),
            json!({"version": 4, "serial": 6}).to_string(),
            StatusCode::CONFLICT,
            "the state has no `lineage`",
        ),
        (
            "POST",
            "/state/ws".into(),
            json!({"version": 4, "lineage": "L"}).to_string(),
            StatusCode::CONFLICT,
            "the state has no `serial`",
        ),
        (
            "POST",
            "/state/ws".into(),
            json!({"serial": 1, "lineage": "zzz"}).to_string(),
            StatusCode::CONFLICT,
            "the state has no `version`",
        ),
        (
            "POST",
            "/state/ws".into(),
            json!({"version": 4, "serial": "six", "lineage": "L"}).to_string(),
            StatusCode::CONFLICT,
            "`serial` is \"six\", not a whole number",
        ),
        (
            "POST",
            "/state/ws".into(),
            json!({"version": 4, "serial": -6, "lineage": "L"}).to_string(),
            StatusCode::CONFLICT,
            "`serial` is -6, not a whole number",
        ),
        (
            "POST",
            "/state/ws".into(),
            json!({"version": 4, "serial": 6, "lineage": 7}).to_string(),
            StatusCode::CONFLICT,
            "`lineage` is 7, not a non-empty string",
        ),
        (
            "POST",
            "/state/ws".into(),
            json!({"version": 9, "serial": 6, "lineage": "L"}).to_string(),
            StatusCode::CONFLICT,
            "`version` is 9, not 3 or 4",
        ),
        (
            "POST",
            "/state/ws".into(),
            state(9, "OTHER", "x"),
            StatusCode::CONFLICT,
            "lineage `OTHER` differs",
        ),
        (
            "POST",
            "/state/ws".into(),
            state(4, "L", "x"),
            StatusCode::CONFLICT,
            "lower than the stored serial 5",
        ),
        (
            "PUT",
            "/state/ws".into(),
            state(4, "L", "x"),
            StatusCode::CONFLICT,
            "lower than the stored serial 5",
        ),
        (
            "POST",
            "/state/ws".into(),
            state(5, "L", "changed"),
            StatusCode::CONFLICT,
            "content differs",
        ),
        (
            "POST",
            "/state/ws".into(),
            huge.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            "POST",
            "/state/%2e%2e".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "workspace name `..` is not valid",
        ),
        (
            "POST",
            "/state/..".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "workspace name `..` is not valid",
        ),
        (
            "POST",
            "/state/%2E%2E".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "is not valid",
        ),
        (
            "POST",
            "/state/%2e".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "is not valid",
        ),
        (
            "POST",
            "/state/a%2Fb".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "`a/b` is not valid",
        ),
        (
            "POST",
            "/state/a%00b".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "is not valid",
        ),
        (
            "POST",
            "/state/a%20b".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "is not valid",
        ),
        (
            "POST",
            "/state/%C3%A9".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "is not valid",
        ),
        (
            "POST",
            format!("/state/{long_name}"),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "1 to 128",
        ),
        (
            "GET",
            "/state/%2e%2e".into(),
            "".into(),
            StatusCode::BAD_REQUEST,
            "is not valid",
        ),
        (
            "POST",
            "/state/".into(),
            state(1, "L", "x"),
            StatusCode::BAD_REQUEST,
            "names no workspace",
        ),
        (
            "GET",
            "/api/workspaces/%2e%2e/history".into(),
            "".into(),
            StatusCode::BAD_REQUEST,
            "is not valid",
        ),
        (
            "LOCK",
            "/state/ws".into(),
            "not json".into(),
            StatusCode::BAD_REQUEST,
            "not Terraform LockInfo JSON",
        ),
        (
            "LOCK",
            "/state/ws".into(),
            "{\"Who\":\"x\"}".into(),
            StatusCode::BAD_REQUEST,
            "missing field `ID`",
        ),
        (
            "LOCK",
            "/state/ws".into(),
            lock_info("", "x"),
            StatusCode::BAD_REQUEST,
            "the lock has no ID",
        ),
        (
            "LOCK",
            "/state/ws".into(),
            lock_info("id-\u{1}", "x"),
            StatusCode::BAD_REQUEST,
            "is not a usable id",
        ),
        (
            "LOCK",
            "/state/ws".into(),
            "{\"ID\": 5}".into(),
            StatusCode::BAD_REQUEST,
            "not Terraform LockInfo JSON",
        ),
        (
            "UNLOCK",
            "/state/ws".into(),
            "{broken".into(),
            StatusCode::BAD_REQUEST,
            "not LockInfo JSON",
        ),
        (
            "DELETE",
            "/state/ws".into(),
            "".into(),
            StatusCode::CONFLICT,
            "still manages resources",
        ),
        (
            "FROBNICATE",
            "/state/ws".into(),
            "".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            "not part of Terraform's http backend protocol",
        ),
        (
            "PATCH",
            "/state/ws".into(),
            "{}".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, HEAD, POST",
        ),
    ];
    let check_unchanged = |what: String| {
        let api = &api;
        let stored = stored.clone();
        async move {
            assert_eq!(
                api.state("ws").await,
                (StatusCode::OK, stored),
                "{what} changed the state"
            );
            assert_eq!(api.locks().await, json!([]), "{what} changed the locks");
        }
    };
    for (method, path, body, status, message) in &cases {
        let (got, text) = if body.len() > 1024 {
            api.send(method, path, body.clone()).await
        } else {
            api.raw(method, path, body).await
        };
        assert_eq!(got, *status, "{method} {path}: {text}");
        assert!(
            text.contains(message),
            "{method} {path}: {text:?} lacks {message:?}"
        );
        check_unchanged(format!("{method} {path}")).await;
    }

    // While someone else holds the lock.
    api.send("LOCK", "/state/ws", lock_info("holder", "alice"))
        .await;
    let locked_cases: Vec<(&str, String, String, StatusCode)> = vec![
        (
            "POST",
            "/state/ws".into(),
            state(6, "L", "x"),
            StatusCode::LOCKED,
        ),
        (
            "POST",
            "/state/ws?ID=wrong".into(),
            state(6, "L", "x"),
            StatusCode::LOCKED,
        ),
        (
            "DELETE",
            "/state/ws?force=false".into(),
            "".into(),
            StatusCode::LOCKED,
        ),
        (
            "LOCK",
            "/state/ws".into(),
            lock_info("other", "bob"),
            StatusCode::LOCKED,
        ),
        (
            "UNLOCK",
            "/state/ws".into(),
            lock_info("wrong", "bob"),
            StatusCode::CONFLICT,
        ),
        (
            "UNLOCK",
            "/state/ws".into(),
            "{\"ID\":\"wrong\"}".into(),
            StatusCode::CONFLICT,
        ),
    ];
    for (method, path, body, status) in &locked_cases {
        let (got, text) = api.send(method, path, body.clone()).await;
        assert_eq!(got, *status, "{method} {path}: {text}");
        assert!(
            text.contains("\"ID\":\"holder\""),
            "{method} {path}: the holder is not named: {text}"
        );
        assert_eq!(api.state("ws").await, (StatusCode::OK, stored.clone()));
        assert_eq!(api.locks().await[0]["lock"]["ID"], "holder");
    }
    api.send("UNLOCK", "/state/ws", lock_info("holder", "alice"))
        .await;

    // Authentication: missing, wrong password, unknown user, malformed header.
    let url = api.server.state_url("ws");
    let attempts = [
        api.client.post(&url),
        api.client.post(&url).basic_auth(USER, Some("wrong")),
        api.client.post(&url).basic_auth("mallory", Some(PASSWORD)),
        api.client
            .post(&url)
            .header("Authorization", "Basic !!!notbase64"),
        api.client
            .post(&url)
            .header("Authorization", format!("Bearer {PASSWORD}")),
    ];
    for (i, attempt) in attempts.into_iter().enumerate() {
        let response = attempt.body(state(6, "L", "x")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(response.headers().contains_key("www-authenticate"));
        check_unchanged(format!("unauthenticated attempt {i}")).await;
    }
    assert!(cases.len() + locked_cases.len() + 5 >= 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_never_lose_an_update_and_shutdown_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    api.send("POST", "/state/race", state(1, "L", "start"))
        .await;
    // 16 clients each try to move serial 1 to 2 with their own content: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (client, url) = (api.client.clone(), api.server.state_url("race"));
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .basic_auth(USER, Some(PASSWORD))
                .body(state(2, "L", &format!("writer-{i}")))
                .send()
                .await
                .unwrap();
            response.status()
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => won += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        won, 1,
        "{won} writers stored serial 2 with different content"
    );
    let Api { server, .. } = api;
    assert!(
        server.stop().success(),
        "SIGTERM must stop the server cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_write_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stateplug.toml"),
        "[server]\nbody_limit = \"64MiB\"\n",
    )
    .unwrap();
    let server = Server::start(dir.path(), &[]);
    let big = state(1, "L", &"z".repeat(24 << 20));
    let (client, url) = (Client::new(), server.state_url("big"));
    let request = tokio::spawn({
        let big = big.clone();
        async move {
            let status = client.post(url).body(big).send().await.map(|r| r.status());
            (status, std::time::Instant::now())
        }
    });
    // The body is on its way and being stored when the signal arrives.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let signalled = std::time::Instant::now();
    let stopped = tokio::task::spawn_blocking(move || server.stop());
    let (status, answered) = request.await.unwrap();
    assert!(
        answered > signalled,
        "the write had finished before the signal: proves nothing"
    );
    assert_eq!(status.expect("the request is answered"), StatusCode::OK);
    assert!(stopped.await.unwrap().success());
    let stored =
        std::fs::read_to_string(dir.path().join(".stateplug/state/big/terraform.tfstate")).unwrap();
    assert_eq!(stored, big, "the state on disk is the whole write");
}

/// Terraform sends `Content-MD5` with every state: a body that does not match it was changed
/// or cut on the way and is refused; a body announced as over the limit is refused before it
/// is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_and_size_are_checked_at_the_door() {
    use base64::Engine as _;
    use md5::Digest;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    let md5 = |body: &str| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body));
    let first = state(1, "L", "a");
    let header = |body: &str, digest: &str| {
        format!(
            "Content-Length: {}\r\nContent-MD5: {digest}\r\n",
            body.len()
        )
    };

    let (status, text) = api
        .raw_with("POST", "/state/ws", &header(&first, &md5(&first)), &first)
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(api.state("ws").await, (StatusCode::OK, first.clone()));

    let second = state(2, "L", "b");
    let cut = &second[..second.len() - 10];
    let (status, text) = api
        .raw_with("POST", "/state/ws", &header(cut, &md5(&second)), cut)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains(&format!(
            "the body's MD5 is {} but its Content-MD5 header says {}",
            md5(cut),
            md5(&second)
        )) && text.contains("nothing was stored"),
        "{text}"
    );
    let (status, text) = api
        .raw_with(
            "POST",
            "/state/ws",
            &header(&second, "not-base64!"),
            &second,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("`not-base64!` is not the base64 of a 16-byte MD5"),
        "{text}"
    );
    assert_eq!(api.state("ws").await, (StatusCode::OK, first.clone()));

    // 300 MB announced, nothing sent: the answer must not wait for the body (a server that
    // waited would leave this request hanging until the guard below fails it).
    let announced = "Content-Length: 300000000\r\nContent-Type: application/json\r\n";
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        api.raw_with("POST", "/state/ws", announced, ""),
    )
    .await
    .expect("the server waited for a body it will refuse");
    assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.1);
    assert!(
        answer
            .1
            .contains("the body is 300000000 bytes, over this server's limit of 65536 bytes"),
        "{}",
        answer.1
    );
    assert_eq!(api.state("ws").await, (StatusCode::OK, first));
}

/// A hostile plugin behind the server: its 32 MiB error full of escapes reaches the client
/// and the log bounded and escaped, and its forged lock holder too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_plugins_words_reach_the_client_bounded_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = common::test_plugin_path("hostile");
    for (attack, method, body, status) in [
        (
            "huge-error",
            "GET",
            String::new(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            "forged-lock",
            "LOCK",
            lock_info("mine", "me"),
            StatusCode::LOCKED,
        ),
    ] {
        std::fs::write(
            dir.path().join("stateplug.toml"),
            format!(
                "[backends.h]\nplugin = {:?}\nattack = \"{attack}\"\n",
                hostile.to_str().unwrap()
            ),
        )
        .unwrap();
        let server = Server::start(dir.path(), &[]);
        let response = Client::new()
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                server.state_url("ws"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{attack}");
        let answer = response.text().await.unwrap();
        assert!(answer.len() < 64 << 10, "{attack}: {} bytes", answer.len());
        assert!(
            !answer.contains('\x1b') && !answer.contains('\r'),
            "{attack}: {answer:?}"
        );
        // JSON escapes control characters itself; the text answer shows them escaped.
        assert!(
            answer.contains("\\u{1b}[2J") || answer.contains("\\\\u{1b}[2J"),
            "{attack}: {answer}"
        );
    }
}
