//! Command-line interface: argument parsing and one function per command.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use stateplug::config::{Config, Overrides};
use stateplug::workspace::{self, DEFAULT_WORKSPACE};
use stateplug::{Backend, Error, Plugin, Precondition, Runtime, builtin};

/// Exit code for any failure.
pub const EXIT_ERROR: u8 = 1;
/// Exit code when the workspace is locked by someone else (scripts may wait and retry).
pub const EXIT_LOCKED: u8 = 3;

/// Infrastructure state backends as sandboxed WebAssembly plugins.
#[derive(Parser, Debug)]
#[command(name = "stateplug", version, about)]
pub struct Args {
    /// Print machine-readable JSON where the command has output.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (-v info, -vv debug, -vvv trace); STATEPLUG_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Plugins: the built-in ones and what they describe.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Workspace state on the default backend (the local plugin in ./.stateplug/).
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Subcommand, Debug)]
enum PluginsCommand {
    /// List the built-in plugins with their description and configuration keys.
    List,
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// Print a workspace's state to stdout.
    Pull {
        /// The workspace.
        #[arg(default_value = DEFAULT_WORKSPACE)]
        workspace: String,
    },
    /// Store a state file (`-` for stdin) as a workspace's state.
    Push {
        /// The workspace.
        workspace: String,
        /// The state file; `-` reads stdin.
        file: PathBuf,
    },
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
    match args.command {
        Command::Plugins(PluginsCommand::List) => plugins_list(&runtime, args.json).await,
        Command::State(StateCommand::Pull { workspace }) => {
            let backend = default_backend(&runtime).await?;
            state_pull(&backend, &workspace).await
        }
        Command::State(StateCommand::Push { workspace, file }) => {
            let backend = default_backend(&runtime).await?;
            state_push(&backend, &workspace, &file).await
        }
    }
}

/// The backend the configuration selects (with none: the local plugin on `./.stateplug/`).
async fn default_backend(runtime: &Runtime) -> anyhow::Result<Backend> {
    let config = Config::load(&Overrides::default(), std::env::vars())?;
    Ok(config.backend.open(runtime).await?)
}

async fn plugins_list(runtime: &Runtime, json: bool) -> anyhow::Result<()> {
    let mut plugins = Vec::new();
    for name in builtin::names() {
        plugins.push(Plugin::builtin(runtime, name).await?);
    }
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<_> = plugins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "source": p.source().to_string(),
                    "sha256": p.sha256(),
                    "metadata": p.metadata(),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(());
    }
    for plugin in &plugins {
        let m = plugin.metadata();
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
    }
    Ok(())
}

async fn state_pull(backend: &Backend, workspace: &str) -> anyhow::Result<()> {
    let path = workspace::state_path(workspace)?;
    let state = match backend.read(&path).await {
        Ok(object) => object,
        Err(e) if e.is_not_found() => bail!("workspace `{workspace}` has no state yet"),
        Err(e) => return Err(e.into()),
    };
    std::io::stdout().lock().write_all(&state.data)?;
    Ok(())
}

async fn state_push(backend: &Backend, workspace: &str, file: &Path) -> anyhow::Result<()> {
    let path = workspace::state_path(workspace)?;
    let data = read_input(file)?;
    serde_json::from_slice::<serde_json::Value>(&data).with_context(|| {
        format!(
            "{} is not a JSON state document; nothing was stored",
            input_name(file)
        )
    })?;
    if let Some(holder) = backend.lock_info(&path).await? {
        return Err(Error::Locked {
            path,
            holder: Box::new(holder),
        }
        .into());
    }
    // Compare-and-swap against what was there, so a concurrent writer is never overwritten
    // unseen.
    let precondition = match backend.read(&path).await {
        Ok(current) => Precondition::VersionIs(current.version),
        Err(e) if e.is_not_found() => Precondition::Absent,
        Err(e) => return Err(e.into()),
    };
    let version = backend.write(&path, data, precondition).await?;
    eprintln!("stored workspace `{workspace}` (version {version})");
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

fn input_name(file: &Path) -> String {
    if file == Path::new("-") {
        "stdin".to_string()
    } else {
        file.display().to_string()
    }
}
