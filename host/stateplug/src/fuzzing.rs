//! Fuzz harnesses: one `pub fn <target>(data: &[u8])` per target of `fuzz/` (cargo-fuzz), also
//! replayed over the committed corpora by `tests/all/fuzz_corpus.rs`, so the fuzzer and `cargo
//! test` run the same code. Each harness panics when a property of the code under test does
//! not hold; how to run them is in `FUZZING.md`.
//!
//! Not part of the crate's API (hidden from the docs); it lives in the top crate because the
//! `config` and `router` harnesses need every layer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::Value;

use stateplug_runtime::{Grants, LockInfo, Plugin, Runtime, RuntimeOptions};
use stateplug_sdk::text::UNTRUSTED_MAX;
use stateplug_state::{StateDoc, StateOptions, Workspaces};

use crate::access::{Access, Grant, Principal, Secret, Via};
use crate::config::{Overrides, Settings};
use crate::server::{self, AppState};

/// Upper bound of a state-rule error: its own text plus two quoted untrusted values (each at
/// most [`UNTRUSTED_MAX`] bytes and a cut marker).
pub const MAX_STATE_ERROR: usize = 2 * UNTRUSTED_MAX + 1024;

/// Whether `text` is safe to show: no control character and no bidirectional formatting
/// character (what [`stateplug_sdk::text::untrusted`] escapes).
fn is_shown_safely(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

/// A cursor over the fuzzer's bytes; past the end it yields zeros and empty slices, so every
/// input decodes to something.
struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    /// One of `options`, chosen by the next byte.
    fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[self.byte() as usize % options.len()]
    }

    /// A slice whose length (up to `max`) is given by the next byte.
    fn slice(&mut self, max: usize) -> &'a [u8] {
        let len = (self.byte() as usize).min(max).min(self.data.len());
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        head
    }
}

// --- path -----------------------------------------------------------------------------------

/// `stateplug_sdk::path::validate` and `validate_prefix` against the contract's path rules,
/// written out independently here.
pub fn path(data: &[u8]) {
    use stateplug_sdk::path::{LOCK_SUFFIX, MAX_PATH_LEN, validate, validate_prefix};
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    // Escaping (`escape_debug`) at most multiplies the quoted path by 10 (`\u{10ffff}`).
    let max_error = 10 * MAX_PATH_LEN + 256;
    let check_error = |what: &str, result: &stateplug_sdk::Result<()>| {
        if let Err(e) = result {
            let stateplug_sdk::Error::InvalidPath(message) = e else {
                panic!("{what} {text:?} failed with another error than InvalidPath: {e:?}");
            };
            assert!(
                !message.is_empty() && message.len() <= max_error,
                "{what} error of {} bytes for {text:?}",
                message.len()
            );
            assert!(
                !message.chars().any(char::is_control),
                "{what} error quotes a control character raw: {message:?}"
            );
        }
    };
    let common_ok = text.len() <= MAX_PATH_LEN
        && !text.starts_with('/')
        && !text.chars().any(|c| c.is_control() || c == '\\');
    let segments: Vec<&str> = text.split('/').collect();
    let bad_segment = |s: &&str| s.is_empty() || *s == "." || *s == "..";

    let as_path = validate(text);
    check_error("path", &as_path);
    let path_ok = common_ok
        && !text.is_empty()
        && !segments.iter().any(bad_segment)
        && !text.ends_with(LOCK_SUFFIX);
    assert_eq!(as_path.is_ok(), path_ok, "validate({text:?}) = {as_path:?}");

    let as_prefix = validate_prefix(text);
    check_error("prefix", &as_prefix);
    let (last, complete) = segments
        .split_last()
        .expect("split yields one segment at least");
    let prefix_ok = common_ok
        && (text.is_empty()
            || (!complete.iter().any(bad_segment) && *last != "." && *last != ".."));
    assert_eq!(
        as_prefix.is_ok(),
        prefix_ok,
        "validate_prefix({text:?}) = {as_prefix:?}"
    );

    if as_path.is_ok() {
        assert!(
            as_prefix.is_ok(),
            "path {text:?} accepted but not as a prefix"
        );
        // Listing the folders above an accepted path must be possible.
        for (i, _) in text.match_indices('/') {
            let folder = &text[..=i];
            assert!(
                validate_prefix(folder).is_ok(),
                "path {text:?} accepted but its folder {folder:?} is not a valid prefix"
            );
        }
    }
}

// --- state_doc ------------------------------------------------------------------------------

/// Parses one candidate state document and checks what the parser promises.
fn parse_checked(data: &[u8]) -> Option<StateDoc> {
    match StateDoc::parse(data) {
        Ok(doc) => {
            assert!(
                !doc.lineage.is_empty(),
                "accepted a state with an empty lineage"
            );
            let value: Value = serde_json::from_slice(data).expect("an accepted state is JSON");
            assert_eq!(value["serial"].as_u64(), Some(doc.serial));
            assert_eq!(value["lineage"].as_str(), Some(doc.lineage.as_str()));
            assert_eq!(doc.encrypted, value.get("encrypted_data").is_some());
            if !doc.encrypted {
                assert!(
                    matches!(value["version"].as_u64(), Some(3 | 4)),
                    "accepted state version {}",
                    value["version"]
                );
            }
            assert_eq!(
                doc.check_replacement(&doc),
                Ok(()),
                "a state cannot replace itself"
            );
            // The same document written out again (as Terraform would) is the same document
            // (exactly, floats included, since serde_json's `float_roundtrip` is on).
            // Known issue (FUZZING.md): with serde_json's `raw_value` (enabled by axum), an
            // object whose first key is serde_json's private RawValue token does not parse, and
            // writing out sorts keys, so documents holding that key are left out.
            if has_serde_token(&value) {
                return Some(doc);
            }
            let again = serde_json::to_vec(&value).expect("a JSON value serializes");
            let reread = StateDoc::parse(&again).expect("a state written out again parses");
            assert_eq!(
                (reread.serial, &reread.lineage, reread.encrypted),
                (doc.serial, &doc.lineage, doc.encrypted)
            );
            assert_eq!(reread, doc, "{}", String::from_utf8_lossy(&again));
            Some(doc)
        }
        Err(e) => {
            check_state_error(&e);
            None
        }
    }
}

/// Whether an object key of `value` is one of serde_json's private tokens.
fn has_serde_token(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(has_serde_token),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, v)| key.starts_with("$serde_json::private::") || has_serde_token(v)),
        _ => false,
    }
}

fn check_state_error(error: &str) {
    assert!(!error.is_empty(), "empty state error");
    assert!(
        error.len() <= MAX_STATE_ERROR,
        "state error of {} bytes",
        error.len()
    );
    assert!(is_shown_safely(error), "state error not escaped: {error:?}");
}

/// `StateDoc::parse` and `check_replacement`: the input is one document, or two separated by
/// the first NUL byte (never valid inside JSON), checked against each other both ways.
pub fn state_doc(data: &[u8]) {
    let Some(nul) = data.iter().position(|b| *b == 0) else {
        parse_checked(data);
        return;
    };
    let (first, second) = (&data[..nul], &data[nul + 1..]);
    let (Some(a), Some(b)) = (parse_checked(first), parse_checked(second)) else {
        return;
    };
    for (stored, new) in [(&a, &b), (&b, &a)] {
        let verdict = stored.check_replacement(new);
        let allowed = stored.lineage == new.lineage
            && (new.serial > stored.serial || (new.serial == stored.serial && stored == new));
        assert_eq!(
            verdict.is_ok(),
            allowed,
            "stored serial {} lineage {:?}, new serial {} lineage {:?}: {verdict:?}",
            stored.serial,
            stored.lineage,
            new.serial,
            new.lineage
        );
        if let Err(e) = verdict {
            check_state_error(&e);
        }
    }
}

// --- lock_info ------------------------------------------------------------------------------

/// `LockInfo::from_json`: what parses serializes and parses back equal; and the same body sent
/// to the server as `LOCK` is stored and listed as the host shows plugin text (escaped and
/// bounded by `text::untrusted`).
pub fn lock_info(data: &[u8]) {
    let parsed = LockInfo::from_json(data, "fuzz");
    let Ok(info) = parsed else {
        let message = parsed.unwrap_err().to_string();
        assert!(message.contains("not valid LockInfo JSON"), "{message}");
        return;
    };
    let json = info.to_json();
    let again = LockInfo::from_json(&json, "fuzz").expect("a serialized lock parses");
    assert_eq!(
        again,
        info,
        "lock changed through JSON: {}",
        String::from_utf8_lossy(&json)
    );

    let fixture = fixture();
    fixture.tokio.block_on(async {
        // A body limit above libFuzzer's input sizes: this target is about LockInfo.
        let app = fixture.app(false, 1 << 20).await;
        let request = Request::builder()
            .method("LOCK")
            .uri("/state/default")
            .body(Body::from(data.to_vec()))
            .expect("a valid request");
        let (status, body) = send(&app, request).await;
        if stateplug_state::check_lock_id(&info.id).is_err() {
            assert_eq!(status, StatusCode::BAD_REQUEST, "unusable lock ID: {body}");
            assert!(body.contains("lock"), "{body}");
            return;
        }
        assert_eq!(status, StatusCode::OK, "lock refused: {body}");
        let (status, body) = send(&app, get("/api/locks", None)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let listed: Vec<Value> = serde_json::from_str(&body).expect("locks are JSON");
        assert_eq!(listed.len(), 1, "{body}");
        let held: LockInfo =
            serde_json::from_value(listed[0]["lock"].clone()).expect("a listed lock parses");
        let shown = |s: &str| stateplug_sdk::text::untrusted(s).into_owned();
        let expected = LockInfo {
            // An id is an identifier: kept exactly, so its holder is recognised.
            id: info.id.clone(),
            operation: shown(&info.operation),
            info: shown(&info.info),
            who: shown(&info.who),
            version: shown(&info.version),
            // An empty `Created` is filled in by the state layer.
            created: if info.created.is_empty() {
                held.created.clone()
            } else {
                shown(&info.created)
            },
            path: shown(&info.path),
            expires: info.expires,
        };
        assert_eq!(held, expected);
        assert!(!held.created.is_empty(), "a stored lock has no Created");
    });
}

// --- config ---------------------------------------------------------------------------------

/// `Settings::load` over a config file and command-line overrides. The input is the file's text,
/// then after the first NUL byte one override per line: `key=value` (`-c`), `backend:NAME`,
/// `plugin:NAME`, `listen:ADDR`, or `env:VAR=VALUE` (the environment).
pub fn config(data: &[u8]) {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, file) = FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join(crate::config::CONFIG_FILE);
        (dir, file)
    });
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    std::fs::write(file, text).expect("writing the config file");
    let mut overrides = Overrides {
        config_file: Some(file.clone()),
        ..Overrides::default()
    };
    let mut env = Vec::new();
    for line in String::from_utf8_lossy(rest).lines() {
        if let Some(name) = line.strip_prefix("backend:") {
            overrides.backend = Some(name.to_string());
        } else if let Some(name) = line.strip_prefix("plugin:") {
            overrides.plugin = Some(name.to_string());
        } else if let Some(address) = line.strip_prefix("listen:") {
            overrides.listen = Some(address.to_string());
        } else if let Some((var, value)) = line.strip_prefix("env:").and_then(|l| l.split_once('='))
        {
            env.push((var.to_string(), value.to_string()));
        } else if let Some((key, value)) = line.split_once('=') {
            overrides
                .backend_config
                .push((key.to_string(), value.to_string()));
        }
    }
    match Settings::load(&overrides, env) {
        Err(e) => {
            // Configuration mistakes are reported with what is wrong.
            let message = e.to_string();
            assert!(
                !message.trim().is_empty(),
                "empty configuration error: {e:?}"
            );
        }
        Ok(config) => {
            let backend = &config.backend;
            let mut keys: Vec<&str> = backend
                .plugin_config
                .iter()
                .map(|(k, _)| k.as_str())
                .collect();
            keys.sort_unstable();
            let before = keys.len();
            keys.dedup();
            assert_eq!(
                keys.len(),
                before,
                "a plugin key given twice: {:?}",
                backend.plugin_config
            );
            // `stateplug config show` must print TOML that reads back.
            let shown = backend.show(None);
            let table: toml::Table = toml::from_str(&shown)
                .unwrap_or_else(|e| panic!("`config show` printed invalid TOML ({e}):\n{shown}"));
            assert_eq!(
                table["default"].as_str(),
                Some(backend.name.as_str()),
                "{shown}"
            );
            if let Some(listen) = &overrides.listen {
                assert_eq!(
                    Ok(config.server.listen),
                    listen.parse(),
                    "--listen {listen:?}"
                );
            }
        }
    }
}

// --- router ---------------------------------------------------------------------------------

/// What every harness that serves requests shares: one tokio runtime and one compiled memory
/// plugin per process. Each input gets a fresh backend, so inputs do not depend on each other.
struct Fixture {
    tokio: tokio::runtime::Runtime,
    plugin: Plugin,
}

const USER: &str = "fuzz";
const PASSWORD: &str = "pw";
/// Small, so that the fuzzer reaches the 413 answers.
const BODY_LIMIT: usize = 1024;

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let plugin = tokio.block_on(async {
            // On-demand allocation: one small instance at a time, no pool reserved up front.
            let options = RuntimeOptions {
                pool_size: None,
                ..RuntimeOptions::default()
            };
            let runtime = Runtime::with_options(options).expect("a runtime");
            Plugin::builtin(&runtime, "memory")
                .await
                .expect("the memory plugin loads")
        });
        Fixture { tokio, plugin }
    })
}

impl Fixture {
    /// The server's router over a fresh memory backend, with Basic auth when `auth`.
    async fn app(&self, auth: bool, body_limit: usize) -> axum::Router {
        let backend = self
            .plugin
            .open(vec![], Grants::default())
            .await
            .expect("the memory plugin opens");
        let principals = if auth {
            vec![Principal {
                name: USER.into(),
                via: Via::Password,
                secret: Secret::new(PASSWORD).expect("a plain password"),
                grant: Grant::Everything,
            }]
        } else {
            Vec::new()
        };
        let shared = Arc::new(AppState {
            workspaces: Workspaces::new(backend, StateOptions::default()),
            access: Arc::new(Access::new(principals, None)),
            backend: server::BackendSummary {
                name: "memory".into(),
                grants: Grants::default(),
            },
        });
        server::router(shared, body_limit)
    }
}

/// Sends one request through the router in process (what `tower::ServiceExt::oneshot` does;
/// the host crate reaches tower's `Service` only through axum's re-exported extension trait).
async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    async fn call<S>(mut service: S, request: Request<Body>) -> Response
    where
        S: axum::ServiceExt<Request<Body>, Response = Response, Error = Infallible>,
    {
        if let Err(never) = std::future::poll_fn(|cx| service.poll_ready(cx)).await {
            match never {}
        }
        match service.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
    let response = call(app.clone(), request).await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a response body in memory is read");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn basic(user: &str, password: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header")
}

fn get(uri: &str, auth: Option<&HeaderValue>) -> Request<Body> {
    let mut request = Request::get(uri)
        .body(Body::empty())
        .expect("a valid request");
    if let Some(auth) = auth {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    request
}

const WORKSPACES: [&str; 3] = ["default", "dev", "a.b-c_d"];
const LINEAGES: [&str; 3] = ["L1", "L2", "\u{1b}[2J\u{202e}"];
const LOCK_IDS: [&str; 4] = ["id-1", "id-2", "", "id-\u{1}"];
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "LOCK", "UNLOCK", "OPTIONS", "PATCH", "BREW",
];

/// What the harness sees of the server between two requests.
#[derive(Debug, PartialEq)]
struct Observed {
    /// Stored state of each workspace of [`WORKSPACES`].
    states: Vec<Option<String>>,
    /// `GET /api/locks`, as JSON.
    locks: Value,
}

impl Observed {
    async fn read(app: &axum::Router, auth: Option<&HeaderValue>) -> Observed {
        let mut states = Vec::new();
        for workspace in WORKSPACES {
            let (status, body) = send(app, get(&format!("/state/{workspace}"), auth)).await;
            match status {
                StatusCode::OK => {
                    if let Err(e) = StateDoc::parse(body.as_bytes()) {
                        panic!(
                            "GET /state/{workspace} served a state the rules refuse ({e}): {body}"
                        );
                    }
                    states.push(Some(body));
                }
                StatusCode::NOT_FOUND => states.push(None),
                other => panic!("GET /state/{workspace}: {other} {body}"),
            }
        }
        let (status, body) = send(app, get("/api/locks", auth)).await;
        assert_eq!(status, StatusCode::OK, "GET /api/locks: {body}");
        let locks = serde_json::from_str(&body).expect("GET /api/locks answers JSON");
        Observed { states, locks }
    }

    /// The id of the lock on `workspace` that is held for at least the next hour.
    fn holder(&self, workspace: &str) -> Option<String> {
        let soon = SystemTime::now() + Duration::from_secs(3600);
        let soon = soon
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let entry = self
            .locks
            .as_array()?
            .iter()
            .find(|l| l["workspace"] == workspace)?;
        let lock = &entry["lock"];
        let held = lock["Expires"]
            .as_u64()
            .is_none_or(|expires| expires > soon);
        held.then(|| lock["ID"].as_str().unwrap_or_default().to_string())
    }
}

/// A state document for a request body: `serial`, `lineage`, maybe resources.
fn state_body(serial: u64, lineage: &str, resources: bool, outputs: u8) -> Vec<u8> {
    let resources = if resources {
        serde_json::json!([{"mode": "managed", "type": "null_resource", "name": "x"}])
    } else {
        serde_json::json!([])
    };
    let doc = serde_json::json!({
        "version": 4,
        "terraform_version": "1.0.3",
        "serial": serial,
        "lineage": lineage,
        "outputs": {"o": {"value": outputs, "type": "number"}},
        "resources": resources,
    });
    serde_json::to_vec(&doc).expect("a JSON value serializes")
}

fn lock_body(id: &str, bytes: &mut Bytes) -> Vec<u8> {
    let doc = match bytes.byte() % 4 {
        0 => serde_json::json!({"ID": id}),
        1 => serde_json::json!({"ID": id, "Operation": "OperationTypeApply", "Who": "fuzz@host",
            "Version": "1.0.3", "Created": "2024-01-01T00:00:00Z", "Path": "", "Info": ""}),
        2 => serde_json::json!({"ID": id, "Who": "fuzz@host", "Expires": 1u64}),
        _ => serde_json::json!({"ID": id, "Who": "w", "Expires": u64::MAX}),
    };
    serde_json::to_vec(&doc).expect("a JSON value serializes")
}

/// One decoded request and what the harness knows about it.
struct Step {
    request: Request<Body>,
    /// The workspace of [`WORKSPACES`] it addresses, when it names one plainly.
    workspace: Option<&'static str>,
    method: &'static str,
    body: Vec<u8>,
    /// Whether it carries a Content-MD5 header that does not match its body.
    wrong_md5: bool,
    lock_id: Option<String>,
    authorized: bool,
}

fn decode_step(bytes: &mut Bytes, auth_on: bool) -> Option<Step> {
    let method = bytes.pick(&METHODS);
    let (path, workspace) = match bytes.byte() % 12 {
        n @ 0..=5 => {
            let workspace = WORKSPACES[n as usize % WORKSPACES.len()];
            (format!("/state/{workspace}"), Some(workspace))
        }
        6 => ("/state/".to_string(), None),
        7 => ("/api/workspaces".to_string(), None),
        8 => ("/api/locks".to_string(), None),
        9 => (
            format!("/api/workspaces/{}/history", bytes.pick(&WORKSPACES)),
            None,
        ),
        10 => (
            format!("/api/workspaces/{}/broken-locks", bytes.pick(&WORKSPACES)),
            None,
        ),
        _ => (
            format!("/{}", String::from_utf8_lossy(bytes.slice(64))),
            None,
        ),
    };
    let mut lock_id = None;
    let query = match bytes.byte() % 5 {
        0 | 1 => String::new(),
        2 => {
            let id = bytes.pick(&LOCK_IDS);
            lock_id = Some(id.to_string()).filter(|id| !id.is_empty());
            let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
            format!("?ID={encoded}")
        }
        3 => "?force=true".to_string(),
        _ => format!("?{}", String::from_utf8_lossy(bytes.slice(32))),
    };
    let body = match bytes.byte() % 6 {
        0 => Vec::new(),
        1 | 2 => {
            let serial = u64::from(bytes.byte() % 8);
            let lineage = bytes.pick(&LINEAGES);
            let flags = bytes.byte();
            state_body(serial, lineage, flags & 1 != 0, flags >> 1 & 3)
        }
        3 => {
            let id = bytes.pick(&LOCK_IDS);
            lock_body(id, bytes)
        }
        4 => bytes.slice(255).to_vec(),
        _ => bytes.slice(255).repeat(1 + usize::from(bytes.byte() % 8)),
    };
    let headers = bytes.byte();
    let uri = format!("{path}{query}");
    let mut request = Request::builder()
        .method(method)
        .uri(&uri)
        .body(Body::from(body.clone()))
        .ok()?;
    let mut wrong_md5 = false;
    match headers & 3 {
        1 => {
            use md5::Digest;
            let digest = md5::Md5::digest(&body);
            let value = base64::engine::general_purpose::STANDARD.encode(digest);
            request
                .headers_mut()
                .insert("content-md5", HeaderValue::from_str(&value).ok()?);
        }
        2 => {
            let value = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
            request
                .headers_mut()
                .insert("content-md5", HeaderValue::from_str(&value).ok()?);
            use md5::Digest;
            wrong_md5 = md5::Md5::digest(&body).as_slice() != [0u8; 16];
        }
        3 => {
            request
                .headers_mut()
                .insert("content-md5", HeaderValue::from_static("not base64!"));
            wrong_md5 = true;
        }
        _ => {}
    }
    match headers >> 2 & 3 {
        1 => {
            request
                .headers_mut()
                .insert(header::CONTENT_LENGTH, body.len().into());
        }
        2 => {
            request
                .headers_mut()
                .insert(header::CONTENT_LENGTH, (BODY_LIMIT + 1).into());
        }
        3 => {
            request
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("junk"));
        }
        _ => {}
    }
    let authorized = match headers >> 4 & 3 {
        0 | 1 => {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, basic(USER, PASSWORD));
            true
        }
        2 => {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, basic(USER, "wrong"));
            !auth_on
        }
        _ => !auth_on,
    };
    Some(Step {
        request,
        workspace,
        method,
        body,
        wrong_md5,
        lock_id,
        authorized,
    })
}

/// The HTTP router in process over a fresh memory backend: a short sequence of requests
/// decoded from the input, with the server's guarantees checked after each one.
pub fn router(data: &[u8]) {
    let fixture = fixture();
    let mut bytes = Bytes { data };
    let auth_on = bytes.byte() & 1 == 1;
    let admin = basic(USER, PASSWORD);
    let auth = auth_on.then_some(&admin);
    fixture.tokio.block_on(async {
        let app = fixture.app(auth_on, BODY_LIMIT).await;
        let mut seen = Observed::read(&app, auth).await;
        // (serial, lineage) last seen per workspace, forgotten when a state is deleted.
        let mut last: HashMap<&str, (u64, String)> = HashMap::new();
        for _ in 0..8 {
            if bytes.is_empty() {
                break;
            }
            let Some(step) = decode_step(&mut bytes, auth_on) else {
                continue;
            };
            let what = format!("{} {}", step.method, step.request.uri());
            let (status, answer) = send(&app, step.request).await;
            let now = Observed::read(&app, auth).await;

            assert!(!status.is_server_error(), "{what}: {status} {answer}");
            if !step.authorized {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{what} without credentials: {answer}"
                );
            }
            if status != StatusCode::OK {
                assert_eq!(
                    now, seen,
                    "{what} answered {status} ({answer}) but changed the store"
                );
            }
            let is_write = matches!(step.method, "POST" | "PUT");
            if is_write && step.wrong_md5 {
                assert_ne!(
                    status,
                    StatusCode::OK,
                    "{what} stored a body its Content-MD5 refutes"
                );
            }
            if let (Some(workspace), true, StatusCode::OK) = (step.workspace, is_write, status) {
                let index = WORKSPACES
                    .iter()
                    .position(|w| *w == workspace)
                    .expect("known");
                assert_eq!(
                    now.states[index].as_deref().map(str::as_bytes),
                    Some(step.body.as_slice()),
                    "{what} answered 200 but stored something else"
                );
            }
            if let (Some(workspace), true) = (step.workspace, is_write || step.method == "DELETE") {
                let forced_delete = step.method == "DELETE" && what.ends_with("?force=true");
                match seen.holder(workspace) {
                    Some(holder)
                        if step.lock_id.as_deref() != Some(holder.as_str()) && !forced_delete =>
                    {
                        assert_ne!(
                            status,
                            StatusCode::OK,
                            "{what} succeeded while {holder:?} holds the lock"
                        );
                    }
                    _ => {}
                }
            }
            // The holder's own write is never refused as locked (lock ids are kept exactly).
            if let (Some(workspace), Some(id)) = (step.workspace, &step.lock_id)
                && seen.holder(workspace).as_deref() == Some(id.as_str())
                && is_write
            {
                assert_ne!(
                    status,
                    StatusCode::LOCKED,
                    "{what}: the lock's holder was refused as locked: {answer}"
                );
            }
            if status == StatusCode::LOCKED {
                let holder: LockInfo = serde_json::from_str(&answer).unwrap_or_else(|e| {
                    panic!("{what}: 423 without the holder's LockInfo ({e}): {answer}")
                });
                assert!(
                    !holder.id.is_empty(),
                    "{what}: 423 names no holder: {answer}"
                );
            }
            if step.method == "DELETE" && status == StatusCode::OK {
                last.clear();
            }
            for (index, workspace) in WORKSPACES.iter().enumerate() {
                let Some(state) = &now.states[index] else {
                    continue;
                };
                let doc = StateDoc::parse(state.as_bytes()).expect("checked when read");
                if let Some((serial, lineage)) = last.get(workspace) {
                    assert!(
                        doc.serial >= *serial,
                        "{what}: serial of {workspace} went from {serial} to {}",
                        doc.serial
                    );
                    assert_eq!(
                        &doc.lineage, lineage,
                        "{what}: lineage of {workspace} changed"
                    );
                }
                last.insert(workspace, (doc.serial, doc.lineage));
            }
            seen = now;
        }
        // Every workspace the API lists serves a state the rules accept, with the listed serial.
        let (status, body) = send(&app, get("/api/workspaces", auth)).await;
        assert_eq!(status, StatusCode::OK, "GET /api/workspaces: {body}");
        let listed: Vec<Value> = serde_json::from_str(&body).expect("workspaces are JSON");
        for entry in listed {
            let name = entry["name"]
                .as_str()
                .expect("a listed workspace has a name");
            let (status, state) = send(&app, get(&format!("/state/{name}"), auth)).await;
            match status {
                StatusCode::OK => {
                    let doc = StateDoc::parse(state.as_bytes()).unwrap_or_else(|e| {
                        panic!("workspace {name} serves a refused state ({e})")
                    });
                    assert_eq!(entry["serial"].as_u64(), Some(doc.serial), "{body}");
                }
                StatusCode::NOT_FOUND => assert!(entry["serial"].is_null(), "{body}"),
                other => panic!("GET /state/{name}: {other} {state}"),
            }
        }
    });
}
