//! `stateplug kv`: get, set, rm and ls key-values (the key space `stateplug serve` answers at
//! `/api/v1/kv`), on the configured backend.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::bail;
use base64::Engine as _;
use clap::Subcommand;
use stateplug_runtime::Backend;
use stateplug_state::Kv;

use super::output::{print_json, read_input};

#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Print a key's value to stdout (its version, and expiry if any, go to stderr).
    Get { namespace: String, key: String },
    /// Set a key to a value (`-` reads it from stdin); prints the new version.
    Set {
        namespace: String,
        key: String,
        /// The value itself; `-` reads stdin.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Let the key expire after this long (e.g. 90s, 5m, 2h; at most 365d); without it,
        /// the key keeps no TTL.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Delete a key (deleting one that is not there succeeds).
    Rm { namespace: String, key: String },
    /// List a namespace's keys, one per line, sorted.
    Ls {
        namespace: String,
        /// Only the keys matching this glob (`*` matches `/` too).
        #[arg(long = "match", value_name = "GLOB", default_value = "*")]
        pattern: String,
    },
}

pub(super) async fn run(kv: &Kv<Backend>, command: KvCommand, json: bool) -> anyhow::Result<()> {
    match command {
        KvCommand::Get { namespace, key } => {
            let Some(value) = kv.get(&namespace, &key).await? else {
                bail!(
                    "no key `{key}` in namespace `{namespace}` (or it expired): `stateplug kv \
                     set {namespace} {key} VALUE` sets it"
                );
            };
            let expires_at = value.expires.map(|ms| {
                humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
            });
            if json {
                return print_json(&serde_json::json!({
                    "namespace": namespace,
                    "key": key,
                    "value": base64::engine::general_purpose::STANDARD.encode(&value.data),
                    "version": value.version,
                    "expires_at": expires_at,
                }));
            }
            std::io::stdout().lock().write_all(&value.data)?;
            let expiry = expires_at.map_or(String::new(), |at| format!(", expires at {at}"));
            eprintln!(
                "key `{key}` of namespace `{namespace}`: {} bytes, version {}{expiry}",
                value.data.len(),
                value.version
            );
            Ok(())
        }
        KvCommand::Set {
            namespace,
            key,
            value,
            ttl,
        } => {
            let data = if value == "-" {
                read_input(Path::new("-"))?
            } else {
                value.into_bytes()
            };
            let version = kv.set(&namespace, &key, data, ttl).await?;
            if json {
                return print_json(&serde_json::json!({
                    "namespace": namespace,
                    "key": key,
                    "version": version,
                }));
            }
            println!("{version}");
            Ok(())
        }
        KvCommand::Rm { namespace, key } => {
            kv.delete(&namespace, &key).await?;
            eprintln!("key `{key}` of namespace `{namespace}` is deleted");
            Ok(())
        }
        KvCommand::Ls { namespace, pattern } => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = kv.list(&namespace, &pattern, cursor.as_deref()).await?;
                keys.extend(page.keys);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            if json {
                return print_json(&keys);
            }
            let mut out = std::io::stdout().lock();
            for key in keys {
                writeln!(out, "{key}")?;
            }
            Ok(())
        }
    }
}
