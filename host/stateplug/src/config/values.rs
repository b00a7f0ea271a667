//! Parsing one setting: text, sizes, durations, lists, directory and host grants.

use std::path::Path;
use std::time::Duration;

use stateplug_runtime::{DEFAULT_GUEST_DIR, DirGrant, HostGrant};

use super::{Result, invalid};

pub(super) fn value_text(key: &str, value: &toml::Value) -> Result<String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(invalid(format!(
            "`{key}` must be a string, number or boolean, not {}",
            value.type_str()
        ))),
    }
}

/// A list setting: a TOML array, or (from the environment or a flag) a comma-separated string.
fn list_items(key: &str, value: &toml::Value) -> Result<Vec<toml::Value>> {
    match value {
        toml::Value::Array(items) => Ok(items.clone()),
        toml::Value::String(s) => Ok(s
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| toml::Value::String(s.to_string()))
            .collect()),
        other => Err(invalid(format!(
            "`{key}` must be a list, not {}",
            other.type_str()
        ))),
    }
}

/// `allow_hosts` is a list of host grants (see [`HostGrant`]); from the environment or a
/// flag, a comma-separated list.
pub(super) fn parse_allow_hosts(value: &toml::Value) -> Result<Vec<HostGrant>> {
    list_items("allow_hosts", value)?
        .iter()
        .map(|item| {
            let entry = item.as_str().ok_or_else(|| {
                invalid(format!(
                    "an `allow_hosts` entry must be a string, not {}",
                    item.type_str()
                ))
            })?;
            entry
                .parse::<HostGrant>()
                .map_err(|e| invalid(format!("`allow_hosts`: {e}")))
        })
        .collect()
}

/// Without `allow_hosts`, a plugin may reach the endpoints it is configured with (`endpoint`,
/// `*_endpoint`), the database its `host` and `port` name (`postgres://HOST:PORT`, port 5432
/// by default), and nothing else.
pub(super) fn endpoint_grants(plugin_config: &[(String, String)]) -> Vec<HostGrant> {
    let value = |key: &str| plugin_config.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let database = value("host").and_then(|host| {
        let port = value("port").map_or(Some(5432), |p| p.trim().parse().ok())?;
        HostGrant::database(host.trim(), port)
    });
    plugin_config
        .iter()
        .filter(|(key, _)| key == "endpoint" || key.ends_with("_endpoint"))
        .filter_map(|(_, url)| HostGrant::from_endpoint(url))
        .flatten()
        .chain(database)
        .collect()
}

/// `dirs` is a list of host paths (the first seen as /data) or tables
/// `{ host = "...", guest = "/x", read_only = true }`; from the environment or a flag, a
/// comma-separated list of host paths.
pub(super) fn parse_dirs(value: &toml::Value, base: &Path) -> Result<Vec<DirGrant>> {
    let items = list_items("dirs", value)?;
    let mut grants: Vec<DirGrant> = Vec::new();
    for item in items {
        let (host, guest, read_only) = match &item {
            toml::Value::String(host) => (host.clone(), None, false),
            toml::Value::Table(t) => {
                if let Some(key) = t
                    .keys()
                    .find(|k| !["host", "guest", "read_only"].contains(&k.as_str()))
                {
                    return Err(invalid(format!(
                        "unknown key `{key}` in `dirs`; use host, guest, read_only"
                    )));
                }
                let host = t
                    .get("host")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| invalid("a `dirs` entry has no `host` path"))?;
                let guest = t.get("guest").and_then(|v| v.as_str()).map(str::to_string);
                let read_only = t
                    .get("read_only")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                (host.to_string(), guest, read_only)
            }
            other => {
                return Err(invalid(format!(
                    "a `dirs` entry must be a path or a table, not {}",
                    other.type_str()
                )));
            }
        };
        let guest = match guest {
            Some(guest) if guest.starts_with('/') => guest,
            Some(guest) => {
                return Err(invalid(format!(
                    "`dirs` guest path `{guest}` must be absolute"
                )));
            }
            None if grants.iter().all(|g| g.guest != DEFAULT_GUEST_DIR) => {
                DEFAULT_GUEST_DIR.to_string()
            }
            None => {
                return Err(invalid(format!(
                    "`dirs`: only one directory can be seen as {DEFAULT_GUEST_DIR}; give the others a `guest` path"
                )));
            }
        };
        grants.push(DirGrant {
            host: base.join(host),
            guest,
            read_only,
        });
    }
    Ok(grants)
}

pub(super) fn parse_duration(key: &str, value: &toml::Value) -> Result<Duration> {
    let text = value_text(key, value)?;
    humantime::parse_duration(&text).map_err(|e| {
        invalid(format!(
            "`{key}` = `{text}` is not a duration like 30s or 2h ({e})"
        ))
    })
}

/// `268435456`, `256MiB`, `1GiB`, `512KiB` (K, M, G are read as KiB, MiB, GiB).
pub fn parse_size(key: &str, value: &toml::Value) -> Result<usize> {
    let text = value_text(key, value)?;
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => 64,
    };
    number
        .parse::<usize>()
        .ok()
        .filter(|_| shift < 64)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| invalid(format!("`{key}` = `{text}` is not a size like 256MiB")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let size = |s: &str| parse_size("x", &toml::Value::String(s.into()));
        assert_eq!(size("256MiB").unwrap(), 256 << 20);
        assert_eq!(size("1g").unwrap(), 1 << 30);
        assert_eq!(size("4096").unwrap(), 4096);
        assert!(size("-1").is_err() && size("12 parsecs").is_err() && size("").is_err());
    }
}
