//! Which address a granted target may be reached at: the check every outgoing connection of a
//! plugin passes, HTTP requests and database connections alike.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::grant::{HostGrant, canonical};

/// Why a target may not be reached.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not granted, or it resolves to an internal address that is not granted; says which.
    Denied(String),
    /// The name does not resolve.
    NotFound(String),
    /// The name did not resolve within the wait.
    DnsTimeout(String),
}

/// Checks `scheme://host:port` against the grants and picks the address to connect to: the
/// first the name resolves to that is public or in a granted range. The caller connects to
/// exactly that address (no second lookup, so a DNS answer cannot change after the check).
pub(crate) async fn checked_address(
    allow_hosts: &[HostGrant],
    scheme: &str,
    host: &str,
    port: u16,
    max_wait: Duration,
) -> Result<SocketAddr, Refused> {
    let target = format!("{scheme}://{}", join_host_port(host, port));
    if !allow_hosts
        .iter()
        .any(|grant| grant.allows(scheme, host, port))
    {
        return Err(Refused::Denied(format!(
            "{target} is not in the backend's allow_hosts{}",
            if allow_hosts.is_empty() {
                String::from(" (none granted)")
            } else {
                format!(" ({})", list(allow_hosts))
            }
        )));
    }
    let candidates: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::time::timeout(max_wait, tokio::net::lookup_host((host, port))).await
        {
            Err(_) => return Err(Refused::DnsTimeout(target)),
            Ok(Err(_)) => return Err(Refused::NotFound(target)),
            Ok(Ok(addrs)) => addrs.collect(),
        },
    };
    let granted =
        |ip: IpAddr| internal_kind(ip).is_none() || allow_hosts.iter().any(|g| g.contains(ip));
    if let Some(addr) = candidates.iter().find(|a| granted(a.ip())) {
        return Ok(*addr);
    }
    let Some(addr) = candidates.first() else {
        return Err(Refused::NotFound(target));
    };
    let kind = internal_kind(addr.ip()).unwrap_or("internal");
    Err(Refused::Denied(format!(
        "{target} resolves to {}, a {kind} address; grant its range in allow_hosts \
         (e.g. `{}`) if the plugin is meant to reach it",
        addr.ip(),
        addr.ip()
    )))
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
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
