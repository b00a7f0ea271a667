//! `stateplug plugins`: list, inspect and check plugins.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;
use stateplug::config::{Overrides, Settings};
use stateplug_runtime::catalog::Catalog;
use stateplug_runtime::{DirGrant, Plugin, PluginSource, Runtime};

use super::output::print_json;

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
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

pub(super) async fn list(runtime: &Runtime, config: &Settings, json: bool) -> anyhow::Result<()> {
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
pub(super) async fn load_named(
    runtime: &Runtime,
    overrides: &Overrides,
    plugin: String,
) -> anyhow::Result<Plugin> {
    let overrides = Overrides {
        plugin: Some(plugin),
        ..overrides.clone()
    };
    let config = Settings::load(&overrides, std::env::vars())?;
    Ok(config.backend.load_plugin(runtime).await?)
}

pub(super) fn inspect(plugin: &Plugin, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&plugin_json(plugin));
    }
    print_plugin(plugin)?;
    println!("  sha256: {}", plugin.sha256());
    let c = plugin.capabilities();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!(
        "  capabilities: filesystem {} (grant `dirs`), http {} (grant `allow_hosts`), postgres {} \
         (grant `allow_hosts = [\"postgres://HOST:PORT\"]`), sockets {}, environment {}",
        yes_no(c.filesystem),
        yes_no(c.http),
        yes_no(c.postgres),
        yes_no(c.sockets),
        yes_no(c.environment)
    );
    println!("  imports: {}", plugin.imports().join(", "));
    Ok(())
}

pub(super) async fn check(runtime: &Runtime, config: &Settings, json: bool) -> anyhow::Result<()> {
    let plugin = config.backend.load_plugin(runtime).await?;
    config.backend.check_plugin_config(plugin.metadata())?;
    let scratch = tempfile::tempdir().context("creating scratch directories")?;
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let report = stateplug_runtime::conformance::run(|| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut grants = config.backend.grants.clone();
        grants.dirs = vec![DirGrant::read_write(scratch.path().join(case.to_string()))];
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
