//! Terraform's http backend protocol at `/state/<workspace>`: GET, POST (and PUT) `?ID=`,
//! DELETE, LOCK and UNLOCK, each a call of the state layer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stateplug_sdk::LockInfo;
use stateplug_state::{AuditAction, AuditEvent, WriteOptions};

use super::AppState;
use super::auth::{CallerOf, forbidden};
use super::body::verify_content_md5;
use super::respond::{error_response, finish, json, text};
use crate::access::{Caller, Denied, Permission, Target};
use crate::opening::{BackendWorkspaces, StateError};

/// The methods `/state/<workspace>` answers.
const STATE_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, LOCK, UNLOCK";

pub(super) async fn state_request(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    method: Method,
    Path(workspace): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let read = matches!(method, Method::GET | Method::HEAD);
    // A read may stop with its client; a change runs to its end in a task of its own.
    finish(
        read,
        handle_state(shared, caller, method, workspace, query, headers, body),
    )
    .await
}

/// Why a protocol request failed: the request itself, or the state layer.
enum Failure {
    BadRequest(String),
    /// An UNLOCK by someone who does not hold the lock.
    NotHolder(Box<LockInfo>),
    /// The caller lacks the permission.
    Denied(Denied),
    State(StateError),
}

impl From<Denied> for Failure {
    fn from(denied: Denied) -> Self {
        Failure::Denied(denied)
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Failure::State(e)
    }
}

async fn handle_state(
    shared: Arc<AppState>,
    caller: Arc<Caller>,
    method: Method,
    workspace: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let workspaces = &shared.workspaces;
    if let Err(reason) = stateplug_state::check_workspace(&workspace) {
        return text(StatusCode::BAD_REQUEST, reason);
    }
    if let Err(reason) = verify_content_md5(&headers, &body) {
        return text(StatusCode::BAD_REQUEST, reason);
    }
    let lock_id = query.get("ID").filter(|id| !id.is_empty()).cloned();
    // UNLOCK checks its own: releasing one's lock needs `lock`, breaking one `admin`.
    let needed = match method.as_str() {
        "GET" | "HEAD" => Some(Permission::Read),
        "POST" | "PUT" => Some(Permission::Write),
        "DELETE" => Some(Permission::Admin),
        "LOCK" | "UNLOCK" => Some(Permission::Lock),
        _ => None,
    };
    if let Some(permission) = needed
        && let Err(denied) = caller.require(permission, Target::workspace(&workspace))
    {
        return forbidden(denied);
    }
    // What a change did, for the audit trail.
    let event = |action| caller.audit_event(action, &workspace);
    let result: Result<Option<AuditEvent>, Failure> = match method.as_str() {
        "GET" | "HEAD" => match workspaces.get(&workspace).await {
            Ok(Some(object)) => {
                return ([(header::CONTENT_TYPE, "application/json")], object.data).into_response();
            }
            Ok(None) => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("workspace `{workspace}` has no state yet"),
                );
            }
            Err(e) => Err(e.into()),
        },
        "POST" | "PUT" => {
            let options = WriteOptions {
                lock_id,
                force: false,
            };
            workspaces
                .put_with_serials(&workspace, body.to_vec(), &options)
                .await
                .map(|stored| {
                    Some(
                        event(AuditAction::Write)
                            .with_serials(stored.serial_before, Some(stored.serial_after))
                            .with_lock_id(options.lock_id.as_deref()),
                    )
                })
                .map_err(Failure::from)
        }
        "DELETE" => {
            let force = query.get("force").is_some_and(|v| v == "true");
            workspaces
                .delete_with_serial(&workspace, lock_id.as_deref(), force)
                .await
                .map(|serial| Some(event(AuditAction::Delete).with_serials(serial, None)))
                .map_err(Failure::from)
        }
        "LOCK" => lock(workspaces, &workspace, &body)
            .await
            .map(|taken| taken.map(|id| event(AuditAction::Lock).with_lock_id(Some(&id)))),
        "UNLOCK" => unlock(workspaces, &workspace, &body, &caller)
            .await
            .map(|done| done.map(|(action, id)| event(action).with_lock_id(Some(&id))))
            .map_err(not_holder),
        _ => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "method {method} is not part of Terraform's http backend protocol; use {STATE_METHODS}"
                ),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(STATE_METHODS));
            return response;
        }
    };
    if let Err(Failure::State(e)) = &result
        && e.is_locked()
    {
        super::metrics::lock_conflict(&method);
    }
    match result {
        Ok(change) => {
            if let Some(change) = change {
                workspaces.audit().record(&change).await;
            }
            StatusCode::OK.into_response()
        }
        Err(Failure::BadRequest(reason)) => text(StatusCode::BAD_REQUEST, reason),
        // Terraform reads 409 with the holder's LockInfo as "locked by someone else".
        Err(Failure::NotHolder(holder)) => json(StatusCode::CONFLICT, &holder),
        Err(Failure::Denied(denied)) => forbidden(denied),
        Err(Failure::State(e)) => error_response(e),
    }
}

/// A lock in the way of an UNLOCK is the holder's, not a failure of the state layer.
fn not_holder(failure: Failure) -> Failure {
    match failure {
        Failure::State(e) => match e.holder() {
            Some(holder) => Failure::NotHolder(Box::new(holder.clone())),
            None => Failure::State(e),
        },
        other => other,
    }
}

fn parse_lock(body: &[u8]) -> Result<LockInfo, Failure> {
    serde_json::from_slice::<LockInfo>(body).map_err(|e| {
        Failure::BadRequest(format!(
            "the body is not Terraform LockInfo JSON ({e}); send {{\"ID\": ..., \"Operation\": ..., \"Who\": ..., ...}}"
        ))
    })
}

/// LOCK; the id of the lock taken, `None` when the caller held it already.
async fn lock(
    workspaces: &BackendWorkspaces,
    workspace: &str,
    body: &[u8],
) -> Result<Option<String>, Failure> {
    let info = parse_lock(body)?;
    let id = info.id.clone();
    match workspaces.lock(workspace, info).await {
        Ok(_) => Ok(Some(id)),
        // Asking again for a lock one already holds is not a conflict.
        Err(e) if e.holder().is_some_and(|holder| holder.id == id) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// UNLOCK with the holder's LockInfo releases the lock. An empty body (Terraform's
/// `force-unlock`) or a body with only the ID (OpenTofu's) breaks it (`admin` only), logged
/// at warn. Returns what it did to which lock id; `None` when there was nothing to release.
async fn unlock(
    workspaces: &BackendWorkspaces,
    workspace: &str,
    body: &[u8],
    caller: &Caller,
) -> Result<Option<(AuditAction, String)>, Failure> {
    let who = format!("{} via HTTP force-unlock", caller.label());
    let force = || caller.require(Permission::Admin, Target::workspace(workspace));
    let broke = |broken: Option<LockInfo>| broken.map(|lock| (AuditAction::ForceUnlock, lock.id));
    if body.iter().all(u8::is_ascii_whitespace) {
        force()?;
        return Ok(broke(workspaces.force_unlock(workspace, &who).await?));
    }
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| Failure::BadRequest(format!("the body is not LockInfo JSON ({e})")))?;
    let info = parse_lock(body)?;
    if fields.len() == 1 && fields.contains_key("ID") {
        force()?;
        return match workspaces.lock_info(workspace).await? {
            Some(holder) if holder.id != info.id => Err(Failure::NotHolder(Box::new(holder))),
            Some(_) => Ok(broke(workspaces.force_unlock(workspace, &who).await?)),
            None => Ok(None),
        };
    }
    match workspaces.unlock(workspace, &info.id).await {
        Ok(()) => Ok(Some((AuditAction::Unlock, info.id))),
        // Nothing to release: the lock expired or was broken.
        Err(StateError::NotLocked { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
