//! Answers: plain text for people, JSON for tools, and the status of every error.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use stateplug_runtime::Error;

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
        StateError::Store(e) => match e {
            Error::Locked { holder, .. } => return json(StatusCode::LOCKED, holder),
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
        },
    };
    if status.is_server_error() {
        tracing::error!("{error}");
    }
    text(status, error.to_string())
}
