//! Between the contract's generated types and the host's: what goes into a plugin, and what
//! comes out of one. Everything a plugin answers is untrusted: its messages and lock fields
//! are bounded and escaped here, before they can reach a log, an answer or a person.

use stateplug_sdk::text::untrusted;
use stateplug_sdk::{LockInfo, Precondition};

use crate::bindings::contract;
use crate::error::Error;

stateplug_sdk::__same_fields!(contract::LockInfo, LockInfo, { id, operation, info, who, version, created, path, expires });

impl From<Precondition> for contract::Precondition {
    fn from(p: Precondition) -> Self {
        match p {
            Precondition::None => contract::Precondition::None,
            Precondition::Absent => contract::Precondition::Absent,
            Precondition::VersionIs(v) => contract::Precondition::VersionIs(v),
        }
    }
}

/// Longest version token accepted from a plugin (ETags and content hashes are tens of bytes).
const MAX_VERSION_LEN: usize = 1024;

fn text(message: String) -> String {
    untrusted(&message).into_owned()
}

/// A lock as a plugin reported it, with every text field bounded and escaped: the fields are
/// shown to people (Terraform prints the holder's `Who` and `Info`), logged, and stored in
/// force-unlock records.
pub(crate) fn lock_from_plugin(lock: contract::LockInfo) -> LockInfo {
    LockInfo {
        // The id is compared with the one a writer holds: kept as it is when it is a lock id
        // the host could have given (`check_lock_id`), so the holder is recognised.
        id: if stateplug_state::check_lock_id(&lock.id).is_ok() {
            lock.id
        } else {
            text(lock.id)
        },
        operation: text(lock.operation),
        info: text(lock.info),
        who: text(lock.who),
        version: text(lock.version),
        created: text(lock.created),
        path: text(lock.path),
        expires: lock.expires,
    }
}

/// A version token goes back into the plugin, into answers (ETags) and into logs: it must be
/// short and printable.
pub(crate) fn version_from_plugin(
    plugin: &str,
    path: &str,
    version: String,
) -> Result<String, Error> {
    if version.len() <= MAX_VERSION_LEN && !version.chars().any(char::is_control) {
        return Ok(version);
    }
    Err(Error::Plugin {
        plugin: plugin.to_string(),
        message: format!(
            "it answered for `{path}` with a version token of {} bytes that is longer than \
             {MAX_VERSION_LEN} or holds control characters (`{}`); the answer was discarded \
             (a plugin bug, or a hostile plugin)",
            version.len(),
            stateplug_sdk::text::bounded(&version, 100)
        ),
    })
}

/// A contract error as a host error naming the plugin and the path.
pub(crate) fn error_from_plugin(plugin: &str, path: &str, e: contract::Error) -> Error {
    let plugin = plugin.to_string();
    let path = path.to_string();
    match e {
        contract::Error::NotFound => Error::NotFound { path },
        contract::Error::Locked(holder) => Error::Locked {
            path,
            holder: Box::new(lock_from_plugin(holder)),
        },
        contract::Error::PreconditionFailed => Error::PreconditionFailed { path },
        contract::Error::InvalidConfig(message) => Error::InvalidConfig {
            plugin,
            message: text(message),
        },
        contract::Error::InvalidPath(message) => Error::InvalidPath(text(message)),
        contract::Error::Denied(message) => Error::Denied {
            plugin,
            message: text(message),
        },
        contract::Error::Unavailable(message) => Error::Unavailable {
            plugin,
            message: text(message),
        },
        contract::Error::Other(message) => Error::Plugin {
            plugin,
            message: text(message),
        },
        contract::Error::Busy(message) => Error::Unavailable {
            plugin,
            message: format!("`{path}` is busy: {}", text(message)),
        },
    }
}
