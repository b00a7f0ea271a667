//! The key-value API at `/api/v1/kv`: keys in namespaces, with TTLs, glob listing, batches and
//! all-or-nothing transactions, kept by the state layer apart from the workspaces and the
//! objects ([`Kv`]). A key's `ETag` is its version; a transaction's preconditions name those
//! versions. Values are raw bytes on a key's URL and standard base64 in the JSON of batches
//! and transactions. [`sweep_key_values`] is the background task that deletes expired keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use stateplug_runtime::Backend;
use stateplug_state::{Change, Expect, Kv, KvError, MAX_BATCH, MAX_TTL, check_namespace};

use crate::access::{Caller, Permission, Target};

use super::AppState;
use super::auth::{CallerOf, forbidden};
use super::body::verify_content_md5;
use super::respond::{finish, json, kv_error_response, not_allowed, text};

/// A key-value operation's failure over a plugin backend.
pub(super) type KvFailure = KvError<stateplug_runtime::Error>;

/// The header of a key's expiry (RFC 3339), when it has a TTL.
const EXPIRES_AT: HeaderName = HeaderName::from_static("stateplug-expires-at");

/// The methods `/api/v1/kv/<ns>/<key>` answers.
const KEY_METHODS: &str = "GET, HEAD, PUT, PATCH, DELETE";
/// The methods `/api/v1/kv/<ns>` answers.
const NAMESPACE_METHODS: &str = "GET, HEAD, POST, DELETE";

/// The key-values of the served backend (a clone of a `Backend` shares its instances).
fn kv(shared: &AppState) -> Kv<Backend> {
    Kv::new(shared.workspaces.store().clone())
}

/// Runs [`Kv::sweep`] on every namespace of `store` every `interval`, for as long as the
/// server runs, so an expired key is deleted (its value object too) within two intervals; a
/// failure is logged and the next round tries again. Replicas on one store may all sweep: each
/// sweep is a compare-and-swap of the namespace's manifest like any other change.
pub async fn sweep_key_values(store: Backend, interval: Duration) {
    let kv = Kv::new(store);
    let mut rounds = tokio::time::interval(interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        rounds.tick().await;
        let namespaces = match kv.namespaces().await {
            Ok(namespaces) => namespaces,
            Err(e) => {
                tracing::warn!("key-value sweep: cannot list the namespaces: {e}");
                continue;
            }
        };
        for namespace in namespaces {
            match kv.sweep(&namespace).await {
                Ok(0) => {}
                Ok(expired) => {
                    tracing::info!(namespace, expired, "key-value sweep: expired keys deleted");
                }
                Err(e) => tracing::warn!(namespace, "key-value sweep failed: {e}"),
            }
        }
    }
}

/// `/api/v1/kv` and `/api/v1/kv/` name no namespace.
pub(super) async fn missing_namespace() -> Response {
    text(
        StatusCode::BAD_REQUEST,
        "the URL names no namespace: use /api/v1/kv/<namespace>/<key> for a key and \
         /api/v1/kv/<namespace> to list, clear, batch or run a transaction",
    )
}

/// `/api/v1/kv/<ns>/` names no key.
pub(super) async fn missing_key(Path(namespace): Path<String>) -> Response {
    text(
        StatusCode::BAD_REQUEST,
        format!(
            "the URL names no key: use /api/v1/kv/{0}/<key>; to list the keys, GET \
             /api/v1/kv/{0}?match=<glob>",
            stateplug_sdk::text::bounded(&namespace, 200)
        ),
    )
}

/// `/api/v1/kv/<ns>/<key>`: GET, HEAD, PUT (`?ttl=`), PATCH (`?ttl=`) and DELETE.
pub(super) async fn key_request(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    method: Method,
    Path((namespace, key)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let read = matches!(method, Method::GET | Method::HEAD);
    if let Some(refused) = refusal(&caller, read, &namespace) {
        return refused;
    }
    let work = async move {
        let kv = kv(&shared);
        let result = match method.as_str() {
            "GET" | "HEAD" => get(&kv, &namespace, &key, &query).await,
            "PUT" => put(&kv, &namespace, &key, &query, &headers, body).await,
            "PATCH" => patch(&kv, &namespace, &key, &query).await,
            "DELETE" => delete(&kv, &namespace, &key, &query).await,
            _ => {
                return not_allowed(
                    &method,
                    KEY_METHODS,
                    "a key reads with GET, writes with PUT, changes its TTL with PATCH",
                );
            }
        };
        result.unwrap_or_else(Failure::into_response)
    };
    finish(read, work).await
}

/// `/api/v1/kv/<ns>`: GET (list), DELETE (clear), POST `?op=batch-get|batch-set|transaction`.
pub(super) async fn namespace_request(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    method: Method,
    Path(namespace): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let read = matches!(method, Method::GET | Method::HEAD);
    let batch_get = method == Method::POST
        && query
            .iter()
            .any(|(key, value)| key == "op" && value == "batch-get");
    if let Some(refused) = refusal(&caller, read || batch_get, &namespace) {
        return refused;
    }
    let work = async move {
        let kv = kv(&shared);
        let result = match method.as_str() {
            "GET" | "HEAD" => list(&kv, &namespace, &query).await,
            "DELETE" => clear(&kv, &namespace, &query).await,
            "POST" => post(&kv, &namespace, &query, &body).await,
            _ => {
                return not_allowed(
                    &method,
                    NAMESPACE_METHODS,
                    "a namespace lists with GET, clears with DELETE, and takes batches and \
                     transactions as POST ?op=",
                );
            }
        };
        result.unwrap_or_else(Failure::into_response)
    };
    finish(read, work).await
}

/// The 403 when the caller lacks `read` or `write` (as the request needs) on the namespace.
fn refusal(caller: &Caller, read: bool, namespace: &str) -> Option<Response> {
    let permission = if read {
        Permission::Read
    } else {
        Permission::Write
    };
    caller
        .require(permission, Target::namespace(namespace))
        .err()
        .map(forbidden)
}

/// Why a key-value request failed.
enum Failure {
    /// The request itself: 400 with why.
    BadRequest(String),
    /// The key-value layer refused or failed.
    Kv(KvFailure),
}

impl From<KvFailure> for Failure {
    fn from(e: KvFailure) -> Self {
        Failure::Kv(e)
    }
}

impl Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::BadRequest(reason) => text(StatusCode::BAD_REQUEST, reason),
            Failure::Kv(e) => kv_error_response(e),
        }
    }
}

type Answer = Result<Response, Failure>;

async fn get(kv: &Kv<Backend>, namespace: &str, key: &str, query: &[(String, String)]) -> Answer {
    params(query, &[], "a key's GET")?;
    let Some(value) = kv.get(namespace, key).await? else {
        return Ok(text(
            StatusCode::NOT_FOUND,
            format!(
                "no key `{key}` in namespace `{namespace}` (or it expired): PUT \
                 /api/v1/kv/{namespace}/{key} sets it"
            ),
        ));
    };
    let mut response = (
        [
            (header::ETAG, etag(namespace, &value.version)?),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
        ],
        value.data,
    )
        .into_response();
    if let Some(at) = value.expires {
        let at = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at));
        let at = HeaderValue::from_str(&at.to_string()).expect("RFC 3339 is visible ASCII");
        response.headers_mut().insert(EXPIRES_AT, at);
    }
    Ok(response)
}

async fn put(
    kv: &Kv<Backend>,
    namespace: &str,
    key: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Bytes,
) -> Answer {
    let mut params = params(query, &["ttl"], "a key's PUT")?;
    verify_content_md5(headers, &body).map_err(Failure::BadRequest)?;
    let ttl = params
        .remove("ttl")
        .map(|text| parse_ttl("the query parameter `ttl`", &text))
        .transpose()?;
    let version = kv.set(namespace, key, body.to_vec(), ttl).await?;
    Ok((StatusCode::OK, [(header::ETAG, etag(namespace, &version)?)]).into_response())
}

async fn patch(kv: &Kv<Backend>, namespace: &str, key: &str, query: &[(String, String)]) -> Answer {
    let mut params = params(query, &["ttl"], "a key's PATCH")?;
    let Some(ttl) = params.remove("ttl") else {
        return Err(Failure::BadRequest(
            "a PATCH changes a key's TTL and needs `?ttl=<duration>` (like 90s, 5m or 2h); to \
             drop the TTL, PUT the value again without `ttl`"
                .into(),
        ));
    };
    let ttl = parse_ttl("the query parameter `ttl`", &ttl)?;
    if !kv.set_ttl(namespace, key, Some(ttl)).await? {
        return Ok(text(
            StatusCode::NOT_FOUND,
            format!(
                "no key `{key}` in namespace `{namespace}` (or it expired): nothing to change; \
                 PUT /api/v1/kv/{namespace}/{key}?ttl=... sets it with a TTL"
            ),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete(
    kv: &Kv<Backend>,
    namespace: &str,
    key: &str,
    query: &[(String, String)],
) -> Answer {
    params(query, &[], "a key's DELETE")?;
    kv.delete(namespace, key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/kv/<ns>?match=<glob>&cursor=C`: one page of the live keys matching the glob.
async fn list(kv: &Kv<Backend>, namespace: &str, query: &[(String, String)]) -> Answer {
    let mut params = params(query, &["match", "cursor"], "a listing")?;
    let pattern = params.remove("match").unwrap_or_else(|| "*".into());
    let cursor = params.remove("cursor").filter(|c| !c.is_empty());
    // The namespace first: what `list` refuses after it is the pattern.
    check_namespace(namespace)?;
    match kv.list(namespace, &pattern, cursor.as_deref()).await {
        Ok(page) => Ok(json(StatusCode::OK, &page)),
        Err(KvError::Invalid(reason)) => Err(Failure::BadRequest(format!(
            "the query parameter `match`: {reason}"
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn clear(kv: &Kv<Backend>, namespace: &str, query: &[(String, String)]) -> Answer {
    params(query, &[], "a namespace's DELETE (which clears it)")?;
    kv.clear(namespace).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn post(
    kv: &Kv<Backend>,
    namespace: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Answer {
    let mut params = params(query, &["op"], "a namespace's POST")?;
    match params.remove("op").as_deref() {
        Some("batch-get") => batch_get(kv, namespace, parse_body(body)?).await,
        Some("batch-set") => batch_set(kv, namespace, parse_body(body)?).await,
        Some("transaction") => transaction(kv, namespace, parse_body(body)?).await,
        Some(other) => Err(Failure::BadRequest(format!(
            "unknown op `{}`: a namespace's POST takes ?op=batch-get, ?op=batch-set or \
             ?op=transaction",
            stateplug_sdk::text::bounded(other, 100)
        ))),
        None => Err(Failure::BadRequest(
            "a namespace's POST needs ?op=batch-get, ?op=batch-set or ?op=transaction".into(),
        )),
    }
}

/// `{"keys": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchGet {
    keys: Vec<String>,
}

/// `{"values": {"k": "<base64>"}, "ttl": "90s"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchSet {
    values: BTreeMap<String, String>,
    #[serde(default)]
    ttl: Option<String>,
}

/// `{"preconditions": [...], "operations": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transaction {
    #[serde(default)]
    preconditions: Vec<PreconditionBody>,
    #[serde(default)]
    operations: Vec<OperationBody>,
}

/// `{"key": k, "version": v}` or `{"key": k, "absent": true}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreconditionBody {
    key: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    absent: Option<bool>,
}

/// `{"set": k, "value": "<base64>"}` (with `"ttl"`, optional) or `{"delete": k}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationBody {
    #[serde(default)]
    set: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    delete: Option<String>,
}

async fn batch_get(kv: &Kv<Backend>, namespace: &str, request: BatchGet) -> Answer {
    let values = kv.batch_get(namespace, &request.keys).await?;
    let values: BTreeMap<String, Option<String>> = values
        .into_iter()
        .map(|(key, value)| (key, value.map(|v| encode(&v.data))))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "values": values }),
    ))
}

async fn batch_set(kv: &Kv<Backend>, namespace: &str, request: BatchSet) -> Answer {
    let ttl = request
        .ttl
        .map(|text| parse_ttl("`ttl`", &text))
        .transpose()?;
    check_count(request.values.len())?;
    let mut values = BTreeMap::new();
    for (key, value) in request.values {
        let data = decode(&value, || format!("`values`: the value of key `{key}`"))?;
        values.insert(key, data);
    }
    let versions = kv.batch_set(namespace, values, ttl).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "versions": versions }),
    ))
}

async fn transaction(kv: &Kv<Backend>, namespace: &str, request: Transaction) -> Answer {
    // At most MAX_BATCH keys in all, whether a precondition or an operation names them.
    let named: BTreeSet<&str> = request
        .preconditions
        .iter()
        .map(|p| p.key.as_str())
        .chain(
            request
                .operations
                .iter()
                .filter_map(|o| o.set.as_deref().or(o.delete.as_deref())),
        )
        .collect();
    check_count(named.len().max(request.operations.len()))?;
    let mut expect = Vec::with_capacity(request.preconditions.len());
    for (i, precondition) in request.preconditions.into_iter().enumerate() {
        let PreconditionBody {
            key,
            version,
            absent,
        } = precondition;
        expect.push(match (version, absent) {
            (Some(version), None | Some(false)) => {
                // An ETag as GET or PUT gave it, quotes included, names the same version.
                let version = version
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .map_or(version.clone(), str::to_string);
                Expect::Version(key, version)
            }
            (None, Some(true)) => Expect::Absent(key),
            _ => {
                return Err(Failure::BadRequest(format!(
                    "`preconditions[{i}]` (key `{key}`): give {{\"key\": K, \"version\": V}} \
                     (the key is at version V) or {{\"key\": K, \"absent\": true}} (the key is \
                     absent)"
                )));
            }
        });
    }
    let mut changes = Vec::with_capacity(request.operations.len());
    for (i, operation) in request.operations.into_iter().enumerate() {
        changes.push(match operation {
            OperationBody {
                set: Some(key),
                value: Some(value),
                ttl,
                delete: None,
            } => {
                let what = || format!("`operations[{i}]`: the value of key `{key}`");
                let value = decode(&value, what)?;
                let ttl = ttl
                    .map(|text| parse_ttl(&format!("`operations[{i}].ttl`"), &text))
                    .transpose()?;
                Change::Set { key, value, ttl }
            }
            OperationBody {
                set: None,
                value: None,
                ttl: None,
                delete: Some(key),
            } => Change::Delete(key),
            _ => {
                return Err(Failure::BadRequest(format!(
                    "`operations[{i}]`: give {{\"set\": K, \"value\": \"<base64>\"}} (with \
                     \"ttl\": \"90s\" if the key expires) or {{\"delete\": K}}"
                )));
            }
        });
    }
    let versions = kv.transaction(namespace, &expect, changes).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "versions": versions }),
    ))
}

/// The JSON body of a batch or transaction.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::BadRequest(format!(
            "the body is not the JSON this op takes: {e}; values are base64 strings, keys \
             plain strings"
        ))
    })
}

/// More keys than one request may name: 413, as the state layer answers a batch.
fn check_count(count: usize) -> Result<(), Failure> {
    if count > MAX_BATCH {
        return Err(KvError::TooMany { count }.into());
    }
    Ok(())
}

/// The query parameters of a request, each at most once and each one of `allowed`; anything
/// else is refused by name, so a misspelt `ttl` cannot turn into a write without one.
fn params(
    query: &[(String, String)],
    allowed: &[&str],
    what: &str,
) -> Result<BTreeMap<String, String>, Failure> {
    let mut params = BTreeMap::new();
    for (key, value) in query {
        if !allowed.contains(&key.as_str()) {
            let takes = match allowed {
                [] => "no query parameters".to_string(),
                [one] => format!("only `{one}`"),
                many => format!(
                    "only {}",
                    many.iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            };
            return Err(Failure::BadRequest(format!(
                "unknown query parameter `{}`: {what} takes {takes}",
                stateplug_sdk::text::bounded(key, 100)
            )));
        }
        if params.insert(key.clone(), value.clone()).is_some() {
            return Err(Failure::BadRequest(format!(
                "the query parameter `{key}` is given twice: give it once"
            )));
        }
    }
    Ok(params)
}

/// A TTL: a duration like `90s`, `5m` or `2h`, from 1s to 365d.
fn parse_ttl(what: &str, text: &str) -> Result<Duration, Failure> {
    let refused = |why: String| {
        Failure::BadRequest(format!(
            "{what} is `{}`: {why}; give a duration from 1s to 365d, like `90s`, `5m` or `2h`",
            stateplug_sdk::text::bounded(text, 100)
        ))
    };
    let ttl =
        humantime::parse_duration(text).map_err(|e| refused(format!("not a duration ({e})")))?;
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err(refused("out of range".into()));
    }
    Ok(ttl)
}

fn encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn decode(text: &str, what: impl FnOnce() -> String) -> Result<Vec<u8>, Failure> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| {
            Failure::BadRequest(format!(
                "{} is not base64 (the standard alphabet, padded): {e}",
                what()
            ))
        })
}

/// The `ETag` of a version: `"<version>"`. The host names versions with letters, digits and
/// `-` only; one that cannot be an entity tag is a manifest someone else wrote.
fn etag(namespace: &str, version: &str) -> Result<HeaderValue, Failure> {
    let fits = version
        .bytes()
        .all(|b| b == 0x21 || ((0x23..=0x7e).contains(&b)));
    match HeaderValue::from_str(&format!("\"{version}\"")) {
        Ok(tag) if fits => Ok(tag),
        _ => Err(KvError::Corrupt {
            namespace: namespace.to_string(),
            reason: format!(
                "the version `{}` is not one this host writes",
                version.escape_debug()
            ),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_durations_from_a_second_to_a_year() {
        let ok = |text: &str| parse_ttl("`ttl`", text).ok();
        assert_eq!(ok("90s"), Some(Duration::from_secs(90)));
        assert_eq!(ok("5m"), Some(Duration::from_secs(300)));
        assert_eq!(ok("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(ok("365d"), Some(MAX_TTL));
        for bad in ["abc", "0s", "500ms", "366d", "400d", "", "-5s", "5"] {
            let Err(Failure::BadRequest(reason)) = parse_ttl("`ttl`", bad) else {
                panic!("{bad:?} was accepted");
            };
            assert!(reason.starts_with("`ttl` is `"), "{reason}");
        }
    }

    #[test]
    fn query_parameters_are_checked_by_name() {
        let query = |pairs: &[(&str, &str)], allowed: &[&str]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            match params(&pairs, allowed, "this") {
                Ok(params) => Ok(params),
                Err(Failure::BadRequest(reason)) => Err(reason),
                Err(Failure::Kv(e)) => Err(e.to_string()),
            }
        };
        assert_eq!(query(&[("ttl", "5m")], &["ttl"]).unwrap()["ttl"], "5m");
        let refused = query(&[("tll", "5m")], &["ttl"]).unwrap_err();
        assert!(
            refused.contains("`tll`: this takes only `ttl`"),
            "{refused}"
        );
        let refused = query(&[("ttl", "5m")], &[]).unwrap_err();
        assert!(refused.contains("no query parameters"), "{refused}");
        let refused = query(&[("ttl", "1s"), ("ttl", "2s")], &["ttl"]).unwrap_err();
        assert!(refused.contains("twice"), "{refused}");
    }
}
