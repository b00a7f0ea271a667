//! The plain Rust types of the contract, free of any wasm plumbing.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The contract this SDK implements; the host refuses plugins built for one it does not support.
pub const CONTRACT_VERSION: &str = "stateplug:backend@0.1.0";

/// Name of the custom section in which a plugin carries [`CONTRACT_VERSION`], so the host can
/// refuse a plugin for another contract before compiling it.
pub const CONTRACT_SECTION: &str = "stateplug:contract";

/// [`CONTRACT_VERSION`] as the bytes of that section.
#[doc(hidden)]
pub const CONTRACT_SECTION_BYTES: [u8; CONTRACT_VERSION.len()] = {
    let mut bytes = [0u8; CONTRACT_VERSION.len()];
    let source = CONTRACT_VERSION.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] = source[i];
        i += 1;
    }
    bytes
};

/// Result of every backend operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation failed. Messages are read by operators: say what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No object (or lock) at the path.
    NotFound,
    /// The path is locked by someone else; carries the holder's lock.
    Locked(Box<LockInfo>),
    /// The precondition of a write or delete did not hold; nothing changed.
    PreconditionFailed,
    /// The configuration is wrong: which key and what is expected.
    InvalidConfig(String),
    /// The path is not acceptable.
    InvalidPath(String),
    /// The storage or the sandbox refused access.
    Denied(String),
    /// A transient failure; retrying may succeed.
    Unavailable(String),
    /// Another writer is changing the object at this moment; nothing was changed. The host
    /// retries the call shortly, outside the plugin: return this instead of waiting.
    Busy(String),
    /// Anything else.
    Other(String),
}

impl Error {
    /// An [`Error::Other`] from anything printable.
    pub fn other(message: impl fmt::Display) -> Self {
        Error::Other(message.to_string())
    }

    /// Maps an I/O error, prefixed with what was being done (e.g. "writing `a/b`").
    pub fn io(doing: impl fmt::Display, err: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match err.kind() {
            NotFound => Error::NotFound,
            PermissionDenied | ReadOnlyFilesystem => Error::Denied(format!(
                "{doing}: {err}; the host has not granted access to it"
            )),
            TimedOut | Interrupted | WouldBlock => Error::Unavailable(format!("{doing}: {err}")),
            _ => Error::Other(format!("{doing}: {err}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("not found"),
            Error::Locked(holder) => write!(f, "locked by {} (lock id {})", holder.who, holder.id),
            Error::PreconditionFailed => f.write_str("precondition failed: the object changed"),
            Error::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            Error::InvalidPath(m) => write!(f, "invalid path: {m}"),
            Error::Denied(m) => write!(f, "denied: {m}"),
            Error::Unavailable(m) => write!(f, "unavailable: {m}"),
            Error::Busy(m) => write!(f, "busy: {m}"),
            Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// A condition checked atomically with a write or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional.
    None,
    /// Only if nothing exists at the path.
    Absent,
    /// Only if the current version token is this one.
    VersionIs(String),
}

/// An object's bytes and the version token of exactly those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Content.
    pub data: Vec<u8>,
    /// Opaque token that changes whenever the object changes.
    pub version: String,
}

/// One page of a listing: full paths, sorted, and where to continue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Object paths, sorted ascending.
    pub paths: Vec<String>,
    /// Cursor for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

impl Page {
    /// Cuts one page of at most `size` paths out of a sorted iterator of all matching paths,
    /// continuing after `cursor` (the last path of the previous page).
    pub fn from_sorted<I>(sorted: I, cursor: Option<&str>, size: usize) -> Page
    where
        I: IntoIterator<Item = String>,
    {
        let mut rest = sorted
            .into_iter()
            .filter(|p| cursor.is_none_or(|c| p.as_str() > c));
        let paths: Vec<String> = rest.by_ref().take(size).collect();
        let next_cursor = match rest.next() {
            Some(_) => paths.last().cloned(),
            None => None,
        };
        Page { paths, next_cursor }
    }
}

/// Terraform's `LockInfo`, plus an optional expiry. Serialized with Terraform's field names,
/// so lock objects are readable by Terraform (1.10+ S3 lock files use the same JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Unique lock id.
    #[serde(rename = "ID")]
    pub id: String,
    /// What the holder is doing.
    #[serde(rename = "Operation", default)]
    pub operation: String,
    /// Extra information.
    #[serde(rename = "Info", default)]
    pub info: String,
    /// Who holds the lock.
    #[serde(rename = "Who", default)]
    pub who: String,
    /// Version of the holder's tool.
    #[serde(rename = "Version", default)]
    pub version: String,
    /// When the lock was taken (RFC 3339).
    #[serde(rename = "Created", default)]
    pub created: String,
    /// What the lock protects, as the holder named it.
    #[serde(rename = "Path", default)]
    pub path: String,
    /// Unix milliseconds after which the lock is stale and may be taken over.
    #[serde(rename = "Expires", default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl LockInfo {
    /// Whether the lock's expiry has passed at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires
            .is_some_and(|ms| UNIX_EPOCH + Duration::from_millis(ms) <= now)
    }

    /// Whether the lock's expiry has passed.
    pub fn is_expired(&self) -> bool {
        self.is_expired_at(SystemTime::now())
    }

    /// Parses a lock object; names the object when it is not LockInfo JSON.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<LockInfo> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::Other(format!(
                "lock object `{what}` is not valid LockInfo JSON ({e}); remove it with force-unlock"
            ))
        })
    }

    /// The lock as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Who holds the lock, in one line for an error message: `WHO (lock id ID, operation
    /// `OP`, since CREATED)`, each field bounded and escaped (lock fields come from lock
    /// takers and plugins).
    pub fn holder(&self) -> String {
        let short = |text: &str| crate::text::bounded(text, 200).into_owned();
        format!(
            "{} (lock id {}, operation `{}`, since {})",
            short(&self.who),
            short(&self.id),
            short(&self.operation),
            short(&self.created)
        )
    }

    /// The current time in RFC 3339, for [`LockInfo::created`].
    pub fn now_rfc3339() -> String {
        humantime::format_rfc3339_millis(SystemTime::now()).to_string()
    }
}

/// The `describe()` feature of a plugin whose data lives inside its instance (like the
/// `memory` plugin): the host then runs one instance per backend instead of a pool.
/// Without it, the host may run several instances of one opened backend at once; they share
/// the storage (files, a bucket), never memory, and calls to one instance never overlap.
pub const SINGLE_INSTANCE: &str = "single-instance";

/// One configuration key a plugin understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigField {
    /// The key.
    pub name: String,
    /// What it means and what it takes.
    pub description: String,
    /// Whether `open` fails without it.
    pub required: bool,
    /// Whether the value must never be logged or printed.
    pub secret: bool,
    /// Value used when absent.
    pub default: Option<String>,
}

impl ConfigField {
    /// A key that must be given.
    pub fn required(name: &str, description: &str) -> Self {
        ConfigField {
            name: name.into(),
            description: description.into(),
            required: true,
            secret: false,
            default: None,
        }
    }

    /// A key that may be left out.
    pub fn optional(name: &str, description: &str) -> Self {
        ConfigField {
            required: false,
            ..ConfigField::required(name, description)
        }
    }

    /// Sets the value used when the key is absent.
    pub fn default_value(mut self, value: &str) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Marks the value as a secret.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Unique short name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One line for people.
    pub description: String,
    /// Configuration keys.
    pub config: Vec<ConfigField>,
    /// Optional capabilities (e.g. `native-locking`).
    pub features: Vec<String>,
}

/// The configuration a store is opened with, already checked against the plugin's
/// [`Metadata::config`]: no unknown keys, every required key present, defaults filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config(BTreeMap<String, String>);

impl Config {
    /// Checks raw key/value pairs against the declared fields.
    pub fn new(fields: &[ConfigField], pairs: Vec<(String, String)>) -> Result<Config> {
        let known = || {
            fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut values = BTreeMap::new();
        for (key, value) in pairs {
            if !fields.iter().any(|f| f.name == key) {
                return Err(Error::InvalidConfig(format!(
                    "unknown key `{key}`; this plugin understands: {}",
                    known()
                )));
            }
            values.insert(key, value);
        }
        for field in fields {
            if values.contains_key(&field.name) {
                continue;
            }
            match (&field.default, field.required) {
                (Some(default), _) => {
                    values.insert(field.name.clone(), default.clone());
                }
                (None, true) => {
                    return Err(Error::InvalidConfig(format!(
                        "missing required key `{}`: {}",
                        field.name, field.description
                    )));
                }
                (None, false) => {}
            }
        }
        Ok(Config(values))
    }

    /// The value of a key, if set (or defaulted).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of a key that must be set.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| Error::InvalidConfig(format!("missing required key `{key}`")))
    }

    /// Parses a key's value (if set), naming the key and the expected form on failure.
    pub fn parse<T: std::str::FromStr>(&self, key: &str, expected: &str) -> Result<Option<T>> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| Error::InvalidConfig(format!("`{key}` = `{v}` is not {expected}")))
            })
            .transpose()
    }
}
