//! `stateplug serve`: Terraform's http backend on the configured backend (and the object and
//! key-value APIs, with the sweep of expired key-values running beside them).

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use stateplug::config::{PluginRef, Settings};
use stateplug::server::{self, AppState};
use stateplug_runtime::Runtime;

pub(super) async fn run(runtime: &Runtime, config: Settings) -> anyhow::Result<()> {
    let shared = Arc::new(AppState {
        workspaces: config.backend.open_workspaces(runtime).await?,
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
    // Expired key-values are deleted in the background; a failed sweep is logged, never fatal.
    tokio::spawn(server::sweep_key_values(
        shared.workspaces.store().clone(),
        config.server.kv_sweep_interval,
    ));
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
