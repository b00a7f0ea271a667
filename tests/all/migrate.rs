//! `stateplug migrate`, `export` and `import` as users run them: the binary, on backends named
//! in a `stateplug.toml` (local directories, and the s3 plugin on moto), checked the way a
//! user would check: the files on disk, `state pull`, `lock list`, the report and exit code.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::common::Server;
use crate::common::cli::{stateplug, stderr, succeeds};
use crate::common::moto::{self, Moto};
use crate::common::postgres::Postgres;

/// A backend of a test's configuration: its `[backends.NAME]` table, and the directory of a
/// local one.
struct Backend {
    name: String,
    table: String,
    dir: Option<PathBuf>,
}

/// The local plugin in `<root>/<name>`.
fn local(root: &Path, name: &str) -> Backend {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    Backend {
        name: name.to_string(),
        table: format!("plugin = \"local\"\ndirs = [\"./{name}\"]\n"),
        dir: Some(dir),
    }
}

/// The s3 plugin on a new moto bucket named `name`.
fn s3(moto: &Moto, name: &str) -> Backend {
    moto.create_bucket(name);
    let mut table = "plugin = \"s3\"\n".to_string();
    for (key, value) in moto::s3_settings(&moto.endpoint(), name, &[]) {
        table.push_str(&format!("{key} = \"{value}\"\n"));
    }
    Backend {
        name: name.to_string(),
        table,
        dir: None,
    }
}

/// The postgres plugin on a new database of the cluster `pg`, named `name`.
fn postgres(pg: &Postgres, name: &str, database: &str) -> Backend {
    let mut table = "plugin = \"postgres\"\n".to_string();
    for (key, value) in pg.settings(database) {
        table.push_str(&format!("{key} = \"{value}\"\n"));
    }
    Backend {
        name: name.to_string(),
        table,
        dir: None,
    }
}

impl Backend {
    fn dir(&self) -> &Path {
        self.dir.as_deref().expect("a local backend")
    }
}

/// Writes `<root>/stateplug.toml` with these backends.
fn configure(root: &Path, backends: &[&Backend]) {
    let text: String = backends
        .iter()
        .map(|b| format!("[backends.{}]\n{}\n", b.name, b.table))
        .collect();
    std::fs::write(root.join("stateplug.toml"), text).unwrap();
}

/// The state of `workspace` at `serial` (each workspace its own lineage).
fn state(workspace: &str, serial: u64) -> Vec<u8> {
    json!({"version": 4, "terraform_version": "1.9.0", "serial": serial,
           "lineage": format!("lineage-{workspace}"), "resources": [],
           "outputs": {"at": {"value": format!("{workspace}@{serial}"), "type": "string"}}})
    .to_string()
    .into_bytes()
}

fn push(root: &Path, backend: &str, workspace: &str, data: &[u8]) {
    let args = ["--backend", backend, "state", "push", workspace, "-"];
    succeeds(stateplug(root, &args, Some(data)));
}

/// Stores serials 1 to `serials(i)` of each workspace in `backend` (so it keeps that many
/// versions) as Terraform does: POSTs to a `stateplug serve` on it, a few at a time.
fn seed(root: &Path, backend: &str, names: &[String], serials: impl Fn(usize) -> u64 + Sync) {
    let server = Server::start(root, &["--backend", backend]);
    let serials = &serials;
    let address = server.url.strip_prefix("http://").unwrap();
    std::thread::scope(|scope| {
        for worker in 0..3 {
            scope.spawn(move || {
                for (i, name) in names.iter().enumerate().skip(worker).step_by(3) {
                    for serial in 1..=serials(i) {
                        post_state(address, name, &state(name, serial));
                    }
                }
            });
        }
    });
    assert!(server.stop().success());
}

/// Terraform's http backend storing a state: `POST /state/<workspace>`, answered 200.
fn post_state(address: &str, workspace: &str, body: &[u8]) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let head = format!(
        "POST /state/{workspace} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "POST {workspace}: {answer}"
    );
}

/// Every file under `dir`, by path relative to it.
fn walk(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(relative, path);
            }
        }
    }
    files
}

/// The states and kept versions a local backend holds (`<ws>/terraform.tfstate`,
/// `<ws>/history/<serial>-<ms>`), by path.
fn states_and_history(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir)
        .into_iter()
        .filter(|(path, _)| path.ends_with("/terraform.tfstate") || path.contains("/history/"))
        .map(|(path, file)| (path, std::fs::read(file).unwrap()))
        .collect()
}

/// Only the states of a local backend.
fn states(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = states_and_history(dir);
    all.retain(|path, _| path.ends_with("/terraform.tfstate"));
    all
}

/// Every file of a local backend with its bytes and modification time: what "writes
/// nothing" is checked against.
fn every_file(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    walk(dir)
        .into_iter()
        .map(|(path, file)| {
            let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
            (path, (std::fs::read(&file).unwrap(), modified))
        })
        .collect()
}

/// Requests that change a bucket, in moto's request log.
fn moto_writes(moto: &Moto) -> usize {
    moto.log()
        .lines()
        .filter(|line| {
            ["\"PUT ", "\"POST ", "\"DELETE "]
                .iter()
                .any(|m| line.contains(m))
        })
        .count()
}

/// `--json` report of a run: workspace → status.
fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let name = w["workspace"].as_str().unwrap().to_string();
            (name, w["status"].as_str().unwrap().to_string())
        })
        .collect()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}

fn migrate(root: &Path, from: &str, to: &str, extra: &[&str]) -> Output {
    let args = [&["--json", "migrate", "--from", from, "--to", to], extra].concat();
    stateplug(root, &args, None)
}

/// The locks held in a backend (`lock list --json`).
fn locks(root: &Path, backend: &str) -> Vec<Value> {
    let listed = succeeds(stateplug(
        root,
        &["--backend", backend, "--json", "lock", "list"],
        None,
    ));
    json_of(&listed).as_array().unwrap().clone()
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:02}")).collect()
}

/// Fifty workspaces (their kept versions too) go through every backend of the chain in turn
/// and come out byte for byte what went in; run again, every hop finds every workspace
/// identical and writes nothing.
#[test]
fn fifty_workspaces_migrate_local_to_postgres_to_s3_to_local_byte_identical_and_a_rerun_writes_nothing()
 {
    let Some(moto) = Moto::start_or_skip("migrate_chain_local_postgres_s3_local") else {
        return;
    };
    let Some(pg) = crate::common::postgres::shared() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // Each backend is migrated into the next; another backend is one more entry.
    let database = pg.fresh_database("migrate");
    // The last version token the database gave: unchanged when nothing was written.
    let last_version = || pg.sql(&database, "SELECT max(version) FROM stateplug.objects");
    let chain = [
        local(root, "first"),
        postgres(pg, "database", &database),
        s3(&moto, "middle"),
        local(root, "last"),
    ];
    configure(root, &chain.iter().collect::<Vec<_>>());
    let mut workspaces = names("ws", 49);
    workspaces.push("default".into());
    seed(root, "first", &workspaces, |i| 1 + (i % 3) as u64);
    let first = chain.first().unwrap();
    let last = chain.last().unwrap();
    let seeded = states_and_history(first.dir());
    let kept: usize = (0..50).map(|i| 1 + i % 3).sum();
    assert_eq!(seeded.len(), 50 + kept, "50 states and their kept versions");

    for hop in chain.windows(2) {
        let (from, to) = (&hop[0].name, &hop[1].name);
        let run = succeeds(migrate(root, from, to, &["--with-history"]));
        let report = json_of(&run);
        assert_eq!(report["copied"], 50, "{report}");
        assert!(statuses(&report).values().all(|s| s == "copied"));
        let summary = format!(
            "migrated 50 workspaces from {from} to {to}: 50 copied, 0 identical, 0 refused"
        );
        assert!(stderr(&run).contains(&summary), "{}", stderr(&run));
    }
    assert_eq!(states_and_history(last.dir()), seeded);
    let pulled = succeeds(stateplug(
        root,
        &["--backend", "middle", "state", "pull", "ws-07"],
        None,
    ));
    assert_eq!(pulled.stdout, state("ws-07", 2));

    let files_before: Vec<_> = [first, last].iter().map(|b| every_file(b.dir())).collect();
    let moto_before = moto_writes(&moto);
    let version_before = last_version();
    for hop in chain.windows(2) {
        let (from, to) = (&hop[0].name, &hop[1].name);
        let run = succeeds(migrate(root, from, to, &["--with-history"]));
        let report = json_of(&run);
        assert_eq!(
            (report["copied"].as_u64(), report["identical"].as_u64()),
            (Some(0), Some(50))
        );
        assert!(
            statuses(&report).values().all(|s| s == "identical"),
            "{report}"
        );
        assert!(
            stderr(&run).contains("0 copied, 50 identical, 0 refused"),
            "{}",
            stderr(&run)
        );
    }
    let files_after: Vec<_> = [first, last].iter().map(|b| every_file(b.dir())).collect();
    assert!(
        files_after == files_before,
        "a run with nothing to copy changed a file"
    );
    assert_eq!(
        moto_writes(&moto),
        moto_before,
        "a run with nothing to copy wrote to the bucket"
    );
    assert_eq!(
        last_version(),
        version_before,
        "a run with nothing to copy wrote to the database"
    );
}

/// SIGKILLed while it holds its locks, before it wrote or after (its log says where it is), a
/// migrate leaves them behind; the next run recognises them as left by a run that is gone,
/// takes them over, and completes.
#[test]
fn a_migrate_killed_mid_run_is_completed_by_the_next_run() {
    // Both locks taken, nothing written yet; then the state written, the locks not released.
    for kill_at in ["locks taken, copying", "state stored"] {
        killed_then_rerun(kill_at);
    }
}

fn killed_then_rerun(kill_at: &str) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (from, to) = (local(root, "src"), local(root, "dst"));
    configure(root, &[&from, &to]);
    seed(root, "src", &names("kill", 30), |_| 1);

    let mut left = Vec::new();
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stateplug"))
            .args(["-v", "migrate", "--from", "src", "--to", "dst"])
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut copied = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            copied |= line.starts_with("copied");
            // In the workspace after a copied one: kill it there.
            if copied && line.contains(kill_at) {
                child.kill().unwrap();
                break;
            }
        }
        drop(lines);
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "{kill_at}: the run ended before it was killed"
        );
        left = ["src", "dst"]
            .into_iter()
            .flat_map(|backend| locks(root, backend).into_iter().map(move |l| (backend, l)))
            .collect();
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "{kill_at}: no kill left a lock behind");
    for (_, lock) in &left {
        assert_eq!(
            lock["lock"]["Operation"], "OperationTypeStateplugMigrate",
            "{lock}"
        );
    }
    // The left locks keep others out, as any lock does.
    let (backend, lock) = &left[0];
    let held = lock["workspace"].as_str().unwrap();
    let push_args = ["--backend", backend, "state", "push", held, "-"];
    let blocked = stateplug(root, &push_args, Some(&state(held, 9)));
    assert_eq!(blocked.status.code(), Some(3), "{}", stderr(&blocked));

    let rerun = stateplug(root, &["migrate", "--from", "src", "--to", "dst"], None);
    let text = stderr(&rerun);
    assert!(rerun.status.success(), "{kill_at}: {text}");
    for (_, lock) in &left {
        let id = lock["lock"]["ID"].as_str().unwrap();
        assert!(
            text.contains(&format!("took over lock {id}")),
            "{kill_at}: {id}: {text}"
        );
    }
    assert!(text.contains("0 refused"), "{text}");
    if kill_at == "state stored" {
        // Written before the kill: nothing to copy, but its locks were still taken over.
        let line = text.lines().find(|l| l.contains(&format!(" {held}:")));
        assert!(line.is_some_and(|l| l.starts_with("identical")), "{text}");
    }
    assert!(
        locks(root, "src").is_empty() && locks(root, "dst").is_empty(),
        "{kill_at}"
    );
    assert_eq!(states(to.dir()), states(from.dir()));
    assert_eq!(states(to.dir()).len(), 30);
    // Each broken lock is on record, with who broke it.
    let audit = format!("{held}/lock-audit/");
    let records: Vec<_> = walk(from.dir())
        .into_iter()
        .chain(walk(to.dir()))
        .filter(|(path, _)| path.starts_with(&audit))
        .map(|(_, file)| std::fs::read_to_string(file).unwrap())
        .collect();
    assert!(
        !records.is_empty(),
        "no record of the broken lock of {held}"
    );
    assert!(
        records
            .iter()
            .all(|r| r.contains("stateplug migrate src -> dst")),
        "{records:?}"
    );
}

/// A destination workspace of another lineage, or with a higher serial, is never
/// overwritten: the workspace is refused by name with the reason, the others are copied, and
/// the run exits 1.
#[test]
fn a_lineage_conflict_is_refused_by_name_and_the_destination_kept() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (from, to) = (local(root, "src"), local(root, "dst"));
    configure(root, &[&from, &to]);
    seed(
        root,
        "src",
        &["app".into(), "net".into(), "db".into()],
        |_| 2,
    );
    let theirs = br#"{"version":4,"serial":1,"lineage":"someone-elses","resources":[]}"#;
    push(root, "dst", "app", theirs);
    push(root, "dst", "net", &state("net", 5));

    let run = migrate(root, "src", "dst", &[]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let text = stderr(&run);
    let app = text
        .lines()
        .find(|l| l.starts_with("refused      app:"))
        .expect(&text);
    assert!(
        app.contains("lineage differs") && app.contains("`someone-elses`"),
        "{app}"
    );
    assert!(app.contains("`lineage-app`"), "{app}");
    let net = text
        .lines()
        .find(|l| l.starts_with("refused      net:"))
        .expect(&text);
    assert!(
        net.contains("`dst` is newer: it holds serial 5, `src` serial 2"),
        "{net}"
    );
    assert!(text.contains("1 copied, 0 identical, 2 refused"), "{text}");
    assert!(text.contains("error: refused 2 of 3 workspaces"), "{text}");
    let report = json_of(&run);
    assert_eq!(statuses(&report)["app"], "refused");
    assert_eq!(statuses(&report)["db"], "copied");

    let pull = |ws: &str| {
        succeeds(stateplug(
            root,
            &["--backend", "dst", "state", "pull", ws],
            None,
        ))
        .stdout
    };
    assert_eq!(
        pull("app"),
        theirs,
        "the destination's state was overwritten"
    );
    assert_eq!(pull("net"), state("net", 5));
    assert_eq!(pull("db"), state("db", 2));
    assert!(locks(root, "src").is_empty() && locks(root, "dst").is_empty());
}

/// An archive carries each state and kept version verbatim with its SHA-256; imported, the
/// backend holds exactly what was exported. One byte changed in a member, nothing is loaded
/// and the error names that member.
#[test]
fn export_then_import_round_trips_and_a_tampered_archive_loads_nothing() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (from, to, third) = (local(root, "src"), local(root, "dst"), local(root, "third"));
    configure(root, &[&from, &to, &third]);
    let workspaces = names("ws", 5);
    seed(root, "src", &workspaces, |i| 1 + (i % 3) as u64);

    let exported = succeeds(stateplug(
        root,
        &["--backend", "src", "export", "all.tar", "--with-history"],
        None,
    ));
    assert!(
        stderr(&exported).contains("exported 5 workspaces (9 kept versions) from src to all.tar"),
        "{}",
        stderr(&exported)
    );
    let archive = std::fs::read(root.join("all.tar")).unwrap();
    let members = tar_members(&archive);
    let manifest: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let ws = &manifest["workspaces"][3];
    assert_eq!(
        (ws["name"].as_str(), ws["serial"].as_u64()),
        (Some("ws-03"), Some(1))
    );
    assert_eq!(ws["lineage"], "lineage-ws-03");
    let member = ws["member"].as_str().unwrap();
    assert_eq!(members[member], state("ws-03", 1));
    assert_eq!(
        ws["sha256"].as_str().unwrap(),
        hex::encode(stateplug_sdk::hash::sha256(&members[member]))
    );
    assert_eq!(ws["history"].as_array().unwrap().len(), 1);

    let import = |backend: &str, file: &str| {
        stateplug(
            root,
            &[
                "--json",
                "--backend",
                backend,
                "import",
                file,
                "--with-history",
            ],
            None,
        )
    };
    let imported = succeeds(import("dst", "all.tar"));
    assert_eq!(json_of(&imported)["copied"], 5);
    assert_eq!(states_and_history(to.dir()), states_and_history(from.dir()));
    let again = succeeds(import("dst", "all.tar"));
    assert!(
        statuses(&json_of(&again))
            .values()
            .all(|s| s == "identical")
    );

    // One byte of ws-04's state changed (its output's text, so still a valid state).
    let mut tampered = archive.clone();
    let text = b"ws-04@2";
    let at = tampered
        .windows(text.len())
        .position(|w| w == text)
        .unwrap();
    tampered[at + 3] = b'5';
    std::fs::write(root.join("tampered.tar"), &tampered).unwrap();
    let refused = import("third", "tampered.tar");
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused)
            .contains("member `states/ws-04.tfstate` (the state of workspace `ws-04`) has sha256"),
        "{}",
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains("nothing was imported"),
        "{}",
        stderr(&refused)
    );
    assert!(
        states_and_history(third.dir()).is_empty(),
        "a tampered archive loaded something"
    );
    let listed = succeeds(stateplug(
        root,
        &["--backend", "third", "--json", "workspace", "list"],
        None,
    ));
    assert_eq!(
        json_of(&listed).as_array().unwrap().len(),
        1,
        "only `default`, without state"
    );
}

fn tar_members(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut members = BTreeMap::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        members.insert(name, data);
    }
    members
}

/// A workspace locked by someone else, in the source or the destination, is refused naming
/// the holder; the rest is copied; when every refusal is a lock, the exit code is 3 (locked),
/// and once the locks are released a rerun completes.
#[test]
fn a_lock_held_by_someone_else_is_refused_naming_the_holder_and_exits_3() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (from, to) = (local(root, "src"), local(root, "dst"));
    configure(root, &[&from, &to]);
    let workspaces = names("ws", 3);
    seed(root, "src", &workspaces, |_| 1);
    let acquire = |backend: &str, ws: &str, who: &str| {
        let args = [
            "--backend",
            backend,
            "lock",
            "acquire",
            ws,
            "--who",
            who,
            "--info",
            "maintenance",
        ];
        String::from_utf8(succeeds(stateplug(root, &args, None)).stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    let alice = acquire("dst", "ws-00", "alice@ops");
    let bob = acquire("src", "ws-01", "bob@ci");

    let run = migrate(root, "src", "dst", &[]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let text = stderr(&run);
    let line = |ws: &str| {
        text.lines()
            .find(|l| l.contains(&format!(" {ws}:")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("ws-00").starts_with("refused")
            && line("ws-00").contains("locked in `dst` by alice@ops"),
        "{text}"
    );
    assert!(
        line("ws-01").starts_with("refused") && line("ws-01").contains("locked in `src` by bob@ci"),
        "{text}"
    );
    assert!(line("ws-02").starts_with("copied"), "{text}");
    let report = json_of(&run);
    assert_eq!(report["workspaces"][0]["locked_by"]["Who"], "alice@ops");
    assert_eq!(report["workspaces"][0]["locked_by"]["ID"], alice.as_str());
    assert!(
        !to.dir().join("ws-00/terraform.tfstate").exists(),
        "written through alice's lock"
    );
    // Their locks are still theirs; this run's are gone.
    let held: Vec<_> = [locks(root, "src"), locks(root, "dst")].concat();
    let holders: Vec<_> = held
        .iter()
        .map(|l| l["lock"]["Who"].as_str().unwrap())
        .collect();
    assert_eq!(holders, ["bob@ci", "alice@ops"]);

    succeeds(stateplug(
        root,
        &["--backend", "dst", "lock", "release", "ws-00", &alice],
        None,
    ));
    succeeds(stateplug(
        root,
        &["--backend", "src", "lock", "release", "ws-01", &bob],
        None,
    ));
    let rerun = succeeds(migrate(root, "src", "dst", &[]));
    assert_eq!(json_of(&rerun)["copied"], 2);
    assert_eq!(states(to.dir()), states(from.dir()));
}

/// `--dry-run` says what a run would do and changes nothing, not even a lock; mistakes in the
/// command are named with what to do.
#[test]
fn a_dry_run_writes_nothing_and_mistakes_are_named() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (from, to) = (local(root, "src"), local(root, "dst"));
    configure(root, &[&from, &to]);
    seed(root, "src", &names("ws", 3), |_| 1);
    push(root, "dst", "ws-02", &state("ws-02", 1));
    succeeds(stateplug(
        root,
        &[
            "--backend",
            "dst",
            "lock",
            "acquire",
            "ws-01",
            "--who",
            "carol@ops",
        ],
        None,
    ));
    let before = every_file(to.dir());

    let dry = migrate(root, "src", "dst", &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(3), "{}", stderr(&dry));
    let text = stderr(&dry);
    assert!(text.contains("would copy   ws-00"), "{text}");
    assert!(
        text.contains("would refuse ws-01") && text.contains("carol@ops"),
        "{text}"
    );
    assert!(text.contains("identical    ws-02"), "{text}");
    assert!(text.contains("nothing was written"), "{text}");
    assert_eq!(json_of(&dry)["dry_run"], true);
    assert!(
        every_file(to.dir()) == before,
        "a dry run changed the destination"
    );
    assert_eq!(locks(root, "src").len(), 0, "a dry run took a lock");

    let cases: &[(&[&str], &str)] = &[
        (
            &["migrate", "--from", "src", "--to", "nope"],
            "no backend named `nope`",
        ),
        (
            &["migrate", "--from", "src", "--to", "nope"],
            "configured: dst, src",
        ),
        (
            &["migrate", "--from", "src", "--to", "src"],
            "cannot be migrated onto itself",
        ),
        (
            &[
                "--backend",
                "dst",
                "migrate",
                "--from",
                "src",
                "--to",
                "dst",
            ],
            "with --from and --to",
        ),
        (
            &[
                "migrate",
                "--from",
                "src",
                "--to",
                "dst",
                "--workspace",
                "a/b",
            ],
            "workspace name `a/b` is not valid",
        ),
        (
            &["--backend", "dst", "import", "missing.tar"],
            "reading missing.tar",
        ),
        (
            &["--backend", "src", "export", "x.tar", "--workspace", "none"],
            "workspace `none` has no state in `src`",
        ),
    ];
    for (args, expected) in cases {
        let out = stateplug(root, args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(!root.join("x.tar").exists());
}
