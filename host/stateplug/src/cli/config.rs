//! `stateplug config`: the effective configuration.

use clap::Subcommand;
use stateplug::config::Settings;
use stateplug_runtime::{Plugin, Runtime};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration, secrets masked.
    Show,
}

pub(super) async fn show(runtime: &Runtime, config: &Settings) -> anyhow::Result<()> {
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
