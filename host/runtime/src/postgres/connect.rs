//! Logging in to a granted database: the driver's configuration (the checked address, the
//! statement deadline), TLS per `ssl-mode` through rustls, and the driver's errors in the
//! interface's terms.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::bindings::stateplug::backend::postgres::{ConnectOptions, Error, SqlError, SslMode};
use crate::network::join_host_port;

/// What a pooled connection is for: the checked address and the login. Two plugin
/// connections share pooled ones only when all of it is equal.
#[derive(PartialEq, Eq)]
pub(super) struct Target {
    pub(super) addr: SocketAddr,
    pub(super) host: String,
    pub(super) database: String,
    pub(super) username: String,
    password: String,
    ssl_mode: Mode,
    ssl_root_cert: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

impl Target {
    pub(super) fn new(options: ConnectOptions, addr: SocketAddr) -> Target {
        Target {
            addr,
            host: options.host,
            database: options.database,
            username: options.username,
            password: options.password,
            ssl_mode: match options.ssl_mode {
                SslMode::Disable => Mode::Disable,
                SslMode::Prefer => Mode::Prefer,
                SslMode::Require => Mode::Require,
                SslMode::VerifyFull => Mode::VerifyFull,
            },
            ssl_root_cert: options.ssl_root_cert,
        }
    }

    /// `host:port` as the operator wrote the grant.
    pub(super) fn address(&self) -> String {
        join_host_port(&self.host, self.addr.port())
    }
}

/// Logs in to `target`; the statements it runs are cut off by the server after
/// `statement_timeout`, and nothing here waits longer than `max_wait`.
pub(super) async fn connect(
    backend: &str,
    target: &Target,
    max_wait: Duration,
) -> Result<tokio_postgres::Client, Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .hostaddr(target.addr.ip())
        .port(target.addr.port())
        .dbname(&target.database)
        .user(&target.username)
        .password(&target.password)
        .application_name("stateplug")
        .connect_timeout(max_wait)
        .options(format!("-c statement_timeout={}", max_wait.as_millis()));
    config.ssl_mode(match target.ssl_mode {
        Mode::Disable => DriverSslMode::Disable,
        Mode::Prefer => DriverSslMode::Prefer,
        Mode::Require | Mode::VerifyFull => DriverSslMode::Require,
    });
    let tls = MakeRustlsConnect::new(tls_config(target).map_err(Error::Invalid)?);
    let connecting = tokio::time::timeout(max_wait, config.connect(tls));
    let (client, connection) = match connecting.await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => return Err(login_error(backend, target, &e)),
        Err(_) => {
            return Err(Error::Unavailable(format!(
                "backend `{backend}`: the database at {} did not answer within {max_wait:?}",
                target.address()
            )));
        }
    };
    // The connection is driven by its own task; it ends when the client is dropped or the
    // server goes away (the client then says `is_closed`, and the pool discards it).
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("a database connection ended: {e}");
        }
    });
    Ok(client)
}

fn login_error(backend: &str, target: &Target, e: &tokio_postgres::Error) -> Error {
    let at = format!("the database `{}` at {}", target.database, target.address());
    let reason = reason(e);
    let user = &target.username;
    if let Some(certificate) = certificate_error(e) {
        let what_to_do = match certificate {
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => {
                "set `host` to a name the certificate is for"
            }
            _ => {
                "set `ssl_root_cert` to the PEM of the CA that signed it (without it, \
                 `verify-full` trusts the public roots only)"
            }
        };
        return Error::Invalid(format!(
            "backend `{backend}`: {at} presented a certificate `verify-full` refuses: \
             {reason}; {what_to_do}"
        ));
    }
    match e.code() {
        Some(code) if *code == SqlState::INVALID_PASSWORD => Error::LoginRefused(format!(
            "backend `{backend}`: {at} refused the login of user `{user}`: {reason}; check \
             `username` and `password`"
        )),
        Some(code) if code.code().starts_with("28") => Error::LoginRefused(format!(
            "backend `{backend}`: {at} refused the login of user `{user}`: {reason}; the \
             server's pg_hba.conf has no entry for this user, database and address (or, for \
             `no encryption`, accepts it only over TLS: set `ssl_mode` to `require` or \
             `verify-full`)"
        )),
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => Error::StatementFailed(SqlError {
            code: code.code().to_string(),
            message: format!(
                "backend `{backend}`: {at} does not exist: {reason}; create it or fix \
                     `database`"
            ),
        }),
        Some(code) if is_unavailable(code) => Error::Unavailable(format!(
            "backend `{backend}`: {at} is not accepting connections: {reason}"
        )),
        Some(code) => Error::StatementFailed(SqlError {
            code: code.code().to_string(),
            message: format!("backend `{backend}`: logging in to {at} as `{user}`: {reason}"),
        }),
        None if reason.contains("server does not support TLS") => Error::Invalid(format!(
            "backend `{backend}`: {at} does not offer TLS, which `ssl_mode` = `require` or \
             `verify-full` insists on: {reason}; enable TLS on the server or set `ssl_mode` \
             to `prefer`"
        )),
        None => Error::Unavailable(format!(
            "backend `{backend}`: cannot connect to {at}: {reason}"
        )),
    }
}

/// The driver's error with its causes: its own text names only the kind ("db error").
fn reason(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    stateplug_sdk::text::untrusted(&text).into_owned()
}

/// The certificate problem behind a failed TLS handshake, if that is what failed.
fn certificate_error(e: &tokio_postgres::Error) -> Option<&rustls::CertificateError> {
    let io = std::error::Error::source(e)?.downcast_ref::<std::io::Error>()?;
    match io.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(certificate) => Some(certificate),
        _ => None,
    }
}

/// A statement's failure in the interface's terms: the connection gone or the server going
/// away is `unavailable` (a retry may work); anything the server refused carries its code.
pub(super) fn statement_error(backend: &str, e: &tokio_postgres::Error) -> Error {
    let reason = reason(e);
    match e.code() {
        Some(code) if is_unavailable(code) => {
            Error::Unavailable(format!("backend `{backend}`: the database: {reason}"))
        }
        Some(code) if *code == SqlState::QUERY_CANCELED => Error::Unavailable(format!(
            "backend `{backend}`: the statement was cut off at the call's deadline: {reason}"
        )),
        Some(code) => Error::StatementFailed(SqlError {
            code: code.code().to_string(),
            message: e.as_db_error().map_or(reason, |db| {
                stateplug_sdk::text::untrusted(db.message()).into_owned()
            }),
        }),
        None => Error::Unavailable(format!(
            "backend `{backend}`: the connection to the database failed: {reason}"
        )),
    }
}

/// Codes of a server shutting down, starting up or out of connections, and of a broken link.
fn is_unavailable(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || code.starts_with("57P") || code == "53300"
}

/// The TLS setup of a target: `prefer` and `require` encrypt without checking the
/// certificate (libpq's meaning); `verify-full` checks it against the public roots, or the
/// operator's PEM, and the host name.
fn tls_config(target: &Target) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match target.ssl_mode {
        Mode::VerifyFull => {
            let roots = match &target.ssl_root_cert {
                None => rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.into(),
                },
                Some(pem) => pem_roots(pem)?,
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked))
            .with_no_client_auth(),
    };
    Ok(config)
}

fn pem_roots(pem: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = pem.as_bytes();
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| format!("`ssl_root_cert` is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("`ssl_root_cert` holds a certificate rustls refuses: {e}"))?;
    }
    if roots.is_empty() {
        return Err("`ssl_root_cert` holds no PEM certificate".into());
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Encrypts without checking who answers (`prefer`, `require`): the signatures of the
/// handshake are still verified, the certificate chain and name are not.
#[derive(Debug)]
struct Unchecked;

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
