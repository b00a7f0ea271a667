//! `stateplug workspace`: list and delete workspaces.

use std::io::Write;

use anyhow::bail;
use clap::Subcommand;
use stateplug::opening::BackendWorkspaces;
use stateplug_sdk::layout::DEFAULT_WORKSPACE;
use stateplug_state::AuditAction;

use super::audit::record;
use super::output::print_json;

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// List workspaces with serial, lineage, size, update time and lock holder.
    List,
    /// Delete a workspace's state (its history is kept).
    Delete {
        workspace: String,
        /// Delete even while locked or while the state manages resources.
        #[arg(long)]
        force: bool,
    },
}

pub(super) async fn run(
    workspaces: &BackendWorkspaces,
    command: WorkspaceCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        WorkspaceCommand::List => {
            let list = workspaces.infos().await?;
            if json {
                return print_json(&list);
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<24} {:>8} {:>10} {:<26} {:<38} LOCKED BY",
                "WORKSPACE", "SERIAL", "SIZE", "UPDATED", "LINEAGE"
            )?;
            for ws in list {
                writeln!(
                    out,
                    "{:<24} {:>8} {:>10} {:<26} {:<38} {}",
                    ws.name,
                    ws.serial.map(|s| s.to_string()).unwrap_or("-".into()),
                    ws.size,
                    ws.updated.unwrap_or("-".into()),
                    ws.lineage.unwrap_or("-".into()),
                    ws.lock
                        .map(|l| format!("{} ({})", l.who, l.id))
                        .unwrap_or_default(),
                )?;
            }
            Ok(())
        }
        WorkspaceCommand::Delete { workspace, force } => {
            if workspace == DEFAULT_WORKSPACE {
                bail!("the default workspace cannot be deleted (it always exists)");
            }
            let serial = workspaces
                .delete_with_serial(&workspace, None, force)
                .await?;
            record(
                workspaces,
                AuditAction::Delete,
                &workspace,
                (serial, None),
                None,
            )
            .await;
            eprintln!("deleted the state of workspace `{workspace}` (its history is kept)");
            Ok(())
        }
    }
}
