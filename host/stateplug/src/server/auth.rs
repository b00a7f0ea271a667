//! Who is calling: the credentials of a request (Basic auth or a Bearer token) checked
//! against the configured users and tokens; the [`Caller`] it finds goes with the request to
//! the handlers, which check its permissions (`Caller::require`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;

use super::AppState;
use super::respond::text;
use crate::access::{Caller, Credentials, Denied};

/// Finds the request's caller, or answers 401; the refusal is logged with the user name
/// given and the client's address, never the secret.
pub(super) async fn authenticate(
    State(shared): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let credentials = credentials(request.headers());
    let user = credentials.as_ref().and_then(Credentials::user);
    match shared.access.authenticate(credentials).await {
        Ok(mut caller) => {
            caller.client = client;
            request.extensions_mut().insert(Arc::new(caller));
            next.run(request).await
        }
        Err(refusal) => {
            tracing::warn!(
                user = user.as_deref().unwrap_or("(none)"),
                client = ?client,
                "{}",
                refusal.0
            );
            let mut response = text(StatusCode::UNAUTHORIZED, refusal.0);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"stateplug\""),
            );
            response
        }
    }
}

/// 403 naming the permission missing, logged at warn.
pub(super) fn forbidden(denied: Denied) -> Response {
    tracing::warn!("refused: {}", denied.0);
    text(StatusCode::FORBIDDEN, denied.0)
}

/// The credentials of an `Authorization` header: Basic `user:password` or a Bearer token.
fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(rest.trim().to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let (user, password) = String::from_utf8(raw)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some(Credentials::Basic { user, password })
}

/// The caller a handler acts for (set by [`authenticate`]).
pub(super) type CallerOf = axum::Extension<Arc<Caller>>;
