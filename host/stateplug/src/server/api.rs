//! The JSON API for tools: workspaces, locks, history, force-unlock records and the audit
//! trail, and the OpenAPI document of every `/api/` route.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{CallerOf, forbidden};
use super::respond::{error_response, json};
use crate::access::{Permission, Target};
use crate::opening::StateError;

/// 200 with the value as JSON, or the error's answer.
fn json_or_error(result: Result<impl serde::Serialize, StateError>) -> Response {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => error_response(e),
    }
}

/// The workspaces the caller may read.
pub(super) async fn workspaces(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
) -> Response {
    let infos = shared.workspaces.infos().await.map(|mut infos| {
        infos.retain(|info| caller.may(Permission::Read, Target::workspace(&info.name)));
        infos
    });
    json_or_error(infos)
}

/// The locks of the workspaces the caller may read.
pub(super) async fn locks(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
) -> Response {
    let locks = shared.workspaces.locks().await.map(|locks| {
        locks
            .into_iter()
            .filter(|(workspace, _)| caller.may(Permission::Read, Target::workspace(workspace)))
            .map(|(workspace, lock)| serde_json::json!({ "workspace": workspace, "lock": lock }))
            .collect::<Vec<_>>()
    });
    json_or_error(locks)
}

pub(super) async fn history(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Path(workspace): Path<String>,
) -> Response {
    if let Err(denied) = caller.require(Permission::Read, Target::workspace(&workspace)) {
        return forbidden(denied);
    }
    json_or_error(shared.workspaces.history(&workspace).await)
}

pub(super) async fn broken_locks(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Path(workspace): Path<String>,
) -> Response {
    if let Err(denied) = caller.require(Permission::Read, Target::workspace(&workspace)) {
        return forbidden(denied);
    }
    json_or_error(shared.workspaces.broken_locks(&workspace).await)
}

/// `GET /api/v1/audit?workspace=WS&limit=N`: the audit trail, newest first.
/// The audit trail: `admin` on the workspace asked for, or an administrator for all.
pub(super) async fn audit(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    axum::extract::Query(query): axum::extract::Query<Vec<(String, String)>>,
) -> Response {
    let (workspace, limit) = match audit_query(&query) {
        Ok(parsed) => parsed,
        Err(reason) => return super::respond::text(StatusCode::BAD_REQUEST, reason),
    };
    let allowed = match &workspace {
        Some(workspace) => caller.require(Permission::Admin, Target::workspace(workspace)),
        None => caller.require_admin("the audit trail of every workspace"),
    };
    if let Err(denied) = allowed {
        return forbidden(denied);
    }
    let events = shared
        .workspaces
        .audit()
        .list(workspace.as_deref(), limit)
        .await;
    json_or_error(events.map(|events| serde_json::json!({ "events": events })))
}

/// `workspace` and `limit` of an audit listing, each at most once; anything else is refused
/// by name, so a misspelt `workspace` cannot turn into the trail of every workspace.
fn audit_query(query: &[(String, String)]) -> Result<(Option<String>, usize), String> {
    use stateplug_state::{DEFAULT_AUDIT_LIST, MAX_AUDIT_LIST};
    let mut workspace = None;
    let mut limit = None;
    for (key, value) in query {
        let slot = match key.as_str() {
            "workspace" => &mut workspace,
            "limit" => &mut limit,
            other => {
                return Err(format!(
                    "unknown query parameter `{}`: the audit trail takes `workspace` and `limit`",
                    stateplug_sdk::text::bounded(other, 100)
                ));
            }
        };
        if slot.replace(value.clone()).is_some() {
            return Err(format!(
                "the query parameter `{key}` is given twice: give it once"
            ));
        }
    }
    let limit = match limit {
        None => DEFAULT_AUDIT_LIST,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_AUDIT_LIST).contains(&n) => n,
            _ => {
                return Err(format!(
                    "the query parameter `limit` is `{}`: give a whole number from 1 to \
                     {MAX_AUDIT_LIST} (default {DEFAULT_AUDIT_LIST})",
                    stateplug_sdk::text::bounded(&text, 100)
                ));
            }
        },
    };
    Ok((workspace, limit))
}

/// The OpenAPI 3.1 document of the `/api/` routes, kept hand-written beside this file.
const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json`: the document, byte for byte as it is in the repository.
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
