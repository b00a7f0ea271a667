//! The sandbox holds against a plugin written as an attacker would (`tests/plugins/hostile`):
//! each attack is stopped or refused with a clear error, the attacked backend works again on
//! its next call, and a healthy backend keeps answering throughout.

use crate::common;

use std::time::Duration;

use crate::common::http_target::{Answer, Target};
use crate::common::postgres::{self, Postgres};
use stateplug_runtime::{Backend, Error, Grants, Plugin, Precondition};

async fn hostile(attack: &str, target: &str, grants: Grants) -> Backend {
    let plugin = Plugin::from_file(common::runtime(), &common::test_plugin_path("hostile"))
        .await
        .expect("hostile plugin loads");
    let config = vec![
        ("attack".to_string(), attack.to_string()),
        ("target".to_string(), target.to_string()),
    ];
    plugin
        .open(config, grants)
        .await
        .expect("hostile plugin opens")
}

fn short_deadline() -> Grants {
    Grants {
        timeout: Duration::from_millis(500),
        ..Grants::default()
    }
}

/// Runs the attack (a `read`) while a healthy memory backend is busy next to it; returns the
/// attack's error after checking that the healthy backend never failed and that the attacked
/// backend answers again afterwards (on a fresh instance).
async fn attack(backend: Backend) -> Error {
    let healthy = common::builtin("memory")
        .await
        .open(vec![], Grants::default())
        .await
        .unwrap();
    let busy = tokio::spawn(async move {
        let mut calls = 0u32;
        loop {
            let data = calls.to_be_bytes().to_vec();
            healthy
                .write("x", data.clone(), Precondition::None)
                .await
                .expect("healthy write");
            assert_eq!(healthy.read("x").await.expect("healthy read").data, data);
            calls += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
            if calls > 10_000 {
                break calls;
            }
        }
    });
    let error = backend
        .read("anything")
        .await
        .expect_err("the attack must fail");
    println!("attack stopped: {error}");
    assert!(!busy.is_finished(), "the healthy backend stopped early");
    busy.abort();
    // The attacked backend still answers, on a fresh instance.
    let page = backend.list("", None).await.expect("call after the attack");
    assert!(page.paths.is_empty());
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_at_the_deadline() {
    let error = attack(hostile("loop", "", short_deadline()).await).await;
    assert!(matches!(error, Error::Crashed { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("hostile") && message.contains("deadline of 500ms"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_forever_in_a_host_call_times_out() {
    let error = attack(hostile("sleep", "", short_deadline()).await).await;
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(
        error.to_string().contains("did not answer within 500ms"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_cap() {
    let grants = Grants {
        memory: 32 << 20,
        ..Grants::default()
    };
    let error = attack(hostile("alloc", "", grants).await).await;
    assert!(matches!(error, Error::Crashed { .. }), "{error:?}");
    assert!(
        error.to_string().contains("memory cap of 32 MiB"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_overflows_cleanly() {
    let error = attack(hostile("recurse", "", Grants::default()).await).await;
    assert!(matches!(error, Error::Crashed { .. }), "{error:?}");
    assert!(
        error.to_string().contains("overflowed its stack"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_reported_with_its_message() {
    let error = attack(hostile("panic", "", Grants::default()).await).await;
    assert!(matches!(error, Error::Crashed { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("hostile plugin panics on purpose"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_environment_is_invisible() {
    // The test process has variables (PATH, cargo's CARGO_*); none may reach the plugin.
    // (Not set here: setting a variable while the other tests of this binary run is unsound.)
    assert!(
        std::env::vars_os().next().is_some(),
        "the host has variables"
    );
    let backend = hostile("env", "", Grants::default()).await;
    let seen = backend.read("x").await.expect("env attack answers");
    assert_eq!(
        String::from_utf8_lossy(&seen.data),
        "[]",
        "the plugin saw host variables"
    );
}

/// A directory granted to the plugin, a secret file beside it (outside the grant) and a
/// symlink planted inside the grant that points at the secret.
struct Escape {
    _top: tempfile::TempDir,
    granted: std::path::PathBuf,
    secret: std::path::PathBuf,
}

const SECRET: &str = "do-not-leak-7f3a";

fn escape_setup() -> Escape {
    let top = tempfile::tempdir().unwrap();
    let granted = top.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    let secret = top.path().join("secret.txt");
    std::fs::write(&secret, SECRET).unwrap();
    std::os::unix::fs::symlink(&secret, granted.join("link")).unwrap();
    std::os::unix::fs::symlink(top.path(), granted.join("dirlink")).unwrap();
    let granted = granted.canonicalize().unwrap();
    let secret = secret.canonicalize().unwrap();
    Escape {
        _top: top,
        granted,
        secret,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_grant_cannot_be_read() {
    let escape = escape_setup();
    let root = "/data";
    let targets = [
        format!("{root}/../secret.txt"),
        escape.secret.display().to_string(),
        format!("{root}/link"),
        format!("{root}/dirlink/secret.txt"),
        "/etc/passwd".to_string(),
    ];
    for target in targets {
        let (_, grants) = common::local_setup(&escape.granted);
        let backend = hostile("read-file", &target, grants).await;
        match backend.read("x").await {
            Ok(object) => panic!(
                "{target}: the plugin read {:?}",
                String::from_utf8_lossy(&object.data)
            ),
            Err(e) => {
                println!("{target}: {e}");
                assert!(!e.to_string().contains(SECRET), "{target}: {e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plugin_does_not_follow_a_planted_symlink_out() {
    let escape = escape_setup();
    let backend = common::open_local(&escape.granted, &[]).await;
    for path in ["link", "dirlink/secret.txt"] {
        let error = backend.read(path).await.expect_err(path);
        assert!(!error.to_string().contains(SECRET), "{path}: {error}");
        // Writing through the link must not touch the secret either.
        let _ = backend
            .write(path, b"overwritten".to_vec(), Precondition::None)
            .await;
    }
    assert_eq!(std::fs::read_to_string(&escape.secret).unwrap(), SECRET);
    for path in ["../secret.txt", "/etc/passwd"] {
        assert!(
            matches!(backend.read(path).await, Err(Error::InvalidPath(_))),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_modes_cannot_be_changed_outside_the_grant() {
    use std::os::unix::fs::PermissionsExt;
    let escape = escape_setup();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let before = mode(&escape.secret);
    let root = "/data";
    for target in [
        escape.secret.display().to_string(),
        format!("{root}/../secret.txt"),
        format!("{root}/link"),
    ] {
        let (_, grants) = common::local_setup(&escape.granted);
        let error = hostile("chmod", &target, grants)
            .await
            .read("x")
            .await
            .expect_err(&target);
        assert!(matches!(error, Error::Denied { .. }), "{target}: {error:?}");
    }
    assert_eq!(mode(&escape.secret), before, "the secret's mode changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_answer_is_stopped_by_the_memory_cap() {
    let error = attack(hostile("huge", "", Grants::default()).await).await;
    assert!(matches!(error, Error::Crashed { .. }), "{error:?}");
    assert!(
        error.to_string().contains("memory cap of 256 MiB"),
        "{error}"
    );
}

/// Collects what the host logs, to count it.
#[derive(Clone, Default)]
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the host logs while the attack (a `read` answering `not-found` at the end) runs; the
/// caller's runtime must be single-threaded, so that the log capture sees every line.
async fn logged_by(attack: &str) -> String {
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let backend = hostile(attack, "", Grants::default()).await;
    assert!(backend.read("x").await.unwrap_err().is_not_found());
    String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_log_flood_is_cut_to_the_budget() {
    // 100,000 messages of 12 KB each: the call completes, and the host keeps 1000 of 4 KiB.
    let logged = logged_by("log-flood").await;
    let lines: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("flood flood"))
        .collect();
    assert_eq!(lines.len(), 1000, "messages kept");
    assert!(
        lines.iter().all(|l| l.len() < 4096 + 200),
        "a message was not truncated"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .contains("log budget of this call used up")
    );
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_traps_on_every_call_leaks_nothing() {
    if !common::alone_in_a_process("sandbox::a_plugin_that_traps_on_every_call_leaks_nothing") {
        return;
    }
    let backend = hostile("panic", "", Grants::default()).await;
    for _ in 0..1_000 {
        assert!(matches!(
            backend.read("x").await,
            Err(Error::Crashed { .. })
        ));
    }
    let before = resident_bytes();
    for _ in 0..10_000 {
        assert!(matches!(
            backend.read("x").await,
            Err(Error::Crashed { .. })
        ));
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "host RSS grew by {} MiB over 10,000 crashes",
        grown >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_token_that_never_changes_loses_no_update() {
    use stateplug_state::{Workspaces, WriteOptions};
    let backend = hostile("stuck-version", "", Grants::default()).await;
    let store = Workspaces::new(backend, Default::default());
    let state = |serial: u64, by: &str| {
        format!("{{\"version\":4,\"serial\":{serial},\"lineage\":\"L\",\"by\":\"{by}\"}}")
            .into_bytes()
    };
    store
        .put("ws", state(1, "first"), &WriteOptions::default())
        .await
        .unwrap();
    // 16 writers each move serial 1 to 2 with their own content; the plugin's CAS would let
    // them all through, the state layer must not.
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let data = state(2, &format!("writer-{i}"));
            tokio::spawn(async move { store.put("ws", data, &WriteOptions::default()).await })
        })
        .collect();
    let mut stored = 0;
    for writer in writers {
        match writer.await.unwrap() {
            Ok(_) => stored += 1,
            Err(stateplug_state::Error::Rejected { reason, .. }) => {
                assert!(reason.contains("content differs"), "{reason}")
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        stored, 1,
        "{stored} writers stored serial 2: updates were lost"
    );
}

fn allow(hosts: &[&str]) -> Grants {
    Grants {
        allow_hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
        timeout: Duration::from_secs(2),
        ..Grants::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sockets_are_refused_even_to_a_granted_address() {
    let target = Target::start(Answer::Body("secret"));
    let address = format!("127.0.0.1:{}", target.port);
    // Granting the address for HTTP does not open sockets: wasi-http is the only way out.
    let error = attack(hostile("tcp-connect", &address, allow(&[&address])).await).await;
    assert!(
        error.to_string().contains("connecting to 127.0.0.1"),
        "{error}"
    );
    assert_eq!(target.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reaches_a_granted_host() {
    let target = Target::start(Answer::Body("granted answer"));
    let grant = format!("127.0.0.1:{}", target.port);
    let backend = hostile("http-get", &target.url(), allow(&[&grant])).await;
    let object = backend.read("x").await.expect("granted request");
    assert_eq!(object.data, b"granted answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_without_a_grant_is_denied_and_sends_nothing() {
    let target = Target::start(Answer::Body("secret"));
    let error = attack(hostile("http-get", &target.url(), allow(&[])).await).await;
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&format!(
            "the host refused the connection to 127.0.0.1:{}",
            target.port
        )),
        "{error}"
    );
    assert_eq!(target.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_another_port_of_a_granted_address_is_denied() {
    let granted = Target::start(Answer::Body("fine"));
    let other = Target::start(Answer::Body("secret"));
    let grant = format!("127.0.0.1:{}", granted.port);
    let error = attack(hostile("http-get", &other.url(), allow(&[&grant])).await).await;
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
    assert_eq!(other.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_name_that_resolves_to_loopback_is_denied_unless_the_address_is_granted() {
    let target = Target::start(Answer::Body("internal"));
    let url = format!("http://localhost:{}/state", target.port);
    let name_only = format!("localhost:{}", target.port);
    let error = attack(hostile("http-get", &url, allow(&[&name_only])).await).await;
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
    assert_eq!(target.connections(), 0);

    // Granting the loopback range as well lets the same request through.
    let backend = hostile("http-get", &url, allow(&[&name_only, "127.0.0.0/8"])).await;
    assert_eq!(backend.read("x").await.expect("granted").data, b"internal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_host_that_is_not_granted_is_denied() {
    let inner = Target::start(Answer::Body("secret"));
    let granted = Target::start(Answer::RedirectTo(inner.url()));
    let grant = format!("127.0.0.1:{}", granted.port);
    let error = attack(hostile("http-get", &granted.url(), allow(&[&grant])).await).await;
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
    assert!(error.to_string().contains(&inner.url()), "{error}");
    assert_eq!(granted.connections(), 1);
    assert_eq!(inner.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_cannot_hold_a_call_past_the_deadline() {
    let target = Target::start(Answer::Silence);
    let grant = format!("127.0.0.1:{}", target.port);
    let grants = Grants {
        timeout: Duration::from_millis(500),
        ..allow(&[&grant])
    };
    let error = attack(hostile("http-get", &target.url(), grants).await).await;
    // The host's wait cap, the call's timeout or its epoch deadline ends it, whichever
    // fires first: all three are the 500 ms grant.
    let text = error.to_string();
    assert!(
        matches!(
            error,
            Error::Timeout { .. } | Error::Unavailable { .. } | Error::Crashed { .. }
        ) && (text.contains("500ms") || text.contains("Timeout")),
        "{error:?}"
    );
    assert_eq!(target.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_bigger_than_the_memory_grant_is_cut_off() {
    let target = Target::start(Answer::Huge(256 << 20));
    let grant = format!("127.0.0.1:{}", target.port);
    let grants = Grants {
        memory: 32 << 20,
        timeout: Duration::from_secs(10),
        ..allow(&[&grant])
    };
    let error = attack(hostile("http-get", &target.url(), grants).await).await;
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("size"), "{error}");
}

/// The hostile plugin's `db-statement` target on the shared PostgreSQL cluster.
fn db_target(pg: &Postgres, database: &str, statement: &str) -> String {
    let (host, port) = (pg.host(), pg.port());
    let (user, password) = (pg.superuser(), pg.password());
    format!("{host}:{port}/{database}/{user}/{password}/{statement}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_a_grant_is_denied() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("hostile_grant");
    let target = db_target(pg, &database, "SELECT 1");
    let http_only = format!("{}:{}", pg.host(), pg.port());
    for grants in [allow(&[]), allow(&[&http_only])] {
        let error = attack(hostile("db-statement", &target, grants).await).await;
        assert!(matches!(error, Error::Denied { .. }), "{error:?}");
        assert!(error.to_string().contains(&http_only), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_result_bigger_than_the_memory_grant_is_refused() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("hostile_result");
    // 64 rows of 1 MiB against a 32 MiB grant.
    let statement = "SELECT repeat('x', 1048576) FROM generate_series(1, 64)";
    let grant = format!("postgres://{}:{}", pg.host(), pg.port());
    let grants = Grants {
        memory: 32 << 20,
        ..allow(&[&grant])
    };
    let target = db_target(pg, &database, statement);
    let error = attack(hostile("db-statement", &target, grants).await).await;
    assert!(
        error
            .to_string()
            .contains("larger than the instance's memory grant"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_never_ends_is_cut_at_the_deadline() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("hostile_sleep");
    let grant = format!("postgres://{}:{}", pg.host(), pg.port());
    let grants = Grants {
        timeout: Duration::from_secs(1),
        ..allow(&[&grant])
    };
    let target = db_target(pg, &database, "SELECT pg_sleep(3600)");
    let error = attack(hostile("db-statement", &target, grants).await).await;
    // The host's wait, the call's timeout or its epoch deadline ends it, whichever fires
    // first: all are the 1 s grant.
    let stopped = matches!(
        error,
        Error::Timeout { .. } | Error::Unavailable { .. } | Error::Crashed { .. }
    );
    assert!(
        stopped && error.to_string().contains("deadline"),
        "{error:?}"
    );
    // The server stopped it too (`statement_timeout`): nothing is left sleeping.
    let sleeping = || {
        pg.sql(
            &database,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'",
        )
    };
    let mut left = sleeping();
    for _ in 0..50 {
        if left.trim() == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = sleeping();
    }
    assert_eq!(left.trim(), "0", "a statement outlived its call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_answer_for_another_workspace_is_refused() {
    let backend = hostile("foreign-lock", "", Grants::default()).await;
    let error = backend
        .list_locks("ws/")
        .await
        .expect_err("a lock outside the prefix is refused");
    assert!(matches!(error, Error::Plugin { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("list-locks(`ws/`) answered with `victim/terraform.tfstate`"),
        "{error}"
    );
    // Asked about one path, the answer is that path's lock whatever its `path` text says: the
    // host never files it under the workspace the plugin names.
    let lock = backend.lock_info("ws/terraform.tfstate").await.unwrap();
    assert_eq!(lock.map(|l| l.id).as_deref(), Some("foreign"));
    // Listing all locks is the plugin's claim to make, and stays answerable.
    let all = backend.list_locks("").await.unwrap();
    assert_eq!(all.len(), 1);
}

/// What a plugin says reaches logs, answers and terminals only bounded (4 KiB and a marker
/// per text) and with control characters escaped: no raw ESC, CR, LF or bidirectional
/// override survives, so a plugin can neither flood, forge a log line nor repaint a screen.
fn assert_tamed(text: &str, what: &str) {
    assert!(
        text.len() <= 2 * stateplug_sdk::text::UNTRUSTED_MAX,
        "{what}: {} bytes got through",
        text.len()
    );
    let raw = text
        .chars()
        .find(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'));
    assert!(raw.is_none(), "{what}: {raw:?} got through raw: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_error_message_is_cut_and_escaped() {
    let error = attack(hostile("huge-error", "", Grants::default()).await).await;
    assert!(matches!(error, Error::Plugin { .. }), "{error:?}");
    let message = error.to_string();
    assert_tamed(&message, "the error");
    assert!(
        message.contains("\\u{1b}[2J\\u{1b}[31mowned\\r\\nERROR forged line"),
        "{message}"
    );
    assert!(
        message.contains("bytes in all)"),
        "not marked as cut: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_quotes_the_plugins_output_escaped() {
    let error = attack(hostile("loud-panic", "", Grants::default()).await).await;
    assert!(matches!(error, Error::Crashed { .. }), "{error:?}");
    let message = error.to_string();
    assert_tamed(&message, "the crash report");
    assert!(message.contains("it printed: "), "{message}");
    assert!(message.contains("ERROR forged line"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_full_of_escapes_is_cut_and_escaped_in_every_field() {
    let backend = hostile("forged-lock", "", Grants::default()).await;
    let lock = backend
        .lock_info("ws/terraform.tfstate")
        .await
        .unwrap()
        .unwrap();
    for (field, text) in [
        ("ID", &lock.id),
        ("Operation", &lock.operation),
        ("Info", &lock.info),
        ("Who", &lock.who),
        ("Version", &lock.version),
        ("Created", &lock.created),
    ] {
        assert!(
            text.len() <= stateplug_sdk::text::UNTRUSTED_MAX + 64,
            "{field}"
        );
        assert_tamed(text, field);
    }
    let refused = backend
        .lock(
            "ws/terraform.tfstate",
            stateplug_runtime::LockInfo::default(),
        )
        .await
        .expect_err("the plugin says it is locked");
    let Error::Locked { holder, .. } = &refused else {
        panic!("{refused:?}");
    };
    assert_tamed(&holder.who, "the holder's Who");
    assert!(refused.to_string().len() < 3 * stateplug_sdk::text::UNTRUSTED_MAX);
    assert_tamed(&refused.to_string(), "the locked error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_version_token_is_refused() {
    let error = attack(hostile("huge-version", "", Grants::default()).await).await;
    assert!(matches!(error, Error::Plugin { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("a version token of 1048576 bytes that is longer than 1024"),
        "{message}"
    );
    assert_tamed(&message, "the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_text_is_cut_and_escaped() {
    let plugin = Plugin::from_file(common::runtime(), &common::test_plugin_path("hostile"))
        .await
        .unwrap();
    let paint = plugin
        .metadata()
        .config
        .iter()
        .find(|field| field.name == "paint")
        .expect("the hostile plugin declares `paint`");
    assert_tamed(&paint.description, "a config description");
    assert!(
        paint.description.ends_with("bytes in all)"),
        "{}",
        paint.description
    );
    assert_tamed(paint.default.as_deref().unwrap(), "a config default");
}

#[tokio::test(flavor = "current_thread")]
async fn a_plugin_cannot_forge_a_log_line() {
    let logged = logged_by("forged-log").await;
    let line = logged
        .lines()
        .find(|l| l.contains("innocent"))
        .expect("the plugin's message is logged");
    assert!(line.contains("owned\\r\\nERROR forged line"), "{line}");
    assert!(
        !logged.lines().any(|l| l.starts_with("ERROR forged")),
        "a forged line: {logged}"
    );
    assert_tamed(line, "the log line");
}
