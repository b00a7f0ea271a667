//! The store: the contract's operations as single statements on the plugin's tables.

use std::time::{SystemTime, UNIX_EPOCH};

use stateplug_sdk::postgres::{ConnectOptions, Connection, Value, ssl_mode};
use stateplug_sdk::{
    Config, ConfigField, Error, LockInfo, Metadata, Object, Page, Precondition, Result, Store, log,
};

use crate::schema::{Login, Tables};

/// Paths one listing page holds.
const PAGE_SIZE: i64 = 1000;
/// Attempts of a lock operation whose lock row changes between its two statements.
const ATTEMPTS: usize = 8;

/// An opened store: one database connection (the host's pool behind it) and the tables.
pub struct Postgres {
    db: Connection,
    sql: Statements,
}

/// The statements, with the configured table names in them, built once.
struct Statements {
    read: String,
    exists: String,
    put: String,
    create: String,
    replace: String,
    delete: String,
    delete_version: String,
    list: String,
    lock: String,
    lock_info: String,
    unlock: String,
    force_unlock: String,
    list_locks: String,
}

/// The lock columns, in [`lock_from_row`]'s order.
const LOCK_COLUMNS: &str = "id, operation, info, who, version, created, lock_path, expires";

impl Statements {
    fn new(t: &Tables) -> Statements {
        let (objects, locks, versions) = (&t.objects, &t.locks, &t.versions);
        let next = format!("nextval('{}')", versions.replace('\'', "''"));
        Statements {
            read: format!("SELECT data, version FROM {objects} WHERE path = $1"),
            exists: format!("SELECT 1 FROM {objects} WHERE path = $1"),
            put: format!(
                "INSERT INTO {objects} (path, data, version) VALUES ($1, $2, {next}) \
                 ON CONFLICT (path) DO UPDATE SET data = excluded.data, \
                 version = excluded.version RETURNING version"
            ),
            create: format!(
                "INSERT INTO {objects} (path, data, version) VALUES ($1, $2, {next}) \
                 ON CONFLICT (path) DO NOTHING RETURNING version"
            ),
            replace: format!(
                "UPDATE {objects} SET data = $2, version = {next} \
                 WHERE path = $1 AND version = $3 RETURNING version"
            ),
            delete: format!("DELETE FROM {objects} WHERE path = $1"),
            delete_version: format!("DELETE FROM {objects} WHERE path = $1 AND version = $2"),
            list: format!(
                "SELECT path FROM {objects} WHERE path >= $1 AND starts_with(path, $1) \
                 AND ($2::text IS NULL OR path > $2) ORDER BY path LIMIT $3"
            ),
            lock: format!(
                "INSERT INTO {locks} AS held (path, {LOCK_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (path) DO UPDATE SET id = excluded.id, \
                 operation = excluded.operation, info = excluded.info, who = excluded.who, \
                 version = excluded.version, created = excluded.created, \
                 lock_path = excluded.lock_path, expires = excluded.expires \
                 WHERE held.expires IS NOT NULL AND held.expires <= $10 \
                 RETURNING (xmax <> 0)"
            ),
            lock_info: format!("SELECT {LOCK_COLUMNS} FROM {locks} WHERE path = $1"),
            unlock: format!("DELETE FROM {locks} WHERE path = $1 AND id = $2"),
            force_unlock: format!("DELETE FROM {locks} WHERE path = $1 RETURNING {LOCK_COLUMNS}"),
            list_locks: format!(
                "SELECT path, {LOCK_COLUMNS} FROM {locks} \
                 WHERE path >= $1 AND starts_with(path, $1) ORDER BY path"
            ),
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn int(n: i64) -> Value {
    Value::Int64(n)
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn unexpected(what: &str) -> Error {
    Error::other(format!(
        "the database answered {what} with an unexpected row shape"
    ))
}

/// The version token of a `… RETURNING version` answer, `None` when no row changed.
fn returned_version(rows: &[Vec<Value>]) -> Result<Option<String>> {
    match rows.first().map(|r| r.as_slice()) {
        None => Ok(None),
        Some([Value::Int64(v)]) => Ok(Some(v.to_string())),
        Some(_) => Err(unexpected("a write")),
    }
}

fn lock_from_row(row: &[Value]) -> Result<LockInfo> {
    let field = |i: usize| match row.get(i) {
        Some(Value::Text(s)) => Ok(s.clone()),
        _ => Err(unexpected("a lock query")),
    };
    let expires = match row.get(7) {
        Some(Value::Null) => None,
        Some(Value::Int64(ms)) => Some(u64::try_from(*ms).unwrap_or(0)),
        _ => return Err(unexpected("a lock query")),
    };
    Ok(LockInfo {
        id: field(0)?,
        operation: field(1)?,
        info: field(2)?,
        who: field(3)?,
        version: field(4)?,
        created: field(5)?,
        path: field(6)?,
        expires,
    })
}

impl Store for Postgres {
    fn metadata() -> Metadata {
        let f = ConfigField::optional;
        Metadata {
            name: "postgres".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Objects and locks in PostgreSQL tables (through the host's database \
                          capability)"
                .into(),
            config: vec![
                ConfigField::required(
                    "host",
                    "the database server's name or address; granted as `postgres://HOST:PORT` \
                     unless the backend sets `allow_hosts`",
                ),
                f("port", "the server's port").default_value("5432"),
                ConfigField::required("database", "the database (it must exist)"),
                ConfigField::required("username", "the user to log in as"),
                f("password", "the user's password").secret(),
                f(
                    "schema",
                    "the schema holding the plugin's tables (created when missing)",
                )
                .default_value("stateplug"),
                f(
                    "ssl_mode",
                    "`disable`, `prefer` (TLS when offered), `require` (TLS, certificate not \
                     checked) or `verify-full` (TLS, certificate and name checked)",
                )
                .default_value("prefer"),
                f(
                    "ssl_root_cert",
                    "PEM certificates to trust for `verify-full` instead of the public roots",
                ),
                f(
                    "table_prefix",
                    "prefix of the table names, so backends can share a schema",
                )
                .default_value(""),
            ],
            features: vec!["native-locking".into()],
        }
    }

    fn open(config: Config) -> Result<Self> {
        let port = config
            .parse::<u16>("port", "a port number")?
            .unwrap_or(5432);
        let mode_text = config.get("ssl_mode").unwrap_or("prefer");
        let ssl_mode = ssl_mode(mode_text).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "`ssl_mode` = `{}` is not one of disable, prefer, require, verify-full",
                stateplug_sdk::text::bounded(mode_text, 40)
            ))
        })?;
        let tables = Tables::new(
            config.get("schema").unwrap_or("stateplug"),
            config.get("table_prefix").unwrap_or(""),
        )?;
        let login = Login {
            username: config.require("username")?.to_string(),
            database: config.require("database")?.to_string(),
        };
        let db = Connection::open(&ConnectOptions {
            host: config.require("host")?.to_string(),
            port,
            database: login.database.clone(),
            username: login.username.clone(),
            password: config.get("password").unwrap_or("").to_string(),
            ssl_mode,
            ssl_root_cert: config.get("ssl_root_cert").map(str::to_string),
        })?;
        tables.ensure(&db, &login)?;
        Ok(Postgres {
            db,
            sql: Statements::new(&tables),
        })
    }

    fn read(&self, path: &str) -> Result<Object> {
        let rows = self.db.query(&self.sql.read, &[text(path)])?.rows;
        match rows.into_iter().next().as_deref() {
            None => Err(Error::NotFound),
            Some([Value::Binary(data), Value::Int64(version)]) => Ok(Object {
                data: data.clone(),
                version: version.to_string(),
            }),
            Some(_) => Err(unexpected("a read")),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(!self
            .db
            .query(&self.sql.exists, &[text(path)])?
            .rows
            .is_empty())
    }

    fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String> {
        let rows = match precondition {
            Precondition::None => {
                let params = [text(path), Value::Binary(data)];
                self.db.query(&self.sql.put, &params)?.rows
            }
            Precondition::Absent => {
                let params = [text(path), Value::Binary(data)];
                self.db.query(&self.sql.create, &params)?.rows
            }
            Precondition::VersionIs(expected) => {
                // A token this plugin never gave cannot match any object.
                let Ok(expected) = expected.parse::<i64>() else {
                    return Err(Error::PreconditionFailed);
                };
                let params = [text(path), Value::Binary(data), int(expected)];
                self.db.query(&self.sql.replace, &params)?.rows
            }
        };
        returned_version(&rows)?.ok_or(Error::PreconditionFailed)
    }

    fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        match precondition {
            Precondition::None => {
                self.db.execute(&self.sql.delete, &[text(path)])?;
                Ok(())
            }
            // Deleting "only if absent" changes nothing; it fails when there is an object.
            Precondition::Absent if self.exists(path)? => Err(Error::PreconditionFailed),
            Precondition::Absent => Ok(()),
            Precondition::VersionIs(expected) => {
                let Ok(expected) = expected.parse::<i64>() else {
                    return Err(Error::PreconditionFailed);
                };
                let params = [text(path), int(expected)];
                match self.db.execute(&self.sql.delete_version, &params)? {
                    0 => Err(Error::PreconditionFailed),
                    _ => Ok(()),
                }
            }
        }
    }

    fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
        let cursor = cursor.map_or(Value::Null, text);
        let params = [text(prefix), cursor, int(PAGE_SIZE + 1)];
        let rows = self.db.query(&self.sql.list, &params)?.rows;
        let mut paths = Vec::with_capacity(rows.len());
        for row in rows {
            match row.as_slice() {
                [Value::Text(path)] => paths.push(path.clone()),
                _ => return Err(unexpected("a listing")),
            }
        }
        let more = paths.len() > PAGE_SIZE as usize;
        paths.truncate(PAGE_SIZE as usize);
        let next_cursor = if more { paths.last().cloned() } else { None };
        Ok(Page { paths, next_cursor })
    }

    fn lock(&self, path: &str, info: LockInfo) -> Result<()> {
        let expires = info
            .expires
            .map_or(Value::Null, |ms| int(i64::try_from(ms).unwrap_or(i64::MAX)));
        for _ in 0..ATTEMPTS {
            let params = [
                text(path),
                text(&info.id),
                text(&info.operation),
                text(&info.info),
                text(&info.who),
                text(&info.version),
                text(&info.created),
                text(&info.path),
                expires.clone(),
                int(now_ms()),
            ];
            let rows = self.db.query(&self.sql.lock, &params)?.rows;
            match rows.first().map(|r| r.as_slice()) {
                Some([Value::Boolean(took_over)]) => {
                    if *took_over {
                        log::warn(&format!("took over an expired lock on `{path}`"));
                    }
                    return Ok(());
                }
                Some(_) => return Err(unexpected("a lock")),
                None => {}
            }
            // Held and not expired: report the holder (unless it let go in between).
            if let Some(holder) = self.lock_info(path)? {
                return Err(Error::Locked(Box::new(holder)));
            }
        }
        Err(Error::Unavailable(format!(
            "the lock on `{path}` kept changing during {ATTEMPTS} attempts; try again"
        )))
    }

    fn unlock(&self, path: &str, id: &str) -> Result<()> {
        if self.db.execute(&self.sql.unlock, &[text(path), text(id)])? == 1 {
            return Ok(());
        }
        match self.lock_info(path)? {
            Some(holder) => Err(Error::Locked(Box::new(holder))),
            None => Err(Error::NotFound),
        }
    }

    fn lock_info(&self, path: &str) -> Result<Option<LockInfo>> {
        let rows = self.db.query(&self.sql.lock_info, &[text(path)])?.rows;
        rows.first().map(|row| lock_from_row(row)).transpose()
    }

    fn force_unlock(&self, path: &str) -> Result<Option<LockInfo>> {
        let rows = self.db.query(&self.sql.force_unlock, &[text(path)])?.rows;
        rows.first().map(|row| lock_from_row(row)).transpose()
    }

    fn list_locks(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>> {
        let rows = self.db.query(&self.sql.list_locks, &[text(prefix)])?.rows;
        rows.iter()
            .map(|row| match row.split_first() {
                Some((Value::Text(path), lock)) => Ok((path.clone(), lock_from_row(lock)?)),
                _ => Err(unexpected("a lock listing")),
            })
            .collect()
    }
}
