//! `serve` over https: rustls (with ring) behind axum-server, which runs each TLS handshake in a
//! task of its own, so a slow client never holds up the accept loop.
//!
//! The certificate chain (`tls_cert`), its key (`tls_key`) and the CAs of client certificates
//! (`client_ca`, mutual TLS) are read when the server starts and again by [`Tls::reload`] (on
//! SIGHUP): connections already made keep what they were accepted with, new handshakes get the
//! new files. A reload that fails changes nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;

use crate::config::TlsSettings;

/// A TLS file that cannot be used: names the setting, the file, what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The TLS configuration of a running server: its files, and what new handshakes use.
#[derive(Clone)]
pub struct Tls {
    settings: TlsSettings,
    current: RustlsConfig,
}

impl Tls {
    /// Reads the files `settings` names.
    pub fn load(settings: &TlsSettings) -> Result<Tls, TlsError> {
        Ok(Tls {
            settings: settings.clone(),
            current: RustlsConfig::from_config(Arc::new(server_config(settings)?)),
        })
    }

    /// Reads the files again: on success new handshakes use them; on failure the previous
    /// configuration stays (and the error says which file is wrong).
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        self.current.reload_from_config(Arc::new(config));
        Ok(())
    }

    /// The files it reads.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

/// Serves `app` over TLS until `shutdown` resolves; requests in flight finish first. Handlers
/// can extract `ConnectInfo<SocketAddr>`, as over plain HTTP.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: &Tls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        // No deadline: like the plain server, wait for the requests in flight.
        stop.graceful_shutdown(None);
    });
    axum_server::Server::<SocketAddr>::from_listener(listener)
        .acceptor(RustlsAcceptor::new(tls.current.clone()))
        .handle(handle)
        // The same protocol as the plain server (whose axum has only HTTP/1).
        .http1_only()
        .accept_error_handler(|client, error| match client {
            Some(client) => tracing::info!(%client, "TLS handshake failed: {error}"),
            None => tracing::warn!("accepting a connection failed: {error}"),
        })
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

fn server_config(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    // Named explicitly: no process-wide default provider is installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("tls_cert", &settings.cert)?;
    let key = private_key(&settings.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("rustls refuses its default protocol versions: {e}")))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates("client_ca", path)? {
                roots.add(certificate).map_err(|e| {
                    TlsError(format!(
                        "`server.client_ca` = {}: a certificate in it cannot be a CA of client \
                         certificates ({e}); give the PEM certificates of the CAs that sign them",
                        path.display()
                    ))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| {
                    TlsError(format!(
                        "`server.client_ca` = {}: cannot check client certificates with it \
                         ({e})",
                        path.display()
                    ))
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        let (cert, key) = (settings.cert.display(), settings.key.display());
        TlsError(match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "`server.tls_key` = {key} is not the private key of the certificate in \
                 `server.tls_cert` = {cert}: give the key the certificate was issued for (the \
                 server's own certificate comes first in the chain)"
            ),
            other => format!(
                "`server.tls_cert` = {cert} with `server.tls_key` = {key} cannot be used: \
                 {other}"
            ),
        })
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        TlsError(format!(
            "`server.{setting}` = {}: cannot read it: {e}",
            path.display()
        ))
    })
}

/// Every `CERTIFICATE` block of a PEM file (other blocks are skipped), at least one.
fn certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(setting, path)?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "`server.{setting}` = {}: not a readable PEM file ({e})",
                path.display()
            ))
        })?;
    if certificates.is_empty() {
        return Err(TlsError(format!(
            "`server.{setting}` = {}: no certificate in it: give a PEM file of \
             `-----BEGIN CERTIFICATE-----` blocks",
            path.display()
        )));
    }
    Ok(certificates)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read("tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        TlsError(match e {
            pem::Error::NoItemsFound => format!(
                "`server.tls_key` = {}: no private key in it: give the PEM file of the \
                 certificate's key (`-----BEGIN PRIVATE KEY-----`, or RSA or EC PRIVATE KEY)",
                path.display()
            ),
            other => format!(
                "`server.tls_key` = {}: not a readable PEM private key ({other})",
                path.display()
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1 and its key, PEM.
    fn certificate() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    /// Loads cert, key and client CA (`None`: not configured) written to files; the error.
    fn refusal(cert: &str, key: &str, client_ca: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let settings = TlsSettings {
            cert: write("cert.pem", cert),
            key: write("key.pem", key),
            client_ca: client_ca.map(|text| write("ca.pem", text)),
        };
        match Tls::load(&settings) {
            Ok(_) => panic!("loaded {cert:?} / {key:?} / {client_ca:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The audit trail names the client's address: both servers must hand it to handlers.
    #[tokio::test]
    async fn handlers_see_the_client_address_over_tls_and_plain_http() {
        use axum::extract::ConnectInfo;
        let app = || {
            Router::new().route(
                "/",
                axum::routing::get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move {
                    client.ip().to_string()
                }),
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate();
        let settings = TlsSettings {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: None,
        };
        std::fs::write(&settings.cert, cert).unwrap();
        std::fs::write(&settings.key, key).unwrap();
        let tls = Tls::load(&settings).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(());
        let until_stopped = || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.changed().await;
            }
        };
        let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secure_url = format!("https://{}/", secure.local_addr().unwrap());
        let shutdown = until_stopped();
        let served = tokio::spawn(async move { serve_tls(secure, app(), &tls, shutdown).await });
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_url = format!("http://{}/", plain.local_addr().unwrap());
        let plain_served = tokio::spawn(super::super::serve(plain, app(), until_stopped()));
        // Only the address matters here, not whom the certificate names.
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        for url in [secure_url, plain_url] {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            assert_eq!(response.text().await.unwrap(), "127.0.0.1", "{url}");
        }
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
        plain_served.await.unwrap().unwrap();
    }

    #[test]
    fn usable_files_load_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate();
        let settings = TlsSettings {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: Some(dir.path().join("cert.pem")),
        };
        std::fs::write(&settings.cert, &cert).unwrap();
        std::fs::write(&settings.key, &key).unwrap();
        let tls = Tls::load(&settings).unwrap();
        tls.reload().unwrap();
        std::fs::remove_file(&settings.key).unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.contains("`server.tls_key`") && error.contains("cannot read it"));
    }

    #[test]
    fn unusable_files_are_named_with_what_is_wrong() {
        let (cert, key) = certificate();
        let (_, other_key) = certificate();
        let missing = {
            let settings = TlsSettings {
                cert: "/nonexistent/cert.pem".into(),
                key: "/nonexistent/key.pem".into(),
                client_ca: None,
            };
            Tls::load(&settings).err().unwrap().to_string()
        };
        let cases = [
            (
                missing,
                "`server.tls_cert` = /nonexistent/cert.pem: cannot read it",
            ),
            (
                refusal("not pem at all", &key, None),
                "cert.pem: no certificate in it",
            ),
            (refusal(&key, &key, None), "cert.pem: no certificate in it"),
            (refusal(&cert, &cert, None), "key.pem: no private key in it"),
            (
                refusal(&cert, &other_key, None),
                "key.pem is not the private key of the certificate in `server.tls_cert`",
            ),
            (
                refusal(&cert, &key, Some("")),
                "ca.pem: no certificate in it",
            ),
            (
                refusal(
                    "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
                    &key,
                    None,
                ),
                "cert.pem: not a readable PEM file",
            ),
        ];
        for (error, expected) in cases {
            assert!(error.contains(expected), "{expected:?} not in: {error}");
        }
    }
}
