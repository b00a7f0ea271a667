//! A real S3 + DynamoDB server for the tests: moto (`moto[server]` from PyPI, installed by
//! `.ci/run` into `target/ci-venv`), started on a free 127.0.0.1 port per test; an
//! independent client (boto3 through `tests/support/s3tool.py`) to look at what was stored;
//! and Terraform 1.0.3's `s3` backend pointed at it (recipe: `tests/support/TERRAFORM_S3.md`).
//!
//! moto and the client run with a cleared environment: fake credentials, no AWS config files,
//! no instance metadata, and proxies pointing at a closed local port, so nothing of a real AWS
//! set-up is read and nothing leaves 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use stateplug_runtime::{Backend, Grants, HostGrant};

use super::terraform::{Project, main_tf};
use super::workspace_root;

/// `moto_server`: `STATEPLUG_MOTO_SERVER`, else the one `.ci/run` installed in the venv; it
/// says moto is installed (the tests run moto's server through `tests/support/moto_serial.py`).
pub fn moto_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STATEPLUG_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    Some(workspace_root().join("target/ci-venv/bin/moto_server")).filter(|p| p.is_file())
}

/// The python with boto3: `STATEPLUG_PYTHON`, else the venv's.
pub fn python_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STATEPLUG_PYTHON") {
        return Some(PathBuf::from(path));
    }
    Some(workspace_root().join("target/ci-venv/bin/python")).filter(|p| p.is_file())
}

/// The client script run by the helpers below.
pub fn s3tool_script() -> PathBuf {
    workspace_root().join("tests/support/s3tool.py")
}

/// Clears `command`'s environment and gives it fake AWS settings only: credentials `test`,
/// region us-east-1, no config files, no instance metadata, proxies on a closed local port
/// (anything proxy-aware that tried to leave 127.0.0.1 fails at once).
pub fn clean_aws_env<'a>(command: &'a mut Command, home: &Path) -> &'a mut Command {
    let dead_proxy = "http://127.0.0.1:9";
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HTTP_PROXY", dead_proxy)
        .env("HTTPS_PROXY", dead_proxy)
        .env("http_proxy", dead_proxy)
        .env("https_proxy", dead_proxy)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
}

/// A moto server process on a free 127.0.0.1 port, killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    python: PathBuf,
    /// HOME of moto and of the client; holds `moto.log` (moto's stdout and stderr) and
    /// `s3tool.log` (the client's stderr).
    dir: tempfile::TempDir,
    /// `s3tool.py --serve`, started on first use and kept (one python start-up per server).
    client: Mutex<Option<Client>>,
}

/// A running `s3tool.py --serve`: one JSON request per line in, one answer per line out.
struct Client {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl Moto {
    /// Starts moto, or returns `None` with a printed note when it is not installed; panics
    /// instead when `CI` is set (CI must not skip these tests).
    pub fn start_or_skip(test: &str) -> Option<Moto> {
        match (moto_server_binary(), python_binary()) {
            (Some(_), Some(python)) => Some(Moto::start_with(&python)),
            _ if std::env::var_os("CI").is_some() => panic!(
                "CI is set but moto is not installed: `bash .ci/run` installs moto[server] and \
                 boto3 into target/ci-venv (or set STATEPLUG_MOTO_SERVER and STATEPLUG_PYTHON)"
            ),
            _ => {
                eprintln!(
                    "SKIPPED {test}: moto not found; run `bash .ci/run` once (it installs \
                     moto[server] into target/ci-venv) or set STATEPLUG_MOTO_SERVER and \
                     STATEPLUG_PYTHON"
                );
                None
            }
        }
    }

    /// Starts moto's server on a free port of 127.0.0.1 with `python` (through
    /// `tests/support/moto_serial.py`: moto's conditional writes are atomic only when its
    /// requests take effect one at a time) and waits until it answers HTTP. The port is found
    /// by binding port 0 and releasing it, so another process may take it in between: then
    /// moto exits and we try another port (three attempts).
    pub fn start_with(python: &Path) -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("moto.log");
        let mut failures = String::new();
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut command = Command::new(python);
            clean_aws_env(&mut command, dir.path());
            let mut child = command
                .arg(workspace_root().join("tests/support/moto_serial.py"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    failures.push_str(&format!("port {port}: exited with {status}:\n{log}\n"));
                    break;
                }
                if answers(port) {
                    return Moto {
                        child,
                        port,
                        python: python.to_path_buf(),
                        dir,
                        client: Mutex::new(None),
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("moto did not answer on port {port} within 60 s:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto did not start:\n{failures}");
    }

    /// `http://127.0.0.1:PORT`: the S3 and the DynamoDB endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// moto's output so far (one line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Runs an `s3tool.py` command (`tests/support/s3tool.py` lists them) with `stdin` as its
    /// body: `Ok(answer)`, or `Err({"Code", "Message", "HTTPStatusCode"})` when moto refused
    /// the request. Panics when the client itself fails.
    pub fn s3tool(&self, args: &[&str], stdin: &[u8]) -> Result<Value, Value> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        let client = client.get_or_insert_with(|| self.start_client());
        let request = json!({
            "args": args,
            "stdin_b64": base64::engine::general_purpose::STANDARD.encode(stdin),
        });
        let mut answer = String::new();
        let sent = writeln!(client.requests, "{request}").and_then(|()| client.requests.flush());
        if sent.is_err() || client.answers.read_line(&mut answer).unwrap_or(0) == 0 {
            let log = std::fs::read_to_string(self.dir.path().join("s3tool.log"));
            panic!(
                "s3tool {args:?}: the client died:\n{}",
                log.unwrap_or_default()
            );
        }
        let mut answer: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("s3tool {args:?}: {e} in {answer:?}"));
        if let Some(failed) = answer.get("failed") {
            panic!(
                "s3tool {args:?} failed:\n{}",
                failed.as_str().unwrap_or_default()
            );
        }
        match answer.get_mut("error") {
            Some(refused) => Err(refused.take()),
            None => Ok(answer["ok"].take()),
        }
    }

    fn start_client(&self) -> Client {
        let log = std::fs::File::create(self.dir.path().join("s3tool.log")).unwrap();
        let mut command = Command::new(&self.python);
        clean_aws_env(&mut command, self.dir.path());
        let mut child = command
            .arg(s3tool_script())
            .arg(self.endpoint())
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python.display()));
        Client {
            requests: child.stdin.take().unwrap(),
            answers: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    /// Like `s3tool`, panicking when moto refused the request.
    fn ok(&self, args: &[&str], stdin: &[u8]) -> Value {
        self.s3tool(args, stdin)
            .unwrap_or_else(|e| panic!("s3tool {args:?} refused: {e}"))
    }

    pub fn create_bucket(&self, name: &str) {
        self.ok(&["create-bucket", name], b"");
    }

    /// A DynamoDB table as Terraform's s3 backend wants it: hash key `LockID` (S),
    /// PAY_PER_REQUEST.
    pub fn create_lock_table(&self, name: &str) {
        self.ok(&["create-lock-table", name], b"");
    }

    /// HeadObject's answer (`ContentLength`, `ETag`, `ServerSideEncryption`, `SSEKMSKeyId`,
    /// `Metadata`, ...; dates as ISO 8601 strings). moto 5.2.5 ignores SSE-C: it neither
    /// stores nor reports `SSECustomerAlgorithm`.
    pub fn head_object(&self, bucket: &str, key: &str) -> Value {
        self.ok(&["head-object", bucket, key], b"")
    }

    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        decode_body(&self.ok(&["get-object", bucket, key], b""))
    }

    /// PutObject; returns the answer (`ETag`, and `VersionId` on a versioned bucket).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Value {
        self.ok(&["put-object", bucket, key], body)
    }

    /// Every key under `prefix`, in S3's order, following ListObjectsV2 pagination.
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        serde_json::from_value(self.ok(&["list-keys", bucket, prefix], b"")).unwrap()
    }

    /// The item with this `LockID` as plain JSON (`{"LockID": ..., "Info": ...}`), read
    /// consistently.
    pub fn get_item(&self, table: &str, lock_id: &str) -> Option<Value> {
        Some(self.ok(&["get-item", table, lock_id], b"")).filter(|v| !v.is_null())
    }

    /// Puts an item given as plain JSON (strings become `S` attributes).
    pub fn put_item(&self, table: &str, item: &Value) {
        self.ok(&["put-item", table, &item.to_string()], b"");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut client) = self.client.get_mut().ok().and_then(Option::take) {
            let _ = client.child.kill();
            let _ = client.child.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something on `port` answers an HTTP request (moto's dashboard API) with a status
/// line.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

fn decode_body(answer: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(answer["body_b64"].as_str().expect("body_b64"))
        .unwrap()
}

// ---- The built-in s3 plugin on moto ----

/// Settings of the built-in s3 plugin for `bucket` at `endpoint` (path style, moto's fake
/// keys), plus `extra`.
pub fn s3_settings(endpoint: &str, bucket: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let base = [
        ("bucket", bucket),
        ("endpoint", endpoint),
        ("use_path_style", "true"),
        ("region", "us-east-1"),
        ("access_key", "test"),
        ("secret_key", "test"),
    ];
    base.iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Grants that let a plugin reach `endpoint` and nothing else (what the config derives from
/// `endpoint` by default).
pub fn endpoint_grants(endpoint: &str) -> Grants {
    Grants {
        allow_hosts: HostGrant::from_endpoint(endpoint).unwrap(),
        ..Grants::default()
    }
}

/// The built-in s3 plugin opened on `bucket` at `endpoint`, granted that endpoint only.
pub async fn open_s3(endpoint: &str, bucket: &str, extra: &[(&str, &str)]) -> Backend {
    super::builtin("s3")
        .await
        .open(
            s3_settings(endpoint, bucket, extra),
            endpoint_grants(endpoint),
        )
        .await
        .expect("s3 plugin opens")
}

// ---- Terraform 1.0.3's s3 backend against moto (tests/support/TERRAFORM_S3.md) ----

/// What Terraform prints (stderr) when the DynamoDB lock is held by someone else; the
/// holder's LockInfo follows (`ID:        <id>`, `Who:       <who>`, ...).
pub const TF_S3_LOCK_HELD: &str = "Error: Error acquiring the state lock";
/// What Terraform prints when the `-md5` digest in DynamoDB does not match the S3 object,
/// after retrying for 10 s (fixed in 1.0.3: no setting shortens it).
pub const TF_S3_BAD_DIGEST: &str = "state data in S3 does not have the expected content";

/// The S3 key Terraform uses for `key` in a workspace (`default`: the key itself).
pub fn tf_s3_state_key(key: &str, workspace: &str) -> String {
    if workspace == "default" {
        key.to_string()
    } else {
        format!("env:/{workspace}/{key}")
    }
}

/// The DynamoDB `LockID` of the lock item of a workspace's state: `<bucket>/<state key>`.
pub fn tf_s3_lock_id(bucket: &str, key: &str, workspace: &str) -> String {
    format!("{bucket}/{}", tf_s3_state_key(key, workspace))
}

/// The DynamoDB `LockID` of the item holding the state's MD5 (`Digest`).
pub fn tf_s3_digest_id(bucket: &str, key: &str, workspace: &str) -> String {
    format!("{}-md5", tf_s3_lock_id(bucket, key, workspace))
}

/// A lock item as Terraform writes it: `LockID` and `Info` (LockInfo JSON as a string).
pub fn tf_s3_lock_item(bucket: &str, key: &str, workspace: &str, id: &str, who: &str) -> Value {
    let path = tf_s3_lock_id(bucket, key, workspace);
    let info = json!({"ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": who,
                      "Version": "1.0.3", "Created": "2026-11-23T10:00:00Z", "Path": path});
    json!({"LockID": path, "Info": info.to_string()})
}

/// The `backend "s3"` block for moto at `endpoint`.
pub fn terraform_s3_backend(endpoint: &str, bucket: &str, key: &str, table: &str) -> String {
    format!(
        r#"terraform {{
  backend "s3" {{
    bucket                      = "{bucket}"
    key                         = "{key}"
    region                      = "us-east-1"
    endpoint                    = "{endpoint}"
    dynamodb_endpoint           = "{endpoint}"
    dynamodb_table              = "{table}"
    force_path_style            = true
    skip_credentials_validation = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
  }}
}}
"#
    )
}

/// A Terraform project whose s3 backend points at moto, every command run in a clean AWS
/// environment (fake credentials, no metadata service); `init` has run. The bucket and the
/// table must exist.
pub fn terraform_s3_project(
    terraform: &Path,
    moto: &Moto,
    bucket: &str,
    key: &str,
    table: &str,
) -> Project {
    let backend = terraform_s3_backend(&moto.endpoint(), bucket, key, table);
    Project::init(terraform, &main_tf(&backend), |command, dir| {
        clean_aws_env(command, dir);
    })
}
