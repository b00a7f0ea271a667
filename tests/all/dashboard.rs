//! The web dashboard at `/ui/` of `stateplug serve`: in a real browser (Debian's headless
//! Chromium driven by playwright-core from npm, `dashboard/browser.mjs`) against a server
//! Terraform filled, and over plain HTTP for what a browser cannot be made to do (forged
//! cross-site posts, tokens of another action, escaping of hostile plugin answers).
//!
//! `.ci/run` installs Chromium and playwright-core (into `target/ci-node`); `STATEPLUG_CHROMIUM`,
//! `STATEPLUG_PLAYWRIGHT` and `STATEPLUG_NODE` may name others. Without them the browser test
//! says it was skipped, and fails when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::protocol::lock_info;
use crate::common::terraform::{Project, output_text, terraform_or_skip};
use crate::common::{Server, workspace_root};

const ADMIN: (&str, &str) = ("admin", "admin-pw-51c3");
const VIEWER: (&str, &str) = ("viewer", "viewer-pw-9e07");

/// A server on the memory plugin with an administrator and a read-only user.
fn start_server(dir: &Path) -> Server {
    std::fs::write(
        dir.join("stateplug.toml"),
        format!(
            r#"[backends.team]
plugin = "memory"

[server.users.{}]
password = "{}"
permissions = [{{ workspaces = "*", allow = ["admin"] }}]

[server.users.{}]
password = "{}"
permissions = [{{ workspaces = "*", allow = ["read"] }}]
"#,
            ADMIN.0, ADMIN.1, VIEWER.0, VIEWER.1
        ),
    )
    .unwrap();
    Server::start(dir, &[])
}

/// Chromium, playwright-core and node, or `None` (with a message) when one is missing outside
/// CI; under `CI` a missing one fails the test.
struct Browser {
    node: PathBuf,
    chromium: PathBuf,
    playwright: PathBuf,
}

fn browser_or_skip(test: &str) -> Option<Browser> {
    // A variable that is set decides (a path that does not exist counts as missing).
    let find =
        |variable: &str, default: &dyn Fn() -> Option<PathBuf>| match std::env::var_os(variable) {
            Some(path) => Some(PathBuf::from(path)).filter(|p| p.exists()),
            None => default(),
        };
    let on_path = |program: &'static str| {
        move || {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(program))
                    .find(|p| p.is_file())
            })
        }
    };
    let node = find("STATEPLUG_NODE", &on_path("node"));
    let chromium = find("STATEPLUG_CHROMIUM", &on_path("chromium"));
    let playwright = find("STATEPLUG_PLAYWRIGHT", &|| {
        let installed = workspace_root().join("target/ci-node/node_modules/playwright-core");
        installed
            .join("package.json")
            .is_file()
            .then_some(installed)
    });
    let missing: Vec<&str> = [
        (node.is_none(), "node (or STATEPLUG_NODE)"),
        (chromium.is_none(), "chromium (or STATEPLUG_CHROMIUM)"),
        (
            playwright.is_none(),
            "playwright-core in target/ci-node (or STATEPLUG_PLAYWRIGHT)",
        ),
    ]
    .into_iter()
    .filter_map(|(absent, what)| absent.then_some(what))
    .collect();
    if missing.is_empty() {
        return Some(Browser {
            node: node?,
            chromium: chromium?,
            playwright: playwright?,
        });
    }
    let missing = missing.join(", ");
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {missing} is not installed: .ci/run installs them");
    }
    eprintln!("SKIPPED {test}: {missing} not found; run .ci/run once or set the variables");
    None
}

/// A Terraform project on the server's workspace with two data sources of the built-in
/// `terraform` provider (no provider download): `base` always, `old` only in phase 1,
/// `extra` only in phase 2; all read `base.tfstate` beside `main.tf`.
fn project(terraform: &Path, url: &str) -> Project {
    let remote = |name: &str, count: &str| {
        format!(
            "data \"terraform_remote_state\" \"{name}\" {{\n  {count}backend = \"local\"\n  \
             config = {{ path = \"${{path.module}}/base.tfstate\" }}\n}}\n"
        )
    };
    let main_tf = format!(
        "terraform {{\n  backend \"http\" {{\n    address = \"{url}\"\n    lock_address = \"{url}\"\n    \
         unlock_address = \"{url}\"\n    username = \"{}\"\n    password = \"{}\"\n  }}\n}}\n\
         variable \"greeting\" {{}}\nvariable \"phase\" {{ type = number }}\n{}{}{}\
         output \"greeting\" {{ value = var.greeting }}\n\
         output \"region\" {{ value = data.terraform_remote_state.base.outputs.region }}\n\
         output \"password\" {{\n  value = \"hunter2\"\n  sensitive = true\n}}\n",
        ADMIN.0,
        ADMIN.1,
        remote("base", ""),
        remote("old", "count = var.phase == 1 ? 1 : 0\n  "),
        remote("extra", "count = var.phase == 2 ? 1 : 0\n  "),
    );
    Project::init(terraform, &main_tf, |_, _| {})
}

/// Writes the state the data sources read, with `region` as its one output.
fn write_base(project: &Project, serial: u64, region: &str) {
    let base = json!({
        "version": 4, "terraform_version": "1.0.3", "serial": serial,
        "lineage": "5d1c2f1e-0000-4000-8000-00000000base", "resources": [],
        "outputs": {"region": {"value": region, "type": "string"}}
    });
    std::fs::write(project.dir.path().join("base.tfstate"), base.to_string()).unwrap();
}

fn apply(project: &Project, greeting: &str, phase: u32) -> u64 {
    let (greeting, phase) = (format!("greeting={greeting}"), format!("phase={phase}"));
    let out = project.run(&[
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-lock-timeout=0s",
        "-var",
        &greeting,
        "-var",
        &phase,
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    project.pull()["serial"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_the_dashboard_in_a_browser_and_an_admin_breaks_a_lock_and_rolls_back() {
    const TEST: &str =
        "a_person_sees_the_dashboard_in_a_browser_and_an_admin_breaks_a_lock_and_rolls_back";
    let Some(terraform) = terraform_or_skip(TEST) else {
        return;
    };
    let Some(browser) = browser_or_skip(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let workspace = "web-prod";
    let url = server.state_url(workspace);

    // Two applies: other outputs, `old` gone, `extra` new, `base` read with another region.
    let project = project(&terraform, &url);
    write_base(&project, 1, "eu-west-1");
    let from = apply(&project, "one", 1);
    write_base(&project, 2, "us-east-1");
    let to = apply(&project, "two", 2);
    assert!(
        to > from,
        "the second apply stored serial {to} after {from}"
    );

    // A lock taken through Terraform's protocol, as a run that died would leave it.
    let (lock_id, lock_who) = ("0c0ffee0-dash-4b1e-9d2a-lockedbyalice", "alice@laptop");
    let client = reqwest::Client::new();
    let locked = client
        .request(reqwest::Method::from_bytes(b"LOCK").unwrap(), &url)
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .body(lock_info(lock_id, lock_who))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::OK);

    let screenshots = workspace_root().join("target/ui-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/all/dashboard/browser.mjs");
    let run = Command::new(&browser.node)
        .arg(&script)
        .env("STATEPLUG_URL", &server.url)
        .env("STATEPLUG_CHROMIUM", &browser.chromium)
        .env("STATEPLUG_PLAYWRIGHT", &browser.playwright)
        .env("STATEPLUG_SCREENSHOTS", &screenshots)
        .env("DASHBOARD_WORKSPACE", workspace)
        .env("DASHBOARD_ADMIN", format!("{}:{}", ADMIN.0, ADMIN.1))
        .env("DASHBOARD_VIEWER", format!("{}:{}", VIEWER.0, VIEWER.1))
        .env("DASHBOARD_FROM", from.to_string())
        .env("DASHBOARD_TO", to.to_string())
        .env("DASHBOARD_LOCK_ID", lock_id)
        .env("DASHBOARD_LOCK_WHO", lock_who)
        .output()
        .expect("node runs the browser script");
    let printed = output_text(&run);
    println!("{printed}");
    assert!(
        run.status.success(),
        "the browser checks failed ({}):\n{printed}",
        run.status
    );

    // What the browser did reached the state layer and the audit trail.
    let locks = admin_json(&client, &server, "/api/locks").await;
    assert_eq!(locks, json!([]), "the lock is gone");
    let trail = audit(&client, &server, workspace).await;
    let rolled = &trail[0];
    assert_eq!(
        (
            &rolled["action"],
            &rolled["actor"],
            &rolled["serial_before"]
        ),
        (&json!("rollback"), &json!("user:admin"), &json!(to)),
        "{trail:#?}"
    );
    assert_eq!(rolled["serial_after"], json!(to + 1), "{rolled}");
    let broken = &trail[1];
    assert_eq!(
        (&broken["action"], &broken["actor"], &broken["lock_id"]),
        (
            &json!("force-unlock"),
            &json!("user:admin"),
            &json!(lock_id)
        ),
        "{trail:#?}"
    );
    assert!(broken["client"].as_str().is_some(), "{broken}");
    let path = format!("/api/workspaces/{workspace}/broken-locks");
    let records = admin_json(&client, &server, &path).await;
    assert_eq!(
        records[0]["by"], "user `admin` via the dashboard",
        "{records}"
    );
    for shot in [
        "workspaces-desktop",
        "workspace-desktop",
        "workspaces-phone",
    ] {
        let png = screenshots.join(format!("{shot}.png"));
        assert!(png.is_file(), "no screenshot {}", png.display());
    }
}

/// The audit trail of `workspace`, newest first.
async fn audit(client: &reqwest::Client, server: &Server, workspace: &str) -> Vec<Value> {
    let trail = admin_json(
        client,
        server,
        &format!("/api/v1/audit?workspace={workspace}"),
    )
    .await;
    trail["events"].as_array().unwrap().clone()
}

/// `GET path` of the JSON API as the administrator.
async fn admin_json(client: &reqwest::Client, server: &Server, path: &str) -> Value {
    client
        .get(format!("{}{path}", server.url))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The CSRF token of a confirmation page.
fn token_of(page: &str) -> String {
    let start = page
        .find("name=\"token\" value=\"")
        .unwrap_or_else(|| panic!("no token in the page:\n{page}"))
        + "name=\"token\" value=\"".len();
    page[start..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_changes_need_admin_a_same_origin_form_and_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path());
    let base = server.url.clone();
    // Redirects are checked, not followed.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let send = |method: &str, path: &str, (user, password): (&str, &str)| {
        client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{base}{path}"),
            )
            .basic_auth(user, Some(password))
    };
    // Two states whose outputs, and a lock whose holder, are hostile HTML.
    for (serial, note) in [(1, "<script>alert(1)</script>"), (2, "second")] {
        let state = json!({
            "version": 4, "terraform_version": "1.0.3", "serial": serial, "lineage": "L-dash",
            "outputs": {"note": {"value": note, "type": "string"}}, "resources": []
        });
        let stored = send("POST", "/state/app", ADMIN)
            .body(state.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), StatusCode::OK);
    }
    let hostile_who = "<img src=x onerror=alert(1)>";
    let locked = send("LOCK", "/state/app", ADMIN)
        .body(lock_info("lock-app-1", hostile_who))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::OK);

    // The pages: behind auth (a browser gets the Basic prompt), with their headers, escaped.
    let unauthenticated = client.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert!(unauthenticated.headers().contains_key("www-authenticate"));
    let redirect = send("GET", "/ui", VIEWER).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/ui/");
    let index = send("GET", "/ui/", VIEWER).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let headers = index.headers().clone();
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let index = index.text().await.unwrap();
    assert!(
        index.contains("&#60;img src=x onerror=alert(1)&#62;") && !index.contains(hostile_who),
        "the lock holder is escaped:\n{index}"
    );
    let page = send("GET", "/ui/workspaces/app?from=1&to=2", VIEWER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>"), "an output is escaped:\n{page}");
    assert!(
        !page.contains("force-unlock\""),
        "no buttons for the viewer:\n{page}"
    );
    let css = send("GET", "/ui/style.css", VIEWER).send().await.unwrap();
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );

    // Without `admin`: no confirmation page, and the POST is 403 whatever it carries.
    let confirm = send("GET", "/ui/workspaces/app/force-unlock", VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), StatusCode::FORBIDDEN);
    let page = send("GET", "/ui/workspaces/app/force-unlock", ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let unlock_token = token_of(&page);
    let refused = send("POST", "/ui/workspaces/app/force-unlock", VIEWER)
        .form(&[("token", unlock_token.as_str()), ("lock_id", "lock-app-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let why = refused.text().await.unwrap();
    assert!(why.contains("may not admin workspace `app`"), "{why}");

    // An admin's form from another site, or with a token of another action or workspace.
    let origin = base.clone();
    let forged = [
        (
            "/ui/workspaces/app/force-unlock",
            ("origin", "http://evil.example"),
            &unlock_token,
        ),
        (
            "/ui/workspaces/app/force-unlock",
            ("sec-fetch-site", "cross-site"),
            &unlock_token,
        ),
        (
            "/ui/workspaces/app/rollback",
            ("origin", origin.as_str()),
            &unlock_token,
        ),
        (
            "/ui/workspaces/other/force-unlock",
            ("origin", origin.as_str()),
            &unlock_token,
        ),
        (
            "/ui/workspaces/app/force-unlock",
            ("origin", origin.as_str()),
            &"AAAA".to_string(),
        ),
    ];
    for (path, (header, value), token) in forged {
        let refused = send("POST", path, ADMIN)
            .header(header, value)
            .form(&[("token", token.as_str()), ("serial", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::FORBIDDEN,
            "{path} with {header}: {value}"
        );
        let why = refused.text().await.unwrap();
        assert!(why.contains("refused:"), "{why}");
    }
    assert!(
        audit(&client, &server, "app")
            .await
            .iter()
            .all(|e| e["action"] != "force-unlock")
    );

    // Rollback while locked is refused with the holder; after the force-unlock it is made.
    let page = send("GET", "/ui/workspaces/app/rollback?serial=1", ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rollback_token = token_of(&page);
    let rollback = || {
        send("POST", "/ui/workspaces/app/rollback", ADMIN)
            .header("origin", origin.as_str())
            .header("sec-fetch-site", "same-origin")
            .form(&[("token", rollback_token.as_str()), ("serial", "1")])
    };
    let locked = rollback().send().await.unwrap();
    assert_eq!(locked.status(), StatusCode::LOCKED);
    let unlocked = send("POST", "/ui/workspaces/app/force-unlock", ADMIN)
        .header("origin", origin.as_str())
        .form(&[("token", unlock_token.as_str()), ("lock_id", "lock-app-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(unlocked.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        unlocked.headers()["location"],
        "/ui/workspaces/app?done=force-unlock"
    );
    let rolled = rollback().send().await.unwrap();
    assert_eq!(rolled.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        rolled.headers()["location"],
        "/ui/workspaces/app?done=rollback&serial=1&stored=3"
    );
    let current: Value = send("GET", "/state/app", ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["serial"], 3);
    assert_eq!(
        current["outputs"]["note"]["value"],
        "<script>alert(1)</script>"
    );

    // Recorded as protocol.rs records changes: actor, client, serials, lock id.
    let trail = audit(&client, &server, "app").await;
    let (rollback, broken) = (&trail[0], &trail[1]);
    assert_eq!(rollback["action"], "rollback", "{trail:#?}");
    assert_eq!(
        (&rollback["serial_before"], &rollback["serial_after"]),
        (&json!(2), &json!(3))
    );
    assert_eq!(broken["action"], "force-unlock");
    assert_eq!(broken["lock_id"], "lock-app-1");
    for event in [rollback, broken] {
        assert_eq!(event["actor"], "user:admin");
        assert!(event["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    let done = send(
        "GET",
        "/ui/workspaces/app?done=rollback&serial=1&stored=3",
        ADMIN,
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(done.contains("stored as serial 3"), "{done}");
}
