//! `stateplug serve`: Terraform's HTTP backend protocol, plus a small JSON API for tools.
//!
//! `/state/<workspace>` is the `address`, `lock_address` and `unlock_address` of Terraform's
//! `http` backend: GET, POST (and PUT) `?ID=<lock id>`, DELETE, LOCK and UNLOCK. Every write
//! goes through the state layer, so Terraform's own rules (lineage, serial) and our locks are
//! enforced server side. The JSON API: `GET /api/workspaces`, `GET /api/locks`,
//! `GET /api/workspaces/<workspace>/history`, `GET /api/workspaces/<workspace>/broken-locks`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::LockInfo;
use crate::error::Error;
use crate::state::{StateStore, WriteOptions};

/// What the handlers share.
pub struct ServerState {
    /// The workspaces served.
    pub state: StateStore,
    /// Basic-auth users and passwords; empty disables authentication.
    pub users: BTreeMap<String, String>,
}

/// The methods `/state/<workspace>` answers.
const STATE_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, LOCK, UNLOCK";

/// The router: Terraform's protocol, the JSON API, auth, request ids and the body limit.
pub fn router(shared: Arc<ServerState>, body_limit: usize) -> Router {
    Router::new()
        .route("/state/{workspace}", any(state_request))
        .route("/state/", any(missing_workspace))
        .route("/api/workspaces", get(api_workspaces))
        .route("/api/locks", get(api_locks))
        .route("/api/workspaces/{workspace}/history", get(api_history))
        .route(
            "/api/workspaces/{workspace}/broken-locks",
            get(api_broken_locks),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            body_limit,
            refuse_announced_oversize,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .layer(middleware::from_fn(request_log))
        .with_state(shared)
}

/// Serves until `shutdown` resolves; requests in flight finish first.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every request gets an id, carried by its log lines.
async fn request_log(request: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path());
    async move {
        let response = next.run(request).await;
        tracing::info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

/// Basic auth when users are configured; passwords are compared in constant time.
async fn authenticate(
    State(shared): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    if shared.users.is_empty() {
        return next.run(request).await;
    }
    let authorized = basic_credentials(request.headers()).is_some_and(|(user, password)| {
        shared
            .users
            .get(&user)
            .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(password.as_bytes())))
    });
    if authorized {
        return next.run(request).await;
    }
    tracing::warn!("authentication failed");
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "authentication required: give a configured user and password (Basic auth)",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"stateplug\""),
    );
    response
}

/// A body announced (by `Content-Length`) as over the limit gets 413 before a byte of it is
/// read; bodies without a length are cut at the limit by `DefaultBodyLimit`.
async fn refuse_announced_oversize(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match announced {
        Some(length) if length > limit as u64 => {
            linger(request.into_body()).await;
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is {length} bytes, over this server's limit of {limit} bytes; nothing \
                 was stored (raise `body_limit` in the [server] settings if states this big are \
                 expected)"
                ),
            )
        }
        _ => next.run(request).await,
    }
}

/// Reads and drops what a refused client sends first, at most [`LINGER_BYTES`] or for
/// [`LINGER_TIME`]: a client that sends its body anyway then reads the answer, where closing
/// on unread data would reset the connection under it.
async fn linger(body: axum::body::Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while read < LINGER_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    })
    .await;
}

const LINGER_BYTES: usize = 1 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_millis(200);

/// Checks the body against a `Content-MD5` header (Terraform sends one with each state), so a
/// body changed or cut on the way is refused instead of stored; the error says why.
fn verify_content_md5(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    use md5::Digest;
    let Some(header) = headers.get("content-md5") else {
        return Ok(());
    };
    let expected = header
        .to_str()
        .ok()
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .filter(|digest| digest.len() == 16)
        .ok_or_else(|| {
            format!(
                "the Content-MD5 header `{}` is not the base64 of a 16-byte MD5 digest; nothing \
                 was stored",
                crate::text::untrusted(&String::from_utf8_lossy(header.as_bytes()))
            )
        })?;
    let actual = md5::Md5::digest(body);
    if actual.as_slice() != expected.as_slice() {
        let encode = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        return Err(format!(
            "the body's MD5 is {} but its Content-MD5 header says {}: the body was changed or \
             cut on the way; nothing was stored, send it again",
            encode(&actual),
            encode(&expected)
        ));
    }
    Ok(())
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

/// The HTTP answer for a state-layer error. A refused lock answers with the holder's
/// LockInfo JSON, which Terraform shows to the user.
fn error_response(error: Error) -> Response {
    let status = match &error {
        Error::Locked { holder, .. } => return json(StatusCode::LOCKED, holder),
        Error::Rejected { .. } | Error::PreconditionFailed { .. } => StatusCode::CONFLICT,
        Error::InvalidPath(_) | Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Timeout { .. } | Error::Unavailable { .. } | Error::Crashed { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Denied { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!("{error}");
    }
    text(status, error.to_string())
}

async fn missing_workspace() -> Response {
    text(
        StatusCode::BAD_REQUEST,
        "the URL names no workspace: use /state/<workspace>",
    )
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "no such endpoint: Terraform's http backend lives at /state/<workspace>; the API at /api/workspaces and /api/locks",
    )
}

async fn state_request(
    State(shared): State<Arc<ServerState>>,
    method: Method,
    Path(workspace): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A client that disconnects must not cut a write short: the work runs in its own task.
    let work = handle_state(shared, method, workspace, query, headers, body);
    tokio::spawn(work.in_current_span())
        .await
        .unwrap_or_else(|e| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the request failed: {e}"),
            )
        })
}

async fn handle_state(
    shared: Arc<ServerState>,
    method: Method,
    workspace: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = &shared.state;
    if let Err(e) = crate::workspace::validate_name(&workspace) {
        return error_response(e);
    }
    if let Err(reason) = verify_content_md5(&headers, &body) {
        return text(StatusCode::BAD_REQUEST, reason);
    }
    let lock_id = query.get("ID").filter(|id| !id.is_empty()).cloned();
    let user = basic_credentials(&headers).map(|(user, _)| user);
    let result = match method.as_str() {
        "GET" | "HEAD" => match state.get(&workspace).await {
            Ok(Some(object)) => {
                return ([(header::CONTENT_TYPE, "application/json")], object.data).into_response();
            }
            Ok(None) => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("workspace `{workspace}` has no state yet"),
                );
            }
            Err(e) => Err(e),
        },
        "POST" | "PUT" => {
            let options = WriteOptions {
                lock_id,
                force: false,
            };
            state
                .put(&workspace, body.to_vec(), &options)
                .await
                .map(|_| ())
        }
        "DELETE" => {
            let force = query.get("force").is_some_and(|v| v == "true");
            state.delete(&workspace, lock_id.as_deref(), force).await
        }
        "LOCK" => lock(state, &workspace, &body).await,
        "UNLOCK" => match unlock(state, &workspace, &body, user.as_deref()).await {
            // Terraform reads 409 with the holder's LockInfo as "locked by someone else".
            Err(Error::Locked { holder, .. }) => return json(StatusCode::CONFLICT, &holder),
            other => other,
        },
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
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_response(e),
    }
}

fn parse_lock(body: &[u8]) -> Result<LockInfo, Error> {
    serde_json::from_slice::<LockInfo>(body).map_err(|e| {
        Error::InvalidInput(format!(
            "the body is not Terraform LockInfo JSON ({e}); send {{\"ID\": ..., \"Operation\": ..., \"Who\": ..., ...}}"
        ))
    })
}

async fn lock(state: &StateStore, workspace: &str, body: &[u8]) -> Result<(), Error> {
    let info = parse_lock(body)?;
    let id = info.id.clone();
    match state.lock(workspace, info).await {
        Ok(_) => Ok(()),
        // Asking again for a lock one already holds is not a conflict.
        Err(Error::Locked { holder, .. }) if holder.id == id => Ok(()),
        Err(e) => Err(e),
    }
}

/// UNLOCK with the holder's LockInfo releases the lock. An empty body (Terraform's
/// `force-unlock`) or a body with only the ID (OpenTofu's) breaks it, logged at warn.
async fn unlock(
    state: &StateStore,
    workspace: &str,
    body: &[u8],
    user: Option<&str>,
) -> Result<(), Error> {
    let who = format!("{} via HTTP force-unlock", user.unwrap_or("anonymous"));
    if body.iter().all(u8::is_ascii_whitespace) {
        state.force_unlock(workspace, &who).await?;
        return Ok(());
    }
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidInput(format!("the body is not LockInfo JSON ({e})")))?;
    let info = parse_lock(body)?;
    if fields.len() == 1 && fields.contains_key("ID") {
        return match state.lock_info(workspace).await? {
            Some(holder) if holder.id != info.id => Err(Error::Locked {
                path: workspace.to_string(),
                holder: Box::new(holder),
            }),
            Some(_) => state.force_unlock(workspace, &who).await.map(|_| ()),
            None => Ok(()),
        };
    }
    match state.unlock(workspace, &info.id).await {
        // Nothing to release: the lock expired or was broken.
        Err(Error::NotLocked { .. }) => Ok(()),
        other => other,
    }
}

/// `(user, password)` from a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let b64 = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let (user, password) = String::from_utf8(raw)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some((user, password))
}

/// 200 with the value as JSON, or the error's answer.
fn json_or_error(result: Result<impl serde::Serialize, Error>) -> Response {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => error_response(e),
    }
}

async fn api_workspaces(State(shared): State<Arc<ServerState>>) -> Response {
    json_or_error(shared.state.workspaces().await)
}

async fn api_locks(State(shared): State<Arc<ServerState>>) -> Response {
    let locks = shared.state.locks().await.map(|locks| {
        locks
            .into_iter()
            .map(|(workspace, lock)| serde_json::json!({ "workspace": workspace, "lock": lock }))
            .collect::<Vec<_>>()
    });
    json_or_error(locks)
}

async fn api_history(
    State(shared): State<Arc<ServerState>>,
    Path(workspace): Path<String>,
) -> Response {
    json_or_error(shared.state.history(&workspace).await)
}

async fn api_broken_locks(
    State(shared): State<Arc<ServerState>>,
    Path(workspace): Path<String>,
) -> Response {
    json_or_error(shared.state.broken_locks(&workspace).await)
}
