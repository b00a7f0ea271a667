//! Outgoing connections of plugins: the operator's `allow_hosts` grant, the address check
//! every connection passes (`address.rs`; database connections too, see `postgres/`), and the
//! wasi-http hook that enforces it for HTTP.
//!
//! wasi-http gives a guest no sockets and no DNS: every request it makes arrives at the policy
//! hook (`policy.rs`), which reads the grant (`grant.rs`). A request goes out only if
//! 1. its `host[:port]` (and scheme, when the grant names one) matches an `allow_hosts` entry;
//! 2. the address it resolves to is public, or lies in an address range the operator granted
//!    by IP or CIDR (a granted *name* that resolves to a loopback, private or link-local
//!    address is refused, so a DNS answer cannot turn a grant into a way into the host's
//!    network);
//! 3. and then the connection is made to exactly that checked address, no second lookup
//!    (`send.rs`), the response body capped (`body.rs`).
//!
//! Redirects are never followed here (wasi-http has no redirect handling; a guest that follows
//! one sends a new request, which is checked like any other). Every wait is capped by the
//! backend's call timeout, and response bodies by its memory grant.

mod address;
mod body;
mod grant;
mod policy;
mod send;

pub(crate) use address::{Refused, checked_address, join_host_port};
pub(crate) use grant::DATABASE_SCHEME;
pub use grant::HostGrant;
pub(crate) use policy::NetworkPolicy;
