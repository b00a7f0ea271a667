//! The JSON API for tools: workspaces, locks, history and force-unlock records, and the
//! OpenAPI document of every `/api/` route.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::respond::{error_response, json};
use crate::opening::StateError;

/// 200 with the value as JSON, or the error's answer.
fn json_or_error(result: Result<impl serde::Serialize, StateError>) -> Response {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => error_response(e),
    }
}

pub(super) async fn workspaces(State(shared): State<Arc<AppState>>) -> Response {
    json_or_error(shared.workspaces.infos().await)
}

pub(super) async fn locks(State(shared): State<Arc<AppState>>) -> Response {
    let locks = shared.workspaces.locks().await.map(|locks| {
        locks
            .into_iter()
            .map(|(workspace, lock)| serde_json::json!({ "workspace": workspace, "lock": lock }))
            .collect::<Vec<_>>()
    });
    json_or_error(locks)
}

pub(super) async fn history(
    State(shared): State<Arc<AppState>>,
    Path(workspace): Path<String>,
) -> Response {
    json_or_error(shared.workspaces.history(&workspace).await)
}

pub(super) async fn broken_locks(
    State(shared): State<Arc<AppState>>,
    Path(workspace): Path<String>,
) -> Response {
    json_or_error(shared.workspaces.broken_locks(&workspace).await)
}

/// The OpenAPI 3.1 document of the `/api/` routes, kept hand-written beside this file.
const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json`: the document, byte for byte as it is in the repository.
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
