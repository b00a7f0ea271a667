//! `/metrics`: what the server and the runtime record, in Prometheus' text format. Both emit
//! through the `metrics` facade; [`install_metrics`] installs the Prometheus recorder once per
//! process (`serve` does), and this module renders it. The HTTP request metrics come from
//! [`record_request`], a layer of the router. The names are documented in the README
//! ("Health and metrics").

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::respond::text;

/// HTTP requests, by `route` (the router's template), `method` and `status`.
const REQUESTS: &str = "stateplug_http_requests_total";
/// Their latency, with the same labels.
const DURATION: &str = "stateplug_http_request_duration_seconds";
/// A LOCK, write or delete of a workspace that met someone else's lock (423), by `operation`.
const LOCK_CONFLICTS: &str = "stateplug_lock_conflicts_total";

/// The `route` of a request no route matched (an unbounded raw path is never a label).
const UNMATCHED: &str = "unmatched";

/// Latency buckets, in seconds: from a cached read to a plugin call near its deadline.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histogram samples are folded into their buckets between scrapes (the exporter's
/// own listener, which would do it, is not used).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder's handle, once installed: the recorder is process-wide, and so is this.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why metrics could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("cannot record metrics: {0}")]
pub struct MetricsError(String);

/// Installs the Prometheus recorder for this process, so that `/metrics` answers; before it
/// (a library user, a test in process) every metric is a no-op and `/metrics` answers 404.
/// Call it from within a tokio runtime, before opening backends: a backend reports its
/// instances to the recorder there when it opens.
pub fn install_metrics() -> Result<(), MetricsError> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| {
            MetricsError(format!(
                "{e} (another metrics recorder is installed in this process?)"
            ))
        })?;
    describe();
    stateplug_runtime::describe_metrics();
    // Shown at 0 from the start, so that an alert on their increase sees the first one.
    for operation in ["lock", "write", "delete"] {
        counter!(LOCK_CONFLICTS, "operation" => operation).increment(0);
    }
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let _ = HANDLE.set(handle);
    Ok(())
}

fn describe() {
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "HTTP requests, by route template, method and status"
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "HTTP request latency until the answer's head, by route template, method and status"
    );
    describe_counter!(
        LOCK_CONFLICTS,
        Unit::Count,
        "LOCKs, writes and deletes of the Terraform protocol and the object API refused with \
         423 because another holds the lock, by operation"
    );
}

/// `GET /metrics`.
pub(super) async fn render() -> Response {
    match HANDLE.get() {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            "this process records no metrics: `stateplug serve` installs a recorder; a program \
             embedding the server calls `stateplug::server::install_metrics` first",
        ),
    }
}

/// `GET /metrics` on the main address: administrators only.
pub(super) async fn render_for_admins(axum::Extension(caller): super::auth::CallerOf) -> Response {
    match caller.require_admin("the metrics") {
        Ok(()) => render().await,
        Err(denied) => super::auth::forbidden(denied),
    }
}

/// Counts every request and its latency under its route's template.
pub(super) async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |path| path.as_str().to_string());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("route", route),
        ("method", method.to_string()),
        ("status", response.status().as_u16().to_string()),
    ];
    counter!(REQUESTS, &labels).increment(1);
    histogram!(DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label: a client may send any token as a method, so the ones this server
/// answers are named and the rest are `other`.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "LOCK" => "LOCK",
        "UNLOCK" => "UNLOCK",
        _ => "other",
    }
}

/// A Terraform-protocol request `method` was refused because someone else holds the lock.
pub(super) fn lock_conflict(method: &Method) {
    let operation = match method.as_str() {
        "LOCK" => "lock",
        "DELETE" => "delete",
        _ => "write",
    };
    counter!(LOCK_CONFLICTS, "operation" => operation).increment(1);
}
