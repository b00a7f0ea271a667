//! `stateplug serve` over https: Terraform trusting a CA of the test's own, mutual TLS, and the
//! reload of the certificate on SIGHUP. The CAs and certificates are made by rcgen
//! ([`common::postgres::Ca`]) into the test's directory.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::common::Server;
use crate::common::postgres::Ca;
use crate::common::terraform::terraform_or_skip;

/// How long a test waits for the server to act on a signal before failing.
const PATIENCE: Duration = Duration::from_secs(10);

/// A server's TLS files in its directory: `cert.pem`, `key.pem` and the CA's `ca.pem`.
struct Files {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Files {
    /// A CA and a server certificate for 127.0.0.1 signed by it; returns the certificate, PEM.
    fn new() -> (Files, String) {
        let files = Files {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::generate(),
        };
        std::fs::write(files.path("ca.pem"), files.ca.pem()).unwrap();
        let cert = files.new_certificate();
        (files, cert)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces `cert.pem` and `key.pem` with a new certificate (and key) from the same CA;
    /// returns the certificate, PEM.
    fn new_certificate(&self) -> String {
        let (cert, key) = self.ca.server_certificate("127.0.0.1");
        std::fs::write(self.path("cert.pem"), &cert).unwrap();
        std::fs::write(self.path("key.pem"), key).unwrap();
        cert
    }

    /// `stateplug.toml`: the memory plugin, TLS with these files, and `extra` server lines.
    fn write_config(&self, extra: &str) {
        let text = format!(
            "[backends.mem]\nplugin = \"memory\"\n[server]\ntls_cert = \"cert.pem\"\n\
             tls_key = \"key.pem\"\n{extra}"
        );
        std::fs::write(self.path("stateplug.toml"), text).unwrap();
    }

    /// A server on these files whose log goes to `serve.log`.
    fn start(&self) -> Server {
        let log = std::fs::File::create(self.path("serve.log")).unwrap();
        Server::start_with_stderr(self.dir.path(), &[], Stdio::from(log))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("serve.log")).unwrap()
    }
}

/// An https client trusting `ca_pem` only, with a client certificate when `identity` is given
/// (certificate and key, PEM), that records the server's certificate of each response.
fn client(ca_pem: &str, identity: Option<(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_info(true);
    if let Some((cert, key)) = identity {
        builder = builder
            .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// GET /api/workspaces: the status and the server's certificate (DER) on that connection.
async fn workspaces(
    client: &reqwest::Client,
    server: &Server,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let response = client
        .get(format!("{}/api/workspaces", server.url))
        .send()
        .await?;
    let certificate = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("a TLS connection has the server's certificate")
        .to_vec();
    let status = response.status().as_u16();
    // Read to the end, so the connection goes back to the client's pool for the next request.
    response.bytes().await?;
    Ok((status, certificate))
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The whole chain of an error's causes, for assertions on what failed.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{error}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Waits (at most [`PATIENCE`]) until the server's log contains `line`.
fn wait_for_log(files: &Files, line: &str) -> String {
    let start = Instant::now();
    loop {
        let log = files.log();
        if log.contains(line) {
            return log;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the log never said {line:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_uses_the_server_over_https_trusting_its_ca() {
    let Some(terraform) = terraform_or_skip("terraform_uses_the_server_over_https_trusting_its_ca")
    else {
        return;
    };
    let (files, _) = Files::new();
    files.write_config("");
    let server = files.start();
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    // Terraform (Go) trusts the CA through SSL_CERT_FILE; the test's own checks through the
    // client.
    let ca_file = files.path("ca.pem");
    crate::terraform::terraform_workflow_with(
        &terraform,
        &server,
        None,
        &client(files.ca.pem(), None),
        &[("SSL_CERT_FILE", ca_file.as_path())],
    )
    .await;
    let address = server.url.trim_start_matches("https://");
    let log = files.log();
    assert!(
        log.contains(&format!(
            "address        = \"https://{address}/state/default\""
        )),
        "the Terraform block printed at start uses https:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_from_client_ca() {
    let (files, _) = Files::new();
    files.write_config("client_ca = \"ca.pem\"\n");
    let server = files.start();
    let ca = files.ca.pem();

    let signed = client(ca, Some(files.ca.client_certificate("ci")));
    let (status, _) = workspaces(&signed, &server).await.unwrap();
    assert_eq!(status, 200, "a client with a certificate from client_ca");

    // Another CA of the same name: only its key differs.
    let stranger = Ca::generate().client_certificate("ci");
    for (who, refused, alert) in [
        (
            "no client certificate",
            client(ca, None),
            "received fatal alert: CertificateRequired",
        ),
        (
            "a certificate from another CA",
            client(ca, Some(stranger)),
            "received fatal alert",
        ),
    ] {
        let error = match workspaces(&refused, &server).await {
            Ok((status, _)) => panic!("{who}: answered {status}, not refused at the handshake"),
            Err(error) => error,
        };
        assert!(error.status().is_none(), "{who}: {error}");
        // TLS 1.3: the client finishes its side of the handshake first, then reads the
        // server's alert refusing its certificate.
        let text = causes(&error);
        assert!(text.contains(alert), "{who}: not a TLS refusal: {text}");
    }
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_connections() {
    let (files, first) = Files::new();
    files.write_config("");
    let mut server = files.start();
    let ca = files.ca.pem();

    let kept = client(ca, None);
    let (status, seen) = workspaces(&kept, &server).await.unwrap();
    assert_eq!((status, seen), (200, der(&first)));

    let second = files.new_certificate();
    server.signal("HUP");
    // The reload happens some time after the signal: new connections until one sees it.
    let start = Instant::now();
    loop {
        let (status, seen) = workspaces(&client(ca, None), &server).await.unwrap();
        assert_eq!(status, 200);
        if seen == der(&second) {
            break;
        }
        assert_eq!(seen, der(&first), "neither the old nor the new certificate");
        assert!(
            start.elapsed() < PATIENCE,
            "no new certificate after SIGHUP:\n{}",
            files.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection made before still answers, with the certificate it was made with.
    let (status, seen) = workspaces(&kept, &server).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(seen, der(&first), "the kept connection was replaced");

    // A broken file on SIGHUP: logged, and the server goes on with the certificate it has.
    std::fs::write(files.path("cert.pem"), "not a certificate").unwrap();
    server.signal("HUP");
    let log = wait_for_log(&files, "TLS files not reloaded");
    let cert_file = files.path("cert.pem");
    assert!(
        log.contains(&format!(
            "`server.tls_cert` = {}: no certificate in it",
            cert_file.display()
        )),
        "{log}"
    );
    let (status, seen) = workspaces(&client(ca, None), &server).await.unwrap();
    assert_eq!((status, seen), (200, der(&second)));
    assert!(server.running());
    assert!(server.stop().success(), "SIGTERM still stops it gracefully");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_tls_is_logged_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files {
        dir,
        ca: Ca::generate(),
    };
    std::fs::write(
        files.path("stateplug.toml"),
        "[backends.mem]\nplugin = \"memory\"\n",
    )
    .unwrap();
    let mut server = files.start();
    assert!(server.url.starts_with("http://"), "{}", server.url);
    server.signal("HUP");
    wait_for_log(&files, "SIGHUP ignored: no TLS is configured");
    assert!(server.running(), "SIGHUP killed the server");
    let response = reqwest::get(format!("{}/api/workspaces", server.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let (files, _) = Files::new();
    files.write_config("");
    let server = files.start();
    let plain = server.url.replacen("https://", "http://", 1);
    let error = reqwest::get(format!("{plain}/api/workspaces"))
        .await
        .expect_err("plain HTTP got an HTTP answer from the TLS port");
    assert!(error.status().is_none(), "{error}");
    // Still serving https afterwards.
    let (status, _) = workspaces(&client(files.ca.pem(), None), &server)
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[test]
fn serve_refuses_to_start_on_unusable_tls_files() {
    let (files, _) = Files::new();
    let (_, other_key) = files.ca.server_certificate("127.0.0.1");
    std::fs::write(files.path("other-key.pem"), other_key).unwrap();
    let cases = [
        (
            "tls_cert = \"cert.pem\"\ntls_key = \"other-key.pem\"\n",
            format!(
                "`server.tls_key` = {} is not the private key of the certificate",
                files.path("other-key.pem").display()
            ),
        ),
        (
            "tls_cert = \"missing.pem\"\ntls_key = \"key.pem\"\n",
            format!(
                "`server.tls_cert` = {}: cannot read it",
                files.path("missing.pem").display()
            ),
        ),
        (
            "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nclient_ca = \"key.pem\"\n",
            format!(
                "`server.client_ca` = {}: no certificate in it",
                files.path("key.pem").display()
            ),
        ),
    ];
    for (server_lines, expected) in cases {
        std::fs::write(
            files.path("stateplug.toml"),
            format!("[backends.mem]\nplugin = \"memory\"\n[server]\n{server_lines}"),
        )
        .unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stateplug"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(files.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{server_lines}: started");
        assert!(
            output.stdout.is_empty(),
            "{server_lines}: printed a listening line"
        );
        assert!(stderr.contains(&expected), "{expected:?} not in: {stderr}");
    }
}
