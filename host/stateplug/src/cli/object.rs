//! `stateplug object`: get, put, rm, ls, lock and unlock objects of the object API (the key
//! space `stateplug serve` answers at `/api/v1/objects`), on the configured backend.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use stateplug_runtime::Backend;
use stateplug_sdk::Precondition;
use stateplug_state::{MAX_PAGE, Objects};

use super::lock::new_lock;
use super::output::{print_json, read_input};

#[derive(Subcommand, Debug)]
pub enum ObjectCommand {
    /// Print an object's bytes to stdout (its version goes to stderr).
    Get { path: String },
    /// Store a file (`-` for stdin) at a path; prints the new version.
    Put {
        path: String,
        /// The file; `-` reads stdin.
        file: PathBuf,
        /// Only create: refuse when an object exists at the path.
        #[arg(long, conflicts_with = "if_version")]
        if_absent: bool,
        /// Only replace this version (as `get` or `put` printed it).
        #[arg(long, value_name = "VERSION")]
        if_version: Option<String>,
        /// The lock id, when the object is locked by you.
        #[arg(long, value_name = "ID")]
        lock_id: Option<String>,
    },
    /// Delete an object (deleting one that is not there succeeds).
    Rm {
        path: String,
        /// Only delete this version.
        #[arg(long, value_name = "VERSION")]
        if_version: Option<String>,
        /// The lock id, when the object is locked by you.
        #[arg(long, value_name = "ID")]
        lock_id: Option<String>,
    },
    /// List the paths under a prefix, relative to it, one per line.
    Ls {
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Lock an object (it need not exist); prints the lock id.
    Lock {
        path: String,
        /// Who holds it (default: $USER@host).
        #[arg(long)]
        who: Option<String>,
        /// Let the lock expire after this long (e.g. 2h), so it can be taken over.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// Why, shown to whoever is refused.
        #[arg(long, default_value = "")]
        info: String,
    },
    /// Release a lock you hold.
    Unlock { path: String, id: String },
}

pub(super) async fn run(
    objects: &Objects<Backend>,
    command: ObjectCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        ObjectCommand::Get { path } => {
            let Some(object) = objects.get(&path).await? else {
                bail!("no object at `{path}`: `stateplug object put {path} FILE` creates it");
            };
            std::io::stdout().lock().write_all(&object.data)?;
            eprintln!(
                "object `{path}`: {} bytes, version {}",
                object.data.len(),
                object.version
            );
            Ok(())
        }
        ObjectCommand::Put {
            path,
            file,
            if_absent,
            if_version,
            lock_id,
        } => {
            let data = read_input(&file)?;
            let precondition = match (if_absent, if_version) {
                (true, _) => Precondition::Absent,
                (false, Some(version)) => Precondition::VersionIs(version),
                (false, None) => Precondition::None,
            };
            let version = objects
                .put(&path, data, precondition, lock_id.as_deref())
                .await?;
            if json {
                return print_json(&serde_json::json!({ "path": path, "version": version }));
            }
            println!("{version}");
            Ok(())
        }
        ObjectCommand::Rm {
            path,
            if_version,
            lock_id,
        } => {
            let precondition = if_version.map_or(Precondition::None, Precondition::VersionIs);
            objects
                .delete(&path, precondition, lock_id.as_deref())
                .await?;
            eprintln!("`{path}` is deleted");
            Ok(())
        }
        ObjectCommand::Ls { prefix } => {
            let mut paths = Vec::new();
            let mut cursor = None;
            loop {
                let page = objects.list(&prefix, cursor.as_deref(), MAX_PAGE).await?;
                paths.extend(page.paths);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            if json {
                return print_json(&paths);
            }
            let mut out = std::io::stdout().lock();
            for path in paths {
                writeln!(out, "{path}")?;
            }
            Ok(())
        }
        ObjectCommand::Lock {
            path,
            who,
            ttl,
            info,
        } => {
            let lock = new_lock(&path, who, ttl, info);
            let lock = objects.lock(&path, lock).await?;
            if json {
                return print_json(&lock);
            }
            println!("{}", lock.id);
            Ok(())
        }
        ObjectCommand::Unlock { path, id } => {
            objects.unlock(&path, &id).await?;
            eprintln!("released the lock on `{path}`");
            Ok(())
        }
    }
}
