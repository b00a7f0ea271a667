//! Outgoing HTTP for plugins: the operator's `allow_hosts` grant and the wasi-http hook that
//! enforces it.
//!
//! wasi-http gives a guest no sockets and no DNS: every request it makes arrives here, in
//! [`NetworkPolicy::send_request`]. A request goes out only if
//! 1. its `host[:port]` (and scheme, when the grant names one) matches an `allow_hosts` entry;
//! 2. the address it resolves to is public, or lies in an address range the operator granted
//!    by IP or CIDR (a granted *name* that resolves to a loopback, private or link-local
//!    address is refused, so a DNS answer cannot turn a grant into a way into the host's
//!    network);
//! 3. and then the connection is made to exactly that checked address (no second lookup).
//!
//! Redirects are never followed here (wasi-http has no redirect handling; a guest that follows
//! one sends a new request, which is checked like any other). Every wait is capped by the
//! backend's call timeout, and response bodies by its memory grant.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// One `allow_hosts` entry: `[scheme://]host[:port]`, `*.domain[:port]`, or an address range
/// `ip/prefix` (`127.0.0.1`, `10.0.0.0/8`, `[::1]:9000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGrant {
    scheme: Option<String>,
    target: Target,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A DNS name, lower case; `*.example.com` matches subdomains of example.com.
    Name(String),
    /// An address range; a bare IP is a range of one.
    Addresses { network: IpAddr, prefix: u8 },
}

impl FromStr for HostGrant {
    type Err = String;

    fn from_str(entry: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{entry}` is not a host grant ({why}); use `host`, `host:port`, \
                 `https://host:port`, `*.domain`, an IP address or a range like `10.0.0.0/8`"
            )
        };
        let entry_trimmed = entry.trim().trim_end_matches('/');
        let (scheme, rest) = match entry_trimmed.split_once("://") {
            Some((scheme, rest)) => {
                let scheme = scheme.to_ascii_lowercase();
                if scheme != "http" && scheme != "https" {
                    return Err(bad("the scheme must be http or https"));
                }
                (Some(scheme), rest)
            }
            None => (None, entry_trimmed),
        };
        if let Some((network, prefix)) = rest.split_once('/') {
            let network: IpAddr = network
                .trim_matches(['[', ']'])
                .parse()
                .map_err(|_| bad("the part before `/` must be an IP address"))?;
            let max = if network.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("the prefix length after `/` is out of range"))?;
            return Ok(HostGrant {
                scheme,
                target: Target::Addresses { network, prefix },
                port: None,
            });
        }
        let (host, port) = split_host_port(rest).map_err(|why| bad(&why))?;
        let target = match host.parse::<IpAddr>() {
            Ok(network) => Target::Addresses {
                network,
                prefix: if network.is_ipv4() { 32 } else { 128 },
            },
            Err(_) => {
                let name = host.to_ascii_lowercase();
                let labels = name.strip_prefix("*.").unwrap_or(&name);
                let valid = !labels.is_empty()
                    && labels
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
                if !valid {
                    return Err(bad("the host is not a DNS name or IP address"));
                }
                Target::Name(name)
            }
        };
        Ok(HostGrant {
            scheme,
            target,
            port,
        })
    }
}

impl fmt::Display for HostGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = &self.scheme {
            write!(f, "{scheme}://")?;
        }
        match &self.target {
            Target::Name(name) => f.write_str(name)?,
            Target::Addresses { network, prefix } if *prefix == full_prefix(network) => {
                match network {
                    IpAddr::V6(v6) if self.port.is_some() => write!(f, "[{v6}]")?,
                    ip => write!(f, "{ip}")?,
                }
            }
            Target::Addresses { network, prefix } => write!(f, "{network}/{prefix}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl HostGrant {
    /// The grants an endpoint URL implies: its host and port, and for a DNS name its
    /// subdomains too (S3 virtual-hosted buckets are `<bucket>.<endpoint host>`).
    pub fn from_endpoint(url: &str) -> Option<Vec<HostGrant>> {
        let uri: http::Uri = url.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?;
        let port = uri.port_u16().or(default_port(&scheme));
        let mut grants = vec![HostGrant::from_str(host).ok()?];
        if let Target::Name(name) = &grants[0].target {
            grants.push(HostGrant::from_str(&format!("*.{name}")).ok()?);
        }
        for grant in &mut grants {
            grant.scheme = Some(scheme.clone());
            grant.port = port;
        }
        Some(grants)
    }

    /// Whether a request to `host:port` over `scheme` is covered by this entry.
    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.target, host.parse::<IpAddr>()) {
            (Target::Name(name), Err(_)) => {
                let host = host.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(domain) => host
                        .strip_suffix(domain)
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                    None => host == *name,
                }
            }
            (Target::Addresses { .. }, Ok(ip)) => self.contains(ip),
            _ => false,
        }
    }

    /// Whether this entry grants the address `ip` (only address entries grant addresses).
    fn contains(&self, ip: IpAddr) -> bool {
        let Target::Addresses { network, prefix } = self.target else {
            return false;
        };
        match (network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn full_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `v6` into host and optional port.
fn split_host_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{p}` is not a port number"))
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "a `[` without `]`".to_string())?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected `{after}` after `]`")),
        };
    }
    if text.parse::<IpAddr>().is_ok() {
        return Ok((text, None)); // a bare IPv6 address has colons but no port
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((text, None)),
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
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
            let reason = crate::text::untrusted(&reason);
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

    /// Sends a checked request to `addr` and returns the response with its body capped.
    async fn send(
        &self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        tls: Option<rustls::pki_types::ServerName<'static>>,
        addr: SocketAddr,
    ) -> Result<(http::Response<WasiBody>, IoDriver), HttpError> {
        let cap = |asked: Option<Duration>| asked.map_or(self.max_wait, |d| d.min(self.max_wait));
        let options = options.unwrap_or_default();
        let connect_timeout = cap(options.connect_timeout);
        let first_byte_timeout = cap(options.first_byte_timeout);
        let between_bytes_timeout =
            cap(options.between_bytes_timeout).max(Duration::from_millis(1));

        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(connect_error)?;
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(server_name) => {
                let connector = tokio_rustls::TlsConnector::from(tls_config());
                let tls =
                    tokio::time::timeout(connect_timeout, connector.connect(server_name, tcp))
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
        let max = self.max_response_bytes;
        let response = response.map(|incoming| {
            CappedBody {
                read: incoming
                    .size_hint()
                    .exact()
                    .filter(|n| *n > max)
                    .unwrap_or(0),
                incoming,
                max,
                between_bytes: between_bytes_timeout,
                idle: None,
            }
            .boxed_unsync()
        });
        let driver: IoDriver = Box::new(async move {
            match connection.await {
                Ok(()) => Ok(()),
                Err(e) => Err(HttpError::from(e)),
            }
        });
        Ok((response, driver))
    }
}

type IoDriver = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

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

/// A response body that errors out past `max` bytes (at once when its declared length is over)
/// or when the server goes quiet for longer than `between_bytes`.
struct CappedBody {
    incoming: Incoming,
    read: u64,
    max: u64,
    between_bytes: Duration,
    idle: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.read > this.max {
            return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(this.read)))));
        }
        match std::pin::Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle = None;
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.max {
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            this.read,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let between_bytes = this.between_bytes;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(between_bytes)));
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }
}

impl WasiHttpHooks for NetworkPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoDriver), HttpError>> + Send>
    {
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
            policy.send(request, options, tls, addr).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(entries: &[&str]) -> Vec<HostGrant> {
        entries.iter().map(|e| e.parse().unwrap()).collect()
    }

    #[test]
    fn parses_and_prints_entries() {
        for (entry, shown) in [
            ("s3.amazonaws.com", "s3.amazonaws.com"),
            (
                "HTTPS://S3.amazonaws.com:443/",
                "https://s3.amazonaws.com:443",
            ),
            ("*.example.com", "*.example.com"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("[::1]:9000", "[::1]:9000"),
            ("::1", "::1"),
        ] {
            assert_eq!(entry.parse::<HostGrant>().unwrap().to_string(), shown);
        }
        for bad in ["ftp://x", "x:port", "10.0.0.0/33", "a b", "[::1", "", "*."] {
            let err = bad.parse::<HostGrant>().unwrap_err();
            assert!(err.contains("is not a host grant"), "{bad}: {err}");
        }
    }

    #[test]
    fn matches_scheme_host_and_port() {
        let g = grants(&["https://s3.example.com", "minio:9000", "*.bucket.test"]);
        let allowed = |scheme, host, port| g.iter().any(|g| g.allows(scheme, host, port));
        assert!(allowed("https", "S3.example.com", 443));
        assert!(!allowed("http", "s3.example.com", 80));
        assert!(allowed("http", "minio", 9000));
        assert!(!allowed("http", "minio", 9001));
        assert!(allowed("https", "a.bucket.test", 443));
        assert!(!allowed("https", "bucket.test", 443));
        assert!(!allowed("https", "evilbucket.test", 443));
    }

    #[test]
    fn addresses_need_an_address_grant() {
        let g = grants(&["127.0.0.1:9000", "10.0.0.0/8"]);
        let allowed = |host, port| g.iter().any(|g| g.allows("http", host, port));
        assert!(allowed("127.0.0.1", 9000));
        assert!(!allowed("127.0.0.1", 9001));
        assert!(allowed("10.1.2.3", 80));
        assert!(!allowed("11.1.2.3", 80));
        let contains = |ip: &str| g.iter().any(|g| g.contains(ip.parse().unwrap()));
        assert!(contains("127.0.0.1"));
        assert!(contains("::ffff:10.9.9.9"));
        assert!(!contains("127.0.0.2"));
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

    #[test]
    fn endpoints_imply_their_host() {
        let shown = |url| {
            HostGrant::from_endpoint(url)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(shown("http://127.0.0.1:5000"), ["http://127.0.0.1:5000"]);
        assert_eq!(
            shown("https://s3.eu-west-1.amazonaws.com"),
            [
                "https://s3.eu-west-1.amazonaws.com:443",
                "https://*.s3.eu-west-1.amazonaws.com:443"
            ]
        );
        assert!(HostGrant::from_endpoint("not a url").is_none());
    }
}
