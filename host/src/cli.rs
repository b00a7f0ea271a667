//! Command-line interface: argument parsing and one function per command.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use stateplug::catalog::Catalog;
use stateplug::config::{Config, Overrides, PluginRef};
use stateplug::server::{self, ServerState};
use stateplug::state::{StateStore, WriteOptions};
use stateplug::workspace::DEFAULT_WORKSPACE;
use stateplug::{Error, LockInfo, Plugin, PluginSource, Runtime};

/// Exit code for any failure.
pub const EXIT_ERROR: u8 = 1;
/// Exit code when the workspace is locked by someone else (scripts may wait and retry).
pub const EXIT_LOCKED: u8 = 3;

/// Infrastructure state backends as sandboxed WebAssembly plugins.
#[derive(Parser, Debug)]
#[command(name = "stateplug", version, about)]
pub struct Args {
    /// Configuration file (default: $STATEPLUG_CONFIG, else stateplug.toml here or in a parent).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use this named backend of the configuration.
    #[arg(long, global = true, value_name = "NAME")]
    backend: Option<String>,
    /// Use this plugin directly (a built-in name or a .wasm path), no configuration needed.
    #[arg(long, global = true, value_name = "NAME|PATH")]
    plugin: Option<String>,
    /// Backend setting, like Terraform's -backend-config (repeatable): plugin keys and
    /// dirs, allow_hosts, memory, timeout, history, lock_ttl.
    #[arg(short = 'c', long = "backend-config", global = true, value_name = "KEY=VALUE", value_parser = key_value)]
    backend_config: Vec<(String, String)>,
    /// Print machine-readable JSON where the command has output.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (-v info, -vv debug, -vvv trace); STATEPLUG_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve Terraform's HTTP backend protocol at http://ADDR/state/<workspace>.
    Serve {
        /// Address to listen on (127.0.0.1:0 picks a free port).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
    /// Workspaces: one state document each.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// A workspace's state.
    #[command(subcommand)]
    State(StateCommand),
    /// Workspace locks.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Plugins: built-ins and .wasm files.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// The effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand, Debug)]
enum WorkspaceCommand {
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

#[derive(Subcommand, Debug)]
enum StateCommand {
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

#[derive(Subcommand, Debug)]
enum LockCommand {
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

#[derive(Subcommand, Debug)]
enum PluginsCommand {
    /// List the built-in plugins.
    List,
    /// Describe a plugin: a .wasm file or a built-in name.
    Inspect { plugin: String },
    /// Run the conformance suite against a plugin (a .wasm file or a built-in name); each case
    /// gets a fresh store with an empty directory granted at /data; a remote store (a bucket)
    /// must start empty and is emptied after each case. Plugin settings: -c. Exits 0 only
    /// when every case passes.
    Check { plugin: String },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the effective configuration, secrets masked.
    Show,
}

/// Sets up logging to stderr: warnings by default, more with `-v`, or `STATEPLUG_LOG`.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STATEPLUG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The exit code for an error: [`EXIT_LOCKED`] when a lock was in the way.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<Error>() {
        Some(e) if e.is_locked() => EXIT_LOCKED,
        _ => EXIT_ERROR,
    }
}

/// Runs a parsed command.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let runtime = Runtime::new()?;
    let json = args.json;
    let listen = match &args.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        config_file: args.config.clone(),
        backend: args.backend.clone(),
        plugin: args.plugin.clone(),
        backend_config: args.backend_config.clone(),
        listen,
    };
    let load = || Config::load(&overrides, std::env::vars());
    match args.command {
        Command::Plugins(PluginsCommand::List) => plugins_list(&runtime, &load()?, json).await,
        Command::Plugins(PluginsCommand::Inspect { plugin }) => {
            let plugin = load_named(&runtime, &overrides, plugin).await?;
            plugins_inspect(&plugin, json)
        }
        Command::Plugins(PluginsCommand::Check { plugin }) => {
            let overrides = Overrides {
                plugin: Some(plugin),
                ..overrides.clone()
            };
            plugins_check(&runtime, &Config::load(&overrides, std::env::vars())?, json).await
        }
        Command::Config(ConfigCommand::Show) => config_show(&runtime, &load()?).await,
        Command::Serve { .. } => serve(&runtime, load()?).await,
        Command::Workspace(command) => {
            workspace(&open(&runtime, &load()?).await?, command, json).await
        }
        Command::State(command) => state(&open(&runtime, &load()?).await?, command, json).await,
        Command::Lock(command) => lock(&open(&runtime, &load()?).await?, command, json).await,
    }
}

async fn open(runtime: &Runtime, config: &Config) -> anyhow::Result<StateStore> {
    let backend = config.backend.open(runtime).await?;
    Ok(StateStore::new(backend, config.backend.state.clone()))
}

/// `$USER@host`, for lock holders and force-unlock records.
fn whoami() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

async fn serve(runtime: &Runtime, config: Config) -> anyhow::Result<()> {
    let backend = config.backend.open(runtime).await?;
    let shared = Arc::new(ServerState {
        state: StateStore::new(backend, config.backend.state.clone()),
        users: config.server.users.clone(),
    });
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{address}")?;
        out.flush()?;
    }
    eprintln!(
        "backend `{}` (plugin {}); for Terraform:\n\n  terraform {{\n    backend \"http\" {{\n      \
         address        = \"http://{address}/state/default\"\n      lock_address   = \
         \"http://{address}/state/default\"\n      unlock_address = \"http://{address}/state/default\"\n    \
         }}\n  }}\n",
        config.backend.name,
        match &config.backend.plugin {
            PluginRef::Named(name) => name.clone(),
            PluginRef::File(path) => path.display().to_string(),
        }
    );
    let app = server::router(shared, config.server.body_limit);
    server::serve(listener, app, shutdown_signal()).await?;
    eprintln!("stopped");
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing requests in flight");
}

async fn workspace(
    store: &StateStore,
    command: WorkspaceCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        WorkspaceCommand::List => {
            let list = store.workspaces().await?;
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
            store.delete(&workspace, None, force).await?;
            eprintln!("deleted the state of workspace `{workspace}` (its history is kept)");
            Ok(())
        }
    }
}

async fn state(store: &StateStore, command: StateCommand, json: bool) -> anyhow::Result<()> {
    match command {
        StateCommand::Pull { workspace } => {
            let Some(state) = store.get(&workspace).await? else {
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
            let version = store.put(&workspace, data, &options).await?;
            if force {
                eprintln!("forced: the lineage and serial checks were skipped");
            }
            eprintln!("stored workspace `{workspace}` (version {version})");
            Ok(())
        }
        StateCommand::History { workspace } => {
            let entries = store.history(&workspace).await?;
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
            let new_serial = store
                .rollback(&workspace, serial, lock_id.as_deref())
                .await?;
            eprintln!(
                "workspace `{workspace}` now holds the state of serial {serial}, stored as serial {new_serial}"
            );
            Ok(())
        }
    }
}

async fn lock(store: &StateStore, command: LockCommand, json: bool) -> anyhow::Result<()> {
    match command {
        LockCommand::List => {
            let locks = store.locks().await?;
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
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let lock = LockInfo {
                id: uuid::Uuid::new_v4().to_string(),
                operation: "OperationTypeStateplugLock".into(),
                info,
                who: who.unwrap_or_else(whoami),
                version: env!("CARGO_PKG_VERSION").into(),
                created: LockInfo::now_rfc3339(),
                path: workspace.clone(),
                expires: ttl.map(|ttl| (now + ttl).as_millis() as u64),
            };
            let lock = store.lock(&workspace, lock).await?;
            if json {
                return print_json(&lock);
            }
            println!("{}", lock.id);
            Ok(())
        }
        LockCommand::Release { workspace, id } => {
            store.unlock(&workspace, &id).await?;
            eprintln!("released the lock on `{workspace}`");
            Ok(())
        }
        LockCommand::ForceUnlock { workspace, who } => {
            match store
                .force_unlock(&workspace, &who.unwrap_or_else(whoami))
                .await?
            {
                Some(broken) => eprintln!(
                    "broke the lock {} of {} on `{workspace}`",
                    broken.id, broken.who
                ),
                None => eprintln!("`{workspace}` was not locked"),
            }
            Ok(())
        }
    }
}

async fn plugins_list(runtime: &Runtime, config: &Config, json: bool) -> anyhow::Result<()> {
    let catalog = Catalog::discover(runtime, &config.backend.plugin_dirs).await?;
    for refused in &catalog.refused {
        eprintln!(
            "warning: refused plugin {}: {}",
            refused.path.display(),
            refused.reason
        );
    }
    if json {
        let list: Vec<_> = catalog.plugins().map(plugin_json).collect();
        return print_json(&list);
    }
    for plugin in catalog.plugins() {
        print_plugin(plugin)?;
    }
    Ok(())
}

/// A plugin named on the command line (built-in, drop-in or .wasm path), resolved the way a
/// backend's `plugin` is.
async fn load_named(
    runtime: &Runtime,
    overrides: &Overrides,
    plugin: String,
) -> anyhow::Result<Plugin> {
    let overrides = Overrides {
        plugin: Some(plugin),
        ..overrides.clone()
    };
    let config = Config::load(&overrides, std::env::vars())?;
    Ok(config.backend.load_plugin(runtime).await?)
}

fn plugins_inspect(plugin: &Plugin, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&plugin_json(plugin));
    }
    print_plugin(plugin)?;
    println!("  sha256: {}", plugin.sha256());
    let c = plugin.capabilities();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!(
        "  capabilities: filesystem {} (grant `dirs`), http {} (grant `allow_hosts`), sockets {}, \
         environment {}",
        yes_no(c.filesystem),
        yes_no(c.http),
        yes_no(c.sockets),
        yes_no(c.environment)
    );
    println!("  imports: {}", plugin.imports().join(", "));
    Ok(())
}

async fn plugins_check(runtime: &Runtime, config: &Config, json: bool) -> anyhow::Result<()> {
    let plugin = config.backend.load_plugin(runtime).await?;
    config.backend.check_plugin_config(plugin.metadata())?;
    let scratch = tempfile::tempdir().context("creating scratch directories")?;
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let report = stateplug::conformance::run(|| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut grants = config.backend.grants.clone();
        grants.dirs = vec![stateplug::DirGrant::read_write(
            scratch.path().join(case.to_string()),
        )];
        plugin.open(config.backend.plugin_config.clone(), grants)
    })
    .await;
    if json {
        print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "conformance of {} {} ({})",
            plugin.name(),
            plugin.metadata().version,
            plugin.source()
        )?;
        for result in &report.results {
            match &result.failure {
                None => writeln!(out, "ok      {} ({} ms)", result.name, result.millis)?,
                Some(why) => writeln!(out, "FAILED  {}: {why}", result.name)?,
            }
        }
        let failed = report.failures().len();
        writeln!(
            out,
            "{} passed, {failed} failed",
            report.results.len() - failed
        )?;
    }
    if !report.passed() {
        bail!(
            "{} does not conform: {}",
            plugin.name(),
            report.failures().join("; ")
        );
    }
    Ok(())
}

fn plugin_json(plugin: &Plugin) -> serde_json::Value {
    let source = match plugin.source() {
        PluginSource::BuiltIn(_) => serde_json::Value::Null,
        PluginSource::File(path) => path.display().to_string().into(),
    };
    serde_json::json!({
        "name": plugin.name(),
        "builtin": matches!(plugin.source(), PluginSource::BuiltIn(_)),
        "path": source,
        "sha256": plugin.sha256(),
        "imports": plugin.imports(),
        "capabilities": plugin.capabilities(),
        "metadata": plugin.metadata(),
    })
}

fn print_plugin(plugin: &Plugin) -> anyhow::Result<()> {
    let m = plugin.metadata();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} {} ({}, {})",
        m.name,
        m.version,
        m.contract_version,
        plugin.source()
    )?;
    writeln!(out, "  {}", m.description)?;
    if !m.features.is_empty() {
        writeln!(out, "  features: {}", m.features.join(", "))?;
    }
    for field in &m.config {
        let mut notes = Vec::new();
        if field.required {
            notes.push("required".to_string());
        }
        if let Some(default) = &field.default {
            notes.push(format!("default {default:?}"));
        }
        if field.secret {
            notes.push("secret".to_string());
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" [{}]", notes.join(", "))
        };
        writeln!(out, "  {}{notes}: {}", field.name, field.description)?;
    }
    Ok(())
}

async fn config_show(runtime: &Runtime, config: &Config) -> anyhow::Result<()> {
    let metadata = config.backend.load_plugin(runtime).await.ok();
    if let Some(file) = &config.file {
        println!("# from {}", file.display());
    }
    print!(
        "{}",
        config.backend.show(metadata.as_ref().map(Plugin::metadata))
    );
    println!(
        "\n[server]\nlisten = \"{}\"\nbody_limit = {}",
        config.server.listen, config.server.body_limit
    );
    for user in config.server.users.keys() {
        println!("users.{user} = \"(secret)\"");
    }
    Ok(())
}

fn read_input(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading stdin")?;
        return Ok(data);
    }
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}
