//! The built-in `s3` plugin against a real S3-compatible server (moto, on 127.0.0.1, started
//! per test), checked with an independent client (boto3) and with real Terraform 1.0.3 and its
//! own `s3` backend on the same bucket and lock table.
//!
//! moto and Terraform are installed by `.ci/run` into `target/ci-venv`; without them the tests
//! say so and pass locally, but fail when `CI` is set.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::http_target::{Answer, Target};
use crate::common::moto::{self, Moto};
use crate::common::terraform::{output_text, terraform_or_skip};
use serde_json::{Value, json};
use stateplug_runtime::{Backend, Error, Grants, LockInfo, Precondition, conformance};
use stateplug_state::{Workspaces, WriteOptions};

/// Makes bucket and table names unique within a moto server.
static NAMES: AtomicUsize = AtomicUsize::new(0);

fn unique(kind: &str) -> String {
    format!("{kind}-{}", NAMES.fetch_add(1, Ordering::Relaxed))
}

fn settings(moto: &Moto, bucket: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    moto::s3_settings(&moto.endpoint(), bucket, extra)
}

fn moto_grants(moto: &Moto) -> Grants {
    moto::endpoint_grants(&moto.endpoint())
}

async fn open(moto: &Moto, bucket: &str, extra: &[(&str, &str)]) -> Backend {
    moto::open_s3(&moto.endpoint(), bucket, extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_plugin_conforms_with_lock_files() {
    let Some(moto) = Moto::start_or_skip("s3_plugin_conforms_with_lock_files") else {
        return;
    };
    let plugin = common::builtin("s3").await;
    let report = conformance::run(|| {
        let bucket = unique("conformance");
        moto.create_bucket(&bucket);
        plugin.open(settings(&moto, &bucket, &[]), moto_grants(&moto))
    })
    .await;
    common::assert_conforms("s3 (lockfile)", &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_plugin_conforms_with_dynamodb_locks() {
    let Some(moto) = Moto::start_or_skip("s3_plugin_conforms_with_dynamodb_locks") else {
        return;
    };
    let plugin = common::builtin("s3").await;
    let endpoint = moto.endpoint();
    for lock in ["dynamodb", "both"] {
        let report = conformance::run(|| {
            let (bucket, table) = (unique("conformance"), unique("locks"));
            moto.create_bucket(&bucket);
            moto.create_lock_table(&table);
            let extra = [
                ("lock", lock),
                ("dynamodb_table", table.as_str()),
                ("dynamodb_endpoint", endpoint.as_str()),
            ];
            plugin.open(settings(&moto, &bucket, &extra), moto_grants(&moto))
        })
        .await;
        common::assert_conforms(&format!("s3 ({lock})"), &report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_thousand_objects_are_listed_through_pages() {
    let Some(moto) = Moto::start_or_skip("more_than_a_thousand_objects_are_listed_through_pages")
    else {
        return;
    };
    let bucket = unique("paging");
    moto.create_bucket(&bucket);
    let backend = open(&moto, &bucket, &[]).await;
    let mut expected: Vec<String> = (0..1203).map(|i| format!("many/{i:05}")).collect();
    for path in &expected {
        backend
            .write(path, path.as_bytes().to_vec(), Precondition::None)
            .await
            .unwrap();
    }
    expected.sort();
    assert_eq!(backend.list_all("many/").await.unwrap(), expected);
    // The objects really are in the bucket, under the plugin's prefix for raw paths.
    let keys = moto.list_keys(&bucket, "stateplug/many/");
    assert_eq!(keys.len(), 1203);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_encryption_settings_reach_the_server() {
    let Some(moto) = Moto::start_or_skip("server_side_encryption_settings_reach_the_server") else {
        return;
    };
    let bucket = unique("sse");
    moto.create_bucket(&bucket);
    let path = "default/terraform.tfstate";

    let sse_s3 = open(
        &moto,
        &bucket,
        &[("encrypt", "true"), ("key", "s3.tfstate")],
    )
    .await;
    sse_s3
        .write(path, b"{}".to_vec(), Precondition::None)
        .await
        .unwrap();
    let head = moto.head_object(&bucket, "s3.tfstate");
    assert_eq!(head["ServerSideEncryption"], "AES256", "{head}");

    let kms_key = "arn:aws:kms:us-east-1:123456789012:key/stateplug-test";
    let sse_kms = open(
        &moto,
        &bucket,
        &[("kms_key_id", kms_key), ("key", "kms.tfstate")],
    )
    .await;
    sse_kms
        .write(path, b"{}".to_vec(), Precondition::None)
        .await
        .unwrap();
    let head = moto.head_object(&bucket, "kms.tfstate");
    assert_eq!(head["ServerSideEncryption"], "aws:kms", "{head}");
    assert_eq!(head["SSEKMSKeyId"], kms_key, "{head}");

    let plain = open(&moto, &bucket, &[("key", "plain.tfstate")]).await;
    plain
        .write(path, b"{}".to_vec(), Precondition::None)
        .await
        .unwrap();
    assert!(moto.head_object(&bucket, "plain.tfstate")["ServerSideEncryption"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_hosts_that_are_not_granted_never_leave_the_host() {
    let Some(moto) = Moto::start_or_skip("requests_to_hosts_that_are_not_granted_never_leave")
    else {
        return;
    };
    let bucket = unique("never-reached");
    moto.create_bucket(&bucket);
    let grants = Grants {
        allow_hosts: vec!["s3.example.com".parse().unwrap()],
        ..Grants::default()
    };
    let backend = common::builtin("s3")
        .await
        .open(settings(&moto, &bucket, &[]), grants)
        .await
        .unwrap();
    let before = moto.log().matches(&bucket).count();
    let error = backend
        .write("a/b", b"x".to_vec(), Precondition::None)
        .await
        .expect_err("moto is not granted");
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{}", moto.port())) && text.contains("allow_hosts"),
        "{text}"
    );
    assert_eq!(
        moto.log().matches(&bucket).count(),
        before,
        "{}",
        moto.log()
    );
    assert!(moto.list_keys(&bucket, "").is_empty());
}

/// Terraform and stateplug on the same bucket and DynamoDB table: each reads what the other
/// wrote, and Terraform honours stateplug's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_s3_backend_and_stateplug_share_state_and_locks() {
    let test = "terraform_s3_backend_and_stateplug_share_state_and_locks";
    let Some(moto) = Moto::start_or_skip(test) else {
        return;
    };
    let Some(terraform) = terraform_or_skip(test) else {
        return;
    };
    let (bucket, table, key) = ("tf-shared", "tf-locks", "team/terraform.tfstate");
    moto.create_bucket(bucket);
    moto.create_lock_table(table);
    let endpoint = moto.endpoint();
    let extra = [
        ("key", key),
        ("lock", "dynamodb"),
        ("dynamodb_table", table),
        ("dynamodb_endpoint", endpoint.as_str()),
    ];
    let store = Workspaces::new(open(&moto, bucket, &extra).await, Default::default());

    // Terraform writes the default workspace and a `dev` workspace; stateplug reads both.
    let project = moto::terraform_s3_project(&terraform, &moto, bucket, key, table);
    assert!(project.apply("from terraform").status.success());
    let default_state = project.pull();
    project.ok(&["workspace", "new", "-no-color", "dev"]);
    assert!(project.apply("dev from terraform").status.success());
    let dev_state = project.pull();
    let read = |data: Vec<u8>| serde_json::from_slice::<Value>(&data).unwrap();
    let ours = store.get("default").await.unwrap().expect("default state");
    assert_eq!(read(ours.data), default_state);
    let ours = store.get("dev").await.unwrap().expect("dev state");
    assert_eq!(read(ours.data), dev_state);
    assert_eq!(store.names().await.unwrap(), ["default", "dev"]);

    // stateplug writes the next version of dev; Terraform pulls it with no digest complaint.
    let mut next = dev_state.clone();
    next["serial"] = json!(dev_state["serial"].as_u64().unwrap() + 1);
    next["outputs"]["greeting"]["value"] = json!("dev from stateplug");
    store
        .put(
            "dev",
            next.to_string().into_bytes(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let digest = moto
        .get_item(table, &moto::tf_s3_digest_id(bucket, key, "dev"))
        .expect("digest item");
    assert_eq!(
        digest["Digest"],
        md5_hex(&moto.get_object(bucket, &moto::tf_s3_state_key(key, "dev")))
    );
    let pulled = project.run(&["state", "pull"]);
    let pulled_text = output_text(&pulled);
    assert!(pulled.status.success(), "{pulled_text}");
    assert!(
        !pulled_text.contains(moto::TF_S3_BAD_DIGEST),
        "{pulled_text}"
    );
    assert_eq!(project.pull(), next);

    // While stateplug holds the DynamoDB lock, Terraform refuses to apply and names it.
    let lock = LockInfo {
        id: "stateplug-lock-1".into(),
        operation: "OperationTypeApply".into(),
        who: "ops@stateplug".into(),
        ..LockInfo::default()
    };
    store.lock("dev", lock).await.unwrap();
    let refused = project.apply("blocked");
    let text = output_text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains(moto::TF_S3_LOCK_HELD), "{text}");
    assert!(
        text.contains("stateplug-lock-1") && text.contains("ops@stateplug"),
        "{text}"
    );
    store.unlock("dev", "stateplug-lock-1").await.unwrap();
    assert!(project.apply("after unlock").status.success());
    assert_eq!(
        project.pull()["outputs"]["greeting"]["value"],
        "after unlock"
    );

    // And a lock Terraform holds is seen by stateplug with Terraform's LockInfo.
    moto.put_item(
        table,
        &moto::tf_s3_lock_item(bucket, key, "default", "tf-lock-9", "tf@ci"),
    );
    let held = store
        .lock_info("default")
        .await
        .unwrap()
        .expect("lock seen");
    assert_eq!(
        (held.id.as_str(), held.who.as_str()),
        ("tf-lock-9", "tf@ci")
    );
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// `stateplug plugins check s3` certifies the plugin on one bucket (cases share it and the
/// suite empties it after each), and refuses a bucket that already holds data.
#[test]
fn plugins_check_runs_on_one_empty_bucket_and_refuses_a_used_one() {
    let Some(moto) = Moto::start_or_skip("plugins_check_runs_on_one_empty_bucket") else {
        return;
    };
    let check = |bucket: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stateplug"));
        command.args(["plugins", "check", "s3"]);
        for (key, value) in settings(&moto, bucket, &[]) {
            command.args(["-c", &format!("{key}={value}")]);
        }
        let dir = tempfile::tempdir().unwrap();
        command.current_dir(dir.path()).output().unwrap()
    };
    moto.create_bucket("check-empty");
    let out = check("check-empty");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(
        moto.list_keys("check-empty", "").is_empty(),
        "the suite left objects"
    );

    moto.create_bucket("check-used");
    moto.put_object("check-used", "stateplug/keep/me", b"precious");
    let out = check("check-used");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("the store is not empty (it holds `keep/me`)"),
        "{text}"
    );
    assert_eq!(
        moto.get_object("check-used", "stateplug/keep/me"),
        b"precious"
    );
}

/// moto accepts SSE-C headers and ignores them, so the customer key is checked at the wire:
/// a real HTTP server on 127.0.0.1 that records each request's head and answers like S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_key_is_sent_with_every_write_and_read() {
    let target = Target::start(Answer::Body("{}"));
    let endpoint = target.endpoint();

    let key = [7u8; 32];
    let key_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(key)
    };
    let customer_key = [("sse_customer_key", key_b64.as_str())];
    let backend = moto::open_s3(&endpoint, "sse-c-bucket", &customer_key).await;
    backend
        .write(
            "default/terraform.tfstate",
            b"{}".to_vec(),
            Precondition::None,
        )
        .await
        .unwrap();
    assert_eq!(
        backend
            .read("default/terraform.tfstate")
            .await
            .unwrap()
            .data,
        b"{}"
    );

    let key_md5 = {
        use base64::Engine;
        use md5::Digest;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(key))
    };
    let heads = target.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for (head, method) in heads.iter().zip(["PUT ", "GET "]) {
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with(&method.to_ascii_lowercase()), "{head}");
        for header in [
            "x-amz-server-side-encryption-customer-algorithm: aes256".to_string(),
            format!(
                "x-amz-server-side-encryption-customer-key: {}",
                key_b64.to_ascii_lowercase()
            ),
            format!(
                "x-amz-server-side-encryption-customer-key-md5: {}",
                key_md5.to_ascii_lowercase()
            ),
        ] {
            assert!(head.contains(&header), "{header} missing in:\n{head}");
        }
    }
}
