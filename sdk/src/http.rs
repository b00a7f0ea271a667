//! HTTP for plugins that the operator grants hosts (`allow_hosts`): whole-body requests over
//! `wasi:http` (through [`wstd`]), retries with backoff, and transport errors mapped to the
//! contract's errors: a host the operator did not grant is [`Error::Denied`] naming the
//! `host:port` to add to `allow_hosts`; timeouts and resets are retryable
//! [`Error::Unavailable`]. Enabled by the SDK's `http` feature.
//!
//! ```no_run
//! use stateplug_sdk::http::{Request, block_on, send_with_retries};
//!
//! # fn main() -> stateplug_sdk::Result<()> {
//! let request = Request::new("GET", "https://state.example.com/v1/objects/a".into());
//! let response = block_on(send_with_retries(&request, 3, Ok, |r| r.status >= 500))?;
//! assert_eq!(response.status, 200);
//! # Ok(())
//! # }
//! ```
//!
//! Natively (outside a component) every request fails with a clear error, so plugin logic
//! built on this module still compiles and unit-tests natively.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::log;
use crate::types::{Error, Result};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A request, kept whole so it can be prepared (signed, say) again for each attempt.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: &'static str,
    /// The whole URL; its host must be granted.
    pub url: String,
    /// Headers, in order (`content-length` is added when sending).
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: &'static str, url: String) -> Request {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Vec<u8>) -> Request {
        self.body = body;
        self
    }
}

/// A response with its whole body (none for HEAD).
#[derive(Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The whole body (empty for HEAD).
    pub body: Vec<u8>,
    /// How many times the request was sent.
    pub attempts: u32,
}

impl Response {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A transport failure, and whether trying again may help.
pub struct Failure {
    /// Whether the same request may succeed later (a timeout, a reset connection).
    pub retryable: bool,
    /// The error to report when it is not retried.
    pub error: Error,
}

/// Sends `request`, again after a growing pause while `retryable` says so of the answer (or
/// the transport failed in a way that may pass), at most `max_retries` more times. `prepare`
/// sees each attempt's request just before it goes out (sign it there: signatures carry the
/// time). Returns the last answer whatever its status: the caller maps statuses to errors.
pub async fn send_with_retries(
    request: &Request,
    max_retries: u32,
    prepare: impl Fn(http::Request<Vec<u8>>) -> Result<http::Request<Vec<u8>>>,
    retryable: impl Fn(&Response) -> bool,
) -> Result<Response> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = send_once(request, &prepare).await;
        let retry = match &outcome {
            Ok(response) => retryable(response),
            Err(failure) => failure.retryable,
        };
        if !retry || attempts > max_retries {
            return match outcome {
                Ok(mut response) => {
                    response.attempts = attempts;
                    Ok(response)
                }
                Err(failure) => Err(failure.error),
            };
        }
        let why = match &outcome {
            Ok(response) => format!("status {}", response.status),
            Err(failure) => failure.error.to_string(),
        };
        let pause = backoff(attempts);
        log::debug(&format!(
            "{} {}: {why}; retrying in {} ms",
            request.method,
            request.url,
            pause.as_millis()
        ));
        sleep(pause).await;
    }
}

async fn send_once(
    request: &Request,
    prepare: &impl Fn(http::Request<Vec<u8>>) -> Result<http::Request<Vec<u8>>>,
) -> Result<Response, Failure> {
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(&request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    // Always an explicit length, 0 included: wasi-http cannot tell an empty body stream
    // from an open one and would send it chunked, which some servers (moto) answer and
    // then reset, even for a GET.
    builder = builder.header("content-length", request.body.len());
    let built = builder.body(request.body.clone()).map_err(|e| Failure {
        retryable: false,
        error: Error::Other(format!("building {} {}: {e}", request.method, request.url)),
    })?;
    let prepared = prepare(built).map_err(|error| Failure {
        retryable: false,
        error,
    })?;
    let response = send(prepared).await?;
    log::debug(&format!(
        "{} {} -> {}",
        request.method, request.url, response.status
    ));
    Ok(response)
}

/// Sends one request as it is and reads the whole answer.
pub async fn send(request: http::Request<Vec<u8>>) -> Result<Response, Failure> {
    transport::send(request).await
}

/// Exponential backoff with some jitter, so clients throttled together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// `host:port` of a URL, as an operator would write it in `allow_hosts`.
fn host_port(uri: &http::Uri) -> String {
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    format!("{}:{port}", uri.host().unwrap_or_default())
}

/// Runs a future to completion: call it once in each synchronous `Store` method.
pub fn block_on<F: Future>(future: F) -> F::Output {
    transport::block_on(future)
}

/// Pauses the plugin (the host goes on serving other backends).
pub async fn sleep(pause: Duration) {
    transport::sleep(pause).await
}

#[cfg(target_arch = "wasm32")]
mod transport {
    use super::*;
    use wstd::http::Body;
    use wstd::http::body::Bytes;
    use wstd::http::body::util::Empty;
    use wstd::http::error::ErrorCode;

    pub fn block_on<F: Future>(future: F) -> F::Output {
        wstd::runtime::block_on(future)
    }

    pub async fn sleep(pause: Duration) {
        wstd::task::sleep(pause.into()).await;
    }

    pub async fn send(request: http::Request<Vec<u8>>) -> Result<Response, Failure> {
        let uri = request.uri().clone();
        let method = request.method().clone();
        let head = method == http::Method::HEAD;
        let mut client = wstd::http::Client::new();
        client.set_connect_timeout(Duration::from_secs(5));
        client.set_first_byte_timeout(Duration::from_secs(30));
        client.set_between_bytes_timeout(Duration::from_secs(30));
        let failed = |e: wstd::http::Error| failure(&method, &uri, e);
        // An empty body is sent as a stream that never writes: writing even zero bytes fails
        // with "connection reset" once the host has completed a request of length 0.
        let (parts, bytes) = request.into_parts();
        let body = match bytes.is_empty() {
            true => Body::from_http_body(Empty::<Bytes>::new()),
            false => Body::from(bytes),
        };
        let request = http::Request::from_parts(parts, body);
        let mut response = client.send(request).await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = if head {
            Vec::new()
        } else {
            let contents = response.body_mut().contents().await.map_err(failed)?;
            contents.to_vec()
        };
        Ok(Response {
            status,
            headers,
            body,
            attempts: 1,
        })
    }

    fn failure(method: &http::Method, uri: &http::Uri, err: wstd::http::Error) -> Failure {
        let at = host_port(uri);
        let unavailable = |retryable: bool, why: String| Failure {
            retryable,
            error: Error::Unavailable(format!("{method} {uri}: {why}")),
        };
        match err.downcast_ref::<ErrorCode>() {
            Some(ErrorCode::HttpRequestDenied) => Failure {
                retryable: false,
                error: Error::Denied(format!(
                    "the host refused the connection to {at} ({method} {uri}); add `{at}` to \
                     the backend's `allow_hosts`"
                )),
            },
            Some(
                code @ (ErrorCode::DnsTimeout
                | ErrorCode::ConnectionTimeout
                | ErrorCode::ConnectionReadTimeout
                | ErrorCode::ConnectionWriteTimeout
                | ErrorCode::ConnectionTerminated
                | ErrorCode::HttpResponseTimeout),
            ) => unavailable(true, format!("{code:?}")),
            Some(ErrorCode::ConnectionRefused) => unavailable(
                false,
                format!("nothing accepts connections at {at}; check the endpoint"),
            ),
            Some(ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound) => unavailable(
                false,
                format!(
                    "cannot resolve `{}`; check the endpoint",
                    uri.host().unwrap_or_default()
                ),
            ),
            Some(
                code @ (ErrorCode::TlsProtocolError
                | ErrorCode::TlsCertificateError
                | ErrorCode::TlsAlertReceived(_)),
            ) => Failure {
                retryable: false,
                error: Error::Other(format!(
                    "{method} {uri}: TLS failed ({code:?}); check the endpoint's scheme and \
                     certificate (virtual-hosted style and bucket names with `.` do not match \
                     the certificate: set `use_path_style = true`)"
                )),
            },
            Some(code) => unavailable(false, format!("{code:?}")),
            // The connection closed while the request was being sent.
            None if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset) =>
            {
                unavailable(true, format!("{err:#}"))
            }
            None => unavailable(false, format!("{err:#}")),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod transport {
    use super::*;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Natively nothing ever waits (requests fail at once), so polling once suffices.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
    }

    pub async fn sleep(_pause: Duration) {}

    pub async fn send(request: http::Request<Vec<u8>>) -> Result<Response, Failure> {
        Err(Failure {
            retryable: false,
            error: Error::Unavailable(format!(
                "{} {} ({}): a plugin reaches the network only as a wasm32-wasip2 \
                 component inside the stateplug host",
                request.method(),
                request.uri(),
                host_port(request.uri())
            )),
        })
    }
}
