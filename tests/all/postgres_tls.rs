//! The postgres plugin's `ssl_mode`s against a real PostgreSQL server with TLS on
//! (`common/postgres.rs`, [`postgres::shared_tls`]): its certificate, for 127.0.0.1 only, is
//! signed by a throwaway CA, and it rejects TCP connections without TLS (`hostnossl …
//! reject`), so every login it accepts is encrypted; its log says so of each one
//! (`connection authorized: … SSL enabled (protocol=…, cipher=…)`), and the tests read it.
//!
//! `require` and `prefer` encrypt; `verify-full` logs in with the CA as `ssl_root_cert` and
//! is refused with the public roots, with another CA of the same name, and for a name the
//! certificate is not for; `disable` is refused by the server, and `require` by a server
//! without TLS. Each refusal must say what to fix, and none may log in.

use std::os::unix::fs::MetadataExt;

use stateplug_runtime::{Backend, Error, Grants, HostGrant, Precondition};

use crate::common;
use crate::common::postgres::{self, Ca, Postgres};

/// The grant of the cluster's address, as the operator writes it.
fn granted(pg: &Postgres) -> Grants {
    let grant: HostGrant = format!("postgres://{}:{}", pg.host(), pg.port())
        .parse()
        .unwrap();
    Grants {
        allow_hosts: vec![grant],
        ..Grants::default()
    }
}

/// Opens the postgres plugin on `database` as backend `team`: the fixture's settings with
/// `ssl_mode` replaced, `ssl_root_cert` added when given, and `extra` settings.
async fn open(
    pg: &Postgres,
    database: &str,
    ssl_mode: &str,
    ssl_root_cert: Option<&str>,
    extra: &[(&str, &str)],
    grants: Grants,
) -> Result<Backend, Error> {
    let mut config = pg.settings(database);
    let mut set = |key: &str, value: &str| {
        config.retain(|(k, _)| k != key);
        config.push((key.to_string(), value.to_string()));
    };
    set("ssl_mode", ssl_mode);
    if let Some(pem) = ssl_root_cert {
        set("ssl_root_cert", pem);
    }
    for (key, value) in extra {
        set(key, value);
    }
    let plugin = common::builtin("postgres").await;
    plugin.open_named("team", config, grants).await
}

/// The server's `connection authorized` lines of the plugin's logins to `database`.
fn logins(pg: &Postgres, database: &str) -> Vec<String> {
    pg.log()
        .lines()
        .filter(|line| {
            line.contains("connection authorized:")
                && line.contains(&format!(" database={database} "))
                && line.contains("application_name=stateplug")
        })
        .map(str::to_string)
        .collect()
}

/// The plugin logged in to `database`, and the server says each of its logins is over TLS.
fn assert_logged_in_over_tls(pg: &Postgres, database: &str) {
    let logins = logins(pg, database);
    assert!(
        !logins.is_empty(),
        "no login of the plugin to {database} in the server's log:\n{}",
        pg.log()
    );
    eprintln!("{database}: {}", logins[0]);
    for login in &logins {
        assert!(
            login.contains("SSL enabled (protocol=TLSv1.") && login.contains("cipher="),
            "a login without TLS: {login}"
        );
    }
}

/// The plugin never logged in to `database` (the refusals must come before any login).
fn assert_no_login(pg: &Postgres, database: &str) {
    let logins = logins(pg, database);
    assert!(logins.is_empty(), "refused, but logged in: {logins:?}");
}

/// A write then a read through the plugin, and the row seen by the fixture's own psql
/// (which checks the server's certificate against the CA).
async fn write_and_read(pg: &Postgres, database: &str, backend: &Backend) {
    let path = "prod/terraform.tfstate";
    let version = backend
        .write(path, b"{\"serial\":1}".to_vec(), Precondition::Absent)
        .await
        .unwrap();
    let read = backend.read(path).await.unwrap();
    assert_eq!(read.data, b"{\"serial\":1}");
    assert_eq!(read.version, version);
    let stored = pg.sql(
        database,
        &format!("SELECT convert_from(data, 'UTF8') FROM stateplug.objects WHERE path = '{path}'"),
    );
    assert_eq!(stored, "{\"serial\":1}");
}

/// The refusal's text, after checking it names the backend and did not log in.
fn refused(pg: &Postgres, database: &str, opened: Result<Backend, Error>, what: &str) -> String {
    let refused = match opened {
        Ok(_) => panic!("{what}: opened"),
        Err(e) => e.to_string(),
    };
    eprintln!("{what}: {refused}");
    assert!(refused.contains("backend `team`"), "{what}: {refused}");
    assert_no_login(pg, database);
    refused
}

#[test]
fn the_tls_cluster_serves_its_certificate_over_tls_only() {
    let test = "the_tls_cluster_serves_its_certificate_over_tls_only";
    let Some(pg) = Postgres::start_with_tls_or_skip(test) else {
        return;
    };
    let tls = pg.tls().unwrap();
    // The key as the server insists: only its user may read it.
    let key = std::fs::metadata(&tls.key_file).unwrap();
    assert_eq!(key.mode() & 0o777, 0o600);
    assert_eq!(key.uid(), std::fs::metadata(pg.dir()).unwrap().uid());
    assert!(tls.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    // The fixture's psql checks the certificate against the CA (`verify-full`), and its
    // session is encrypted.
    assert_eq!(pg.sql("postgres", "SHOW ssl"), "on");
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ),
        "t"
    );
    let hba = std::fs::read_to_string(pg.dir().join("data/pg_hba.conf")).unwrap();
    assert!(
        hba.contains("hostnossl all all 127.0.0.1/32 reject"),
        "{hba}"
    );
    // A restart keeps it.
    pg.stop();
    pg.start_again();
    assert_eq!(pg.sql("postgres", "SHOW ssl"), "on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_and_reads_back_what_it_wrote() {
    let Some(pg) = postgres::shared_tls() else {
        return;
    };
    let database = pg.fresh_database("tls_require");
    let backend = open(pg, &database, "require", None, &[], granted(pg))
        .await
        .unwrap();
    write_and_read(pg, &database, &backend).await;
    assert_logged_in_over_tls(pg, &database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_ends_up_on_tls_when_the_server_offers_it() {
    let Some(pg) = postgres::shared_tls() else {
        return;
    };
    let database = pg.fresh_database("tls_prefer");
    let backend = open(pg, &database, "prefer", None, &[], granted(pg))
        .await
        .unwrap();
    write_and_read(pg, &database, &backend).await;
    assert_logged_in_over_tls(pg, &database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_servers_ca_logs_in() {
    let Some(pg) = postgres::shared_tls() else {
        return;
    };
    let ca = pg.tls().unwrap().ca_pem();
    let database = pg.fresh_database("tls_verify_full");
    let backend = open(pg, &database, "verify-full", Some(ca), &[], granted(pg))
        .await
        .unwrap();
    write_and_read(pg, &database, &backend).await;
    assert_logged_in_over_tls(pg, &database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_public_roots_refuses_a_private_ca() {
    let Some(pg) = postgres::shared_tls() else {
        return;
    };
    let database = pg.fresh_database("tls_public_roots");
    let opened = open(pg, &database, "verify-full", None, &[], granted(pg)).await;
    let text = refused(pg, &database, opened, "verify-full, public roots");
    assert!(text.contains("certificate"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_another_ca_of_the_same_name_is_refused() {
    let Some(pg) = postgres::shared_tls() else {
        return;
    };
    let other = Ca::generate();
    assert_ne!(other.pem(), pg.tls().unwrap().ca_pem());
    let database = pg.fresh_database("tls_other_ca");
    let opened = open(
        pg,
        &database,
        "verify-full",
        Some(other.pem()),
        &[],
        granted(pg),
    )
    .await;
    let text = refused(pg, &database, opened, "verify-full, another CA");
    assert!(text.contains("certificate"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_name_the_certificate_is_not_for() {
    let Some(pg) = postgres::shared_tls() else {
        return;
    };
    let ca = pg.tls().unwrap().ca_pem();
    // `localhost` reaches the same server, but the certificate is for 127.0.0.1 only.
    let by_name = || {
        let grants: Vec<HostGrant> = [
            format!("postgres://localhost:{}", pg.port()),
            "127.0.0.0/8".to_string(),
        ]
        .iter()
        .map(|g| g.parse().unwrap())
        .collect();
        Grants {
            allow_hosts: grants,
            ..Grants::default()
        }
    };
    let localhost = [("host", "localhost")];
    // The name is granted and reaches the server: `require`, which does not check the
    // certificate, logs in by it.
    let database = pg.fresh_database("tls_by_name");
    open(pg, &database, "require", None, &localhost, by_name())
        .await
        .unwrap();
    assert_logged_in_over_tls(pg, &database);
    // So the name is all `verify-full` refuses.
    let database = pg.fresh_database("tls_wrong_name");
    let opened = open(
        pg,
        &database,
        "verify-full",
        Some(ca),
        &localhost,
        by_name(),
    )
    .await;
    let text = refused(pg, &database, opened, "verify-full, host localhost");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("localhost"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_is_refused_by_a_server_that_requires_tls() {
    let Some(pg) = postgres::shared_tls() else {
        return;
    };
    let database = pg.fresh_database("tls_disable");
    let opened = open(pg, &database, "disable", None, &[], granted(pg)).await;
    let text = refused(pg, &database, opened, "disable");
    // The server's side of it: pg_hba's `hostnossl … reject`.
    let log = pg.log();
    assert!(
        log.lines()
            .any(|l| l.contains("pg_hba.conf rejects connection")
                && l.contains(&format!("database \"{database}\", no encryption"))),
        "{log}"
    );
    assert!(
        text.contains(&format!("user `{}`", pg.superuser())),
        "{text}"
    );
    // What the operator must know: the server wants TLS (its own words).
    assert!(text.contains("no encryption"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_is_refused_by_a_server_without_tls() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    assert!(pg.tls().is_none());
    let database = pg.fresh_database("tls_none");
    let opened = open(pg, &database, "require", None, &[], granted(pg)).await;
    let text = refused(pg, &database, opened, "require, server without TLS");
    assert!(text.contains("does not support TLS"), "{text}");
}
