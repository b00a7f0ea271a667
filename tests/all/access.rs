//! Who may do what on `stateplug serve`: users and tokens from the config (plain, argon2 and
//! bcrypt secrets, from the file, a file or the environment), permissions per workspace,
//! object and namespace pattern, 401 for who-are-you and 403 naming the permission missing,
//! and refusals logged without the secret.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::common::Server;
use crate::common::cli::ok;
use crate::common::protocol::{lock_info, state};

const ADMIN_PW: &str = "admin-pw-4f1e";
const CI_PW: &str = "ci-pw-77aa";
const VIEWER_PW: &str = "viewer-pw-c0de";
const TOKEN: &str = "deploy-token-9b2d";

/// A request as one principal.
struct As<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    auth: Auth,
}

#[derive(Clone, Copy)]
enum Auth {
    Basic(&'static str, &'static str),
    Bearer(&'static str),
}

impl As<'_> {
    fn request(&self, method: &str, path: &str) -> RequestBuilder {
        let request = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        match self.auth {
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: impl Into<String>,
    ) -> (StatusCode, String) {
        let response = self
            .request(method, path)
            .body(body.into())
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Asserts `method path` answers `status`; returns the body.
    async fn expect(
        &self,
        method: &str,
        path: &str,
        body: impl Into<String>,
        status: u16,
    ) -> String {
        let (got, text) = self.send(method, path, body).await;
        assert_eq!(got.as_u16(), status, "{method} {path}: {text}");
        text
    }

    async fn workspace_names(&self) -> Vec<String> {
        let body = self.expect("GET", "/api/workspaces", "", 200).await;
        let infos: Vec<Value> = serde_json::from_str(&body).unwrap();
        infos
            .iter()
            .map(|info| info["name"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_per_pattern_decide_and_refusals_name_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    // The admin's password as argon2 (made by the CLI), ci's as bcrypt, the viewer's from a
    // file, the token from a file.
    let admin_hash = ok(dir.path(), &["hash-secret"], Some(ADMIN_PW.as_bytes()));
    let admin_hash = admin_hash.trim();
    assert!(admin_hash.starts_with("$argon2id$"), "{admin_hash}");
    let ci_hash = bcrypt::hash(CI_PW, 4).unwrap();
    std::fs::write(dir.path().join("viewer.pw"), format!("{VIEWER_PW}\n")).unwrap();
    std::fs::write(dir.path().join("deploy.token"), TOKEN).unwrap();
    std::fs::write(
        dir.path().join("stateplug.toml"),
        format!(
            r#"[backends.team]
plugin = "memory"

[server.users.admin]
password = "{admin_hash}"
permissions = [{{ workspaces = "*", allow = ["admin"] }}]

[server.users.ci]
password = "{ci_hash}"
permissions = [
  {{ workspaces = "dev-*", allow = ["read", "write", "lock"] }},
  {{ workspaces = "prod", allow = ["read"] }},
  {{ objects = "modules/*", allow = ["read"] }},
  {{ kv = "ci", allow = ["read", "write"] }},
]

[server.users.viewer]
password_file = "viewer.pw"
permissions = [{{ workspaces = "*", allow = ["read"] }}]

[server.tokens.deploy]
token_file = "deploy.token"
permissions = [{{ workspaces = "prod", allow = ["read", "write", "lock"] }}]
"#
        ),
    )
    .unwrap();
    let log_path = dir.path().join("server.log");
    let server = Server::start_with_stderr(
        dir.path(),
        &[],
        std::fs::File::create(&log_path).unwrap().into(),
    );
    let client = reqwest::Client::new();
    let who = |auth| As {
        client: &client,
        base: &server.url,
        auth,
    };
    let admin = who(Auth::Basic("admin", ADMIN_PW));
    let ci = who(Auth::Basic("ci", CI_PW));
    let viewer = who(Auth::Basic("viewer", VIEWER_PW));

    // The admin may do anything anywhere.
    for workspace in ["prod", "ops", "dev-eu"] {
        admin
            .expect("POST", &format!("/state/{workspace}"), state(1, "L"), 200)
            .await;
    }
    admin
        .expect("PUT", "/api/v1/objects/modules/net.tf", "module", 200)
        .await;
    admin
        .expect("PUT", "/api/v1/objects/secrets/key", "hidden", 200)
        .await;

    // CI writes and locks dev-*, only reads prod, and sees nothing else.
    ci.expect("GET", "/state/prod", "", 200).await;
    let refused = ci.expect("POST", "/state/prod", state(2, "L"), 403).await;
    assert!(
        refused.contains("user `ci` may not write workspace `prod`: it has read there"),
        "{refused}"
    );
    let refused = ci
        .expect("LOCK", "/state/prod", lock_info("x", "ci@runner"), 403)
        .await;
    assert!(
        refused.contains("may not lock workspace `prod`"),
        "{refused}"
    );
    let refused = ci.expect("GET", "/state/ops", "", 403).await;
    assert!(
        refused.contains("may not read workspace `ops`: no rule of its permissions covers"),
        "{refused}"
    );
    ci.expect("LOCK", "/state/dev-eu", lock_info("ci-1", "ci@runner"), 200)
        .await;
    ci.expect("POST", "/state/dev-eu?ID=ci-1", state(2, "L"), 200)
        .await;
    // Breaking a lock and deleting a workspace are an admin's.
    let refused = ci.expect("UNLOCK", "/state/dev-eu", "", 403).await;
    assert!(
        refused.contains("may not admin workspace `dev-eu`"),
        "{refused}"
    );
    let refused = ci
        .expect("UNLOCK", "/state/dev-eu", r#"{"ID":"ci-1"}"#, 403)
        .await;
    assert!(refused.contains("may not admin"), "{refused}");
    ci.expect("DELETE", "/state/dev-eu?ID=ci-1", "", 403).await;
    ci.expect(
        "UNLOCK",
        "/state/dev-eu",
        lock_info("ci-1", "ci@runner"),
        200,
    )
    .await;
    ci.expect("LOCK", "/state/dev-eu", lock_info("ci-2", "ci@runner"), 200)
        .await;
    admin.expect("UNLOCK", "/state/dev-eu", "", 200).await;
    assert!(ci.expect("GET", "/api/locks", "", 200).await.contains("[]"));
    // Every change is in the audit trail: who, from where, which lock, serials.
    let trail: Value = serde_json::from_str(
        &admin
            .expect("GET", "/api/v1/audit?workspace=dev-eu", "", 200)
            .await,
    )
    .unwrap();
    let seen: Vec<(String, String, String)> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            let text = |key: &str| e[key].as_str().unwrap_or("-").to_string();
            assert!(text("client").starts_with("127.0.0.1:"), "{e}");
            (text("action"), text("actor"), text("lock_id"))
        })
        .collect();
    let expected = [
        ("write", "user:admin", "-"),
        ("lock", "user:ci", "ci-1"),
        ("write", "user:ci", "ci-1"),
        ("unlock", "user:ci", "ci-1"),
        ("lock", "user:ci", "ci-2"),
        ("force-unlock", "user:admin", "ci-2"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(seen, expected);
    let ci_write = &trail["events"][3];
    assert_eq!(
        (
            ci_write["serial_before"].as_u64(),
            ci_write["serial_after"].as_u64()
        ),
        (Some(1), Some(2))
    );

    // Listings show only what the caller may read.
    assert_eq!(ci.workspace_names().await, ["dev-eu", "prod"]);
    assert_eq!(
        viewer.workspace_names().await,
        ["default", "dev-eu", "ops", "prod"]
    );
    ci.expect("GET", "/api/workspaces/prod/history", "", 200)
        .await;
    ci.expect("GET", "/api/workspaces/ops/history", "", 403)
        .await;
    let refused = viewer
        .expect("POST", "/state/prod", state(2, "L"), 403)
        .await;
    assert!(refused.contains("user `viewer` may not write"), "{refused}");

    // Objects and key-values have rules of their own.
    assert_eq!(
        ci.expect("GET", "/api/v1/objects/modules/net.tf", "", 200)
            .await,
        "module"
    );
    ci.expect("PUT", "/api/v1/objects/modules/net.tf", "x", 403)
        .await;
    let refused = ci
        .expect("GET", "/api/v1/objects/secrets/key", "", 403)
        .await;
    assert!(
        refused.contains("may not read object `secrets/key`"),
        "{refused}"
    );
    let listing: Value =
        serde_json::from_str(&ci.expect("GET", "/api/v1/objects?prefix=", "", 200).await).unwrap();
    assert_eq!(listing["paths"], json!(["modules/net.tf"]));
    ci.expect("PUT", "/api/v1/kv/ci/build", "42", 200).await;
    ci.expect(
        "POST",
        "/api/v1/kv/ci?op=batch-get",
        r#"{"keys":["build"]}"#,
        200,
    )
    .await;
    let refused = ci.expect("PUT", "/api/v1/kv/other/k", "1", 403).await;
    assert!(
        refused.contains("may not write namespace `other`"),
        "{refused}"
    );
    viewer.expect("GET", "/api/v1/kv/ci/build", "", 403).await;

    // Metrics and the audit trail on the main address are an administrator's.
    admin.expect("GET", "/metrics", "", 200).await;
    let refused = ci.expect("GET", "/metrics", "", 403).await;
    assert!(
        refused.contains("user `ci` may not read the metrics"),
        "{refused}"
    );
    admin.expect("GET", "/api/v1/audit", "", 200).await;
    let refused = viewer
        .expect("GET", "/api/v1/audit?workspace=prod", "", 403)
        .await;
    assert!(refused.contains("user `viewer` may not"), "{refused}");

    // A token: as a Bearer token, or as the password of any user name (how CI passes one).
    let bearer = who(Auth::Bearer(TOKEN));
    bearer
        .expect("POST", "/state/prod", state(2, "L"), 200)
        .await;
    let job = who(Auth::Basic("gitlab-ci-token", TOKEN));
    job.expect("POST", "/state/prod", state(3, "L"), 200).await;
    let refused = job
        .expect("POST", "/state/dev-eu", state(3, "L"), 403)
        .await;
    assert!(
        refused.contains("token `deploy` may not write"),
        "{refused}"
    );

    // 401 for who-are-you: no credentials, a wrong secret, an unknown user, another's secret.
    let wrong = [
        who(Auth::Basic("ci", "ci-wrong-guess")),
        who(Auth::Basic("mallory", CI_PW)),
        who(Auth::Basic("deploy", ADMIN_PW)),
        who(Auth::Bearer("not-a-token")),
    ];
    for attempt in &wrong {
        let response = attempt.request("GET", "/state/prod").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
    }
    let anonymous = client.get(server.state_url("prod")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(
        anonymous
            .text()
            .await
            .unwrap()
            .contains("give a configured user and password or a token")
    );
    // Nothing the refused callers sent changed a state.
    let prod: Value =
        serde_json::from_str(&admin.expect("GET", "/state/prod", "", 200).await).unwrap();
    assert_eq!(prod["serial"], 3);

    // The log names who was refused and why, never a secret.
    assert!(server.stop().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("user `ci` may not write workspace `prod`"),
        "{log}"
    );
    assert!(log.contains("authentication failed"), "{log}");
    assert!(log.contains("mallory"), "{log}");
    for secret in [
        ADMIN_PW,
        CI_PW,
        VIEWER_PW,
        TOKEN,
        "ci-wrong-guess",
        "not-a-token",
    ] {
        assert!(!log.contains(secret), "the log shows {secret}:\n{log}");
    }
}

#[test]
fn config_show_masks_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stateplug.toml"),
        format!(
            "[backends.team]\nplugin = \"memory\"\n[server.users.ci]\npassword = \"{CI_PW}\"\n\
             [server.tokens.deploy]\ntoken = \"{TOKEN}\"\n[server.oidc]\nissuer = \"https://i\"\n\
             audience = \"stateplug\"\njwks_url = \"https://i/keys\"\n"
        ),
    )
    .unwrap();
    let shown = ok(dir.path(), &["config", "show"], None);
    assert!(
        shown.contains("users.ci.password = \"(secret)\""),
        "{shown}"
    );
    assert!(
        shown.contains("tokens.deploy.token = \"(secret)\""),
        "{shown}"
    );
    assert!(
        shown.contains("oidc.jwks_url = \"https://i/keys\""),
        "{shown}"
    );
    assert!(!shown.contains(CI_PW) && !shown.contains(TOKEN), "{shown}");
}
