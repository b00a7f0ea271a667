//! `stateplug config`: the effective configuration.

use clap::Subcommand;
use stateplug::access::{Jwks, Via};
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
        "\n[server]\nlisten = \"{}\"\nbody_limit = {}\naudit_retention = {}",
        config.server.listen, config.server.body_limit, config.server.audit_retention
    );
    if let Some(tls) = &config.server.tls {
        // Quoted as TOML strings: a path may hold `"` or `\`.
        let path = |path: &std::path::Path| toml::Value::from(path.display().to_string());
        println!(
            "tls_cert = {}\ntls_key = {}",
            path(&tls.cert),
            path(&tls.key)
        );
        if let Some(client_ca) = &tls.client_ca {
            println!("client_ca = {}", path(client_ca));
        }
    }
    for principal in &config.server.principals {
        let (table, key) = match principal.via {
            Via::Token => ("tokens", "token"),
            _ => ("users", "password"),
        };
        println!("{table}.{}.{key} = \"(secret)\"", principal.name);
    }
    if let Some(oidc) = &config.server.oidc {
        let text = |value: &str| toml::Value::from(value);
        println!("oidc.issuer = {}", text(&oidc.issuer));
        println!(
            "oidc.audience = {}",
            toml::Value::from(oidc.audience.clone())
        );
        match &oidc.jwks {
            Jwks::Url(url) => println!("oidc.jwks_url = {}", text(url)),
            Jwks::Keys(keys) => println!("# oidc: {} keys from jwks_file", keys.keys.len()),
        }
        println!("# oidc: {} claim rules", oidc.rules.len());
    }
    Ok(())
}
