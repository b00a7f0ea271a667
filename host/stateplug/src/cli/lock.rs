//! `stateplug lock`: list, acquire, release and break workspace locks.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use stateplug::opening::BackendWorkspaces;
use stateplug_sdk::LockInfo;
use stateplug_state::AuditAction;

use super::audit::record;
use super::output::{print_json, whoami};

#[derive(Subcommand, Debug)]
pub enum LockCommand {
    /// List held locks.
    List,
    /// Lock a workspace (for maintenance windows and scripts); prints the lock id.
    Acquire {
        workspace: String,
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
    Release { workspace: String, id: String },
    /// Break a workspace's lock whoever holds it (recorded with your name).
    ForceUnlock {
        workspace: String,
        /// Who breaks it (default: $USER@host).
        #[arg(long)]
        who: Option<String>,
    },
}

pub(super) async fn run(
    workspaces: &BackendWorkspaces,
    command: LockCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        LockCommand::List => {
            let locks = workspaces.locks().await?;
            if json {
                let list: Vec<_> = locks
                    .iter()
                    .map(|(workspace, lock)| serde_json::json!({ "workspace": workspace, "lock": lock }))
                    .collect();
                return print_json(&list);
            }
            let mut out = std::io::stdout().lock();
            for (workspace, lock) in locks {
                writeln!(
                    out,
                    "{workspace}\t{}\t{}\t{}\t{}",
                    lock.id, lock.who, lock.operation, lock.created
                )?;
            }
            Ok(())
        }
        LockCommand::Acquire {
            workspace,
            who,
            ttl,
            info,
        } => {
            let lock = new_lock(&workspace, who, ttl, info);
            let lock = workspaces.lock(&workspace, lock).await?;
            record(
                workspaces,
                AuditAction::Lock,
                &workspace,
                (None, None),
                Some(&lock.id),
            )
            .await;
            if json {
                return print_json(&lock);
            }
            println!("{}", lock.id);
            Ok(())
        }
        LockCommand::Release { workspace, id } => {
            workspaces.unlock(&workspace, &id).await?;
            record(
                workspaces,
                AuditAction::Unlock,
                &workspace,
                (None, None),
                Some(&id),
            )
            .await;
            eprintln!("released the lock on `{workspace}`");
            Ok(())
        }
        LockCommand::ForceUnlock { workspace, who } => {
            match workspaces
                .force_unlock(&workspace, &who.unwrap_or_else(whoami))
                .await?
            {
                Some(broken) => {
                    let id = Some(broken.id.as_str());
                    record(
                        workspaces,
                        AuditAction::ForceUnlock,
                        &workspace,
                        (None, None),
                        id,
                    )
                    .await;
                    eprintln!(
                        "broke the lock {} of {} on `{workspace}`",
                        broken.id, broken.who
                    )
                }
                None => eprintln!("`{workspace}` was not locked"),
            }
            Ok(())
        }
    }
}

/// A lock taken from the command line on `path`: a fresh id, the user (or `who`), and an
/// expiry `ttl` from now when given.
pub(super) fn new_lock(
    path: &str,
    who: Option<String>,
    ttl: Option<std::time::Duration>,
    info: String,
) -> LockInfo {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    LockInfo {
        id: uuid::Uuid::new_v4().to_string(),
        operation: "OperationTypeStateplugLock".into(),
        info,
        who: who.unwrap_or_else(whoami),
        version: env!("CARGO_PKG_VERSION").into(),
        created: LockInfo::now_rfc3339(),
        path: path.to_string(),
        expires: ttl.map(|ttl| (now + ttl).as_millis() as u64),
    }
}
