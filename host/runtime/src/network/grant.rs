//! The `allow_hosts` grant: its syntax, how it is shown, and which targets it covers. Only
//! the grammar and matching live here; enforcement is the policy's (`policy.rs`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The scheme of a database grant: `postgres://HOST:PORT`. Unlike HTTP grants, it is never
/// implied: an entry without it grants no database.
pub(crate) const DATABASE_SCHEME: &str = "postgres";

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
                 `https://host:port`, `postgres://host:port`, `*.domain`, an IP address or a \
                 range like `10.0.0.0/8`"
            )
        };
        let entry_trimmed = entry.trim().trim_end_matches('/');
        let (scheme, rest) = match entry_trimmed.split_once("://") {
            Some((scheme, rest)) => {
                let scheme = scheme.to_ascii_lowercase();
                if !["http", "https", DATABASE_SCHEME].contains(&scheme.as_str()) {
                    return Err(bad("the scheme must be http, https or postgres"));
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

    /// The grant of the database at `host:port`: `postgres://host:port`.
    pub fn database(host: &str, port: u16) -> Option<HostGrant> {
        let host = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => host.to_string(),
        };
        format!("{DATABASE_SCHEME}://{host}:{port}").parse().ok()
    }

    /// Whether a connection to `host:port` over `scheme` is covered by this entry. A database
    /// connection needs an entry that names the database scheme.
    pub(super) fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        if scheme == DATABASE_SCHEME && self.scheme.is_none() {
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
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
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

pub(super) fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        DATABASE_SCHEME => Some(5432),
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
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
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
    fn a_database_needs_its_scheme() {
        let g = grants(&["postgres://db.internal:5432", "minio:9000", "10.0.0.0/8"]);
        let allowed = |scheme, host, port| g.iter().any(|g| g.allows(scheme, host, port));
        assert!(allowed("postgres", "db.internal", 5432));
        assert!(!allowed("postgres", "db.internal", 5433));
        assert!(!allowed("http", "db.internal", 5432));
        assert!(!allowed("postgres", "minio", 9000));
        assert!(!allowed("postgres", "10.1.2.3", 5432));
        assert_eq!(
            HostGrant::database("::1", 5432).unwrap().to_string(),
            "postgres://[::1]:5432"
        );
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
