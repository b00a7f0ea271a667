//! `stateplug migrate --from A --to B`: copies workspaces between two configured backends;
//! also the copying `stateplug import` does from an archive (`archive.rs`).
//!
//! Each workspace is taken on its own, in order, and ends `copied`, `identical` or `refused`
//! (with the reason); a refusal does not stop the run. First both sides are read without
//! locks: a destination that already holds the same bytes (and, with `--with-history`, the
//! same kept versions) is `identical` and nothing is written, not even a lock, so a second
//! run writes nothing. Otherwise the source's lock is taken, then the destination's; both
//! are read again, and the destination is refused when it holds a state of another lineage,
//! a higher serial, or the same serial with other content (its state is never overwritten
//! by an older or unrelated one). The state is written under the destination's lock, read
//! back and compared by SHA-256 with the source's bytes; with `--with-history` the
//! destination's kept versions are then made those of the source (same serials, times and
//! bytes; `Workspaces::replace_history`) and read back too, and the source's audit trail is
//! added to the destination's (`Audit::merge`: events it lacks, the newest its retention
//! keeps). The write is recorded in the destination's audit trail. Both locks are released
//! whatever happened.
//!
//! An interrupted run does not block the next one: its locks are recognised. Each lock says
//! what took it (operation `OperationTypeStateplugMigrate` or `OperationTypeStateplugImport`)
//! and, in its `Info`, the host and process id of the run. A later run on the same host that
//! meets such a lock whose process no longer runs breaks it (recorded by the state layer as a
//! force-unlock by `stateplug migrate`), says so, and takes its own. It lists both sides'
//! locks when it starts, so a workspace the interrupted run had already written (found
//! `identical`) still goes through its locks and is left unlocked. A lock of a run still
//! running, or of a run on another host, is refused like anyone else's, naming its holder;
//! like every lock taken without an expiry, these get the backend's `lock_ttl` when one is
//! configured. Writes are compare-and-swaps in any case, so a lock broken while its run
//! still wrote could not make a write be lost.
//!
//! `--dry-run` reads both sides and reports what a run would do (a lock held by someone
//! else is reported as the refusal it would be); it takes no lock and writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use stateplug::config::{Overrides, Settings};
use stateplug::opening::{BackendWorkspaces, StateError};
use stateplug_runtime::Runtime;
use stateplug_sdk::LockInfo;
use stateplug_sdk::layout::DEFAULT_WORKSPACE;
use stateplug_sdk::text::untrusted;
use stateplug_state::{
    AuditAction, AuditEvent, KeptVersion, StateDoc, WriteOptions, check_workspace,
};

use super::audit::record;
use super::output::{print_json, whoami};

/// `stateplug migrate`'s arguments.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The backend to copy from (a name of the configuration's `[backends]`).
    #[arg(long, value_name = "NAME")]
    from: String,
    /// The backend to copy to.
    #[arg(long, value_name = "NAME")]
    to: String,
    /// Only this workspace (repeatable; default: every workspace with state).
    #[arg(long = "workspace", value_name = "WS")]
    workspaces: Vec<String>,
    /// Make the destination's kept versions those of the source, and add the source's audit
    /// trail to the destination's.
    #[arg(long)]
    with_history: bool,
    /// Report what would happen; take no lock, write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Some workspaces were refused; the report says which and why.
#[derive(Debug)]
pub struct Refused {
    refused: usize,
    total: usize,
    dry_run: bool,
    /// Whether every refusal was a lock held by someone else (exit code 3).
    pub all_locked: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (refused, rest) = match self.dry_run {
            true => ("would refuse", "would be done"),
            false => ("refused", "are done"),
        };
        write!(
            f,
            "{refused} {} of {} workspaces (see above); the others {rest}",
            self.refused, self.total
        )
    }
}

impl std::error::Error for Refused {}

/// Runs `stateplug migrate`.
pub(super) async fn run(
    runtime: &Runtime,
    overrides: &Overrides,
    args: MigrateArgs,
    json: bool,
) -> anyhow::Result<()> {
    if overrides.backend.is_some() || overrides.plugin.is_some() {
        bail!(
            "migrate names its two backends with --from and --to; --backend and --plugin \
             choose the one backend of other commands: drop them"
        );
    }
    if !overrides.backend_config.is_empty() {
        bail!(
            "-c/--backend-config would apply to both backends of a migrate: set the setting in \
             the configuration file, or per backend as STATEPLUG_BACKEND_<NAME>_<KEY>"
        );
    }
    if args.from == args.to {
        bail!(
            "--from and --to both name `{}`: a backend cannot be migrated onto itself",
            args.from
        );
    }
    let names = checked_names(&args.workspaces)?;
    let from = open_named(runtime, overrides, "--from", &args.from).await?;
    let to = open_named(runtime, overrides, "--to", &args.to).await?;
    let source = Source::Backend {
        name: &args.from,
        workspaces: &from,
    };
    let names = match names {
        Some(names) => names,
        None => workspaces_with_state(&from, &args.from).await?,
    };
    let transfer = Transfer {
        source,
        to: &to,
        to_name: &args.to,
        run: Run::new("migrate", format!("{} -> {}", args.from, args.to)),
        with_history: args.with_history,
        dry_run: args.dry_run,
    };
    let report = transfer.run(&names).await;
    report.finish("migrated", json)
}

/// The workspaces named with `--workspace`, checked and without repeats; `None` when none
/// is named.
pub(super) fn checked_names(names: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut checked: Vec<String> = Vec::new();
    for name in names {
        check_workspace(name).map_err(anyhow::Error::msg)?;
        if !checked.contains(name) {
            checked.push(name.clone());
        }
    }
    Ok(Some(checked))
}

/// Every workspace of a backend that has state (`default` only when it has).
pub(super) async fn workspaces_with_state(
    workspaces: &BackendWorkspaces,
    backend: &str,
) -> anyhow::Result<Vec<String>> {
    let mut names = workspaces
        .names()
        .await
        .with_context(|| format!("listing the workspaces of `{backend}`"))?;
    let default_has_state = workspaces
        .get(DEFAULT_WORKSPACE)
        .await
        .with_context(|| format!("reading workspace `{DEFAULT_WORKSPACE}` of `{backend}`"))?
        .is_some();
    if !default_has_state {
        names.retain(|n| n != DEFAULT_WORKSPACE);
    }
    Ok(names)
}

/// Opens a backend of the configuration by name; `flag` says which argument named it.
async fn open_named(
    runtime: &Runtime,
    overrides: &Overrides,
    flag: &str,
    name: &str,
) -> anyhow::Result<BackendWorkspaces> {
    let named = Overrides {
        backend: Some(name.to_string()),
        ..overrides.clone()
    };
    let settings = match Settings::load(&named, std::env::vars()) {
        Ok(settings) => settings,
        Err(e) => {
            let unnamed = Settings::load(overrides, std::env::vars());
            if matches!(unnamed, Ok(s) if s.file.is_none()) {
                bail!(
                    "{flag} {name}: no configuration file found, and migrate copies between \
                     backends named in one: write a stateplug.toml with a `[backends.NAME]` \
                     table for each (or pass --config FILE)"
                );
            }
            return Err(e).context(format!("{flag} {name}"));
        }
    };
    settings
        .backend
        .open_workspaces(runtime)
        .await
        .with_context(|| format!("{flag} {name}: opening backend `{name}`"))
}

/// One workspace as the source holds it.
#[derive(Debug, Clone)]
pub(super) struct SourceState {
    /// The state, verbatim.
    pub data: Vec<u8>,
    /// Its kept versions, oldest first (read only with `--with-history`).
    pub history: Vec<KeptVersion>,
    /// Its audit trail, oldest first (read only with `--with-history`).
    pub audit: Vec<AuditEvent>,
}

/// Where the workspaces come from.
pub(super) enum Source<'a> {
    /// A configured backend: read under its locks.
    Backend {
        name: &'a str,
        workspaces: &'a BackendWorkspaces,
    },
    /// States already read and checked (an archive's), with nothing to lock.
    Loaded {
        name: &'a str,
        states: &'a BTreeMap<String, SourceState>,
    },
}

impl Source<'_> {
    fn name(&self) -> &str {
        match self {
            Source::Backend { name, .. } | Source::Loaded { name, .. } => name,
        }
    }

    async fn read(
        &self,
        workspace: &str,
        with_history: bool,
    ) -> Result<Option<SourceState>, String> {
        match self {
            Source::Backend { name, workspaces } => {
                let reading = |e: StateError| format!("reading it in `{name}` failed: {e}");
                let Some(state) = workspaces.get(workspace).await.map_err(reading)? else {
                    return Ok(None);
                };
                let (history, audit) = match with_history {
                    true => (
                        workspaces.kept_versions(workspace).await.map_err(reading)?,
                        workspaces
                            .audit()
                            .events(workspace)
                            .await
                            .map_err(reading)?,
                    ),
                    false => (Vec::new(), Vec::new()),
                };
                Ok(Some(SourceState {
                    data: state.data,
                    history,
                    audit,
                }))
            }
            Source::Loaded { states, .. } => Ok(states.get(workspace).cloned()),
        }
    }
}

/// This run, as its locks name it.
pub(super) struct Run {
    operation: &'static str,
    /// `stateplug migrate a -> b`.
    what: String,
    id: String,
    pid: u32,
    host: String,
    who: String,
}

/// The operations of the locks of `migrate` and `import` runs.
const RUN_OPERATIONS: [&str; 2] = [
    "OperationTypeStateplugMigrate",
    "OperationTypeStateplugImport",
];

impl Run {
    /// This process's run of `command` (`migrate` or `import`), described by `what`.
    pub(super) fn new(command: &'static str, what: String) -> Run {
        Run {
            operation: match command {
                "import" => RUN_OPERATIONS[1],
                _ => RUN_OPERATIONS[0],
            },
            what: format!("stateplug {command} {what}"),
            id: uuid::Uuid::new_v4().to_string(),
            pid: std::process::id(),
            host: hostname(),
            who: whoami(),
        }
    }

    /// The lock this run takes on `workspace`: its `Info` carries what [`Run::left_behind`]
    /// reads back.
    fn lock(&self, workspace: &str) -> LockInfo {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: self.operation.into(),
            info: format!(
                "{}; run={}; pid={}; host={}",
                self.what, self.id, self.pid, self.host
            ),
            who: self.who.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            created: LockInfo::now_rfc3339(),
            path: workspace.to_string(),
            expires: None,
        }
    }

    /// The process id of the run of `migrate` or `import` on this host that took `lock` and
    /// no longer runs; `None` for any other lock.
    fn left_behind(&self, lock: &LockInfo) -> Option<u32> {
        if !RUN_OPERATIONS.contains(&lock.operation.as_str()) {
            return None;
        }
        let field = |key: &str| {
            lock.info
                .split("; ")
                .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
        };
        let pid: u32 = field("pid")?.parse().ok()?;
        let same_host = field("host")? == self.host;
        (same_host && pid != self.pid && !running(pid)).then_some(pid)
    }
}

/// This machine's name, as the kernel has it.
#[cfg(unix)]
fn hostname() -> String {
    let mut name = [0u8; 256];
    // SAFETY: `name` is writable for its whole length, which is what gethostname is given.
    let status = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) };
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    match status {
        0 => String::from_utf8_lossy(&name[..end]).into_owned(),
        _ => "localhost".into(),
    }
}

#[cfg(not(unix))]
fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "localhost".into())
}

/// Whether process `pid` of this host still runs (a zombie does not); when that cannot be
/// told, it is taken to run, so its lock is left alone.
#[cfg(unix)]
fn running(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    #[cfg(target_os = "linux")]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (command) state ...`: the command may hold spaces and parentheses.
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        return !state.is_some_and(|s| s.starts_with(['Z', 'X']));
    }
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let status = unsafe { libc::kill(pid, 0) };
    status == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn running(_pid: u32) -> bool {
    true
}

/// How a workspace ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    /// Written to the destination (state, or with `--with-history` only kept versions).
    Copied,
    /// The destination already held the same bytes; nothing was written.
    Identical,
    /// Not copied; `reason` says why.
    Refused,
}

/// The report of one workspace.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Outcome {
    workspace: String,
    status: Status,
    /// The source state's serial, lineage, size and lowercase hex SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lineage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// With `--with-history`: the number of kept versions copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    kept_versions: Option<usize>,
    /// With `--with-history`: the number of the source's audit events.
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_events: Option<usize>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The lock in the way, when that is the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_by: Option<LockInfo>,
    /// Locks left by interrupted runs that this run broke to go on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    took_over: Vec<TakenOver>,
}

/// A lock of an interrupted run, broken to go on.
#[derive(Debug, Clone, Serialize)]
struct TakenOver {
    backend: String,
    pid: u32,
    lock_id: String,
}

impl Outcome {
    fn new(workspace: &str, status: Status) -> Outcome {
        Outcome {
            workspace: workspace.to_string(),
            status,
            serial: None,
            lineage: None,
            size: None,
            sha256: None,
            kept_versions: None,
            audit_events: None,
            reason: None,
            locked_by: None,
            took_over: Vec::new(),
        }
    }

    fn refused(workspace: &str, reason: impl Into<String>) -> Outcome {
        Outcome {
            reason: Some(reason.into()),
            ..Outcome::new(workspace, Status::Refused)
        }
    }

    fn locked(workspace: &str, backend: &str, holder: LockInfo) -> Outcome {
        let reason = format!(
            "locked in `{backend}` by {}; wait until it is released (or, if its holder is \
             gone, `stateplug --backend {backend} lock force-unlock {workspace}`) and run again",
            holder.holder()
        );
        Outcome {
            locked_by: Some(holder),
            ..Outcome::refused(workspace, reason)
        }
    }

    /// Fills in what the source state is.
    fn of(mut self, source: &SourceState, with_history: bool) -> Outcome {
        let doc = StateDoc::parse(&source.data).ok();
        self.serial = doc.as_ref().map(|d| d.serial);
        self.lineage = doc.map(|d| untrusted(&d.lineage).into_owned());
        self.size = Some(source.data.len());
        self.sha256 = Some(sha256_hex(&source.data));
        self.kept_versions = with_history.then_some(source.history.len());
        self.audit_events = with_history.then_some(source.audit.len());
        self
    }

    /// One line for people.
    fn line(&self, dry_run: bool) -> String {
        let status = match (self.status, dry_run) {
            (Status::Copied, false) => "copied",
            (Status::Copied, true) => "would copy",
            (Status::Identical, _) => "identical",
            (Status::Refused, false) => "refused",
            (Status::Refused, true) => "would refuse",
        };
        let mut details = Vec::new();
        if let Some(serial) = self.serial {
            details.push(format!("serial {serial}"));
        }
        if let (Status::Copied, Some(size)) = (self.status, self.size) {
            details.push(format!("{size} bytes"));
        }
        if let (Status::Copied, Some(sha256)) = (self.status, &self.sha256) {
            details.push(format!("sha256 {}", &sha256[..12]));
        }
        if let Some(kept) = self.kept_versions {
            let s = if kept == 1 { "" } else { "s" };
            details.push(format!("{kept} kept version{s}"));
        }
        if let Some(events) = self.audit_events {
            let s = if events == 1 { "" } else { "s" };
            details.push(format!("{events} audit event{s}"));
        }
        for taken in &self.took_over {
            details.push(format!(
                "took over lock {} in `{}` left by an interrupted run (pid {})",
                taken.lock_id, taken.backend, taken.pid
            ));
        }
        if let Some(reason) = &self.reason {
            details.push(reason.clone());
        }
        format!("{status:<12} {}: {}", self.workspace, details.join(", "))
    }
}

/// Lowercase hex SHA-256.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    stateplug_sdk::hash::sha256(data)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// What copying a workspace would do, from the bytes on each side.
enum Plan {
    Identical,
    Copy,
    Refuse(String),
}

fn plan(from: &str, to: &str, source: &[u8], dest: Option<&[u8]>) -> Plan {
    let new = match StateDoc::parse(source) {
        Ok(new) => new,
        Err(reason) => {
            return Plan::Refuse(format!(
                "the state in `{from}` is not one the destination's rules accept ({reason})"
            ));
        }
    };
    let Some(dest) = dest else {
        return Plan::Copy;
    };
    if dest == source {
        return Plan::Identical;
    }
    let stored = match StateDoc::parse(dest) {
        Ok(stored) => stored,
        Err(reason) => {
            return Plan::Refuse(format!(
                "the state in `{to}` is not a state document the rules can compare with \
                 ({reason}); replace it there with `stateplug state push --force` or delete it, \
                 then run again"
            ));
        }
    };
    if stored.lineage != new.lineage {
        return Plan::Refuse(format!(
            "lineage differs: `{to}` holds lineage `{}`, `{from}` lineage `{}`: another state \
             of the same name, which is never overwritten; delete or rename the workspace in \
             `{to}` if the one in `{from}` is to be kept",
            untrusted(&stored.lineage),
            untrusted(&new.lineage)
        ));
    }
    if stored.serial > new.serial {
        return Plan::Refuse(format!(
            "`{to}` is newer: it holds serial {}, `{from}` serial {}; an older state never \
             replaces a newer one (migrate the other way if `{to}` is the one to keep)",
            stored.serial, new.serial
        ));
    }
    if let Err(reason) = stored.check_replacement(&new) {
        return Plan::Refuse(format!("`{to}` refuses it: {reason}"));
    }
    Plan::Copy
}

/// Whether two lists of kept versions are the same (serials, times and bytes).
fn same_history(a: &[KeptVersion], b: &[KeptVersion]) -> bool {
    let key = |v: &KeptVersion| (v.serial, v.saved_at_ms);
    let mut a: Vec<_> = a.iter().collect();
    let mut b: Vec<_> = b.iter().collect();
    a.sort_by_key(|v| key(v));
    b.sort_by_key(|v| key(v));
    a == b
}

/// A lock this run holds.
struct Held<'a> {
    workspaces: &'a BackendWorkspaces,
    backend: &'a str,
    workspace: String,
    id: String,
}

impl Held<'_> {
    async fn release(self) {
        if let Err(e) = self.workspaces.unlock(&self.workspace, &self.id).await {
            eprintln!(
                "warning: could not release the lock {id} on `{ws}` in `{backend}`: {e}; \
                 release it with `stateplug --backend {backend} lock release {ws} {id}`",
                id = self.id,
                ws = self.workspace,
                backend = self.backend,
            );
        }
    }
}

/// Copying workspaces from a source into a backend.
pub(super) struct Transfer<'a> {
    pub source: Source<'a>,
    pub to: &'a BackendWorkspaces,
    pub to_name: &'a str,
    pub run: Run,
    pub with_history: bool,
    pub dry_run: bool,
}

impl Transfer<'_> {
    /// Copies each workspace in turn, printing a line as each ends (over a progress bar
    /// when stderr is a terminal).
    pub(super) async fn run(&self, names: &[String]) -> Report {
        let bar = match std::io::stderr().is_terminal() {
            true => {
                let bar = ProgressBar::new(names.len() as u64);
                if let Ok(style) = ProgressStyle::with_template("[{bar:32}] {pos}/{len} {wide_msg}")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
            false => ProgressBar::hidden(),
        };
        let left = self.left_behind().await;
        let mut outcomes = Vec::with_capacity(names.len());
        for name in names {
            bar.set_message(name.clone());
            let outcome = self.one(name, left.contains(name)).await;
            let line = outcome.line(self.dry_run);
            bar.suspend(|| eprintln!("{line}"));
            bar.inc(1);
            outcomes.push(outcome);
        }
        bar.finish_and_clear();
        Report {
            from: self.source.name().to_string(),
            to: self.to_name.to_string(),
            dry_run: self.dry_run,
            with_history: self.with_history,
            workspaces: outcomes,
        }
    }

    /// The workspaces locked, on either side, by a run of `migrate` or `import` that is gone
    /// (listed once: such a lock is not taken while this run goes on).
    async fn left_behind(&self) -> BTreeSet<String> {
        let mut sides = vec![(self.to, self.to_name)];
        if let Source::Backend { name, workspaces } = &self.source {
            sides.push((*workspaces, *name));
        }
        let mut left = BTreeSet::new();
        for (workspaces, backend) in sides {
            match workspaces.locks().await {
                Ok(locks) => left.extend(
                    locks
                        .into_iter()
                        .filter(|(_, lock)| self.run.left_behind(lock).is_some())
                        .map(|(workspace, _)| workspace),
                ),
                Err(e) => eprintln!(
                    "warning: listing the locks of `{backend}` failed ({e}); a lock left there \
                     by an interrupted run is taken over only where a workspace is copied"
                ),
            }
        }
        left
    }

    /// Copies one workspace; `left_behind`: it carries a lock of an interrupted run, to take
    /// over even if there is nothing to copy.
    async fn one(&self, workspace: &str, left_behind: bool) -> Outcome {
        let (from, to) = (self.source.name(), self.to_name);
        // Without locks first: a workspace already copied costs reads and no write. The
        // kept versions matter only when the states already are the same.
        let source = match self.source.read(workspace, false).await {
            Ok(Some(source)) => source,
            Ok(None) => return Outcome::refused(workspace, format!("`{from}` holds no state")),
            Err(reason) => return Outcome::refused(workspace, reason),
        };
        let dest = match self.to.get(workspace).await {
            Ok(dest) => dest.map(|d| d.data),
            Err(e) => {
                let reason = format!("reading it in `{to}` failed: {e}");
                return Outcome::refused(workspace, reason).of(&source, false);
            }
        };
        let planned = plan(from, to, &source.data, dest.as_deref());
        if let Plan::Identical = planned {
            match self.history_too(workspace).await {
                Some((source, true)) if !left_behind || self.dry_run => {
                    return Outcome::new(workspace, Status::Identical)
                        .of(&source, self.with_history);
                }
                Some((source, false)) if self.dry_run => return self.dry(workspace, &source).await,
                _ => {}
            }
        }
        if self.dry_run {
            return match planned {
                Plan::Refuse(reason) => Outcome::refused(workspace, reason).of(&source, false),
                _ => {
                    let read = self.history_too(workspace).await;
                    let source = read.map_or(source, |(source, _)| source);
                    self.dry(workspace, &source).await
                }
            };
        }
        let mut took_over = Vec::new();
        let source_lock = match &self.source {
            Source::Backend { name, workspaces } => {
                match self.lock(workspaces, name, workspace, &mut took_over).await {
                    Ok(held) => Some(held),
                    Err(refused) => return refused,
                }
            }
            Source::Loaded { .. } => None,
        };
        let outcome = match self.lock(self.to, to, workspace, &mut took_over).await {
            Ok(dest_lock) => {
                tracing::info!(workspace, from, to, "locks taken, copying");
                let outcome = self.locked_copy(workspace, &dest_lock.id).await;
                dest_lock.release().await;
                outcome
            }
            Err(refused) => refused,
        };
        if let Some(held) = source_lock {
            held.release().await;
        }
        Outcome {
            took_over,
            ..outcome
        }
    }

    /// The source with its kept versions (without `--with-history`: none), and whether the
    /// destination keeps the same ones; `None` when either cannot be read (the locked copy
    /// then reports why).
    async fn history_too(&self, workspace: &str) -> Option<(SourceState, bool)> {
        let source = self
            .source
            .read(workspace, self.with_history)
            .await
            .ok()??;
        if !self.with_history {
            return Some((source, true));
        }
        let (_, kept) = self.dest(workspace).await.ok()?;
        let same = kept.is_some_and(|kept| same_history(&kept, &source.history));
        let audit = self.to.audit();
        let trail_kept = audit.missing(workspace, &source.audit).await.ok()? == 0;
        Some((source, same && trail_kept))
    }

    /// The destination's state, and with `--with-history` its kept versions.
    async fn dest(
        &self,
        workspace: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<KeptVersion>>), String> {
        let reading = |e: StateError| format!("reading it in `{}` failed: {e}", self.to_name);
        let state = self.to.get(workspace).await.map_err(reading)?;
        let history = match self.with_history {
            true => Some(self.to.kept_versions(workspace).await.map_err(reading)?),
            false => None,
        };
        Ok((state.map(|s| s.data), history))
    }

    /// A dry run's outcome for a workspace a run would write: refused if a lock is in the
    /// way, else copied.
    async fn dry(&self, workspace: &str, source: &SourceState) -> Outcome {
        let mut sides = vec![(self.to, self.to_name)];
        if let Source::Backend { name, workspaces } = &self.source {
            sides.insert(0, (*workspaces, *name));
        }
        for (workspaces, backend) in sides {
            match workspaces.lock_info(workspace).await {
                Ok(Some(holder))
                    if !holder.is_expired() && self.run.left_behind(&holder).is_none() =>
                {
                    return Outcome::locked(workspace, backend, holder).of(source, false);
                }
                Ok(_) => {}
                Err(e) => {
                    let reason = format!("reading its lock in `{backend}` failed: {e}");
                    return Outcome::refused(workspace, reason).of(source, false);
                }
            }
        }
        Outcome::new(workspace, Status::Copied).of(source, self.with_history)
    }

    /// Takes this run's lock on a workspace, breaking one left by an interrupted run.
    async fn lock<'w>(
        &self,
        workspaces: &'w BackendWorkspaces,
        backend: &'w str,
        workspace: &str,
        took_over: &mut Vec<TakenOver>,
    ) -> Result<Held<'w>, Outcome> {
        let held = |lock: LockInfo| Held {
            workspaces,
            backend,
            workspace: workspace.to_string(),
            id: lock.id,
        };
        let error = match workspaces.lock(workspace, self.run.lock(workspace)).await {
            Ok(lock) => return Ok(held(lock)),
            Err(e) => e,
        };
        let Some(holder) = error.holder().cloned() else {
            let reason = format!("locking it in `{backend}` failed: {error}");
            return Err(Outcome::refused(workspace, reason));
        };
        let Some(pid) = self.run.left_behind(&holder) else {
            return Err(Outcome::locked(workspace, backend, holder));
        };
        let by = format!("{} (lock of interrupted pid {pid})", self.run.what);
        if let Err(e) = workspaces.force_unlock(workspace, &by).await {
            let reason = format!(
                "breaking the lock left in `{backend}` by an interrupted run (pid {pid}) failed: {e}"
            );
            return Err(Outcome::refused(workspace, reason));
        }
        let broken = Some(holder.id.as_str());
        record(
            workspaces,
            AuditAction::ForceUnlock,
            workspace,
            (None, None),
            broken,
        )
        .await;
        took_over.push(TakenOver {
            backend: backend.to_string(),
            pid,
            lock_id: holder.id,
        });
        match workspaces.lock(workspace, self.run.lock(workspace)).await {
            Ok(lock) => Ok(held(lock)),
            Err(e) => match e.holder().cloned() {
                Some(holder) => Err(Outcome::locked(workspace, backend, holder)),
                None => Err(Outcome::refused(
                    workspace,
                    format!("locking it in `{backend}` failed: {e}"),
                )),
            },
        }
    }

    /// Reads both sides again under the locks, and copies.
    async fn locked_copy(&self, workspace: &str, lock_id: &str) -> Outcome {
        let (from, to) = (self.source.name(), self.to_name);
        let source = match self.source.read(workspace, self.with_history).await {
            Ok(Some(source)) => source,
            Ok(None) => return Outcome::refused(workspace, format!("`{from}` holds no state")),
            Err(reason) => return Outcome::refused(workspace, reason),
        };
        let refused = |reason: String| Outcome::refused(workspace, reason).of(&source, false);
        let (dest, dest_history) = match self.dest(workspace).await {
            Ok(dest) => dest,
            Err(reason) => return refused(reason),
        };
        let copy_state = match plan(from, to, &source.data, dest.as_deref()) {
            Plan::Refuse(reason) => return refused(reason),
            Plan::Identical => false,
            Plan::Copy => true,
        };
        let audit = self.to.audit();
        let trail_missing = match self.with_history {
            true => match audit.missing(workspace, &source.audit).await {
                Ok(missing) => missing,
                Err(e) => return refused(format!("reading its audit trail in `{to}` failed: {e}")),
            },
            false => 0,
        };
        let copy_history = self.with_history
            && (copy_state
                || trail_missing > 0
                || !dest_history
                    .as_ref()
                    .is_some_and(|kept| same_history(kept, &source.history)));
        if !copy_state && !copy_history {
            return Outcome::new(workspace, Status::Identical).of(&source, self.with_history);
        }
        if copy_state {
            let options = WriteOptions {
                lock_id: Some(lock_id.to_string()),
                force: false,
            };
            let written = self
                .to
                .put_with_serials(workspace, source.data.clone(), &options)
                .await;
            let stored = match written {
                Ok(stored) => stored,
                Err(e) => {
                    return match e.holder().cloned() {
                        Some(holder) => Outcome::locked(workspace, to, holder).of(&source, false),
                        None => refused(format!("writing it to `{to}` failed: {e}")),
                    };
                }
            };
            let serials = (stored.serial_before, Some(stored.serial_after));
            record(
                self.to,
                AuditAction::Write,
                workspace,
                serials,
                Some(lock_id),
            )
            .await;
            if let Err(reason) = self.verify_state(workspace, &source.data).await {
                return refused(reason);
            }
        }
        if copy_history {
            let replaced = self
                .to
                .replace_history(workspace, &source.history, Some(lock_id))
                .await;
            if let Err(e) = replaced {
                return refused(format!("writing its kept versions to `{to}` failed: {e}"));
            }
            match self.to.kept_versions(workspace).await {
                Ok(kept) if same_history(&kept, &source.history) => {}
                Ok(_) => {
                    return refused(format!(
                        "read back, the kept versions in `{to}` differ from those of `{from}`; \
                         check the backend, then run again"
                    ));
                }
                Err(e) => return refused(format!("reading back its kept versions failed: {e}")),
            }
            if let Err(e) = audit.merge(workspace, &source.audit).await {
                return refused(format!("writing its audit trail to `{to}` failed: {e}"));
            }
            match audit.missing(workspace, &source.audit).await {
                Ok(0) => {}
                Ok(missing) => {
                    return refused(format!(
                        "read back, the audit trail in `{to}` lacks {missing} events of \
                         `{from}`; check the backend, then run again"
                    ));
                }
                Err(e) => return refused(format!("reading back its audit trail failed: {e}")),
            }
        }
        Outcome::new(workspace, Status::Copied).of(&source, self.with_history)
    }

    /// Reads the state back and compares its SHA-256 with the source's.
    async fn verify_state(&self, workspace: &str, source: &[u8]) -> Result<(), String> {
        let to = self.to_name;
        let expected = sha256_hex(source);
        match self.to.get(workspace).await {
            Ok(Some(stored)) if sha256_hex(&stored.data) == expected => Ok(()),
            Ok(Some(stored)) => Err(format!(
                "read back, the state in `{to}` has sha256 {}, not the source's {expected}: \
                 check the backend, then run again",
                sha256_hex(&stored.data)
            )),
            Ok(None) => Err(format!(
                "read back, `{to}` holds no state right after it was written"
            )),
            Err(e) => Err(format!("reading it back from `{to}` failed: {e}")),
        }
    }
}

/// What a run did, workspace by workspace (`--json` prints it).
#[derive(Debug, Serialize)]
pub(super) struct Report {
    from: String,
    to: String,
    dry_run: bool,
    with_history: bool,
    workspaces: Vec<Outcome>,
}

impl Report {
    fn count(&self, status: Status) -> usize {
        self.workspaces
            .iter()
            .filter(|o| o.status == status)
            .count()
    }

    /// Prints the report (`--json`) and the summary line; fails with [`Refused`] when a
    /// workspace was refused.
    pub(super) fn finish(&self, done: &str, json: bool) -> anyhow::Result<()> {
        if json {
            #[derive(Serialize)]
            struct Counted<'a> {
                #[serde(flatten)]
                report: &'a Report,
                copied: usize,
                identical: usize,
                refused: usize,
            }
            print_json(&Counted {
                report: self,
                copied: self.count(Status::Copied),
                identical: self.count(Status::Identical),
                refused: self.count(Status::Refused),
            })?;
        }
        let (copied, identical, refused) = (
            self.count(Status::Copied),
            self.count(Status::Identical),
            self.count(Status::Refused),
        );
        let total = self.workspaces.len();
        if self.dry_run {
            eprintln!(
                "dry run: of {total} workspaces from {} to {}, {copied} would be copied, \
                 {identical} are identical, {refused} would be refused; nothing was written",
                self.from, self.to
            );
        } else {
            eprintln!(
                "{done} {total} workspaces from {} to {}: {copied} copied, {identical} \
                 identical, {refused} refused",
                self.from, self.to
            );
        }
        if refused == 0 {
            return Ok(());
        }
        let all_locked = self
            .workspaces
            .iter()
            .filter(|o| o.status == Status::Refused)
            .all(|o| o.locked_by.is_some());
        Err(Refused {
            refused,
            total,
            dry_run: self.dry_run,
            all_locked,
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(serial: u64, lineage: &str) -> Vec<u8> {
        format!(r#"{{"version":4,"serial":{serial},"lineage":"{lineage}","resources":[]}}"#)
            .into_bytes()
    }

    fn refusal(plan: Plan) -> String {
        match plan {
            Plan::Refuse(reason) => reason,
            Plan::Copy => panic!("expected a refusal, got a copy"),
            Plan::Identical => panic!("expected a refusal, got identical"),
        }
    }

    #[test]
    fn the_plan_never_overwrites_another_lineage_or_a_newer_state() {
        let source = state(3, "L");
        assert!(matches!(plan("a", "b", &source, None), Plan::Copy));
        assert!(matches!(
            plan("a", "b", &source, Some(&source)),
            Plan::Identical
        ));
        assert!(matches!(
            plan("a", "b", &source, Some(&state(2, "L"))),
            Plan::Copy
        ));
        let lineage = refusal(plan("a", "b", &source, Some(&state(1, "M"))));
        assert!(
            lineage.contains("`b` holds lineage `M`, `a` lineage `L`"),
            "{lineage}"
        );
        let newer = refusal(plan("a", "b", &source, Some(&state(4, "L"))));
        assert!(newer.contains("`b` is newer: it holds serial 4"), "{newer}");
        let same_serial = br#"{"version":4,"serial":3,"lineage":"L","resources":[1]}"#;
        let differs = refusal(plan("a", "b", &source, Some(same_serial)));
        assert!(differs.contains("content differs"), "{differs}");
        let not_a_state = refusal(plan("a", "b", b"{}", None));
        assert!(not_a_state.contains("the state in `a`"), "{not_a_state}");
        let stored_junk = refusal(plan("a", "b", &source, Some(b"junk")));
        assert!(stored_junk.contains("the state in `b`"), "{stored_junk}");
    }

    /// Only a migrate's or import's lock, of this host, whose process is gone, is taken over.
    #[test]
    fn a_run_recognises_only_locks_left_by_runs_that_are_gone() {
        let run = Run::new("migrate", "a -> b".into());
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let mut alive = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let other = Run {
            pid: gone_pid,
            ..Run::new("import", "x.tar -> b".into())
        };
        let left = other.lock("dev");
        assert_eq!(run.left_behind(&left), Some(gone_pid));

        let running = Run {
            pid: alive.id(),
            ..Run::new("migrate", "a -> b".into())
        };
        assert_eq!(run.left_behind(&running.lock("dev")), None, "still running");
        assert_eq!(run.left_behind(&run.lock("dev")), None, "this very run");
        let elsewhere = Run {
            host: "another-host".into(),
            pid: gone_pid,
            ..Run::new("migrate", "a -> b".into())
        };
        let elsewhere = elsewhere.lock("dev");
        assert_eq!(run.left_behind(&elsewhere), None, "another host's");
        let terraform = LockInfo {
            operation: "OperationTypeApply".into(),
            ..left.clone()
        };
        assert_eq!(run.left_behind(&terraform), None, "not a migrate's");
        let unreadable = LockInfo {
            info: "stateplug migrate a -> b".into(),
            ..left
        };
        assert_eq!(run.left_behind(&unreadable), None);
        alive.kill().unwrap();
        alive.wait().unwrap();
    }
}
