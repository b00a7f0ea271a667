//! `stateplug state`: pull, push, history and rollback of a workspace's state.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use stateplug::opening::BackendWorkspaces;
use stateplug_sdk::layout::DEFAULT_WORKSPACE;
use stateplug_state::{AuditAction, WriteOptions};

use super::audit::record;
use super::output::{print_json, read_input};

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Print a workspace's state to stdout.
    Pull {
        #[arg(default_value = DEFAULT_WORKSPACE)]
        workspace: String,
    },
    /// Store a state file (`-` for stdin) as a workspace's state.
    Push {
        workspace: String,
        /// The state file; `-` reads stdin.
        file: PathBuf,
        /// Skip the lineage and serial checks (logged).
        #[arg(long)]
        force: bool,
        /// The lock id, when the workspace is locked by you.
        #[arg(long, value_name = "ID")]
        lock_id: Option<String>,
    },
    /// The kept versions of a workspace, newest first.
    History { workspace: String },
    /// Make a kept version current again (as a new write with a higher serial).
    Rollback {
        workspace: String,
        serial: u64,
        /// The lock id, when the workspace is locked by you.
        #[arg(long, value_name = "ID")]
        lock_id: Option<String>,
    },
}

pub(super) async fn run(
    workspaces: &BackendWorkspaces,
    command: StateCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        StateCommand::Pull { workspace } => {
            let Some(state) = workspaces.get(&workspace).await? else {
                bail!("workspace `{workspace}` has no state yet");
            };
            std::io::stdout().lock().write_all(&state.data)?;
            Ok(())
        }
        StateCommand::Push {
            workspace,
            file,
            force,
            lock_id,
        } => {
            let data = read_input(&file)?;
            let options = WriteOptions { lock_id, force };
            let stored = workspaces
                .put_with_serials(&workspace, data, &options)
                .await?;
            let serials = (stored.serial_before, Some(stored.serial_after));
            let lock_id = options.lock_id.as_deref();
            record(workspaces, AuditAction::Write, &workspace, serials, lock_id).await;
            let version = stored.version;
            if force {
                eprintln!("forced: the lineage and serial checks were skipped");
            }
            eprintln!("stored workspace `{workspace}` (version {version})");
            Ok(())
        }
        StateCommand::History { workspace } => {
            let entries = workspaces.history(&workspace).await?;
            if json {
                return print_json(&entries);
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>8} {:<26} {:>10} LINEAGE",
                "SERIAL", "SAVED", "SIZE"
            )?;
            for e in entries {
                writeln!(
                    out,
                    "{:>8} {:<26} {:>10} {}",
                    e.serial,
                    e.saved_at,
                    e.size,
                    e.lineage.unwrap_or("-".into())
                )?;
            }
            Ok(())
        }
        StateCommand::Rollback {
            workspace,
            serial,
            lock_id,
        } => {
            let stored = workspaces
                .rollback_with_serials(&workspace, serial, lock_id.as_deref())
                .await?;
            let serials = (stored.serial_before, Some(stored.serial_after));
            let lock_id = lock_id.as_deref();
            record(
                workspaces,
                AuditAction::Rollback,
                &workspace,
                serials,
                lock_id,
            )
            .await;
            let new_serial = stored.serial_after;
            eprintln!(
                "workspace `{workspace}` now holds the state of serial {serial}, stored as serial {new_serial}"
            );
            Ok(())
        }
    }
}
