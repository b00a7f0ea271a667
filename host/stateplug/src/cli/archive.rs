//! `stateplug export FILE` and `stateplug import FILE`: a backend's workspaces in a tar
//! archive, and back into any backend.
//!
//! The archive holds `manifest.json` first, then each state verbatim as
//! `states/<workspace>.tfstate` and, exported `--with-history`, each kept version as
//! `history/<workspace>/<serial>-<unix ms>.tfstate` and each audit event as
//! `audit/<workspace>/<id>.json`. The manifest names, per workspace, its serial, lineage,
//! size, lowercase hex SHA-256 and member, each kept version's serial, time, size, SHA-256
//! and member, and each audit event's id, size, SHA-256 and member. Export reads each workspace without locking it (a read
//! never waits for a lock) and writes the archive to a temporary file beside FILE, renamed to
//! FILE once complete (mode 0600: states hold secrets).
//!
//! Import reads the whole archive and checks it before anything is loaded: every member the
//! manifest names is there with its SHA-256, and there is no other member; a changed or
//! damaged archive loads nothing, and the error names the member. It then loads like
//! `migrate` (`migrate.rs`): the same refusals (lineage, serial, locks), `identical` skips,
//! locks on the destination, and the same report.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use stateplug::opening::BackendWorkspaces;
use stateplug_sdk::text::untrusted;
use stateplug_state::{AuditEvent, KeptVersion, StateDoc, check_workspace};

use super::migrate::{
    Run, Source, SourceState, Transfer, checked_names, sha256_hex, workspaces_with_state,
};
use super::output::print_json;

/// `stateplug export`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The archive to write (replaced if it exists).
    file: PathBuf,
    /// Also export each workspace's kept versions and audit trail.
    #[arg(long)]
    with_history: bool,
    /// Only this workspace (repeatable; default: every workspace with state).
    #[arg(long = "workspace", value_name = "WS")]
    workspaces: Vec<String>,
}

/// `stateplug import`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The archive, as `stateplug export` wrote it.
    file: PathBuf,
    /// Make the destination's kept versions those of the archive, and add its audit trail
    /// (exported --with-history).
    #[arg(long)]
    with_history: bool,
    /// Only this workspace of the archive (repeatable; default: all).
    #[arg(long = "workspace", value_name = "WS")]
    workspaces: Vec<String>,
    /// Check the archive and report what would happen; take no lock, write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The name of the manifest member.
const MANIFEST: &str = "manifest.json";
/// What `format` says in every manifest.
const FORMAT: &str = "stateplug-export";
/// The manifest's version this build writes and reads.
const VERSION: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    /// The backend exported.
    backend: String,
    /// When (RFC 3339).
    exported_at: String,
    /// Whether kept versions are included.
    with_history: bool,
    workspaces: Vec<ManifestWorkspace>,
}

/// One workspace in the manifest.
#[derive(Debug, Serialize, Deserialize)]
struct ManifestWorkspace {
    name: String,
    /// Absent for a stored document the state rules cannot read.
    serial: Option<u64>,
    lineage: Option<String>,
    size: usize,
    /// Lowercase hex SHA-256 of the member.
    sha256: String,
    member: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<ManifestVersion>,
    /// Its audit events, oldest first (exported `--with-history`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    audit: Vec<ManifestEvent>,
}

/// One audit event in the manifest.
#[derive(Debug, Serialize, Deserialize)]
struct ManifestEvent {
    id: String,
    size: usize,
    sha256: String,
    member: String,
}

/// One kept version in the manifest.
#[derive(Debug, Serialize, Deserialize)]
struct ManifestVersion {
    serial: u64,
    /// When it was written (unix milliseconds; what import writes it back with).
    saved_at_ms: u64,
    /// The same, in RFC 3339.
    saved_at: String,
    size: usize,
    sha256: String,
    member: String,
}

fn rfc3339_ms(ms: u64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Runs `stateplug export` on the backend `backend`.
pub(super) async fn export(
    workspaces: &BackendWorkspaces,
    backend: &str,
    args: ExportArgs,
    json: bool,
) -> anyhow::Result<()> {
    let names = match checked_names(&args.workspaces)? {
        Some(names) => names,
        None => workspaces_with_state(workspaces, backend).await?,
    };
    let mut manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        backend: backend.to_string(),
        exported_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        with_history: args.with_history,
        workspaces: Vec::new(),
    };
    let mut members = Vec::new();
    let mut kept = 0;
    let mut events = 0;
    for name in names {
        let reading = || format!("reading workspace `{name}` of `{backend}`");
        let Some(state) = workspaces.get(&name).await.with_context(reading)? else {
            bail!("workspace `{name}` has no state in `{backend}`; nothing was exported");
        };
        let doc = StateDoc::parse(&state.data).ok();
        let member = format!("states/{name}.tfstate");
        let mut entry = ManifestWorkspace {
            name: name.clone(),
            serial: doc.as_ref().map(|d| d.serial),
            lineage: doc.map(|d| d.lineage),
            size: state.data.len(),
            sha256: sha256_hex(&state.data),
            member: member.clone(),
            history: Vec::new(),
            audit: Vec::new(),
        };
        members.push((member, state.data));
        if args.with_history {
            for version in workspaces
                .kept_versions(&name)
                .await
                .with_context(reading)?
            {
                let member = format!(
                    "history/{name}/{:012}-{:015}.tfstate",
                    version.serial, version.saved_at_ms
                );
                entry.history.push(ManifestVersion {
                    serial: version.serial,
                    saved_at_ms: version.saved_at_ms,
                    saved_at: rfc3339_ms(version.saved_at_ms),
                    size: version.data.len(),
                    sha256: sha256_hex(&version.data),
                    member: member.clone(),
                });
                members.push((member, version.data));
                kept += 1;
            }
            let trail = workspaces
                .audit()
                .events(&name)
                .await
                .with_context(reading)?;
            for event in trail {
                let member = format!("audit/{name}/{}.json", event.id);
                let data = serde_json::to_vec_pretty(&event)?;
                entry.audit.push(ManifestEvent {
                    id: event.id,
                    size: data.len(),
                    sha256: sha256_hex(&data),
                    member: member.clone(),
                });
                members.push((member, data));
                events += 1;
            }
        }
        manifest.workspaces.push(entry);
    }
    write_archive(&args.file, &manifest, &members)
        .with_context(|| format!("writing {}", args.file.display()))?;
    if json {
        print_json(&manifest)?;
    }
    let trail = match args.with_history {
        true => format!(", with {events} audit events"),
        false => String::new(),
    };
    eprintln!(
        "exported {} workspaces ({kept} kept versions) from {backend} to {}{trail}",
        manifest.workspaces.len(),
        args.file.display()
    );
    Ok(())
}

/// Writes the archive to a temporary file beside `path`, then renames it to `path`.
fn write_archive(
    path: &Path,
    manifest: &Manifest,
    members: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = tempfile::NamedTempFile::new_in(dir)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut append = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        builder.append_data(&mut header, name, data)
    };
    append(MANIFEST, &serde_json::to_vec_pretty(manifest)?)?;
    for (name, data) in members {
        append(name, data)?;
    }
    let mut out = builder.into_inner()?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    Ok(())
}

/// Runs `stateplug import` into the backend `backend`.
pub(super) async fn import(
    to: &BackendWorkspaces,
    backend: &str,
    args: ImportArgs,
    json: bool,
) -> anyhow::Result<()> {
    let file = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {file}"))?;
    let (manifest, states) = read_archive(&bytes).with_context(|| format!("archive {file}"))?;
    if args.with_history && !manifest.with_history {
        bail!(
            "archive {file} was exported without --with-history: it holds no kept versions; \
             import it without --with-history, or export again with it"
        );
    }
    let names = match checked_names(&args.workspaces)? {
        Some(names) => {
            if let Some(missing) = names.iter().find(|n| !states.contains_key(*n)) {
                let held: Vec<&str> = manifest.workspaces.iter().map(|w| &*w.name).collect();
                bail!(
                    "archive {file} holds no workspace `{missing}`; it holds: {}",
                    held.join(", ")
                );
            }
            names
        }
        None => manifest.workspaces.iter().map(|w| w.name.clone()).collect(),
    };
    let transfer = Transfer {
        source: Source::Loaded {
            name: &file,
            states: &states,
        },
        to,
        to_name: backend,
        run: Run::new("import", format!("{file} -> {backend}")),
        with_history: args.with_history,
        dry_run: args.dry_run,
    };
    transfer.run(&names).await.finish("imported", json)
}

/// Reads and checks an archive: its manifest, and each workspace's state and kept versions,
/// every member's SHA-256 checked against the manifest.
fn read_archive(bytes: &[u8]) -> anyhow::Result<(Manifest, BTreeMap<String, SourceState>)> {
    let mut members = read_members(bytes)?;
    let Some(manifest) = members.remove(MANIFEST) else {
        bail!("it has no {MANIFEST}: not an archive `stateplug export` wrote");
    };
    let manifest: Manifest = serde_json::from_slice(&manifest).map_err(|e| {
        anyhow::anyhow!("its {MANIFEST} is not a manifest `stateplug export` writes ({e})")
    })?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        bail!(
            "its {MANIFEST} is format `{}` version {}, where this stateplug reads `{FORMAT}` \
             version {VERSION}",
            untrusted(&manifest.format),
            manifest.version
        );
    }
    let mut states = BTreeMap::new();
    for workspace in &manifest.workspaces {
        check_workspace(&workspace.name).map_err(|e| anyhow::anyhow!("its {MANIFEST}: {e}"))?;
        let name = &workspace.name;
        let what = format!("the state of workspace `{name}`");
        let data = take(&mut members, &workspace.member, &workspace.sha256, &what)?;
        let mut history = Vec::new();
        for version in &workspace.history {
            let what = format!(
                "the kept version of serial {} of workspace `{name}`",
                version.serial
            );
            history.push(KeptVersion {
                serial: version.serial,
                saved_at_ms: version.saved_at_ms,
                data: take(&mut members, &version.member, &version.sha256, &what)?,
            });
        }
        let mut audit = Vec::new();
        for event in &workspace.audit {
            let what = format!(
                "the audit event {} of workspace `{name}`",
                untrusted(&event.id)
            );
            let data = take(&mut members, &event.member, &event.sha256, &what)?;
            let parsed = serde_json::from_slice::<AuditEvent>(&data)
                .ok()
                .filter(|e| e.id == event.id && e.workspace == *name);
            let Some(parsed) = parsed else {
                bail!(
                    "member `{}` ({what}) is not that event: the archive was changed after \
                     export; nothing was imported",
                    untrusted(&event.member)
                );
            };
            audit.push(parsed);
        }
        let source = SourceState {
            data,
            history,
            audit,
        };
        if states.insert(name.clone(), source).is_some() {
            bail!("its {MANIFEST} names workspace `{name}` twice; nothing was imported");
        }
    }
    if let Some(extra) = members.keys().next() {
        bail!(
            "member `{}` is not named by its {MANIFEST}: the archive was changed after export; \
             nothing was imported",
            untrusted(extra)
        );
    }
    Ok((manifest, states))
}

/// The members of a tar archive by name.
fn read_members(bytes: &[u8]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    const DAMAGED: &str = "it is not a readable tar archive (damaged, or not written by \
                           `stateplug export`)";
    let mut archive = tar::Archive::new(bytes);
    let mut members = BTreeMap::new();
    for entry in archive.entries().context(DAMAGED)? {
        let mut entry = entry.context(DAMAGED)?;
        let name = match entry.path() {
            Ok(path) => path.to_string_lossy().into_owned(),
            Err(e) => bail!("{DAMAGED}: a member's name cannot be read ({e})"),
        };
        if !entry.header().entry_type().is_file() {
            bail!(
                "member `{}` is not a regular file: not an archive `stateplug export` wrote; \
                 nothing was imported",
                untrusted(&name)
            );
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .with_context(|| format!("{DAMAGED}: member `{}`", untrusted(&name)))?;
        if members.insert(name.clone(), data).is_some() {
            bail!(
                "member `{}` appears twice: the archive was changed after export; nothing was \
                 imported",
                untrusted(&name)
            );
        }
    }
    Ok(members)
}

/// Takes a member out of `members`, checking its SHA-256 against the manifest's.
fn take(
    members: &mut BTreeMap<String, Vec<u8>>,
    member: &str,
    sha256: &str,
    what: &str,
) -> anyhow::Result<Vec<u8>> {
    let Some(data) = members.remove(member) else {
        bail!(
            "member `{}` ({what}), named by its {MANIFEST}, is missing (or named twice): the \
             archive was changed after export; nothing was imported",
            untrusted(member)
        );
    };
    let actual = sha256_hex(&data);
    if !actual.eq_ignore_ascii_case(sha256) {
        bail!(
            "member `{}` ({what}) has sha256 {actual}, but its {MANIFEST} records {}: the \
             archive was changed or damaged after export; nothing was imported",
            untrusted(member),
            untrusted(sha256)
        );
    }
    Ok(data)
}
