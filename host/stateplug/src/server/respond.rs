//! Answers: plain text for people, JSON for tools, and the status of every error.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stateplug_runtime::Error;
use stateplug_state::ObjectError;
use tracing::Instrument;

use super::objects::ObjectFailure;
use crate::opening::StateError;

pub(super) fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

/// The HTTP answer for a state-layer error. A lock in the way answers 423 with the holder's
/// LockInfo JSON, which Terraform shows to the user.
pub(super) fn error_response(error: StateError) -> Response {
    let status = match &error {
        StateError::Locked { holder, .. } => return json(StatusCode::LOCKED, holder),
        StateError::Rejected { .. } | StateError::NotLocked { .. } => StatusCode::CONFLICT,
        StateError::Invalid(_) => StatusCode::BAD_REQUEST,
        StateError::Store(Error::Locked { holder, .. }) => return json(StatusCode::LOCKED, holder),
        StateError::Store(e) => store_status(e),
    };
    logged_text(status, &error)
}

/// The HTTP answer for an object API error: 412 when a precondition does not hold, 423 with
/// the holder's LockInfo JSON when a lock is in the way.
pub(super) fn object_error_response(error: ObjectFailure) -> Response {
    let status = match &error {
        ObjectError::Locked { holder, .. } => return json(StatusCode::LOCKED, holder),
        ObjectError::Store(Error::Locked { holder, .. }) => {
            return json(StatusCode::LOCKED, holder);
        }
        ObjectError::PreconditionFailed { .. }
        | ObjectError::Store(Error::PreconditionFailed { .. }) => StatusCode::PRECONDITION_FAILED,
        ObjectError::NotLocked { .. } => StatusCode::CONFLICT,
        ObjectError::Invalid(_) => StatusCode::BAD_REQUEST,
        ObjectError::Store(e) => store_status(e),
    };
    logged_text(status, &error)
}

/// The HTTP answer for a key-value API error: 409 when a transaction's precondition does not
/// hold, 413 for more keys than one request may name, 503 when the namespace kept changing.
pub(super) fn kv_error_response(error: super::kv::KvFailure) -> Response {
    use stateplug_state::KvError;
    let status = match &error {
        KvError::Invalid(_) => StatusCode::BAD_REQUEST,
        KvError::TooMany { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        KvError::Conflict { .. } => StatusCode::CONFLICT,
        KvError::Contended(_) => StatusCode::SERVICE_UNAVAILABLE,
        KvError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        KvError::Store(e) => store_status(e),
    };
    logged_text(status, &error)
}

/// The status of a store's failure (a lock in the way is answered before this).
fn store_status(error: &Error) -> StatusCode {
    match error {
        Error::Locked { .. } => StatusCode::LOCKED,
        Error::PreconditionFailed { .. } => StatusCode::CONFLICT,
        Error::InvalidPath(_) => StatusCode::BAD_REQUEST,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Timeout { .. } | Error::Unavailable { .. } | Error::Crashed { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        // The storage behind the plugin refused it: the gateway's upstream said no.
        Error::Denied { .. } => StatusCode::BAD_GATEWAY,
        Error::InvalidConfig { .. }
        | Error::Plugin { .. }
        | Error::Load { .. }
        | Error::Grant { .. }
        | Error::Host(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error as plain text; a server error is logged too.
fn logged_text(status: StatusCode, error: &dyn std::fmt::Display) -> Response {
    if status.is_server_error() {
        tracing::error!("{error}");
    }
    text(status, error.to_string())
}

/// Runs a request's work; a change runs in its own task, so a client that disconnects
/// cannot cut it short.
pub(super) async fn finish(
    read: bool,
    work: impl Future<Output = Response> + Send + 'static,
) -> Response {
    if read {
        return work.await;
    }
    tokio::spawn(work.in_current_span())
        .await
        .unwrap_or_else(|e| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the request failed: {e}"),
            )
        })
}

/// 405 naming the methods `allowed` here (also in `Allow`), and `hint` at what they do.
pub(super) fn not_allowed(method: &Method, allowed: &'static str, hint: &str) -> Response {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed here; use {allowed} ({hint})"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}
