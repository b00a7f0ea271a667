//! The network policy of one backend instance: the wasi-http hook every request of the plugin
//! arrives at, which lets it out only to granted targets at granted addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::grant::{HostGrant, canonical, default_port};
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
        let refuse = |reason: String| {
            let reason = stateplug_sdk::text::untrusted(&reason);
            tracing::warn!(plugin = %self.plugin, "refused an HTTP request: {reason}");
            HttpError::HttpRequestDenied
        };
        let target = format!("{scheme}://{}", join_host_port(host, port));
        if !self
            .allow_hosts
            .iter()
            .any(|grant| grant.allows(scheme, host, port))
        {
            return Err(refuse(format!(
                "{target} is not in the backend's allow_hosts{}",
                if self.allow_hosts.is_empty() {
                    String::from(" (none granted)")
                } else {
                    format!(" ({})", list(&self.allow_hosts))
                }
            )));
        }
        let candidates: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                match tokio::time::timeout(self.max_wait, tokio::net::lookup_host((host, port)))
                    .await
                {
                    Err(_) => return Err(HttpError::DnsTimeout),
                    Ok(Err(_)) => return Err(HttpError::DestinationNotFound),
                    Ok(Ok(addrs)) => addrs.collect(),
                }
            }
        };
        let granted = |ip: IpAddr| {
            internal_kind(ip).is_none() || self.allow_hosts.iter().any(|g| g.contains(ip))
        };
        if let Some(addr) = candidates.iter().find(|a| granted(a.ip())) {
            return Ok(*addr);
        }
        let Some(addr) = candidates.first() else {
            return Err(HttpError::DestinationNotFound);
        };
        let kind = internal_kind(addr.ip()).unwrap_or("internal");
        Err(refuse(format!(
            "{target} resolves to {}, a {kind} address; grant its range in allow_hosts \
             (e.g. `{}`) if the plugin is meant to reach it",
            addr.ip(),
            addr.ip()
        )))
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn list(grants: &[HostGrant]) -> String {
    grants
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an address is not on the public internet, if it is not: such addresses are reachable
/// only when the operator grants their range explicitly.
fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || a == 0 {
                Some("non-routable")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("non-routable")
            } else {
                None
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_named() {
        for (ip, kind) in [
            ("127.0.0.1", Some("loopback")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("fd00::1", Some("private")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("93.184.216.34", None),
        ] {
            assert_eq!(internal_kind(ip.parse().unwrap()), kind, "{ip}");
        }
    }
}
