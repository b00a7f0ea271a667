//! A request body's size and integrity: refused before it is read when announced too big,
//! and checked against its `Content-MD5` before it is stored.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;

use super::respond::text;

/// A body announced (by `Content-Length`) as over the limit gets 413 before a byte of it is
/// read; bodies without a length are cut at the limit by `DefaultBodyLimit`.
pub(super) async fn refuse_announced_oversize(
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
pub(super) fn verify_content_md5(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
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
                stateplug_sdk::text::untrusted(&String::from_utf8_lossy(header.as_bytes()))
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
