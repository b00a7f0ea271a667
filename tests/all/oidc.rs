//! OIDC job tokens on `stateplug serve`: JWTs the test signs with its own keys (ES256, the
//! public half in a JWKS file), given as the Basic-auth password as CI systems pass them or as
//! a Bearer token; issuer, audience, expiry and signature checked, claims mapped to
//! permissions by the config's rules.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::Server;
use crate::common::protocol::state;

const ISSUER: &str = "https://ci.example.test";

/// A signing key and its public JWK.
struct Key {
    encoding: EncodingKey,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let pair = rcgen::KeyPair::generate().unwrap();
    // P-256 public key: 0x04, then x and y, 32 bytes each.
    let raw = pair.public_key_raw();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Key {
        encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        }),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a job of `project`, valid for ten minutes; `extra` adds or replaces claims.
fn claims(project: &str, extra: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": "stateplug", "sub": format!("project:{project}:ref:main"),
        "project": project, "iat": now(), "exp": now() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_tokens_are_verified_and_their_claims_decide() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = key("k1");
    let impostor = key("k1");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({ "keys": [issuer.jwk] }).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("stateplug.toml"),
        format!(
            r#"[backends.team]
plugin = "memory"

[server.users.admin]
password = "admin-pw"

[server.oidc]
issuer = "{ISSUER}"
audience = ["stateplug", "other"]
jwks_file = "jwks.json"

[[server.oidc.rules]]
claims = {{ project = "*" }}
permissions = [{{ workspaces = "{{project}}-*", allow = ["read", "write", "lock"] }}]

[[server.oidc.rules]]
claims = {{ project = "web", ref_protected = "true" }}
permissions = [{{ workspaces = "prod", allow = ["read", "write"] }}]
"#
        ),
    )
    .unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    // A JWT as the password of any user name, as a CI job passes its token to Terraform.
    let post = |token: String, workspace: &str, serial: u64| {
        client
            .post(server.state_url(workspace))
            .basic_auth("gitlab-ci-token", Some(token))
            .body(state(serial, "L"))
            .send()
    };
    let answer = |response: reqwest::Response| async move {
        let status = response.status();
        (status, response.text().await.unwrap())
    };

    let web = sign(&issuer, "k1", &claims("web", json!({})));
    let (status, body) = answer(post(web.clone(), "web-dev", 1).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The claim fills the pattern: `web` jobs own `web-*` only.
    let (status, body) = answer(post(web.clone(), "api-dev", 1).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains(
            "OIDC subject `project:web:ref:main` may not write workspace `api-dev`: no rule"
        ),
        "{body}"
    );
    let (status, _) = answer(post(web.clone(), "prod", 1).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A protected ref of `web` (a boolean claim) may also write prod.
    let protected = sign(
        &issuer,
        "k1",
        &claims("web", json!({"ref_protected": true})),
    );
    let (status, body) = answer(post(protected.clone(), "prod", 1).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A project whose name is a glob widens nothing.
    let star = sign(&issuer, "k1", &claims("*", json!({})));
    let (status, _) = answer(post(star, "web-dev", 2).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // As a Bearer token too; the second audience is accepted.
    let other_aud = sign(&issuer, "k1", &claims("api", json!({"aud": "other"})));
    let response = client
        .get(server.state_url("web-dev"))
        .bearer_auth(&web)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = answer(post(other_aud, "api-dev", 1).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Refused with 401, each saying why, none quoting the token.
    let refusals = [
        (
            sign(&issuer, "k1", &claims("web", json!({"exp": now() - 3600}))),
            "has expired",
        ),
        (
            sign(&issuer, "k1", &claims("web", json!({"aud": "elsewhere"}))),
            "audience (`aud`)",
        ),
        (
            sign(
                &issuer,
                "k1",
                &claims("web", json!({"iss": "https://evil"})),
            ),
            "issuer (`iss`)",
        ),
        (
            sign(&impostor, "k1", &claims("web", json!({}))),
            "signature does not match",
        ),
        (
            sign(&issuer, "k9", &claims("web", json!({}))),
            "key id `k9` is not among the issuer's keys",
        ),
        (
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims("web", json!({})),
                &EncodingKey::from_secret(b"guessable").unwrap(),
            )
            .unwrap(),
            "shared-secret algorithm",
        ),
    ];
    for (token, reason) in refusals {
        let (status, body) = answer(post(token.clone(), "web-dev", 3).await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        assert!(body.contains(reason), "{reason}: {body}");
        assert!(!body.contains(&token));
    }
    // Users still sign in with their passwords beside OIDC.
    let response = client
        .get(server.state_url("web-dev"))
        .basic_auth("admin", Some("admin-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["serial"], 1, "no refused write landed");
}

/// A JWKS served over HTTP on 127.0.0.1, the document swappable (a key rotation).
async fn jwks_server(
    document: std::sync::Arc<std::sync::Mutex<Value>>,
) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_issuers_url_and_a_rotation_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, unknown) = (key("old"), key("new"), key("unknown"));
    let document = std::sync::Arc::new(std::sync::Mutex::new(json!({ "keys": [old.jwk] })));
    let (url, task) = jwks_server(document.clone()).await;
    let config = |jwks_url: &str| {
        format!(
            "[backends.team]\nplugin = \"memory\"\n[server.oidc]\nissuer = \"{ISSUER}\"\n\
             audience = \"stateplug\"\njwks_url = \"{jwks_url}\"\n[[server.oidc.rules]]\n\
             permissions = [{{ workspaces = \"{{project}}-*\", allow = [\"read\", \"write\"] }}]\n"
        )
    };
    std::fs::write(dir.path().join("stateplug.toml"), config(&url)).unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    let post = |token: String, serial: u64| {
        client
            .post(server.state_url("web-dev"))
            .bearer_auth(token)
            .body(state(serial, "L"))
            .send()
    };
    let status = |token, serial| async move { post(token, serial).await.unwrap().status() };
    let claims = claims("web", json!({}));
    assert_eq!(status(sign(&old, "old", &claims), 1).await, StatusCode::OK);
    // The issuer rotates: a token of the new key makes the server fetch the keys again.
    *document.lock().unwrap() = json!({ "keys": [new.jwk] });
    assert_eq!(status(sign(&new, "new", &claims), 2).await, StatusCode::OK);
    // Right after a fetch, an unknown key id is refused without fetching again.
    *document.lock().unwrap() = json!({ "keys": [new.jwk, unknown.jwk] });
    let response = post(sign(&unknown, "unknown", &claims), 3).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = response.text().await.unwrap();
    assert!(body.contains("key id `unknown` is not among"), "{body}");
    assert!(server.stop().success());

    // An issuer that cannot be reached stops `serve` at start, naming the URL.
    task.abort();
    let _ = task.await;
    std::fs::write(dir.path().join("stateplug.toml"), config(&url)).unwrap();
    let (code, stderr) =
        crate::common::cli::fails(dir.path(), &["serve", "--listen", "127.0.0.1:0"], None);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot fetch the JWKS from `jwks_url`") && stderr.contains(&url),
        "{stderr}"
    );
}
