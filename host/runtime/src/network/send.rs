//! Sending a request the policy allowed: to exactly the checked address (no second lookup),
//! over TLS with the Mozilla roots for https, every wait capped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use super::body::CappedBody;

/// Sends a checked request to `addr` and returns the response with its body capped at
/// `max_response_bytes`; no wait may exceed `max_wait`, whatever the plugin asked for.
pub(super) async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    tls: Option<rustls::pki_types::ServerName<'static>>,
    addr: SocketAddr,
    max_wait: Duration,
    max_response_bytes: u64,
) -> Result<(http::Response<WasiBody>, IoDriver), HttpError> {
    let cap = |asked: Option<Duration>| asked.map_or(max_wait, |d| d.min(max_wait));
    let options = options.unwrap_or_default();
    let connect_timeout = cap(options.connect_timeout);
    let first_byte_timeout = cap(options.first_byte_timeout);
    let between_bytes_timeout = cap(options.between_bytes_timeout).max(Duration::from_millis(1));

    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(connect_error)?;
    let stream: Box<dyn Stream> = match tls {
        None => Box::new(tcp),
        Some(server_name) => {
            let connector = tokio_rustls::TlsConnector::from(tls_config());
            let tls = tokio::time::timeout(connect_timeout, connector.connect(server_name, tcp))
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(HttpError::Tls)?;
            Box::new(tls)
        }
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // The connection is driven by its own task, aborted when the plugin drops the response.
    let connection = wasmtime_wasi::runtime::spawn(connection);

    // Origin-form request line: the authority is in the Host header already.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    *request.uri_mut() = path;

    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    // An oversized body is refused when the plugin reads it, not here: failing now would
    // drop the connection under the guest's still-open request body, and it would see
    // "connection reset" instead of the size error.
    let max = max_response_bytes;
    let response = response
        .map(|incoming| CappedBody::new(incoming, max, between_bytes_timeout).boxed_unsync());
    let driver: IoDriver = Box::new(async move {
        match connection.await {
            Ok(()) => Ok(()),
            Err(e) => Err(HttpError::from(e)),
        }
    });
    Ok((response, driver))
}

pub(super) type IoDriver = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Trust anchors for HTTPS: the Mozilla roots, built once per process.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

fn connect_error(e: std::io::Error) -> HttpError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
        _ => HttpError::Connect(e),
    }
}
