//! The plugin's tables: their names from the configuration, and their creation on open.

use stateplug_sdk::postgres::{Connection, DbError, INSUFFICIENT_PRIVILEGE, Value};
use stateplug_sdk::{Error, Result};

/// SQLSTATEs of a concurrent `CREATE … IF NOT EXISTS` that lost the race (two hosts opening
/// the same new database): the object exists now, which is what was asked.
const CREATED_MEANWHILE: &[&str] = &["23505", "42P06", "42P07"];

/// The qualified, quoted names of the plugin's tables and sequence.
pub struct Tables {
    pub schema: String,
    pub objects: String,
    pub locks: String,
    pub versions: String,
}

impl Tables {
    /// The names for `schema` and `table_prefix`, both plain lower-case SQL identifiers.
    pub fn new(schema: &str, prefix: &str) -> Result<Tables> {
        check_identifier("schema", schema, schema)?;
        let objects = format!("{prefix}objects");
        check_identifier("table_prefix", prefix, &objects)?;
        let quoted = |table: &str| format!("\"{schema}\".\"{table}\"");
        Ok(Tables {
            schema: format!("\"{schema}\""),
            objects: quoted(&objects),
            locks: quoted(&format!("{prefix}locks")),
            versions: quoted(&format!("{prefix}versions")),
        })
    }

    /// Creates what is missing. Nothing is created when everything exists, so a user without
    /// `CREATE` can use tables an administrator made (the README has the statements).
    pub fn ensure(&self, db: &Connection, who: &Login) -> Result<()> {
        if self.exist(db)? {
            return Ok(());
        }
        let denied = |what: &str, grant: String| {
            Error::Denied(format!(
                "user `{}` may not create {what} in database `{}`: run `{grant}` as its owner, \
                 or create the tables beforehand (the postgres plugin's README has the \
                 statements)",
                who.username, who.database
            ))
        };
        let statements = [
            (
                format!("CREATE SCHEMA IF NOT EXISTS {}", self.schema),
                denied(
                    &format!("the schema {}", self.schema),
                    format!(
                        "GRANT CREATE ON DATABASE \"{}\" TO \"{}\"",
                        who.database, who.username
                    ),
                ),
            ),
            (
                format!("CREATE SEQUENCE IF NOT EXISTS {}", self.versions),
                self.schema_denied(&denied, who),
            ),
            (
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (path text COLLATE \"C\" PRIMARY KEY, \
                     data bytea NOT NULL, version bigint NOT NULL)",
                    self.objects
                ),
                self.schema_denied(&denied, who),
            ),
            (
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (path text COLLATE \"C\" PRIMARY KEY, \
                     id text NOT NULL, operation text NOT NULL, info text NOT NULL, \
                     who text NOT NULL, version text NOT NULL, created text NOT NULL, \
                     lock_path text NOT NULL, expires bigint)",
                    self.locks
                ),
                self.schema_denied(&denied, who),
            ),
        ];
        for (statement, if_denied) in statements {
            create(db, &statement, if_denied)?;
        }
        Ok(())
    }

    fn schema_denied(&self, denied: &impl Fn(&str, String) -> Error, who: &Login) -> Error {
        denied(
            &format!("tables in the schema {}", self.schema),
            format!(
                "GRANT CREATE ON SCHEMA {} TO \"{}\"",
                self.schema, who.username
            ),
        )
    }

    fn exist(&self, db: &Connection) -> Result<bool> {
        let rows = db.query(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL \
             AND to_regclass($3) IS NOT NULL",
            &[
                Value::Text(self.objects.clone()),
                Value::Text(self.locks.clone()),
                Value::Text(self.versions.clone()),
            ],
        )?;
        Ok(matches!(
            rows.rows.first().and_then(|r| r.first()),
            Some(Value::Boolean(true))
        ))
    }
}

/// Who the plugin logs in as, for the errors that say which privilege is missing.
pub struct Login {
    pub username: String,
    pub database: String,
}

fn create(db: &Connection, statement: &str, if_denied: Error) -> Result<()> {
    for _ in 0..3 {
        match db.execute(statement, &[]) {
            Ok(_) => return Ok(()),
            Err(DbError::StatementFailed(e)) if e.code == INSUFFICIENT_PRIVILEGE => {
                return Err(if_denied);
            }
            Err(DbError::StatementFailed(e)) if CREATED_MEANWHILE.contains(&e.code.as_str()) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn check_identifier(key: &str, value: &str, longest: &str) -> Result<()> {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !value.starts_with(|c: char| c.is_ascii_digit());
    if !plain || longest.len() > 63 || (key == "schema" && value.is_empty()) {
        return Err(Error::InvalidConfig(format!(
            "`{key}` = `{}` must be lower-case letters, digits and `_`, not starting with a \
             digit, and name tables of at most 63 bytes",
            stateplug_sdk::text::bounded(value, 80)
        )));
    }
    Ok(())
}
