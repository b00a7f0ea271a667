//! The postgres plugin against a real PostgreSQL server (`common/postgres.rs`), through the
//! host's database capability: the conformance suite, the grant (a backend reaches only the
//! database it was granted, and one granted nothing never connects), the errors a user meets
//! (a wrong password, a missing privilege, the server gone and back), and `stateplug serve`
//! on it: Terraform's workflow and three replicas on one database.

use std::sync::atomic::{AtomicUsize, Ordering};

use stateplug_runtime::{Backend, Error, Grants, HostGrant, Precondition, conformance};

use crate::common::postgres::{self, Postgres};
use crate::common::{self, Server};

/// The grant of the cluster's address, as the operator writes it.
fn grant(pg: &Postgres) -> HostGrant {
    format!("postgres://{}:{}", pg.host(), pg.port())
        .parse()
        .unwrap()
}

fn granted(pg: &Postgres) -> Grants {
    Grants {
        allow_hosts: vec![grant(pg)],
        ..Grants::default()
    }
}

/// Opens the postgres plugin on `database` with `extra` settings, as backend `name`.
async fn open(
    pg: &Postgres,
    database: &str,
    extra: &[(&str, &str)],
    grants: Grants,
) -> Result<Backend, Error> {
    let mut config = pg.settings(database);
    for (key, value) in extra {
        config.retain(|(k, _)| k != key);
        config.push((key.to_string(), value.to_string()));
    }
    let plugin = common::builtin("postgres").await;
    plugin.open_named("team", config, grants).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plugin_conforms() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("conformance");
    let plugin = common::builtin("postgres").await;
    // Each case gets tables of its own in one database: a prefix per case.
    let cases = AtomicUsize::new(0);
    let report = conformance::run(|| {
        let mut config = pg.settings(&database);
        let case = cases.fetch_add(1, Ordering::Relaxed);
        config.push(("table_prefix".into(), format!("case{case}_")));
        plugin.open(config, granted(pg))
    })
    .await;
    common::assert_conforms("postgres", &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_sit_in_the_schema_as_rows_with_versions() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("rows");
    let backend = open(pg, &database, &[], granted(pg)).await.unwrap();
    let v1 = backend
        .write(
            "prod/terraform.tfstate",
            b"{}".to_vec(),
            Precondition::Absent,
        )
        .await
        .unwrap();
    let v2 = backend
        .write(
            "prod/terraform.tfstate",
            b"{\"serial\":2}".to_vec(),
            Precondition::VersionIs(v1.clone()),
        )
        .await
        .unwrap();
    assert_ne!(v1, v2);
    let stored = pg.sql(
        &database,
        "SELECT path, convert_from(data, 'UTF8'), version FROM stateplug.objects",
    );
    assert_eq!(
        stored.trim(),
        format!("prod/terraform.tfstate|{{\"serial\":2}}|{v2}")
    );
    // A version token that was replaced no longer matches, even after a delete and re-create.
    backend
        .delete("prod/terraform.tfstate", Precondition::None)
        .await
        .unwrap();
    backend
        .write(
            "prod/terraform.tfstate",
            b"{}".to_vec(),
            Precondition::Absent,
        )
        .await
        .unwrap();
    let stale = backend
        .write(
            "prod/terraform.tfstate",
            b"x".to_vec(),
            Precondition::VersionIs(v1),
        )
        .await;
    assert!(
        matches!(stale, Err(Error::PreconditionFailed { .. })),
        "{stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_reaches_only_the_database_it_was_granted() {
    let Some(pg) = Postgres::start_or_skip("a_backend_reaches_only_the_database_it_was_granted")
    else {
        return;
    };
    let database = pg.fresh_database("grants");
    let connections = || pg.log().matches("connection received").count();
    let before = connections();

    // Granted nothing: refused before any connection, naming the address.
    let nothing = open(&pg, &database, &[], Grants::default()).await;
    let refused = nothing
        .err()
        .expect("a backend granted nothing opens")
        .to_string();
    let address = format!("{}:{}", pg.host(), pg.port());
    assert!(
        refused.contains("denied") && refused.contains(&address),
        "{refused}"
    );
    assert!(refused.contains("backend `team`"), "{refused}");

    // Granted another database (another port, or the same host by name): refused too.
    let other: HostGrant = format!("postgres://{}:{}", pg.host(), pg.port() + 1)
        .parse()
        .unwrap();
    for grants in [
        vec![other],
        vec![format!("{}:{}", pg.host(), pg.port()).parse().unwrap()],
        vec![
            format!("https://{}:{}", pg.host(), pg.port())
                .parse()
                .unwrap(),
        ],
    ] {
        let shown: Vec<String> = grants.iter().map(ToString::to_string).collect();
        let grants = Grants {
            allow_hosts: grants,
            ..Grants::default()
        };
        let refused = open(&pg, &database, &[], grants).await.err();
        let refused = refused.unwrap_or_else(|| panic!("{shown:?} reached the database"));
        assert!(
            refused.to_string().contains(&address),
            "{shown:?}: {refused}"
        );
    }
    // A name that resolves to loopback needs its range granted by address.
    let by_name = open(&pg, &database, &[("host", "localhost")], {
        let grants: HostGrant = format!("postgres://localhost:{}", pg.port())
            .parse()
            .unwrap();
        Grants {
            allow_hosts: vec![grants],
            ..Grants::default()
        }
    })
    .await;
    let refused = by_name
        .err()
        .expect("localhost reached without its range")
        .to_string();
    assert!(refused.contains("loopback"), "{refused}");
    assert_eq!(
        connections(),
        before,
        "a refused backend connected:\n{}",
        pg.log()
    );

    // The grant itself connects.
    open(&pg, &database, &[], granted(&pg)).await.unwrap();
    assert!(connections() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_names_the_backend_and_the_user() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("login");
    pg.create_user("alice_login", "right");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[backends.team]\nplugin = \"postgres\"\nhost = \"{}\"\nport = {}\ndatabase = \"{database}\"\n\
         username = \"alice_login\"\npassword = \"wrong\"\nssl_mode = \"disable\"\n",
        pg.host(),
        pg.port()
    );
    std::fs::write(dir.path().join("stateplug.toml"), config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stateplug"))
        .args(["workspace", "list"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("backend `team`"), "{stderr}");
    assert!(stderr.contains("user `alice_login`"), "{stderr}");
    // The server's own reason, and what to check.
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("check `username` and `password`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the password was printed: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_create_is_told_which_privilege() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("privilege");
    pg.create_user("bob_no_create", "secret");
    let settings = [("username", "bob_no_create"), ("password", "secret")];
    let refused = open(pg, &database, &settings, granted(pg)).await.err();
    let refused = refused
        .expect("a user without CREATE made the schema")
        .to_string();
    assert!(refused.contains("access denied"), "{refused}");
    assert!(
        refused.contains(&format!(
            "GRANT CREATE ON DATABASE \"{database}\" TO \"bob_no_create\""
        )),
        "{refused}"
    );
    // Once an administrator made the tables and granted their use, the same user works.
    let admin = open(pg, &database, &[], granted(pg)).await.unwrap();
    drop(admin);
    pg.sql(
        &database,
        "GRANT USAGE ON SCHEMA stateplug TO bob_no_create; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA stateplug TO bob_no_create; \
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA stateplug TO bob_no_create;",
    );
    let bob = open(pg, &database, &settings, granted(pg)).await.unwrap();
    bob.write("a", b"1".to_vec(), Precondition::Absent)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gone_is_unavailable_and_the_first_call_after_it_is_back_works() {
    let test = "the_server_gone_is_unavailable_and_the_first_call_after_it_is_back_works";
    let Some(pg) = Postgres::start_or_skip(test) else {
        return;
    };
    let database = pg.fresh_database("restart");
    let backend = open(&pg, &database, &[], granted(&pg)).await.unwrap();
    backend
        .write("a", b"1".to_vec(), Precondition::None)
        .await
        .unwrap();

    pg.stop();
    let gone = backend.read("a").await;
    assert!(matches!(gone, Err(Error::Unavailable { .. })), "{gone:?}");

    pg.start_again();
    // The pooled connections died with the server: discarded, not handed out.
    let back = backend
        .read("a")
        .await
        .expect("the first call after the restart");
    assert_eq!(back.data, b"1");
    backend
        .write("a", b"2".to_vec(), Precondition::None)
        .await
        .unwrap();
}

/// `stateplug serve` on the postgres plugin, configured in `dir` as backend `team`.
fn serve(pg: &Postgres, database: &str, dir: &std::path::Path, extra: &str) -> Server {
    let config = format!(
        "[backends.team]\nplugin = \"postgres\"\nhost = \"{}\"\nport = {}\ndatabase = \"{database}\"\n\
         username = \"{}\"\npassword = \"{}\"\nssl_mode = \"disable\"\n{extra}",
        pg.host(),
        pg.port(),
        pg.superuser(),
        pg.password()
    );
    std::fs::write(dir.join("stateplug.toml"), config).unwrap();
    Server::start(dir, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_uses_the_postgres_plugin() {
    let test = "terraform_uses_the_postgres_plugin";
    let Some(terraform) = crate::common::terraform::terraform_or_skip(test) else {
        return;
    };
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("terraform");
    let dir = tempfile::tempdir().unwrap();
    let server = serve(pg, &database, dir.path(), "");
    let last = crate::terraform::terraform_workflow(&terraform, &server, None).await;
    let stored = pg.sql(
        &database,
        "SELECT convert_from(data, 'UTF8') FROM stateplug.objects \
         WHERE path = 'prod/terraform.tfstate'",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).unwrap(),
        last
    );
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_database_keep_one_lock_holder_and_every_update() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("replicas");
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Server> = (0..crate::replicas::REPLICAS)
        .map(|_| serve(pg, &database, dir.path(), "history = 0\n"))
        .collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    crate::replicas::keep_one_lock_holder_and_every_update(&urls).await;
}

#[test]
fn inspect_shows_the_capability_and_config_show_masks_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[backends.team]\nplugin = \"postgres\"\nhost = \"db.internal\"\n\
                  database = \"tf\"\nusername = \"u\"\npassword = \"hunter2-secret\"\n";
    std::fs::write(dir.path().join("stateplug.toml"), config).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stateplug"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let inspected = run(&["plugins", "inspect", "postgres"]);
    assert!(inspected.contains("postgres yes"), "{inspected}");
    assert!(
        inspected.contains("stateplug:backend/postgres@0.1.0"),
        "{inspected}"
    );
    let shown = run(&["config", "show"]);
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(shown.contains("password = \"(secret)\""), "{shown}");
    assert!(
        shown.contains("postgres://db.internal:5432"),
        "the default grant is shown: {shown}"
    );
    // The s3 plugin, which does not use a database, does not import the interface.
    let s3 = run(&["plugins", "inspect", "s3"]);
    assert!(s3.contains("postgres no"), "{s3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_instances_share_at_most_max_connections() {
    let Some(pg) = postgres::shared() else {
        return;
    };
    let database = pg.fresh_database("pooled");
    let grants = Grants {
        instances: Some(8),
        max_connections: 2,
        ..granted(pg)
    };
    let backend = open(pg, &database, &[], grants).await.unwrap();
    let writers: Vec<_> = (0..32)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let path = format!("w{i}");
                backend
                    .write(&path, vec![7; 4096], Precondition::Absent)
                    .await
                    .unwrap();
                backend.read(&path).await.unwrap()
            })
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.await.unwrap().data, vec![7; 4096]);
    }
    assert!(backend.instances() == 8);
    // Every login the server saw for this database: the pool's two, reused by every call.
    let logins = pg
        .log()
        .lines()
        .filter(|l| {
            l.contains("connection authorized") && l.contains(&format!("database={database}"))
        })
        .count();
    assert!((1..=2).contains(&logins), "{logins} logins:\n{}", pg.log());
}
