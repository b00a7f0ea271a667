//! The throwaway PostgreSQL server of `common/postgres.rs` itself: it answers over 127.0.0.1
//! with the superuser's password only, logs connections, stops and starts again on the same
//! port with its data, and leaves nothing behind when the test process ends, killed or not.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::postgres::{self, Postgres};

#[test]
fn answers_with_the_password_only_and_logs_connections() {
    let Some(pg) = Postgres::start_or_skip("answers_with_the_password_only_and_logs_connections")
    else {
        return;
    };
    assert!(!pg.log().contains("connection authorized"), "{}", pg.log());
    assert_eq!(pg.sql("postgres", "select 1"), "1");
    assert!(
        pg.log()
            .contains("connection authorized: user=postgres database=postgres")
    );
    assert!(pg.log().contains("connection received: host=127.0.0.1"));

    let refused = pg.psql(pg.superuser(), "not-the-password", "postgres", "select 1");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );

    // A role of the fixture's making, on a database of its own.
    pg.create_user("alice", "it's a secret");
    pg.create_database_owned_by("alices", "alice");
    let as_alice = pg.psql(
        "alice",
        "it's a secret",
        "alices",
        "create table t (a int); insert into t values (7); select a, current_user from t",
    );
    assert!(as_alice.status.success(), "{as_alice:?}");
    assert_eq!(String::from_utf8_lossy(&as_alice.stdout), "7|alice\n");
    let settings = pg.settings("alices");
    let keys: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "host", "port", "database", "username", "password", "ssl_mode"
        ]
    );
}

#[test]
fn stops_and_starts_again_on_the_same_port_with_its_data() {
    let Some(pg) = Postgres::start_or_skip("stops_and_starts_again_on_the_same_port_with_its_data")
    else {
        return;
    };
    let db = pg.fresh_database("stop-start");
    pg.sql(
        &db,
        "create table t (a text); insert into t values ('kept')",
    );

    pg.stop();
    let failed = pg.psql(pg.superuser(), pg.password(), &db, "select 1");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(TcpStream::connect((pg.host(), pg.port())).is_err());

    pg.start_again();
    assert_eq!(pg.sql(&db, "select a from t"), "kept");
}

/// Set in the process the next test starts: `exit` or `kill`.
const CHILD: &str = "STATEPLUG_TEST_POSTGRES_CHILD";
const TEST: &str = "postgres_fixture::the_shared_cluster_goes_away_with_its_process";

#[test]
fn the_shared_cluster_goes_away_with_its_process() {
    if let Some(mode) = std::env::var_os(CHILD) {
        let pg = postgres::shared().expect("PostgreSQL is installed");
        let db = pg.fresh_database("child");
        assert_eq!(pg.sql(&db, "select 2"), "2");
        println!("SHARED_CLUSTER {} {}", pg.port(), pg.dir().display());
        if mode == "kill" {
            std::thread::sleep(Duration::from_secs(600));
        }
        return;
    }
    if postgres::installed_or_skip(TEST).is_none() {
        return;
    }
    for mode in ["exit", "kill"] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, mode)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut cluster = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            // With one test thread libtest prints `test NAME ... ` before the test's output.
            if let Some((_, rest)) = line.split_once("SHARED_CLUSTER ") {
                let (port, dir) = rest.split_once(' ').unwrap();
                cluster = Some((port.parse::<u16>().unwrap(), dir.to_string()));
                if mode == "kill" {
                    child.kill().unwrap();
                    break;
                }
            }
        }
        let status = child.wait().unwrap();
        let (port, dir) = cluster.unwrap_or_else(|| panic!("{mode}: no cluster ({status})"));
        // On exit the server is stopped before the process ends; killed, the watchdog sees
        // the process go and stops it within moments.
        let patience = if mode == "exit" { 0 } else { 30 };
        let deadline = Instant::now() + Duration::from_secs(patience);
        loop {
            let left = postgres::processes_mentioning(&dir);
            let listening = TcpStream::connect(("127.0.0.1", port)).is_ok();
            let gone = left.is_empty() && !listening && !Path::new(&dir).exists();
            if gone {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{mode}: left behind: {left:?}, listening: {listening}, {dir} exists: {}",
                Path::new(&dir).exists()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if mode == "exit" {
            assert!(status.success(), "{status}");
        }
    }
}
