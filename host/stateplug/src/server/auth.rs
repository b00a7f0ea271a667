//! Basic auth, when users are configured.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::AppState;
use super::respond::text;

/// Basic auth when users are configured; passwords are compared in constant time.
pub(super) async fn authenticate(
    State(shared): State<Arc<AppState>>,
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

/// `(user, password)` from a Basic `Authorization` header.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
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
