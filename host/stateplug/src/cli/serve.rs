//! `stateplug serve`: Terraform's http backend on the configured backend (and the object and
//! key-value APIs, with the sweep of expired key-values running beside them).

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use stateplug::access::{Access, Oidc};
use stateplug::config::{PluginRef, Settings};
use stateplug::server::{self, AppState};
use stateplug_runtime::Runtime;

pub(super) async fn run(runtime: &Runtime, config: Settings) -> anyhow::Result<()> {
    // Read first: a mistake in the TLS files stops `serve` before anything starts.
    let tls = config
        .server
        .tls
        .as_ref()
        .map(server::Tls::load)
        .transpose()?;
    // Before the backend opens, which registers its instance gauges with the recorder.
    server::install_metrics()?;
    let oidc = match config.server.oidc.clone() {
        Some(settings) => Some(Oidc::open(settings).await.map_err(anyhow::Error::msg)?),
        None => None,
    };
    let shared = Arc::new(AppState {
        workspaces: config.backend.open_workspaces(runtime).await?,
        access: Arc::new(Access::new(config.server.principals.clone(), oidc)),
        backend: server::BackendSummary {
            name: config.backend.name.clone(),
            grants: config.backend.grants.clone(),
        },
    });
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener.local_addr()?;
    if let Some(at) = config.server.metrics_listen {
        serve_metrics(at, shared.clone()).await?;
    }
    // Installed before the `listening on` line: from then on SIGHUP reloads, never kills.
    #[cfg(unix)]
    reload_on_hangup(tls.clone())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{address}")?;
        out.flush()?;
    }
    let url = format!("{scheme}://{address}/state/default");
    // Terraform 1.4 and later send a client certificate from these two settings.
    let client_certificate = match tls
        .as_ref()
        .and_then(|tls| tls.settings().client_ca.as_ref())
    {
        Some(_) => {
            "      client_certificate_pem = file(\"client.pem\")\n      \
             client_private_key_pem = file(\"client-key.pem\")\n"
        }
        None => "",
    };
    eprintln!(
        "backend `{}` (plugin {}); for Terraform:\n\n  terraform {{\n    backend \"http\" {{\n      \
         address        = \"{url}\"\n      lock_address   = \"{url}\"\n      unlock_address = \
         \"{url}\"\n{client_certificate}    }}\n  }}\n",
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
    match &tls {
        Some(tls) => server::serve_tls(listener, app, tls, shutdown_signal()).await?,
        None => server::serve(listener, app, shutdown_signal()).await?,
    }
    eprintln!("stopped");
    Ok(())
}

/// `/healthz`, `/readyz` and `/metrics` without auth at `metrics_listen`, in the background;
/// its address is printed before the `listening on` line, so whoever waits for that line has
/// it too.
async fn serve_metrics(at: std::net::SocketAddr, shared: Arc<AppState>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("cannot listen on {at} (`metrics_listen`)"))?;
    eprintln!(
        "health and metrics without auth at http://{}/metrics (and /healthz, /readyz)",
        listener.local_addr()?
    );
    let app = server::metrics_router(shared);
    // It ends with the process: probes and scrapes need no draining.
    tokio::spawn(async move {
        if let Err(e) = server::serve(listener, app, std::future::pending()).await {
            tracing::error!("the metrics address stopped serving: {e}");
        }
    });
    Ok(())
}

/// Every SIGHUP reads the TLS files again (connections already made go on as they are); a
/// reload that fails keeps the previous files and says what is wrong.
#[cfg(unix)]
fn reload_on_hangup(tls: Option<server::Tls>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let Some(tls) = &tls else {
                tracing::warn!("SIGHUP ignored: no TLS is configured, nothing to reload");
                continue;
            };
            match tls.reload() {
                Ok(()) => tracing::info!(
                    cert = %tls.settings().cert.display(),
                    "SIGHUP: TLS files reloaded; new connections use them"
                ),
                Err(e) => tracing::error!(
                    "SIGHUP: TLS files not reloaded, new connections still get the previous \
                     certificate: {e}"
                ),
            }
        }
    });
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
