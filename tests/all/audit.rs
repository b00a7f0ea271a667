//! The audit trail as users see it: the CLI's changes recorded with who, what and the serials,
//! `stateplug audit` (table and `--json`), retention, `GET /api/v1/audit` on a server, and
//! the trail carried by `export`/`import` and `migrate` with `--with-history`.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common::Server;
use crate::common::cli::{stateplug_with_env, stderr};

/// `stateplug <args>` in `dir` as the OS user `auditor`.
fn run(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    stateplug_with_env(dir, args, stdin, &[("USER", "auditor")])
}

/// stdout of a command that must succeed.
#[track_caller]
fn ok(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(dir, args, stdin);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn state(serial: u64) -> Vec<u8> {
    format!(r#"{{"version":4,"serial":{serial},"lineage":"L","resources":[]}}"#).into_bytes()
}

fn push(dir: &Path, backend: &[&str], workspace: &str, serial: u64) {
    let args = [backend, &["state", "push", workspace, "-"]].concat();
    ok(dir, &args, Some(&state(serial)));
}

/// `stateplug audit --json [args]`: one event a line.
fn events(dir: &Path, args: &[&str]) -> Vec<Value> {
    let args = [&["--json", "audit"], args].concat();
    ok(dir, &args, None)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// `(action, workspace, serial_before, serial_after)` of each event.
fn summary(events: &[Value]) -> Vec<(String, String, Value, Value)> {
    events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["workspace"].as_str().unwrap().to_string(),
                e["serial_before"].clone(),
                e["serial_after"].clone(),
            )
        })
        .collect()
}

fn event(
    action: &str,
    workspace: &str,
    before: Value,
    after: Value,
) -> (String, String, Value, Value) {
    (action.into(), workspace.into(), before, after)
}

/// Every change the CLI makes is recorded: what, to which workspace, the serials before and
/// after, the lock id, and `cli:<user>`; `stateplug audit` shows them newest first, all or
/// one workspace's, as a table or JSON lines, and `--limit` bounds them. None of it is a
/// workspace.
#[test]
fn cli_changes_are_in_the_audit_trail_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert!(events(dir, &[]).is_empty());
    push(dir, &[], "dev", 1);
    let lock = ok(dir, &["lock", "acquire", "dev"], None);
    let lock = lock.trim();
    ok(
        dir,
        &["state", "push", "dev", "-", "--lock-id", lock],
        Some(&state(2)),
    );
    ok(dir, &["lock", "release", "dev", lock], None);
    push(dir, &[], "prod", 5);
    ok(dir, &["state", "rollback", "dev", "1"], None);
    let broken = ok(dir, &["lock", "acquire", "dev"], None);
    let broken = broken.trim();
    ok(dir, &["lock", "force-unlock", "dev"], None);
    ok(dir, &["workspace", "delete", "dev", "--force"], None);

    let all = events(dir, &[]);
    let null = Value::Null;
    assert_eq!(
        summary(&all),
        [
            event("delete", "dev", 3.into(), null.clone()),
            event("force-unlock", "dev", null.clone(), null.clone()),
            event("lock", "dev", null.clone(), null.clone()),
            event("rollback", "dev", 2.into(), 3.into()),
            event("write", "prod", null.clone(), 5.into()),
            event("unlock", "dev", null.clone(), null.clone()),
            event("write", "dev", 1.into(), 2.into()),
            event("lock", "dev", null.clone(), null.clone()),
            event("write", "dev", null.clone(), 1.into()),
        ]
    );
    for e in &all {
        assert_eq!(e["actor"], "cli:auditor", "{e}");
        assert_eq!(e["client"], Value::Null, "{e}");
        humantime::parse_rfc3339(e["at"].as_str().unwrap()).unwrap();
    }
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first, "ids sort by time");
    assert_eq!(all[1]["lock_id"], broken);
    assert_eq!(all[5]["lock_id"], lock);
    assert_eq!(all[6]["lock_id"], lock, "the write made under the lock");

    let prod = events(dir, &["prod"]);
    assert_eq!(
        summary(&prod),
        [event("write", "prod", null.clone(), 5.into())]
    );
    assert_eq!(events(dir, &["--limit", "2"]), all[..2]);
    assert_eq!(events(dir, &["dev", "--limit", "1"]), all[..1]);
    assert!(events(dir, &["never"]).is_empty());

    let table = ok(dir, &["audit", "dev"], None);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 8, "{table}");
    assert!(lines[0].starts_with("WHEN"), "{table}");
    for (line, e) in lines[1..]
        .iter()
        .zip(all.iter().filter(|e| e["workspace"] == "dev"))
    {
        assert!(line.starts_with(e["at"].as_str().unwrap()), "{line}");
        assert!(line.contains(e["action"].as_str().unwrap()), "{line}");
        assert!(line.contains("cli:auditor"), "{line}");
    }
    assert!(
        lines[1].contains(" delete       dev "),
        "in columns: {}",
        lines[1]
    );
    assert!(lines[1].contains("3→-"), "{}", lines[1]);
    assert!(lines[4].contains("2→3"), "{}", lines[4]);
    assert!(lines[2].ends_with(broken), "{}", lines[2]);

    let out = run(dir, &["audit", "--limit", "0"], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a usage error: {}",
        stderr(&out)
    );
    let out = run(dir, &["audit", "a/b"], None);
    assert!(
        stderr(&out).contains("workspace name `a/b` is not valid"),
        "{}",
        stderr(&out)
    );

    // The trail is in no workspace's way.
    let listed: Value =
        serde_json::from_str(&ok(dir, &["--json", "workspace", "list"], None)).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "prod"]);
    assert!(ok(dir, &["object", "ls"], None).is_empty());
}

/// With `audit_retention = 3`, only the 3 newest events of a workspace are kept, in the
/// store too; another workspace keeps its own.
#[test]
fn retention_keeps_the_newest_events() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("stateplug.toml"),
        "[server]\naudit_retention = 3\n",
    )
    .unwrap();
    push(dir, &[], "other", 1);
    for serial in 1..=5 {
        push(dir, &[], "dev", serial);
    }
    let dev = events(dir, &["dev"]);
    let after: Vec<&Value> = dev.iter().map(|e| &e["serial_after"]).collect();
    assert_eq!(after, [5, 4, 3]);
    assert_eq!(events(dir, &["other"]).len(), 1);
    let kept = std::fs::read_dir(dir.join(".stateplug/state/~audit/dev")).unwrap();
    assert_eq!(kept.count(), 3, "pruned in the store");

    std::fs::write(
        dir.join("stateplug.toml"),
        "[server]\naudit_retention = 0\n",
    )
    .unwrap();
    let out = run(dir, &["audit"], None);
    assert!(
        stderr(&out).contains("`server.audit_retention` = `0` is not a whole number of at least 1"),
        "{}",
        stderr(&out)
    );
}

/// `GET /api/v1/audit` on a server of the same store answers what the CLI recorded, all or
/// one workspace's, bounded by `limit`; a bad parameter gets 400 naming it.
#[tokio::test]
async fn the_server_answers_the_clis_trail() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    push(dir, &[], "dev", 1);
    push(dir, &[], "dev", 2);
    push(dir, &[], "prod", 1);
    let cli = events(dir, &[]);
    let server = Server::start(dir, &[]);
    let client = reqwest::Client::new();
    let get = |query: &str| {
        let request = client.get(format!("{}/api/v1/audit{query}", server.url));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let (status, body) = get("").await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["events"].as_array().unwrap(), &cli);
    let (_, body) = get("?workspace=dev&limit=1").await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["events"].as_array().unwrap(), &cli[1..2]);
    let (_, body) = get("?workspace=prod").await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["events"].as_array().unwrap(), &cli[..1]);
    for (query, named) in [
        ("?limit=0", "`limit`"),
        ("?limit=1001", "`limit`"),
        ("?wrkspace=dev", "`wrkspace`"),
        ("?workspace=dev&workspace=prod", "given twice"),
        ("?workspace=..", "not valid"),
    ] {
        let (status, body) = get(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(named), "{query}: {body}");
    }
}

/// `export --with-history` puts each workspace's trail in the archive and `import
/// --with-history` adds it to the destination's, next to the import's own write; importing
/// again writes nothing. `migrate --with-history` carries it too; without it, only the
/// destination's own write is recorded.
#[test]
fn export_import_and_migrate_carry_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = String::new();
    for name in ["src", "dst", "third", "plain"] {
        config.push_str(&format!(
            "[backends.{name}]\nplugin = \"local\"\ndirs = [\"./{name}\"]\n"
        ));
        std::fs::create_dir_all(dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("stateplug.toml"), config).unwrap();
    let src = ["--backend", "src"];
    push(dir, &src, "dev", 1);
    let lock = ok(dir, &["--backend", "src", "lock", "acquire", "dev"], None);
    ok(
        dir,
        &["--backend", "src", "lock", "release", "dev", lock.trim()],
        None,
    );
    push(dir, &src, "dev", 2);
    let trail = events(dir, &["--backend", "src", "dev"]);
    assert_eq!(trail.len(), 4);

    ok(
        dir,
        &["--backend", "src", "export", "all.tar", "--with-history"],
        None,
    );
    let archive = std::fs::read(dir.join("all.tar")).unwrap();
    let mut names = Vec::new();
    for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
        names.push(
            entry
                .unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
    }
    let in_archive = names.iter().filter(|n| n.starts_with("audit/dev/")).count();
    assert_eq!(in_archive, 4, "{names:?}");

    let import = [
        "--json",
        "--backend",
        "dst",
        "import",
        "all.tar",
        "--with-history",
    ];
    let imported = run(dir, &import, None);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let report: Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert_eq!(report["workspaces"][0]["audit_events"], 4, "{report}");
    let dst = events(dir, &["--backend", "dst", "dev"]);
    assert_eq!(dst[1..], trail[..], "the source's events, as they were");
    assert_eq!(
        summary(&dst[..1]),
        [event("write", "dev", Value::Null, 2.into())],
        "the import's own write, newest"
    );
    let again = run(dir, &import, None);
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["identical"], 1, "{report}");
    assert_eq!(events(dir, &["--backend", "dst", "dev"]), dst);

    let migrate = [
        "migrate",
        "--from",
        "src",
        "--to",
        "third",
        "--with-history",
    ];
    ok(dir, &migrate, None);
    let third = events(dir, &["--backend", "third", "dev"]);
    assert_eq!(third[1..], trail[..]);
    assert_eq!(third[0]["action"], "write");
    ok(dir, &["migrate", "--from", "src", "--to", "plain"], None);
    let plain = events(dir, &["--backend", "plain", "dev"]);
    assert_eq!(
        summary(&plain),
        [event("write", "dev", Value::Null, 2.into())]
    );
}
