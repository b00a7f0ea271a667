//! PostgreSQL through the host: the contract's `postgres` interface (`wit/backend.wit`).
//!
//! The host owns the connection, its TLS and the driver; a plugin opens a [`Connection`]
//! with [`ConnectOptions`] and sends statements with typed [`Value`] parameters (`$1`, `$2`,
//! …). The operator must grant the database in the backend's `allow_hosts` as
//! `postgres://HOST:PORT` (by default the plugin's `host` and `port` settings are granted);
//! without it `open` fails with [`DbError::Denied`] naming the refused address.
//!
//! Each statement runs by itself (autocommit) on one of the backend's pooled connections, so
//! make every change that must be atomic one statement: a compare-and-swap is
//! `UPDATE … WHERE path = $1 AND version = $2`, a create-only write
//! `INSERT … ON CONFLICT DO NOTHING`. A statement is cut off at the call's deadline, and a
//! result larger than the instance's memory grant is refused. `plugins/postgres` is the
//! complete example.
//!
//! ```ignore
//! use stateplug_sdk::postgres::{ConnectOptions, Connection, SslMode, Value};
//! let db = Connection::open(&ConnectOptions {
//!     host: "db.internal".into(), port: 5432, database: "state".into(),
//!     username: "stateplug".into(), password: secret, ssl_mode: SslMode::Require,
//!     ssl_root_cert: None,
//! })?;
//! let rows = db.query("select data from objects where path = $1", &[Value::Text(path.into())])?;
//! ```

pub use crate::export::bindings::stateplug::backend::postgres::{
    ConnectOptions, Connection, Error as DbError, RowSet, SqlError, SslMode, Value,
};

/// SQLSTATE of a missing privilege (`permission denied for …`).
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// The `ssl_mode` setting's values, as libpq spells them.
pub fn ssl_mode(text: &str) -> Option<SslMode> {
    match text {
        "disable" => Some(SslMode::Disable),
        "prefer" => Some(SslMode::Prefer),
        "require" => Some(SslMode::Require),
        "verify-full" => Some(SslMode::VerifyFull),
        _ => None,
    }
}

impl From<DbError> for crate::Error {
    /// The contract's error for a database failure: a refused grant, login or privilege is
    /// `denied`, a database away `unavailable`.
    fn from(e: DbError) -> crate::Error {
        match e {
            DbError::Denied(m) | DbError::LoginRefused(m) => crate::Error::Denied(m),
            DbError::Unavailable(m) => crate::Error::Unavailable(m),
            DbError::StatementFailed(e) if e.code == INSUFFICIENT_PRIVILEGE => {
                crate::Error::Denied(e.message)
            }
            DbError::StatementFailed(e) => crate::Error::Other(format!(
                "the database refused a statement ({}): {}",
                e.code, e.message
            )),
            DbError::Invalid(m) => crate::Error::Other(m),
        }
    }
}
