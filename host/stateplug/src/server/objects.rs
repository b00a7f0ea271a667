//! The object API at `/api/v1/objects`: plain objects at paths (a tree of state files, as
//! cldctl keeps), kept by the state layer apart from the workspaces ([`Objects`]), so nothing
//! written here changes a workspace. HTTP's own conditional requests carry the
//! compare-and-swap: `ETag` is the object's version, `If-None-Match: *` creates only,
//! `If-Match` writes or deletes only over a known version. LOCK and UNLOCK take LockInfo JSON
//! as Terraform's protocol does; while an object is locked, PUT and DELETE need `?ID=`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stateplug_runtime::Backend;
use stateplug_sdk::{LockInfo, Precondition};
use stateplug_state::{MAX_PAGE, ObjectError, Objects};

use crate::access::{Permission, Target};

use super::AppState;
use super::auth::{CallerOf, forbidden};
use super::body::verify_content_md5;
use super::respond::{finish, json, not_allowed, object_error_response, text};

/// The methods `/api/v1/objects/<path>` answers.
const OBJECT_METHODS: &str = "GET, HEAD, PUT, DELETE, LOCK, UNLOCK";

/// An object operation's failure over a plugin backend.
pub(super) type ObjectFailure = ObjectError<stateplug_runtime::Error>;

/// The objects of the served backend (a clone of a `Backend` shares its instances).
fn objects(shared: &AppState) -> Objects<Backend> {
    Objects::new(shared.workspaces.store().clone())
}

/// `GET /api/v1/objects?prefix=P&cursor=C&limit=N`: one page of the paths under `P`, less
/// those the caller may not read (so a page may hold fewer than `limit`).
pub(super) async fn listing(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    method: Method,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if !matches!(method, Method::GET | Method::HEAD) {
        return not_allowed(
            &method,
            "GET, HEAD",
            "GET /api/v1/objects lists paths; PUT /api/v1/objects/<path> writes an object",
        );
    }
    let (prefix, cursor, limit) = match listing_query(&query) {
        Ok(parsed) => parsed,
        Err(reason) => return text(StatusCode::BAD_REQUEST, reason),
    };
    match objects(&shared)
        .list(&prefix, cursor.as_deref(), limit)
        .await
    {
        Ok(mut page) => {
            // Listed paths are relative to the prefix; rules match whole paths.
            page.paths.retain(|path| {
                caller.may(Permission::Read, Target::object(&format!("{prefix}{path}")))
            });
            json(StatusCode::OK, &page)
        }
        Err(e) => object_error_response(e),
    }
}

/// `prefix`, `cursor` and `limit` of a listing, each at most once; anything else is refused
/// by name, so a misspelt `prefix` cannot turn into a listing of everything.
fn listing_query(query: &[(String, String)]) -> Result<(String, Option<String>, usize), String> {
    let mut prefix = None;
    let mut cursor = None;
    let mut limit = None;
    for (key, value) in query {
        let slot = match key.as_str() {
            "prefix" => &mut prefix,
            "cursor" => &mut cursor,
            "limit" => &mut limit,
            other => {
                return Err(format!(
                    "unknown query parameter `{}`: a listing takes `prefix`, `cursor` and `limit`",
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
        None => MAX_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(format!(
                    "the query parameter `limit` is `{}`: give a whole number from 1 to \
                     {MAX_PAGE} (the default)",
                    stateplug_sdk::text::bounded(&text, 100)
                ));
            }
        },
    };
    let cursor = cursor.filter(|c| !c.is_empty());
    Ok((prefix.unwrap_or_default(), cursor, limit))
}

/// `/api/v1/objects/` names no object.
pub(super) async fn missing_path() -> Response {
    text(
        StatusCode::BAD_REQUEST,
        "the URL names no object: use /api/v1/objects/<path>; to list objects, GET \
         /api/v1/objects?prefix=<prefix>",
    )
}

/// `/api/v1/objects/<path>`: GET, HEAD, PUT, DELETE, LOCK and UNLOCK.
pub(super) async fn object_request(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let needed = match method.as_str() {
        "GET" | "HEAD" => Some(Permission::Read),
        "PUT" | "DELETE" => Some(Permission::Write),
        "LOCK" | "UNLOCK" => Some(Permission::Lock),
        _ => None,
    };
    if let Some(permission) = needed
        && let Err(denied) = caller.require(permission, Target::object(&path))
    {
        return forbidden(denied);
    }
    let read = matches!(method, Method::GET | Method::HEAD);
    // A read may stop with its client; a change runs to its end in a task of its own.
    finish(
        read,
        handle_object(shared, method, path, query, headers, body),
    )
    .await
}

/// Why an object request failed.
enum Failure {
    /// The request itself: 400 with why.
    BadRequest(String),
    /// A conditional header that does not hold: 412, nothing changed.
    NotMet(String),
    /// An UNLOCK by someone who does not hold the lock: 409 with the holder's LockInfo.
    NotHolder(Box<LockInfo>),
    /// The object API refused or failed.
    Object(ObjectFailure),
}

impl From<ObjectFailure> for Failure {
    fn from(e: ObjectFailure) -> Self {
        Failure::Object(e)
    }
}

async fn handle_object(
    shared: Arc<AppState>,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let objects = objects(&shared);
    let result = match lock_id(&query) {
        Err(reason) => Err(Failure::BadRequest(reason)),
        Ok(lock_id) => match method.as_str() {
            "GET" | "HEAD" => get(&objects, &path, &headers).await,
            "PUT" => put(&objects, &path, &headers, body, lock_id.as_deref()).await,
            "DELETE" => delete(&objects, &path, &headers, lock_id.as_deref()).await,
            "LOCK" => lock(&objects, &path, &body).await,
            "UNLOCK" => unlock(&objects, &path, &body).await,
            _ => {
                return not_allowed(
                    &method,
                    OBJECT_METHODS,
                    "the object API reads with GET, writes with PUT",
                );
            }
        },
    };
    if let Err(Failure::Object(
        ObjectError::Locked { .. } | ObjectError::Store(stateplug_runtime::Error::Locked { .. }),
    )) = &result
    {
        super::metrics::lock_conflict(&method);
    }
    match result {
        Ok(response) => response,
        Err(Failure::BadRequest(reason)) => text(StatusCode::BAD_REQUEST, reason),
        Err(Failure::NotMet(reason)) => text(StatusCode::PRECONDITION_FAILED, reason),
        Err(Failure::NotHolder(holder)) => json(StatusCode::CONFLICT, &holder),
        Err(Failure::Object(e)) => object_error_response(e),
    }
}

/// `?ID=<lock id>` (empty means none), the one query parameter an object takes.
fn lock_id(query: &[(String, String)]) -> Result<Option<String>, String> {
    let mut id = None;
    for (key, value) in query {
        if key != "ID" {
            return Err(format!(
                "unknown query parameter `{}`: an object takes only `ID` (the lock id, when \
                 the object is locked by you)",
                stateplug_sdk::text::bounded(key, 100)
            ));
        }
        if id.replace(value.clone()).is_some() {
            return Err("the query parameter `ID` is given twice: give it once".into());
        }
    }
    Ok(id.filter(|id| !id.is_empty()))
}

async fn get(
    objects: &Objects<Backend>,
    path: &str,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let if_match = conditions(headers, header::IF_MATCH)?;
    let if_none_match = conditions(headers, header::IF_NONE_MATCH)?;
    let Some(object) = objects.get(path).await? else {
        if if_match.is_some() {
            return Err(Failure::NotMet(absent_for_if_match(path)));
        }
        return Ok(text(
            StatusCode::NOT_FOUND,
            format!("no object at `{path}`: PUT /api/v1/objects/{path} creates it"),
        ));
    };
    if let Some(tags) = &if_match
        && !tags.matches(&object.version, Compare::Strong)
    {
        return Err(Failure::NotMet(format!(
            "object `{path}` is at ETag {}, which If-Match does not name; GET it without \
             If-Match for what it holds now",
            etag(&object.version)
        )));
    }
    let tag = etag_header(&object.version);
    if let Some(tags) = &if_none_match
        && tags.matches(&object.version, Compare::Weak)
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let content_type = HeaderValue::from_static("application/octet-stream");
    Ok((
        [(header::ETAG, tag), (header::CONTENT_TYPE, content_type)],
        object.data,
    )
        .into_response())
}

async fn put(
    objects: &Objects<Backend>,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
    lock_id: Option<&str>,
) -> Result<Response, Failure> {
    verify_content_md5(headers, &body).map_err(Failure::BadRequest)?;
    let if_none_match = conditions(headers, header::IF_NONE_MATCH)?;
    let precondition = match (if_none_match, conditions(headers, header::IF_MATCH)?) {
        (Some(_), Some(_)) => {
            return Err(Failure::BadRequest(
                "a PUT takes If-None-Match: * (create only) or If-Match (replace a known \
                 version), not both"
                    .into(),
            ));
        }
        (Some(Conditions::Any), None) => Precondition::Absent,
        (Some(Conditions::Tags(_)), None) => {
            return Err(Failure::BadRequest(
                "on a PUT, If-None-Match takes only `*` (create only); to replace a known \
                 version, send If-Match with its ETag"
                    .into(),
            ));
        }
        (None, if_match) => version_precondition(objects, path, if_match).await?,
    };
    match objects
        .put(path, body.to_vec(), precondition.clone(), lock_id)
        .await
    {
        Ok(version) => {
            Ok((StatusCode::OK, [(header::ETAG, etag_header(&version))]).into_response())
        }
        Err(ObjectError::PreconditionFailed { .. }) => {
            Err(not_met(objects, path, &precondition).await)
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete(
    objects: &Objects<Backend>,
    path: &str,
    headers: &HeaderMap,
    lock_id: Option<&str>,
) -> Result<Response, Failure> {
    if headers.contains_key(header::IF_NONE_MATCH) {
        return Err(Failure::BadRequest(
            "a DELETE takes If-Match (delete only a known version), not If-None-Match".into(),
        ));
    }
    let if_match = conditions(headers, header::IF_MATCH)?;
    let precondition = version_precondition(objects, path, if_match).await?;
    match objects.delete(path, precondition.clone(), lock_id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(ObjectError::PreconditionFailed { .. }) => {
            Err(not_met(objects, path, &precondition).await)
        }
        Err(e) => Err(e.into()),
    }
}

/// Why `precondition` did not hold, from what is at `path` now (read after the refusal, so
/// it may have changed again: it is only said, never acted on).
async fn not_met(objects: &Objects<Backend>, path: &str, precondition: &Precondition) -> Failure {
    let current = match objects.get(path).await {
        Ok(current) => current,
        Err(e) => return e.into(),
    };
    Failure::NotMet(match (precondition, current) {
        (Precondition::Absent, Some(current)) => format!(
            "object `{path}` exists (ETag {}), and If-None-Match: * creates only; nothing was \
             changed (to replace it, send If-Match with its ETag)",
            etag(&current.version)
        ),
        (Precondition::Absent, None) => format!(
            "object `{path}` was not created: another object was there when it was written \
             (it is gone now); retry"
        ),
        (_, None) => absent_for_if_match(path),
        (_, Some(current)) => format!(
            "object `{path}` was not changed: it is at ETag {}, not the version If-Match \
             names; GET it again and retry",
            etag(&current.version)
        ),
    })
}

/// The precondition of a write or delete under `If-Match`. One strong tag is the version
/// itself; `*` or several tags are checked against the version read now, which the write then
/// names, so a change in between still fails it.
async fn version_precondition(
    objects: &Objects<Backend>,
    path: &str,
    if_match: Option<Conditions>,
) -> Result<Precondition, Failure> {
    let tags = match if_match {
        None => return Ok(Precondition::None),
        Some(Conditions::Tags(tags)) if tags.len() == 1 && !tags[0].weak => {
            return match decode_version(&tags[0].opaque) {
                Some(version) => Ok(Precondition::VersionIs(version)),
                None => Err(Failure::NotMet(format!(
                    "object `{path}` was not changed: If-Match `\"{}\"` is not an ETag this \
                     server gave; GET the object for its ETag",
                    tags[0].opaque
                ))),
            };
        }
        Some(tags) => tags,
    };
    let Some(current) = objects.get(path).await? else {
        return Err(Failure::NotMet(absent_for_if_match(path)));
    };
    if !tags.matches(&current.version, Compare::Strong) {
        return Err(Failure::NotMet(format!(
            "object `{path}` was not changed: it is at ETag {}, which If-Match does not name \
             (If-Match compares strongly: `W/` tags never match); GET it again and retry",
            etag(&current.version)
        )));
    }
    Ok(Precondition::VersionIs(current.version))
}

fn absent_for_if_match(path: &str) -> String {
    format!(
        "no object at `{path}`, so If-Match cannot hold and nothing was changed; to create it, \
         PUT with If-None-Match: *"
    )
}

async fn lock(objects: &Objects<Backend>, path: &str, body: &[u8]) -> Result<Response, Failure> {
    let info = parse_lock_info(body)?;
    let id = info.id.clone();
    match objects.lock(path, info).await {
        Ok(_) => Ok(StatusCode::OK.into_response()),
        // Asking again for a lock one already holds is not a conflict.
        Err(ObjectError::Locked { holder, .. }) if holder.id == id => {
            Ok(StatusCode::OK.into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// UNLOCK with the holder's LockInfo (at least its `ID`) releases the lock. Objects have no
/// force-unlock: an empty body is refused.
async fn unlock(objects: &Objects<Backend>, path: &str, body: &[u8]) -> Result<Response, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::BadRequest(
            "UNLOCK needs the holder's LockInfo JSON (at least {\"ID\": ...}); objects have \
             no force-unlock"
                .into(),
        ));
    }
    let info = parse_lock_info(body)?;
    if info.id.is_empty() {
        return Err(Failure::BadRequest(
            "the LockInfo has no ID: UNLOCK names the lock it releases by its `ID`".into(),
        ));
    }
    match objects.unlock(path, &info.id).await {
        // Nothing to release (as for workspaces): the lock expired, or was released before.
        Ok(()) | Err(ObjectError::NotLocked { .. }) => Ok(StatusCode::OK.into_response()),
        Err(ObjectError::Locked { holder, .. }) => Err(Failure::NotHolder(holder)),
        Err(e) => Err(e.into()),
    }
}

/// The LockInfo JSON of a LOCK or UNLOCK, as Terraform sends it.
fn parse_lock_info(body: &[u8]) -> Result<LockInfo, Failure> {
    serde_json::from_slice::<LockInfo>(body).map_err(|e| {
        Failure::BadRequest(format!(
            "the body is not LockInfo JSON ({e}); send {{\"ID\": ..., \"Operation\": ..., \
             \"Who\": ..., ...}} as Terraform does"
        ))
    })
}

/// `*`, or a list of entity tags, of `If-Match` or `If-None-Match`.
#[derive(Debug, PartialEq, Eq)]
enum Conditions {
    Any,
    Tags(Vec<Tag>),
}

/// One entity tag: its opaque part (between the quotes) and whether it is weak (`W/`).
#[derive(Debug, PartialEq, Eq)]
struct Tag {
    weak: bool,
    opaque: String,
}

/// How tags compare (RFC 9110 §8.8.3.2): `If-Match` strongly, `If-None-Match` weakly.
#[derive(Clone, Copy)]
enum Compare {
    Strong,
    Weak,
}

impl Conditions {
    fn matches(&self, version: &str, compare: Compare) -> bool {
        match self {
            Conditions::Any => true,
            Conditions::Tags(tags) => tags.iter().any(|tag| {
                (matches!(compare, Compare::Weak) || !tag.weak)
                    && decode_version(&tag.opaque).is_some_and(|v| v == version)
            }),
        }
    }
}

/// The conditions of header `name` (all its lines), if given.
fn conditions(headers: &HeaderMap, name: HeaderName) -> Result<Option<Conditions>, Failure> {
    let mut lines = headers.get_all(&name).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let mut tags = Vec::new();
    for line in lines {
        let parsed = line
            .to_str()
            .ok()
            .and_then(parse_conditions)
            .ok_or_else(|| {
                Failure::BadRequest(format!(
                    "the {name} header `{}` is not `*` or a list of quoted entity tags; send \
                     the ETag as the server gave it, quotes included",
                    stateplug_sdk::text::untrusted(&String::from_utf8_lossy(line.as_bytes()))
                ))
            })?;
        match parsed {
            Conditions::Any => return Ok(Some(Conditions::Any)),
            Conditions::Tags(more) => tags.extend(more),
        }
    }
    Ok(Some(Conditions::Tags(tags)))
}

/// `*` or `#entity-tag` (RFC 9110 §13.1.1); `None` when it is neither.
fn parse_conditions(value: &str) -> Option<Conditions> {
    if value.trim() == "*" {
        return Some(Conditions::Any);
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(quoted) => (true, quoted),
            None => (false, rest),
        };
        let inner = quoted.strip_prefix('"')?;
        let end = inner.find('"')?;
        let opaque = &inner[..end];
        if !opaque.bytes().all(is_etagc) {
            return None;
        }
        tags.push(Tag {
            weak,
            opaque: opaque.to_string(),
        });
        rest = &inner[end + 1..];
        if !(rest.is_empty() || rest.starts_with([' ', '\t', ','])) {
            return None;
        }
    }
    (!tags.is_empty()).then_some(Conditions::Tags(tags))
}

/// A byte an entity tag may hold between its quotes, ASCII only.
fn is_etagc(byte: u8) -> bool {
    byte == 0x21 || (0x23..=0x7e).contains(&byte)
}

/// The `ETag` of a version: `"<version>"`, with `%`, `"` and every byte an entity tag cannot
/// hold percent-encoded, so any version token (an S3 ETag comes with its own quotes) fits and
/// comes back unchanged in `If-Match`.
fn etag(version: &str) -> String {
    let mut tag = String::with_capacity(version.len() + 2);
    tag.push('"');
    for byte in version.bytes() {
        if is_etagc(byte) && byte != b'%' {
            tag.push(char::from(byte));
        } else {
            tag.push_str(&format!("%{byte:02X}"));
        }
    }
    tag.push('"');
    tag
}

fn etag_header(version: &str) -> HeaderValue {
    HeaderValue::from_str(&etag(version)).expect("an ETag holds visible ASCII only")
}

/// The version an entity tag's opaque part names; `None` when this server cannot have given
/// it (a bare `%` or an escape that is not UTF-8).
fn decode_version(opaque: &str) -> Option<String> {
    let bytes = opaque.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_version_token_round_trips_through_an_etag() {
        for version in [
            "1",
            "0f3a9c",
            "\"d41d8cd98f00b204e9800998ecf8427e\"",
            "with space, comma and 100%",
            "ünïcode/слово",
        ] {
            let tag = etag(version);
            assert!(HeaderValue::from_str(&tag).is_ok(), "{tag}");
            let Some(Conditions::Tags(tags)) = parse_conditions(&tag) else {
                panic!("{tag} does not parse");
            };
            assert_eq!(tags.len(), 1, "{tag}");
            assert_eq!(decode_version(&tags[0].opaque).as_deref(), Some(version));
        }
        assert_eq!(etag("7"), "\"7\"");
    }

    #[test]
    fn condition_headers_parse_as_rfc_9110_writes_them() {
        let tag = |weak, opaque: &str| Tag {
            weak,
            opaque: opaque.into(),
        };
        assert_eq!(parse_conditions(" * "), Some(Conditions::Any));
        assert_eq!(
            parse_conditions("\"a\", W/\"b\",\"c\""),
            Some(Conditions::Tags(vec![
                tag(false, "a"),
                tag(true, "b"),
                tag(false, "c")
            ]))
        );
        for bad in ["", "a", "\"a", "\"a\"b", "W/a", "\"a b\"", "*, \"a\""] {
            assert_eq!(parse_conditions(bad), None, "{bad:?}");
        }
        let weak = parse_conditions("W/\"5\"").unwrap();
        assert!(weak.matches("5", Compare::Weak));
        assert!(!weak.matches("5", Compare::Strong));
        assert!(
            !parse_conditions("\"5%\"")
                .unwrap()
                .matches("5%", Compare::Weak)
        );
    }

    #[test]
    fn listing_parameters_are_checked_by_name() {
        let query = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            listing_query(&pairs)
        };
        assert_eq!(query(&[]), Ok((String::new(), None, MAX_PAGE)));
        assert_eq!(
            query(&[("prefix", "a/"), ("cursor", "b"), ("limit", "7")]),
            Ok(("a/".into(), Some("b".into()), 7))
        );
        for limit in ["0", "1001", "abc", "-1", ""] {
            let refused = query(&[("limit", limit)]).unwrap_err();
            assert!(refused.contains("`limit`"), "{refused}");
        }
        assert!(query(&[("prefx", "a")]).unwrap_err().contains("`prefx`"));
        assert!(
            query(&[("prefix", "a"), ("prefix", "b")])
                .unwrap_err()
                .contains("twice")
        );
    }
}
