//! Signed HTTP requests with retries: the only code that talks to the network.
//!
//! Requests go out through wasi-http (wstd), so the host decides which hosts the plugin may
//! reach. Natively (no wasi-http) every request fails with a clear error; the rest of the
//! crate still compiles and runs, which keeps its logic testable.

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use stateplug_sdk::{Error, Result, log};

use crate::config::Keys;
use crate::s3::hex;

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A request, kept whole so it can be signed again for each attempt.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &'static str, url: String) -> Request {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Request {
        self.body = body;
        self
    }
}

/// A response with its whole body (none for HEAD).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// How many times the request was sent.
    pub attempts: u32,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Which AWS service a client signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    DynamoDb,
}

/// A transport failure, and whether trying again may help.
struct Failure {
    retryable: bool,
    error: Error,
}

/// Sends requests to one service, signed with SigV4 when credentials are configured.
pub struct Client {
    service: Service,
    region: String,
    credentials: Option<Keys>,
    max_retries: u32,
}

impl Client {
    pub fn new(
        service: Service,
        region: &str,
        credentials: Option<Keys>,
        max_retries: u32,
    ) -> Client {
        Client {
            service,
            region: region.into(),
            credentials,
            max_retries,
        }
    }

    /// Whether requests are signed (credentials are configured).
    pub fn signs(&self) -> bool {
        self.credentials.is_some()
    }

    /// Sends `request`, again after a growing pause while `retryable` says so of the answer
    /// (or the connection timed out), at most `max_retries` more times. Returns the last
    /// answer whatever its status: the caller maps statuses to errors.
    pub async fn send(
        &self,
        request: &Request,
        retryable: impl Fn(&Response) -> bool,
    ) -> Result<Response> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = self.send_once(request).await;
            let retry = match &outcome {
                Ok(response) => retryable(response),
                Err(failure) => failure.retryable,
            };
            if !retry || attempts > self.max_retries {
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

    async fn send_once(&self, request: &Request) -> Result<Response, Failure> {
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
        let mut http_request = builder.body(request.body.clone()).map_err(|e| Failure {
            retryable: false,
            error: Error::Other(format!("building {} {}: {e}", request.method, request.url)),
        })?;
        self.sign(&mut http_request).map_err(|error| Failure {
            retryable: false,
            error,
        })?;
        let response = transport::send(http_request).await?;
        log::debug(&format!(
            "{} {} -> {}",
            request.method, request.url, response.status
        ));
        Ok(response)
    }

    /// Adds the SigV4 headers (nothing without credentials: an anonymous request).
    fn sign(&self, request: &mut http::Request<Vec<u8>>) -> Result<()> {
        let Some(keys) = &self.credentials else {
            return Ok(());
        };
        let identity = Credentials::new(
            &keys.access_key,
            &keys.secret_key,
            keys.session_token.clone(),
            None,
            "stateplug-config",
        )
        .into();
        let mut settings = SigningSettings::default();
        let name = match self.service {
            Service::S3 => {
                // S3 signs the path exactly as sent and wants the payload hash header.
                settings.percent_encoding_mode = PercentEncodingMode::Single;
                settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                "s3"
            }
            Service::DynamoDb => "dynamodb",
        };
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(name)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::Other(format!("signing parameters: {e}")))?
            .into();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        let uri = request.uri().to_string();
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            // The payload hash is the costly part of signing a large body: the host computes it.
            SignableBody::Precomputed(hex(&stateplug_sdk::hash::sha256(request.body()))),
        )
        .map_err(|e| Error::Other(format!("signing {}: {e}", request.uri())))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| Error::Other(format!("signing {}: {e}", request.uri())))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
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

/// Runs a future to completion; each synchronous `Backend` method calls it once.
pub fn block_on<F: Future>(future: F) -> F::Output {
    transport::block_on(future)
}

async fn sleep(pause: Duration) {
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
                "{} {} ({}): the S3 plugin reaches the network only as a wasm32-wasip2 \
                 component inside the stateplug host",
                request.method(),
                request.uri(),
                host_port(request.uri())
            )),
        })
    }
}
