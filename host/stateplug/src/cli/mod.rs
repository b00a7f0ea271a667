//! The `stateplug` command: its arguments, and one module per command (`serve`, `workspace`,
//! `state`, `lock`, `audit`, `object`, `kv`, `plugins`, `config`, `migrate`; `export` and
//! `import` in `archive`), each a thin layer over the library: it opens what the configuration names and
//! prints what the state layer or the runtime answers.

mod archive;
mod audit;
mod config;
mod kv;
mod lock;
mod logging;
mod migrate;
mod object;
mod output;
mod plugins;
mod serve;
mod state;
mod workspace;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use stateplug::config::{Overrides, Settings};
use stateplug::opening::{BackendWorkspaces, StateError};
use stateplug_runtime::{Runtime, RuntimeOptions};
use stateplug_state::{ObjectError, Objects};

use archive::{ExportArgs, ImportArgs};
use audit::AuditArgs;
use config::ConfigCommand;
use lock::LockCommand;
pub use logging::init as init_logging;
use migrate::MigrateArgs;
use object::ObjectCommand;
use plugins::PluginsCommand;
use state::StateCommand;
use workspace::WorkspaceCommand;

/// Exit code for any failure.
pub const EXIT_ERROR: u8 = 1;
/// Exit code when the workspace or object is locked by someone else (scripts may wait and retry).
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
pub enum Command {
    /// Serve Terraform's HTTP backend protocol at http://ADDR/state/<workspace> (https with
    /// TLS; SIGHUP reloads the TLS files).
    Serve {
        /// Address to listen on (127.0.0.1:0 picks a free port).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Serve https with this certificate chain, PEM (`[server] tls_cert`).
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key, PEM (`[server] tls_key`).
        #[arg(long, value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// Mutual TLS: accept only clients with a certificate signed by these CAs, PEM
        /// (`[server] client_ca`).
        #[arg(long, value_name = "FILE")]
        client_ca: Option<PathBuf>,
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
    /// The audit trail: who changed which workspace, how and when, newest first.
    Audit(AuditArgs),
    /// Objects at paths (the object API's key space, apart from the workspaces).
    #[command(subcommand)]
    Object(ObjectCommand),
    /// Key-values in namespaces, with TTLs (the key-value API's key space).
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Plugins: built-ins and .wasm files.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// The effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Copy workspaces from one configured backend to another (lineage and serial checked,
    /// both sides locked, each copy read back and compared).
    Migrate(MigrateArgs),
    /// Write the backend's workspaces to a tar archive with a manifest of SHA-256 digests.
    Export(ExportArgs),
    /// Load an archive `export` wrote into the backend, under the rules of `migrate`.
    Import(ImportArgs),
    /// Read a password or token on stdin and print its argon2id hash, for `password` or
    /// `token` in `[server.users]` / `[server.tokens]`.
    HashSecret,
}

/// Instance slots of the runtime of a command other than `serve`: one backend's pool, and the
/// conformance suite's racers in `plugins check`.
const ONE_COMMAND_POOL_SIZE: u32 = 64;

/// The exit code for an error: [`EXIT_LOCKED`] when a lock was in the way (for `migrate` and
/// `import`: when every refused workspace was locked by someone else).
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(refused) = error.downcast_ref::<migrate::Refused>() {
        return if refused.all_locked {
            EXIT_LOCKED
        } else {
            EXIT_ERROR
        };
    }
    let locked = error
        .downcast_ref::<StateError>()
        .is_some_and(StateError::is_locked)
        || matches!(
            error.downcast_ref::<stateplug_runtime::Error>(),
            Some(stateplug_runtime::Error::Locked { .. })
        )
        || matches!(
            error.downcast_ref::<ObjectError<stateplug_runtime::Error>>(),
            Some(
                ObjectError::Locked { .. }
                    | ObjectError::Store(stateplug_runtime::Error::Locked { .. })
            )
        );
    if locked { EXIT_LOCKED } else { EXIT_ERROR }
}

/// Runs a parsed command.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Command::HashSecret = args.command {
        return hash_secret();
    }
    // A one-shot command opens one backend: reserving the server's instance slots (each with
    // its stack's guard pages) would only slow its start.
    let slots = match &args.command {
        Command::Serve { .. } => stateplug_runtime::DEFAULT_POOL_SIZE,
        _ => ONE_COMMAND_POOL_SIZE,
    };
    let runtime = Runtime::with_options(RuntimeOptions {
        pool_size: Some(slots),
        ..RuntimeOptions::default()
    })?;
    let json = args.json;
    let (listen, tls_cert, tls_key, client_ca) = match &args.command {
        Command::Serve {
            listen,
            tls_cert,
            tls_key,
            client_ca,
            ..
        } => (
            listen.clone(),
            tls_cert.clone(),
            tls_key.clone(),
            client_ca.clone(),
        ),
        _ => Default::default(),
    };
    let overrides = Overrides {
        config_file: args.config.clone(),
        backend: args.backend.clone(),
        plugin: args.plugin.clone(),
        backend_config: args.backend_config.clone(),
        listen,
        tls_cert,
        tls_key,
        client_ca,
    };
    let load = || Settings::load(&overrides, std::env::vars());
    match args.command {
        Command::Plugins(PluginsCommand::List) => plugins::list(&runtime, &load()?, json).await,
        Command::Plugins(PluginsCommand::Inspect { plugin }) => {
            let plugin = plugins::load_named(&runtime, &overrides, plugin).await?;
            plugins::inspect(&plugin, json)
        }
        Command::Plugins(PluginsCommand::Check { plugin }) => {
            let overrides = Overrides {
                plugin: Some(plugin),
                ..overrides.clone()
            };
            plugins::check(
                &runtime,
                &Settings::load(&overrides, std::env::vars())?,
                json,
            )
            .await
        }
        Command::Config(ConfigCommand::Show) => config::show(&runtime, &load()?).await,
        Command::Serve { .. } => serve::run(&runtime, load()?).await,
        Command::Workspace(command) => {
            workspace::run(&open(&runtime, &load()?).await?, command, json).await
        }
        Command::State(command) => {
            state::run(&open(&runtime, &load()?).await?, command, json).await
        }
        Command::Lock(command) => lock::run(&open(&runtime, &load()?).await?, command, json).await,
        Command::Audit(command) => {
            audit::run(&open(&runtime, &load()?).await?, command, json).await
        }
        Command::Object(command) => {
            let objects = Objects::new(load()?.backend.open(&runtime).await?);
            object::run(&objects, command, json).await
        }
        Command::Kv(command) => {
            let kv = stateplug_state::Kv::new(load()?.backend.open(&runtime).await?);
            kv::run(&kv, command, json).await
        }
        Command::Migrate(command) => migrate::run(&runtime, &overrides, command, json).await,
        Command::Export(command) => {
            let settings = load()?;
            let workspaces = open(&runtime, &settings).await?;
            archive::export(&workspaces, &settings.backend.name, command, json).await
        }
        Command::HashSecret => hash_secret(),
        Command::Import(command) => {
            let settings = load()?;
            let workspaces = open(&runtime, &settings).await?;
            archive::import(&workspaces, &settings.backend.name, command, json).await
        }
    }
}

/// `hash-secret`: the first line of stdin, hashed.
fn hash_secret() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        !secret.is_empty(),
        "no secret on stdin: pipe the password or token in, e.g. `printf %s \"$PASSWORD\" | \
         stateplug hash-secret`"
    );
    println!(
        "{}",
        stateplug::access::hash(secret).map_err(anyhow::Error::msg)?
    );
    Ok(())
}

async fn open(runtime: &Runtime, config: &Settings) -> anyhow::Result<BackendWorkspaces> {
    Ok(config.backend.open_workspaces(runtime).await?)
}
