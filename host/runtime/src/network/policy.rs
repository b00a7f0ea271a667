//! The network policy of one backend instance: the wasi-http hook every request of the plugin
//! arrives at, which lets it out only to granted targets at granted addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::address::{Refused, checked_address};
use super::grant::{HostGrant, default_port};
use super::send;

/// The outgoing-HTTP policy of one backend instance.
#[derive(Clone)]
pub(crate) struct NetworkPolicy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    plugin: Arc<str>,
    allow_hosts: Vec<HostGrant>,
    /// No single wait (DNS, connect, first byte, between bytes) may exceed this.
    max_wait: Duration,
    /// Responses larger than this are cut off with an error.
    max_response_bytes: u64,
}

impl NetworkPolicy {
    pub(crate) fn new(
        plugin: Arc<str>,
        allow_hosts: Vec<HostGrant>,
        max_wait: Duration,
        max_response_bytes: u64,
    ) -> NetworkPolicy {
        NetworkPolicy {
            inner: Arc::new(PolicyInner {
                plugin,
                allow_hosts,
                max_wait,
                max_response_bytes,
            }),
        }
    }
}

impl PolicyInner {
    /// Checks the request's target and picks the address to connect to. A refusal is logged
    /// with its reason for the operator; the plugin sees `HttpRequestDenied`.
    async fn check(&self, scheme: &str, host: &str, port: u16) -> Result<SocketAddr, HttpError> {
        match checked_address(&self.allow_hosts, scheme, host, port, self.max_wait).await {
            Ok(addr) => Ok(addr),
            Err(Refused::Denied(reason)) => {
                let reason = stateplug_sdk::text::untrusted(&reason);
                tracing::warn!(plugin = %self.plugin, "refused an HTTP request: {reason}");
                Err(HttpError::HttpRequestDenied)
            }
            Err(Refused::NotFound(_)) => Err(HttpError::DestinationNotFound),
            Err(Refused::DnsTimeout(_)) => Err(HttpError::DnsTimeout),
        }
    }
}

impl WasiHttpHooks for NetworkPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<WasiBody>, send::IoDriver), HttpError>> + Send,
    > {
        let policy = self.inner.clone();
        Box::new(async move {
            let uri = request.uri();
            let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
            let host = uri
                .host()
                .ok_or(HttpError::HttpRequestUriInvalid)?
                .trim_matches(['[', ']'])
                .to_string();
            let port = uri
                .port_u16()
                .or(default_port(&scheme))
                .ok_or(HttpError::HttpProtocolError)?;
            let addr = match policy.check(&scheme, &host, port).await {
                Ok(addr) => addr,
                Err(e) => {
                    // Read the body the guest is sending, so that it sees the error rather
                    // than a broken pipe.
                    let mut body = request.into_body();
                    while let Some(Ok(_)) = body.frame().await {}
                    return Err(e);
                }
            };
            let tls = match scheme.as_str() {
                "https" => Some(
                    rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|_| HttpError::HttpRequestUriInvalid)?,
                ),
                _ => None,
            };
            send::send(
                request,
                options,
                tls,
                addr,
                policy.max_wait,
                policy.max_response_bytes,
            )
            .await
        })
    }
}
