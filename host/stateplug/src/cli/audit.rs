//! `stateplug audit [<workspace>]`: the audit trail, newest first; and [`record`], with which
//! the commands that change a workspace record what they did.

use std::io::Write;

use stateplug::opening::BackendWorkspaces;
use stateplug_sdk::text::bounded;
use stateplug_state::{AuditAction, AuditEvent, DEFAULT_AUDIT_LIST, MAX_AUDIT_LIST};

/// `stateplug audit`'s arguments.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only this workspace's events (default: every workspace's).
    workspace: Option<String>,
    /// Show at most this many events, the newest.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_AUDIT_LIST as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_AUDIT_LIST as u64))]
    limit: u64,
}

/// Longest text shown in a table cell; the rest is cut and marked.
const CELL: usize = 200;

/// Prints the events as a table, or with `--json` one JSON object a line.
pub(super) async fn run(
    workspaces: &BackendWorkspaces,
    args: AuditArgs,
    json: bool,
) -> anyhow::Result<()> {
    let limit = usize::try_from(args.limit).unwrap_or(MAX_AUDIT_LIST);
    let events = workspaces
        .audit()
        .list(args.workspace.as_deref(), limit)
        .await?;
    let mut out = std::io::stdout().lock();
    if json {
        for event in &events {
            writeln!(out, "{}", json_line(event)?)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:<12} {:<24} {:<24} {:<21} {:<13} LOCK",
        "WHEN", "ACTION", "WORKSPACE", "ACTOR", "CLIENT", "SERIAL"
    )?;
    // Every field came through the plugin: escaped and bounded before it reaches a terminal.
    let cell = |text: Option<&str>| text.map_or("-".into(), |t| bounded(t, CELL).into_owned());
    let serial = |serial: Option<u64>| serial.map_or("-".into(), |s| s.to_string());
    for event in &events {
        let serials = match (event.serial_before, event.serial_after) {
            (None, None) => "-".to_string(),
            (before, after) => format!("{}→{}", serial(before), serial(after)),
        };
        writeln!(
            out,
            "{:<24} {:<12} {:<24} {:<24} {:<21} {:<13} {}",
            cell(Some(&event.at)),
            event.action,
            cell(Some(&event.workspace)),
            cell(Some(&event.actor)),
            cell(event.client.as_deref()),
            serials,
            cell(event.lock_id.as_deref()),
        )?;
    }
    Ok(())
}

/// An event as one line of JSON. serde escapes C0 controls; DEL, C1 controls and the
/// bidirectional formatting characters are escaped too (the same string to a JSON reader),
/// so a line shown on a terminal cannot repaint it.
fn json_line(event: &AuditEvent) -> anyhow::Result<String> {
    let text = serde_json::to_string(event)?;
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            line.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            line.push(c);
        }
    }
    Ok(line)
}

/// Who runs this command, as the audit trail names it: `cli:<$USER>`, or `cli:<uid>`.
fn actor() -> String {
    let user = std::env::var("USER").ok().filter(|user| !user.is_empty());
    format!("cli:{}", user.unwrap_or_else(uid))
}

#[cfg(unix)]
fn uid() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }.to_string()
}

#[cfg(not(unix))]
fn uid() -> String {
    "unknown".into()
}

/// Records a change this command made to `workspace` (by [`actor`], with no client address).
/// Never fails the change: a failed recording is logged at warn, and the change stands.
pub(super) async fn record(
    workspaces: &BackendWorkspaces,
    action: AuditAction,
    workspace: &str,
    (before, after): (Option<u64>, Option<u64>),
    lock_id: Option<&str>,
) {
    let event = AuditEvent::new(action, workspace, &actor())
        .with_serials(before, after)
        .with_lock_id(lock_id);
    workspaces.audit().record(&event).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_escapes_what_could_repaint_a_terminal() {
        let event = AuditEvent::new(AuditAction::Lock, "dev", "eve\u{9b}2J\u{202e}\x1b[0m\n");
        let line = json_line(&event).unwrap();
        assert!(
            !line.contains(['\u{9b}', '\u{202e}', '\x1b', '\n']),
            "{line}"
        );
        let back: AuditEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, event, "the same event to a JSON reader");
    }
}
