//! The OpenAPI 3.1 document of the `/api/` routes (`host/stateplug/src/server/openapi.json`):
//! served unchanged at `GET /api/v1/openapi.json` under the server's auth, describing every
//! route the router serves under `/api/`, and honest: schemathesis (PyPI, installed by
//! `.ci/run` into `target/ci-venv`) sends a running `stateplug serve` requests generated from
//! it, valid and invalid, and checks every answer against it. Without schemathesis that test
//! says it was skipped, and fails when `CI` is set.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode, header};
use serde_json::Value;

use crate::common::{Server, workspace_root};

/// The document, in the repository.
const DOCUMENT: &str = "host/stateplug/src/server/openapi.json";
/// The router, whose `/api/` routes the document must describe.
const ROUTER: &str = "host/stateplug/src/server/router.rs";

/// Every route the router serves under `/api/` (`{*rest}` written `{rest}`, as OpenAPI does),
/// with the methods it answers (as its 405 says in `Allow`): lowercase for the document's
/// operations, uppercase for the custom methods described in the path's `x-stateplug-methods`.
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/workspaces", &["get", "head"]),
    ("/api/locks", &["get", "head"]),
    ("/api/workspaces/{workspace}/history", &["get", "head"]),
    ("/api/workspaces/{workspace}/broken-locks", &["get", "head"]),
    ("/api/v1/audit", &["get", "head"]),
    ("/api/v1/openapi.json", &["get", "head"]),
    ("/api/v1/objects", &["get", "head"]),
    (
        "/api/v1/objects/{path}",
        &["get", "head", "put", "delete", "LOCK", "UNLOCK"],
    ),
    ("/api/v1/kv/{namespace}", &["get", "head", "post", "delete"]),
    (
        "/api/v1/kv/{namespace}/{key}",
        &["get", "head", "put", "patch", "delete"],
    ),
];

/// Routes of the router that only answer 400 naming what the URL lacks (`missing_*`): not
/// endpoints, so not described.
const NAMING_ONLY: &[&str] = &[
    "/api/v1/objects/",
    "/api/v1/kv",
    "/api/v1/kv/",
    "/api/v1/kv/{namespace}/",
];

/// The methods an OpenAPI 3.1 path item holds operations for.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

const USER: &str = "ci";
const PASSWORD: &str = "openapi-pw";

fn document_bytes() -> Vec<u8> {
    std::fs::read(workspace_root().join(DOCUMENT)).expect("the document is in the repository")
}

/// The `/api/` routes `router.rs` declares, `{*rest}` written `{rest}`.
fn router_routes() -> BTreeSet<String> {
    let source = std::fs::read_to_string(workspace_root().join(ROUTER)).unwrap();
    source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split_once('"'))
        .map(|(route, _)| route)
        .filter(|route| route.starts_with("/api"))
        .map(|route| route.replace("{*", "{"))
        .collect()
}

/// Every operation of the document, custom methods included: `(path, method, operation)`.
fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                operations.push((path.clone(), method.clone(), operation));
            }
        }
        if let Some(custom) = item.get("x-stateplug-methods") {
            for (method, operation) in custom.as_object().unwrap() {
                operations.push((path.clone(), method.clone(), operation));
            }
        }
    }
    operations
}

/// Every `$ref` under `value`, which must all point into the document.
fn check_refs(document: &Value, value: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref" {
                    let target = inner.as_str().expect("a $ref is a string");
                    let pointer = target.strip_prefix('#').unwrap_or_else(|| {
                        panic!("{at}: $ref {target} leaves the document");
                    });
                    assert!(
                        document.pointer(pointer).is_some(),
                        "{at}: $ref {target} points at nothing"
                    );
                } else {
                    check_refs(document, inner, &format!("{at}/{key}"));
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                check_refs(document, inner, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_served_unchanged_and_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stateplug.toml"),
        format!(
            "[backends.mem]\nplugin = \"memory\"\n\n[server.users.{USER}]\npassword = \
             \"{PASSWORD}\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = format!("{}/api/v1/openapi.json", server.url);
    let client = Client::new();

    // Under the same auth as every other route.
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .get(&url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let served = response.bytes().await.unwrap();
    assert!(
        served[..] == document_bytes()[..],
        "GET /api/v1/openapi.json does not answer the bytes of {DOCUMENT}"
    );

    let document: Value = serde_json::from_slice(&served).expect("the document is JSON");
    let version = document["openapi"].as_str().expect("`openapi` is a string");
    assert!(
        version.starts_with("3.1."),
        "openapi is {version}, not 3.1.x"
    );
    check_refs(&document, &document, "#");

    // The routes: the router's, this test's list and the document's paths are the same.
    let listed: BTreeSet<String> = ROUTES.iter().map(|(path, _)| path.to_string()).collect();
    let mut declared = router_routes();
    for route in NAMING_ONLY {
        assert!(
            declared.remove(*route),
            "{ROUTER} no longer declares {route}"
        );
    }
    assert_eq!(
        declared, listed,
        "the /api/ routes of {ROUTER} are not those this test lists (describe a new route in \
         {DOCUMENT} and add it to ROUTES)"
    );
    let described: BTreeSet<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(described, listed, "the paths of {DOCUMENT}");

    // Each with the methods listed, each answering 401 when users are configured.
    let operations = operations(&document);
    for (path, methods) in ROUTES {
        let documented: BTreeSet<&str> = operations
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, method, _)| method.as_str())
            .collect();
        assert_eq!(
            documented,
            methods.iter().copied().collect::<BTreeSet<_>>(),
            "the methods of {path}"
        );
    }
    // The server answers exactly those: any other method gets 405 naming them in `Allow`.
    for (path, methods) in ROUTES {
        let concrete = path
            .replace("{workspace}", "default")
            .replace("{path}", "a/b")
            .replace("{namespace}", "app")
            .replace("{key}", "k/1");
        let response = client
            .request(Method::OPTIONS, format!("{}{concrete}", server.url))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "OPTIONS {concrete}"
        );
        let allow: BTreeSet<String> = response.headers()[header::ALLOW]
            .to_str()
            .unwrap()
            .split(',')
            .map(|method| {
                let method = method.trim();
                let lower = method.to_ascii_lowercase();
                if METHODS.contains(&lower.as_str()) {
                    lower
                } else {
                    method.to_string()
                }
            })
            .collect();
        let documented: BTreeSet<String> = methods.iter().map(|m| m.to_string()).collect();
        assert_eq!(allow, documented, "the methods {concrete} answers");
    }
    let mut ids = BTreeSet::new();
    for (path, method, operation) in &operations {
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            ids.insert(id),
            "{method} {path}: operationId `{id}` is not unique"
        );
        assert!(
            operation["responses"].get("401").is_some(),
            "{method} {path} does not document 401 (Basic auth)"
        );
    }
}

/// schemathesis: `STATEPLUG_SCHEMATHESIS`, else the one `.ci/run` installed in the venv.
fn schemathesis_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STATEPLUG_SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    Some(workspace_root().join("target/ci-venv/bin/schemathesis")).filter(|p| p.is_file())
}

/// The most the schemathesis run may take (it takes about 15 s on 2 cores).
const SCHEMATHESIS_DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn the_server_conforms_to_the_document_as_schemathesis_checks() {
    let test = "the_server_conforms_to_the_document_as_schemathesis_checks";
    let Some(schemathesis) = schemathesis_binary() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "CI is set but schemathesis is not installed: `bash .ci/run` installs it into \
                 target/ci-venv (or set STATEPLUG_SCHEMATHESIS)"
            );
        }
        eprintln!(
            "SKIPPED {test}: schemathesis not found; run `bash .ci/run` once (it installs \
             schemathesis into target/ci-venv) or set STATEPLUG_SCHEMATHESIS"
        );
        return;
    };
    let document: Value = serde_json::from_slice(&document_bytes()).unwrap();
    // schemathesis tests the operations of standard methods (not `x-stateplug-methods`),
    // except the one it read the document from (the other test checks that one).
    let standard = operations(&document)
        .iter()
        .filter(|(path, method, _)| {
            METHODS.contains(&method.as_str())
                && (path.as_str(), method.as_str()) != ("/api/v1/openapi.json", "get")
        })
        .count();

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--plugin", "memory"]);
    // Run in a directory of its own: no schemathesis.toml is read, and nothing is written
    // into the repository.
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new(&schemathesis)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.url))
        // No 5xx; every status, media type, body and header as documented; 405 for any
        // method not documented. Not checked: that "invalid" requests are refused and valid
        // ones accepted (negative_data_rejection, positive_data_acceptance: the document's
        // patterns are subsets of what the server accepts, so generated "invalid" values are
        // often valid; of the valid ones, some rightly get 412, a body of another `op` or a
        // Content-MD5 not matching the body gets 400, and so do header values such as `0`,
        // which the coverage phase sends as valid whatever the header's pattern); that a
        // 405's `Allow` names only documented methods (allow_header_conformance: it rightly
        // names LOCK and UNLOCK, which OpenAPI cannot document; the other test compares
        // `Allow` with ROUTES); nothing stateful (the document has no links).
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,unsupported_method",
            "--phases",
            "examples,coverage,fuzzing",
            // At most 20 generated requests per operation and phase, so the run is bounded
            // by its examples (about 900 requests), not by time.
            "--max-examples",
            "20",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .current_dir(work.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", schemathesis.display()));
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCHEMATHESIS_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!("schemathesis ran over {SCHEMATHESIS_DEADLINE:?} and was stopped:\n{output}");
    };
    assert!(
        status.success(),
        "schemathesis found answers that do not conform to {DOCUMENT} ({status}):\n{output}"
    );
    assert!(
        output.contains(&format!("Tested: {standard}")),
        "schemathesis did not test all {standard} operations of {DOCUMENT}:\n{output}"
    );
    println!(
        "schemathesis passed in {:.1?}:\n{output}",
        started.elapsed()
    );
}
