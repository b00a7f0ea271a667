//! The web dashboard at `/ui/`: server-rendered pages (askama templates compiled into the
//! binary from `host/stateplug/templates/`, HTML-escaped) behind the same auth layer and
//! permissions as the API. No JavaScript: filters and comparisons are GET forms, and the two
//! changes it makes (force-unlock, rollback; `admin` only) are POSTs from a confirmation page
//! carrying a CSRF token (`csrf.rs`), refused when cross-site. `diff.rs` reads outputs and
//! resources from a state and compares two versions.
//!
//! Everything shown that came through the plugin (outputs, lock holders, audit actors,
//! resource types) is bounded here and escaped by the templates.

mod csrf;
mod diff;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use stateplug_sdk::LockInfo;
use stateplug_sdk::text::bounded;
use stateplug_state::{AuditAction, KeptVersion};

use super::AppState;
use super::auth::{CallerOf, forbidden};
use super::respond::{error_response, finish, text};
use crate::access::{Caller, Pattern, Permission, Target};
use crate::opening::StateError;
use csrf::CsrfKey;

/// Longest untrusted field shown in a table (lock holders, actors, lineages), in bytes.
const MAX_FIELD: usize = 200;

/// Audit events one page shows.
const AUDIT_PAGE: usize = 200;

const STYLE: &str = include_str!("style.css");

/// The action names a CSRF token is made for.
const FORCE_UNLOCK: &str = "force-unlock";
const ROLLBACK: &str = "rollback";

/// The dashboard's routes (inside the authenticated router), each answer with the page
/// headers.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(workspaces_page))
        .route("/ui/style.css", get(style))
        .route("/ui/workspaces/{workspace}", get(workspace_page))
        .route(
            "/ui/workspaces/{workspace}/force-unlock",
            get(confirm_force_unlock).post(force_unlock),
        )
        .route(
            "/ui/workspaces/{workspace}/rollback",
            get(confirm_rollback).post(rollback),
        )
        .route("/ui/audit", get(audit_page))
        .route("/ui/backend", get(backend_page))
        .layer(middleware::map_response(page_headers))
}

/// No script, no frames, forms and styles from this server only; nothing cached, since the
/// pages show state.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// What every page's frame shows: its title and the navigation.
struct Layout {
    title: String,
    /// How the caller is named, as in the audit trail (`user:ci`).
    caller: String,
    /// Whether the navigation links the audit trail of every workspace.
    admin: bool,
}

impl Layout {
    fn new(title: impl Into<String>, caller: &Caller) -> Layout {
        Layout {
            title: title.into(),
            caller: bounded(&caller.actor(), MAX_FIELD).into_owned(),
            admin: caller.grant.is_admin(),
        }
    }
}

/// The page as HTML with `status`.
fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the dashboard page could not be rendered: {e}"),
        ),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    message: String,
    back: String,
}

/// A page saying what went wrong, with a link back.
fn error_page(status: StatusCode, caller: &Caller, message: &str, back: &str) -> Response {
    let page = ErrorPage {
        layout: Layout::new(
            format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            caller,
        ),
        message: bounded(message, 2000).into_owned(),
        back: back.to_string(),
    };
    html(status, &page)
}

/// A state-layer failure as a page, with the status the API would answer.
fn state_failure(caller: &Caller, error: StateError, back: &str) -> Response {
    let message = error.to_string();
    let status = error_response(error).status();
    error_page(status, caller, &message, back)
}

/// The answer of a request refused before its work (boxed: a `Response` is large).
type Refused = Box<Response>;

/// 400 for a name that is not a workspace's.
fn checked_name(caller: &Caller, workspace: &str) -> Result<(), Refused> {
    stateplug_state::check_workspace(workspace)
        .map_err(|reason| Box::new(error_page(StatusCode::BAD_REQUEST, caller, &reason, "/ui/")))
}

/// A field that came through the plugin, bounded (the template escapes it).
fn shown(field: &str) -> String {
    bounded(field, MAX_FIELD).into_owned()
}

fn size(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

// ---- The workspaces ----

#[derive(Template)]
#[template(path = "workspaces.html")]
struct WorkspacesPage {
    layout: Layout,
    query: String,
    /// Why the filter could not be used.
    problem: Option<String>,
    rows: Vec<WorkspaceRow>,
    /// Workspaces the caller may read, before the filter.
    readable: usize,
}

struct WorkspaceRow {
    name: String,
    serial: String,
    size: String,
    updated: String,
    lineage: String,
    /// The lock holder's `Who`, or `-`.
    lock: String,
}

#[derive(serde::Deserialize)]
struct FilterQuery {
    #[serde(default)]
    q: String,
}

/// What a filter keeps: a glob (`*`, `?`, `[...]`) matches whole names, other text is a
/// substring, ignoring case.
#[derive(Debug)]
enum Filter {
    All,
    Glob(Pattern),
    Substring(String),
}

impl Filter {
    fn new(query: &str) -> Result<Filter, String> {
        let query = query.trim();
        if query.is_empty() {
            Ok(Filter::All)
        } else if query.contains(['*', '?', '[']) {
            Pattern::new(query).map(Filter::Glob).map_err(|reason| {
                format!("{reason}; use `*`, `?` and `[...]`, or plain text to match a part")
            })
        } else {
            Ok(Filter::Substring(query.to_lowercase()))
        }
    }

    fn keeps(&self, name: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Glob(pattern) => pattern.matches(name),
            Filter::Substring(part) => name.to_lowercase().contains(part),
        }
    }
}

/// `GET /ui/`: the workspaces the caller may read, filtered by `?q=`.
async fn workspaces_page(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Query(query): Query<FilterQuery>,
) -> Response {
    let infos = match shared.workspaces.infos().await {
        Ok(infos) => infos,
        Err(e) => return state_failure(&caller, e, "/ui/"),
    };
    let readable: Vec<_> = infos
        .into_iter()
        .filter(|info| caller.may(Permission::Read, Target::workspace(&info.name)))
        .collect();
    let (filter, problem) = match Filter::new(&query.q) {
        Ok(filter) => (Some(filter), None),
        Err(problem) => (None, Some(problem)),
    };
    let rows = readable
        .iter()
        .filter(|info| filter.as_ref().is_some_and(|f| f.keeps(&info.name)))
        .map(|info| WorkspaceRow {
            name: info.name.clone(),
            serial: info.serial.map_or("-".into(), |s| s.to_string()),
            size: if info.serial.is_some() || info.size > 0 {
                size(info.size)
            } else {
                "-".into()
            },
            updated: info.updated.clone().unwrap_or_else(|| "-".into()),
            lineage: info.lineage.as_deref().map_or("-".into(), shown),
            lock: info.lock.as_ref().map_or("-".into(), holder_name),
        })
        .collect();
    let page = WorkspacesPage {
        layout: Layout::new("Workspaces", &caller),
        query: bounded(&query.q, MAX_FIELD).into_owned(),
        problem,
        rows,
        readable: readable.len(),
    };
    html(StatusCode::OK, &page)
}

/// A lock's `Who`, or its ID when it names nobody.
fn holder_name(lock: &LockInfo) -> String {
    if lock.who.trim().is_empty() {
        format!("(ID {})", shown(&lock.id))
    } else {
        shown(&lock.who)
    }
}

// ---- One workspace ----

struct LockView {
    id: String,
    who: String,
    operation: String,
    created: String,
    info: String,
    expires: Option<String>,
}

impl LockView {
    fn of(lock: &LockInfo) -> LockView {
        let or_dash = |field: &str| {
            if field.is_empty() {
                "-".to_string()
            } else {
                shown(field)
            }
        };
        LockView {
            id: shown(&lock.id),
            who: or_dash(&lock.who),
            operation: or_dash(&lock.operation),
            created: or_dash(&lock.created),
            info: or_dash(&lock.info),
            expires: lock.expires.map(rfc3339_ms),
        }
    }
}

struct HistoryRow {
    serial: u64,
    saved_at: String,
    size: String,
}

/// The comparison of two kept versions.
struct DiffView {
    /// The serials compared, when there is a comparison.
    from: Option<u64>,
    to: Option<u64>,
    /// Why nothing is compared, or why a version could not be read.
    note: Option<String>,
    diff: diff::Diff,
    /// The serials one may pick, newest first.
    choices: Vec<Choice>,
}

/// A kept serial in the comparison's pickers.
struct Choice {
    serial: u64,
    /// Whether it is the one compared from, and to.
    from: bool,
    to: bool,
}

#[derive(Template)]
#[template(path = "workspace.html")]
struct WorkspacePage {
    layout: Layout,
    name: String,
    /// What the last change made here did.
    notice: Option<String>,
    /// Whether the caller has `admin` here: the force-unlock and rollback buttons.
    admin: bool,
    serial: String,
    lineage: String,
    /// Why the state's contents are not shown (no state, encrypted, unreadable).
    state_note: Option<String>,
    outputs: Vec<diff::Output>,
    resources: Vec<diff::ResourceCount>,
    lock: Option<LockView>,
    history: Vec<HistoryRow>,
    compare: DiffView,
}

#[derive(serde::Deserialize)]
struct WorkspaceQuery {
    from: Option<String>,
    to: Option<String>,
    done: Option<String>,
    serial: Option<String>,
    stored: Option<String>,
}

/// `GET /ui/workspaces/{ws}` (`read`): outputs, resources, lock, history and a diff of two
/// kept versions (`?from=&to=`, default the two newest).
async fn workspace_page(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Path(workspace): Path<String>,
    Query(query): Query<WorkspaceQuery>,
) -> Response {
    if let Err(page) = checked_name(&caller, &workspace) {
        return *page;
    }
    if let Err(denied) = caller.require(Permission::Read, Target::workspace(&workspace)) {
        return forbidden(denied);
    }
    let workspaces = &shared.workspaces;
    let (state, lock, kept) = match tokio::try_join!(
        workspaces.get(&workspace),
        workspaces.lock_info(&workspace),
        workspaces.kept_versions(&workspace),
    ) {
        Ok(read) => read,
        Err(e) => return state_failure(&caller, e, "/ui/"),
    };
    let doc = state
        .as_ref()
        .and_then(|s| stateplug_state::StateDoc::parse(&s.data).ok());
    let contents = match &state {
        None => Err("the workspace has no state yet".to_string()),
        Some(state) => diff::read(&state.data),
    };
    let (outputs, resources, state_note) = match contents {
        Ok(contents) => (contents.outputs.clone(), contents.summary(), None),
        Err(note) => (Vec::new(), Vec::new(), Some(note)),
    };
    let history = kept
        .iter()
        .rev()
        .map(|version| HistoryRow {
            serial: version.serial,
            saved_at: rfc3339_ms(version.saved_at_ms),
            size: size(version.data.len()),
        })
        .collect();
    let page = WorkspacePage {
        layout: Layout::new(format!("Workspace {workspace}"), &caller),
        admin: caller.may(Permission::Admin, Target::workspace(&workspace)),
        notice: notice(&query),
        serial: doc.as_ref().map_or("-".into(), |d| d.serial.to_string()),
        lineage: doc.as_ref().map_or("-".into(), |d| shown(&d.lineage)),
        state_note,
        outputs,
        resources,
        lock: lock.as_ref().map(LockView::of),
        history,
        compare: compare(&kept, query.from.as_deref(), query.to.as_deref()),
        name: workspace,
    };
    html(StatusCode::OK, &page)
}

/// The notice after a change (`?done=`): fixed texts and numbers only, so a link cannot make
/// the page say anything else.
fn notice(query: &WorkspaceQuery) -> Option<String> {
    let number = |field: &Option<String>| field.as_deref().and_then(|s| s.parse::<u64>().ok());
    match query.done.as_deref()? {
        "force-unlock" => Some("The lock was broken; the audit trail records who broke it.".into()),
        "no-lock" => {
            Some("There was no lock to break: it was released or broken meanwhile.".into())
        }
        "rollback" => match (number(&query.serial), number(&query.stored)) {
            (Some(serial), Some(stored)) => Some(format!(
                "Rolled back: the state of serial {serial} is now the current state, stored \
                 as serial {stored}."
            )),
            _ => None,
        },
        _ => None,
    }
}

/// The diff of the kept versions `from` and `to` (serials; default the two newest).
fn compare(kept: &[KeptVersion], from: Option<&str>, to: Option<&str>) -> DiffView {
    let mut view = DiffView {
        from: None,
        to: None,
        note: None,
        diff: diff::Diff::default(),
        choices: Vec::new(),
    };
    // Serials in the pickers, each once; a serial kept twice compares its newest version.
    let mut serials: Vec<u64> = kept.iter().rev().map(|v| v.serial).collect();
    serials.dedup();
    view.choices = serials
        .into_iter()
        .map(|serial| Choice {
            serial,
            from: false,
            to: false,
        })
        .collect();
    let newest = kept.len().checked_sub(1).map(|i| &kept[i]);
    let second = kept.len().checked_sub(2).map(|i| &kept[i]);
    let picked = (
        pick(kept, from, second, "from"),
        pick(kept, to, newest, "to"),
    );
    let (from, to) = match picked {
        (Ok(Some(from)), Ok(Some(to))) => (from, to),
        (Err(note), _) | (_, Err(note)) => {
            view.note = Some(note);
            return view;
        }
        _ => {
            view.note = Some(match kept.len() {
                0 => {
                    "No versions are kept (history is off, or nothing was written yet).".to_string()
                }
                _ => "Only one version is kept: nothing to compare yet.".to_string(),
            });
            return view;
        }
    };
    view.from = Some(from.serial);
    view.to = Some(to.serial);
    for choice in &mut view.choices {
        choice.from = choice.serial == from.serial;
        choice.to = choice.serial == to.serial;
    }
    match (diff::read(&from.data), diff::read(&to.data)) {
        (Ok(a), Ok(b)) => view.diff = diff::diff(&a, &b),
        (Err(note), _) | (_, Err(note)) => view.note = Some(note),
    }
    view
}

/// The kept version a comparison names (`given`), or `default`; the newest of a serial (a
/// forced write can keep one serial twice).
fn pick<'a>(
    kept: &'a [KeptVersion],
    given: Option<&str>,
    default: Option<&'a KeptVersion>,
    which: &str,
) -> Result<Option<&'a KeptVersion>, String> {
    let Some(text) = given.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(default);
    };
    let Ok(serial) = text.parse::<u64>() else {
        return Err(format!(
            "`{which}` is `{}`, not a serial: give a whole number",
            bounded(text, 40)
        ));
    };
    match kept.iter().rfind(|v| v.serial == serial) {
        Some(version) => Ok(Some(version)),
        None => Err(format!(
            "no kept version has serial {serial}: pick one of the history above"
        )),
    }
}

// ---- Force-unlock and rollback ----

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    layout: Layout,
    name: String,
    /// `force-unlock` or `rollback`: the form's target and its button.
    action: &'static str,
    token: String,
    /// The lock to break (force-unlock).
    lock: Option<LockView>,
    /// The version to make current again (rollback).
    serial: Option<u64>,
}

#[derive(serde::Deserialize)]
struct SerialQuery {
    serial: Option<String>,
}

/// `admin` on the workspace, its name checked; the caller's CSRF key.
fn may_change(caller: &Caller, workspace: &str) -> Result<&'static CsrfKey, Refused> {
    checked_name(caller, workspace)?;
    caller
        .require(Permission::Admin, Target::workspace(workspace))
        .map_err(|denied| Box::new(forbidden(denied)))?;
    CsrfKey::process().map_err(|reason| {
        Box::new(error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            caller,
            reason,
            &format!("/ui/workspaces/{workspace}"),
        ))
    })
}

/// `GET .../force-unlock`: what would be broken, and the form that breaks it.
async fn confirm_force_unlock(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Path(workspace): Path<String>,
) -> Response {
    let key = match may_change(&caller, &workspace) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let back = format!("/ui/workspaces/{workspace}");
    let lock = match shared.workspaces.lock_info(&workspace).await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            return error_page(
                StatusCode::CONFLICT,
                &caller,
                &format!("workspace `{workspace}` is not locked: there is nothing to break"),
                &back,
            );
        }
        Err(e) => return state_failure(&caller, e, &back),
    };
    let page = ConfirmPage {
        layout: Layout::new(format!("Force-unlock {workspace}?"), &caller),
        token: key.token(&caller.actor(), FORCE_UNLOCK, &workspace),
        action: FORCE_UNLOCK,
        lock: Some(LockView::of(&lock)),
        serial: None,
        name: workspace,
    };
    html(StatusCode::OK, &page)
}

/// `GET .../rollback?serial=N`: which version would become current, and the form.
async fn confirm_rollback(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Path(workspace): Path<String>,
    Query(query): Query<SerialQuery>,
) -> Response {
    let key = match may_change(&caller, &workspace) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let back = format!("/ui/workspaces/{workspace}");
    let serial = match parse_serial(query.serial.as_deref()) {
        Ok(serial) => serial,
        Err(reason) => return error_page(StatusCode::BAD_REQUEST, &caller, &reason, &back),
    };
    match shared.workspaces.history(&workspace).await {
        Ok(history) if history.iter().any(|entry| entry.serial == serial) => {}
        Ok(_) => {
            return error_page(
                StatusCode::NOT_FOUND,
                &caller,
                &format!("workspace `{workspace}` keeps no version of serial {serial}"),
                &back,
            );
        }
        Err(e) => return state_failure(&caller, e, &back),
    }
    let page = ConfirmPage {
        layout: Layout::new(
            format!("Roll {workspace} back to serial {serial}?"),
            &caller,
        ),
        token: key.token(&caller.actor(), ROLLBACK, &workspace),
        action: ROLLBACK,
        lock: None,
        serial: Some(serial),
        name: workspace,
    };
    html(StatusCode::OK, &page)
}

fn parse_serial(serial: Option<&str>) -> Result<u64, String> {
    let serial = serial.map(str::trim).unwrap_or_default();
    serial.parse().map_err(|_| {
        format!(
            "`serial` is `{}`: give the serial of a kept version (a whole number), as the \
             history's rollback buttons do",
            bounded(serial, 40)
        )
    })
}

/// What the confirmation forms post.
#[derive(serde::Deserialize)]
struct ChangeForm {
    #[serde(default)]
    token: String,
    /// The lock the confirmation page showed (force-unlock).
    lock_id: Option<String>,
    /// The version to make current again (rollback).
    serial: Option<String>,
}

/// Refuses a form posted from another site: `Sec-Fetch-Site` other than `same-origin`
/// (`cross-site`, or `same-site`: another port of this host), or an `Origin` that is not this
/// server's (the `Host` the request was sent to). The pages' `Referrer-Policy: no-referrer`
/// makes browsers send `Origin: null` with the dashboard's own forms, so `null` passes only
/// beside `Sec-Fetch-Site: same-origin`, which no page can forge.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let site = header("sec-fetch-site");
    if let Some(site) = site.filter(|site| *site != "same-origin") {
        return Err(format!(
            "refused: the form was posted from another site (Sec-Fetch-Site: {}); confirm on \
             the dashboard's own page",
            bounded(site, 40)
        ));
    }
    let Some(origin) = header(header::ORIGIN.as_str()) else {
        return Ok(());
    };
    if origin == "null" && site == Some("same-origin") {
        return Ok(());
    }
    let host = header(header::HOST.as_str()).unwrap_or_default();
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    if authority.is_some_and(|a| !host.is_empty() && a.eq_ignore_ascii_case(host)) {
        return Ok(());
    }
    Err(format!(
        "refused: the form was posted from `{}`, not from this server (`{}`); confirm on the \
         dashboard's own page",
        bounded(origin, 200),
        bounded(host, 200)
    ))
}

/// `admin`, a same-origin request and a token for this caller, action and workspace.
fn check_change(
    caller: &Caller,
    headers: &HeaderMap,
    workspace: &str,
    action: &str,
    token: &str,
) -> Result<(), Refused> {
    let key = may_change(caller, workspace)?;
    let again = format!("/ui/workspaces/{workspace}");
    if let Err(reason) = same_origin(headers) {
        tracing::warn!(workspace, action, "{reason}");
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            caller,
            &reason,
            &again,
        )));
    }
    if !key.verify(token, &caller.actor(), action, workspace) {
        tracing::warn!(workspace, action, "dashboard form refused: bad CSRF token");
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            caller,
            "refused: the form's token is not this server's for you, this action and this \
             workspace (the server restarted, or the form came from elsewhere); open the \
             confirmation page again and confirm there",
            &again,
        )));
    }
    Ok(())
}

/// `POST .../force-unlock`: breaks the lock the confirmation showed, records it, and goes
/// back to the workspace.
async fn force_unlock(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Path(workspace): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ChangeForm>,
) -> Response {
    if let Err(refused) = check_change(&caller, &headers, &workspace, FORCE_UNLOCK, &form.token) {
        return *refused;
    }
    // A change runs to its end even if the browser goes.
    finish(false, async move {
        let back = format!("/ui/workspaces/{workspace}");
        let workspaces = &shared.workspaces;
        let held = match workspaces.lock_info(&workspace).await {
            Ok(held) => held,
            Err(e) => return state_failure(&caller, e, &back),
        };
        match (&held, form.lock_id.as_deref()) {
            (None, _) => return Redirect::to(&format!("{back}?done=no-lock")).into_response(),
            (Some(holder), Some(expected)) if holder.id != expected => {
                return error_page(
                    StatusCode::CONFLICT,
                    &caller,
                    &format!(
                        "not broken: the lock changed since the confirmation page; it is now \
                         held under ID {} by {}; look at it again before breaking it",
                        shown(&holder.id),
                        holder_name(holder)
                    ),
                    &back,
                );
            }
            _ => {}
        }
        let who = format!("{} via the dashboard", caller.label());
        match workspaces.force_unlock(&workspace, &who).await {
            Ok(Some(broken)) => {
                let change = caller
                    .audit_event(AuditAction::ForceUnlock, &workspace)
                    .with_lock_id(Some(&broken.id));
                workspaces.audit().record(&change).await;
                Redirect::to(&format!("{back}?done=force-unlock")).into_response()
            }
            Ok(None) => Redirect::to(&format!("{back}?done=no-lock")).into_response(),
            Err(e) => state_failure(&caller, e, &back),
        }
    })
    .await
}

/// `POST .../rollback`: makes the kept version current again as a new serial, records it,
/// and goes back to the workspace.
async fn rollback(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Path(workspace): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ChangeForm>,
) -> Response {
    if let Err(refused) = check_change(&caller, &headers, &workspace, ROLLBACK, &form.token) {
        return *refused;
    }
    let back = format!("/ui/workspaces/{workspace}");
    let serial = match parse_serial(form.serial.as_deref()) {
        Ok(serial) => serial,
        Err(reason) => return error_page(StatusCode::BAD_REQUEST, &caller, &reason, &back),
    };
    finish(false, async move {
        let workspaces = &shared.workspaces;
        match workspaces
            .rollback_with_serials(&workspace, serial, None)
            .await
        {
            Ok(stored) => {
                let change = caller
                    .audit_event(AuditAction::Rollback, &workspace)
                    .with_serials(stored.serial_before, Some(stored.serial_after));
                workspaces.audit().record(&change).await;
                let to = format!(
                    "{back}?done=rollback&serial={serial}&stored={}",
                    stored.serial_after
                );
                Redirect::to(&to).into_response()
            }
            Err(e) => state_failure(&caller, e, &back),
        }
    })
    .await
}

// ---- The audit trail ----

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    /// The workspace whose trail is shown, or every workspace's.
    workspace: Option<String>,
    events: Vec<AuditRow>,
}

struct AuditRow {
    at: String,
    action: &'static str,
    workspace: String,
    actor: String,
    client: String,
    serials: String,
    lock_id: String,
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    workspace: Option<String>,
}

/// `GET /ui/audit` (administrators), `?workspace=WS` (`admin` on it): newest first.
async fn audit_page(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
    Query(query): Query<AuditQuery>,
) -> Response {
    let workspace = query.workspace.filter(|w| !w.is_empty());
    let allowed = match &workspace {
        Some(workspace) => {
            if let Err(page) = checked_name(&caller, workspace) {
                return *page;
            }
            caller.require(Permission::Admin, Target::workspace(workspace))
        }
        None => caller.require_admin("the audit trail of every workspace"),
    };
    if let Err(denied) = allowed {
        return forbidden(denied);
    }
    let events = match shared
        .workspaces
        .audit()
        .list(workspace.as_deref(), AUDIT_PAGE)
        .await
    {
        Ok(events) => events,
        Err(e) => return state_failure(&caller, e, "/ui/"),
    };
    let serial = |s: Option<u64>| s.map_or("-".into(), |s| s.to_string());
    let events = events
        .iter()
        .map(|e| AuditRow {
            at: shown(&e.at),
            action: e.action.as_str(),
            workspace: shown(&e.workspace),
            actor: shown(&e.actor),
            client: e.client.as_deref().map_or("-".into(), shown),
            serials: match (e.serial_before, e.serial_after) {
                (None, None) => "-".into(),
                (before, after) => format!("{} → {}", serial(before), serial(after)),
            },
            lock_id: e.lock_id.as_deref().map_or("-".into(), shown),
        })
        .collect();
    let title = match &workspace {
        Some(workspace) => format!("Audit trail of {workspace}"),
        None => "Audit trail".into(),
    };
    let page = AuditPage {
        layout: Layout::new(title, &caller),
        workspace,
        events,
    };
    html(StatusCode::OK, &page)
}

// ---- The backend ----

#[derive(Template)]
#[template(path = "backend.html")]
struct BackendPage {
    layout: Layout,
    name: String,
    plugin: String,
    version: String,
    contract: String,
    description: String,
    source: String,
    sha256: String,
    features: String,
    /// The sandbox's grants, for administrators.
    grants: Option<GrantsView>,
}

struct GrantsView {
    /// `host → guest (read-write)`.
    dirs: Vec<String>,
    allow_hosts: Vec<String>,
    memory: String,
    memory_total: String,
    timeout: String,
    instances: usize,
    max_connections: usize,
}

/// `GET /ui/backend`: the backend's plugin (everyone), its grants (administrators: they name
/// the server's directories and the hosts it reaches).
async fn backend_page(
    State(shared): State<Arc<AppState>>,
    axum::Extension(caller): CallerOf,
) -> Response {
    let backend = shared.workspaces.store();
    let plugin = backend.plugin();
    let metadata = plugin.metadata();
    let configured = &shared.backend;
    let grants = caller.grant.is_admin().then(|| {
        let g = &configured.grants;
        GrantsView {
            dirs: g
                .dirs
                .iter()
                .map(|d| {
                    let mode = if d.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    };
                    format!("{} → {} ({mode})", d.host.display(), d.guest)
                })
                .collect(),
            allow_hosts: g.allow_hosts.iter().map(ToString::to_string).collect(),
            memory: size(g.memory),
            memory_total: g.memory_total.map_or_else(
                || format!("{} (4 × memory)", size(g.memory.saturating_mul(4))),
                size,
            ),
            timeout: humantime::format_duration(g.timeout).to_string(),
            instances: backend.instances(),
            max_connections: g.max_connections,
        }
    });
    let page = BackendPage {
        layout: Layout::new(format!("Backend {}", configured.name), &caller),
        name: shown(&configured.name),
        plugin: shown(&metadata.name),
        version: shown(&metadata.version),
        contract: shown(&metadata.contract_version),
        description: bounded(&metadata.description, 1000).into_owned(),
        source: shown(&plugin.source().to_string()),
        sha256: plugin.sha256().to_string(),
        features: if metadata.features.is_empty() {
            "-".into()
        } else {
            shown(&metadata.features.join(", "))
        },
        grants,
    };
    html(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_parts_or_globs() {
        let part = Filter::new("Prod").unwrap();
        assert!(part.keeps("eu-prod-1") && !part.keeps("dev"));
        let glob = Filter::new("dev-*").unwrap();
        assert!(glob.keeps("dev-eu") && !glob.keeps("old-dev-eu"));
        assert!(Filter::new("  ").unwrap().keeps("anything"));
        assert!(Filter::new("[z-a]").unwrap_err().contains("not a pattern"));
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[host])).is_ok());
        assert!(same_origin(&headers(&[host, ("origin", "http://127.0.0.1:8080")])).is_ok());
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "same-origin")])).is_ok());
        let own_form = [host, ("origin", "null"), ("sec-fetch-site", "same-origin")];
        assert!(same_origin(&headers(&own_form)).is_ok());
        let refused = [
            headers(&[host, ("sec-fetch-site", "same-site")]),
            headers(&[
                host,
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "same-origin"),
            ]),
            headers(&[host, ("origin", "http://evil.example")]),
            headers(&[host, ("origin", "http://127.0.0.1:9999")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
        ];
        for headers in refused {
            assert!(same_origin(&headers).unwrap_err().starts_with("refused"));
        }
    }

    #[test]
    fn notices_are_fixed_texts() {
        let query = |done: &str, serial: &str| WorkspaceQuery {
            from: None,
            to: None,
            done: Some(done.into()),
            serial: Some(serial.into()),
            stored: Some("9".into()),
        };
        assert!(
            notice(&query("force-unlock", ""))
                .unwrap()
                .contains("broken")
        );
        assert!(
            notice(&query("rollback", "3"))
                .unwrap()
                .contains("serial 3")
        );
        assert_eq!(notice(&query("rollback", "<script>")), None);
        assert_eq!(notice(&query("Your account is closed", "")), None);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }
}
