//! `host.log`: a plugin's log lines in the host's log, tagged with the plugin's name.

use crate::bindings::stateplug::backend::host::Level;

use super::HostView;

/// Logs one message; a plugin cannot flood the host's log: a budget per call, and each
/// message bounded and escaped.
pub(super) fn log(view: &mut HostView<'_>, level: Level, message: &str) {
    if *view.log_budget == 0 {
        return;
    }
    *view.log_budget -= 1;
    let mut message = stateplug_sdk::text::untrusted(message).into_owned();
    if *view.log_budget == 0 {
        message.push_str(" (log budget of this call used up: further messages dropped)");
    }
    let plugin = view.plugin;
    match level {
        Level::Trace => tracing::trace!(plugin, "{message}"),
        Level::Debug => tracing::debug!(plugin, "{message}"),
        Level::Info => tracing::info!(plugin, "{message}"),
        Level::Warn => tracing::warn!(plugin, "{message}"),
        Level::Error => tracing::error!(plugin, "{message}"),
    }
}
