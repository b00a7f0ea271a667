//! The `stateplug` binary on its embedded default: what a user types, what they see.

use crate::common;
use crate::common::cli::{stateplug, stderr};

#[test]
fn plugins_list_describes_the_builtins() {
    let dir = tempfile::tempdir().unwrap();
    let text = stateplug(dir.path(), &["plugins", "list"], None);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("memory 0.1.0 (stateplug:backend@0.1.0, built-in `memory`)"),
        "{text}"
    );
    assert!(text.contains("root [default \"/data\"]"), "{text}");

    let json = stateplug(dir.path(), &["plugins", "list", "--json"], None);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "memory", "postgres", "s3"]);
    assert_eq!(list[1]["sha256"].as_str().unwrap().len(), 64);
    // Each built-in imports only the capability it needs: s3 reaches out over HTTP only,
    // postgres only through the database interface.
    let capabilities = |i: usize| &list[i]["capabilities"];
    assert_eq!(capabilities(0)["filesystem"], true);
    assert_eq!(capabilities(0)["http"], false);
    assert_eq!(capabilities(0)["postgres"], false);
    assert_eq!(capabilities(2)["postgres"], true);
    assert_eq!(capabilities(2)["http"], false);
    assert_eq!(capabilities(2)["filesystem"], false);
    assert_eq!(capabilities(3)["http"], true);
    assert_eq!(capabilities(3)["postgres"], false);
    assert_eq!(capabilities(3)["filesystem"], false);
    assert_eq!(capabilities(3)["sockets"], false);
    assert!(
        !dir.path().join(".stateplug").exists(),
        "listing plugins created the data dir"
    );
}

#[test]
fn push_then_pull_round_trips_on_the_default_backend() {
    let dir = tempfile::tempdir().unwrap();
    let state = br#"{"version":4,"serial":3,"lineage":"l-1","outputs":{}}"#;
    std::fs::write(dir.path().join("s.tfstate"), state).unwrap();

    let pushed = stateplug(dir.path(), &["state", "push", "dev", "s.tfstate"], None);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let pulled = stateplug(dir.path(), &["state", "pull", "dev"], None);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert_eq!(pulled.stdout, state);
    // Stored where the default says, readable without stateplug.
    let on_disk = std::fs::read(dir.path().join(".stateplug/state/dev/terraform.tfstate")).unwrap();
    assert_eq!(on_disk, state);

    let other = br#"{"version":4,"serial":1,"lineage":"l-2"}"#;
    let from_stdin = stateplug(dir.path(), &["state", "push", "default", "-"], Some(other));
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    assert_eq!(
        stateplug(dir.path(), &["state", "pull"], None).stdout,
        other
    );
}

#[test]
fn bad_input_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    const GOOD: &[u8] = br#"{"version":4,"serial":1,"lineage":"L"}"#;
    let good = stateplug(dir.path(), &["state", "push", "dev", "-"], Some(GOOD));
    assert!(good.status.success(), "{}", stderr(&good));

    let cases: &[(&[&str], &[u8], &str)] = &[
        (
            &["state", "push", "dev", "-"],
            b"not json",
            "workspace `dev`: refused: the state is not valid JSON",
        ),
        (
            &["state", "push", "dev", "-"],
            br#"{"version":4,"serial":0,"lineage":"L"}"#,
            "serial 0 is lower than the stored serial 1",
        ),
        (
            &["state", "push", "dev", "-"],
            b"{}",
            "workspace `dev`: refused: the state has no `version`",
        ),
        (
            &["state", "push", "dev", "-"],
            br#"{"version":4,"serial":2}"#,
            "the state has no `lineage`",
        ),
        (
            &["state", "push", "--force", "dev", "-"],
            br#"{"version":4,"lineage":"other"}"#,
            "the state has no `serial`",
        ),
        (
            &["state", "rollback", "dev", "7"],
            b"",
            "no kept version has serial 7",
        ),
        (
            &["workspace", "delete", "default"],
            b"",
            "the default workspace cannot be deleted",
        ),
        (
            &["lock", "release", "dev", "nobody"],
            b"",
            "workspace `dev` is not locked",
        ),
        (
            &["-c", "memory=lots", "state", "pull"],
            b"",
            "`memory` = `lots` is not a size",
        ),
        (
            &["--plugin", "nope", "state", "pull"],
            b"",
            "there is no plugin of that name; available: local, memory",
        ),
        (
            &["--plugin", "memory", "-c", "colour=red", "state", "pull"],
            b"",
            "unknown key `colour`",
        ),
        (
            &["state", "push", "..", "-"],
            b"{}",
            "workspace name `..` is not valid",
        ),
        (
            &["state", "push", "a/b", "-"],
            b"{}",
            "workspace name `a/b` is not valid",
        ),
        (
            &["state", "push", "dev", "missing.json"],
            b"",
            "reading missing.json",
        ),
        (
            &["state", "pull", "nothing-here"],
            b"",
            "workspace `nothing-here` has no state yet",
        ),
    ];
    for (args, input, expected) in cases {
        let out = stateplug(dir.path(), args, Some(input));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let usage = stateplug(dir.path(), &["state", "frobnicate"], None);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");

    let pulled = stateplug(dir.path(), &["state", "pull", "dev"], None);
    assert_eq!(pulled.stdout, GOOD, "a refused push changed the state");
}

#[test]
fn locks_history_and_rollback_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let push = |serial: u32| {
        let state = format!("{{\"version\":4,\"serial\":{serial},\"lineage\":\"L\"}}");
        stateplug(
            dir.path(),
            &["state", "push", "dev", "-"],
            Some(state.as_bytes()),
        )
    };
    assert!(push(1).status.success());
    assert!(push(2).status.success());

    let acquired = stateplug(
        dir.path(),
        &["lock", "acquire", "dev", "--who", "maint@ops"],
        None,
    );
    assert!(acquired.status.success(), "{}", stderr(&acquired));
    let id = String::from_utf8(acquired.stdout)
        .unwrap()
        .trim()
        .to_string();
    let refused = push(3);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "locked exits 3: {}",
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains("locked by maint@ops"),
        "{}",
        stderr(&refused)
    );
    let listed = stateplug(dir.path(), &["lock", "list", "--json"], None);
    let locks: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(locks[0]["lock"]["ID"], id.as_str());
    let with_id = stateplug(
        dir.path(),
        &["state", "push", "dev", "-", "--lock-id", &id],
        Some(b"{\"version\":4,\"serial\":3,\"lineage\":\"L\"}"),
    );
    assert!(with_id.status.success(), "{}", stderr(&with_id));
    assert!(
        stateplug(
            dir.path(),
            &["lock", "force-unlock", "dev", "--who", "boss"],
            None
        )
        .status
        .success()
    );

    let history = stateplug(dir.path(), &["state", "history", "dev", "--json"], None);
    let serials: Vec<u64> = serde_json::from_slice::<Vec<serde_json::Value>>(&history.stdout)
        .unwrap()
        .iter()
        .map(|e| e["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials, [3, 2, 1]);
    let rolled = stateplug(dir.path(), &["state", "rollback", "dev", "1"], None);
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    let pulled: serde_json::Value =
        serde_json::from_slice(&stateplug(dir.path(), &["state", "pull", "dev"], None).stdout)
            .unwrap();
    assert_eq!(
        pulled["serial"], 4,
        "a rollback is a new write with a higher serial"
    );

    let list = stateplug(dir.path(), &["workspace", "list", "--json"], None);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "dev"]);
    assert_eq!(list[1]["serial"], 4);
}

#[test]
fn config_show_masks_secrets_and_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stateplug.toml"),
        "[backends.team]\nplugin = \"memory\"\ntimeout = \"5s\"\n[server.users.ci]\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let shown = stateplug(dir.path(), &["config", "show"], None);
    let text = String::from_utf8(shown.stdout).unwrap();
    assert!(
        text.contains("[backends.team]") && text.contains("timeout = \"5s\""),
        "{text}"
    );
    assert!(
        text.contains("users.ci.password = \"(secret)\"") && !text.contains("hunter2"),
        "{text}"
    );
}

#[test]
fn a_lock_past_its_ttl_can_be_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = ["-c", "lock_ttl=300ms"];
    let first = stateplug(
        dir.path(),
        &[&ttl[..], &["lock", "acquire", "dev", "--who", "crashed-ci"]].concat(),
        None,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let early = stateplug(
        dir.path(),
        &[&ttl[..], &["lock", "acquire", "dev", "--who", "next"]].concat(),
        None,
    );
    assert_eq!(
        early.status.code(),
        Some(3),
        "a fresh lock must hold: {}",
        stderr(&early)
    );
    std::thread::sleep(std::time::Duration::from_millis(400));
    let later = stateplug(
        dir.path(),
        &[&ttl[..], &["lock", "acquire", "dev", "--who", "next"]].concat(),
        None,
    );
    assert!(
        later.status.success(),
        "a stale lock is taken over: {}",
        stderr(&later)
    );
    let locks = stateplug(dir.path(), &["lock", "list", "--json"], None);
    let locks: serde_json::Value = serde_json::from_slice(&locks.stdout).unwrap();
    assert_eq!(locks[0]["lock"]["Who"], "next");
}

#[test]
fn plugins_check_certifies_a_good_plugin_and_fails_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    for plugin in ["memory", "local"] {
        let checked = stateplug(dir.path(), &["plugins", "check", plugin], None);
        let report = String::from_utf8(checked.stdout.clone()).unwrap();
        assert!(
            checked.status.success(),
            "{plugin}: {report}{}",
            stderr(&checked)
        );
        assert!(
            report.contains("ok      cas-race-no-lost-update"),
            "{report}"
        );
        assert!(
            report
                .lines()
                .last()
                .unwrap()
                .ends_with(" passed, 0 failed"),
            "{report}"
        );
    }
    let hostile = common::test_plugin_path("hostile");
    let hostile = hostile.to_str().unwrap();
    let checked = stateplug(
        dir.path(),
        &["plugins", "check", hostile, "-c", "attack=panic", "--json"],
        None,
    );
    assert_eq!(checked.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    let failed: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"round-trip-empty"), "{failed:?}");
    assert!(
        stderr(&checked).contains("hostile does not conform"),
        "{}",
        stderr(&checked)
    );
}

#[test]
fn a_pinned_plugin_digest_refuses_any_other_binary() {
    let dir = tempfile::tempdir().unwrap();
    let listed = stateplug(dir.path(), &["plugins", "list", "--json"], None);
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let memory = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "memory")
        .unwrap();
    let digest = memory["sha256"].as_str().unwrap().to_string();
    let config = |pin: &str| format!("[backends.m]\nplugin = \"memory\"\nsha256 = \"{pin}\"\n");

    std::fs::write(dir.path().join("stateplug.toml"), config(&digest)).unwrap();
    let pinned = stateplug(dir.path(), &["lock", "list"], None);
    assert!(pinned.status.success(), "{}", stderr(&pinned));

    let wrong = "0".repeat(64);
    std::fs::write(dir.path().join("stateplug.toml"), config(&wrong)).unwrap();
    let refused = stateplug(dir.path(), &["lock", "list"], None);
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.contains(&format!(
            "its SHA-256 is {digest}, but backend `m` pins {wrong}"
        )),
        "{message}"
    );
}

#[test]
fn dropped_in_plugins_are_found_by_name_and_bad_ones_reported() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join(".stateplug/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let hostile = common::test_plugin_path("hostile");
    std::fs::copy(&hostile, plugins.join("a-hostile.wasm")).unwrap();
    std::fs::copy(&hostile, plugins.join("b-same-name.wasm")).unwrap();
    std::fs::write(plugins.join("broken.wasm"), b"not wasm at all").unwrap();
    std::fs::write(plugins.join("notes.txt"), b"ignored").unwrap();

    let listed = stateplug(dir.path(), &["plugins", "list", "--json"], None);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let found = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hostile")
        .expect("hostile found");
    assert!(found["path"].as_str().unwrap().ends_with("a-hostile.wasm"));
    assert_eq!(found["sha256"].as_str().unwrap().len(), 64);
    let warnings = stderr(&listed);
    assert!(
        warnings.contains("broken.wasm: cannot load plugin")
            && warnings.contains("not a WebAssembly component"),
        "{warnings}"
    );
    assert!(
        warnings.contains("b-same-name.wasm: its name `hostile` is taken by")
            && warnings.contains("a-hostile.wasm"),
        "{warnings}"
    );

    // Usable by its describe() name, like a built-in.
    let used = stateplug(
        dir.path(),
        &["--plugin", "hostile", "-c", "attack=loop", "lock", "list"],
        None,
    );
    assert!(used.status.success(), "{}", stderr(&used));
    let unknown = stateplug(dir.path(), &["--plugin", "nothing", "lock", "list"], None);
    assert!(
        stderr(&unknown)
            .contains("there is no plugin of that name; available: hostile, local, memory"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn inspect_shows_what_a_plugin_would_need() {
    let dir = tempfile::tempdir().unwrap();
    let inspected = stateplug(dir.path(), &["plugins", "inspect", "local", "--json"], None);
    assert!(inspected.status.success(), "{}", stderr(&inspected));
    let local: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(local["capabilities"]["filesystem"], true);
    assert_eq!(local["capabilities"]["http"], false);
    assert!(
        local["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("wasi:filesystem/types"))
    );
    let text = stateplug(dir.path(), &["plugins", "inspect", "memory"], None);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("capabilities: filesystem"), "{text}");
    assert!(text.contains("sha256: "), "{text}");
}

/// What a hostile plugin says reaches the operator's terminal bounded and escaped: its
/// error messages (`state pull`) and its description (`plugins inspect`).
#[test]
fn a_hostile_plugin_cannot_flood_or_repaint_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = common::test_plugin_path("hostile");
    let hostile = hostile.to_str().unwrap();
    let pulled = stateplug(
        dir.path(),
        &[
            "--plugin",
            hostile,
            "-c",
            "attack=huge-error",
            "state",
            "pull",
            "ws",
        ],
        None,
    );
    assert_eq!(pulled.status.code(), Some(1), "{}", stderr(&pulled));
    let inspected = stateplug(dir.path(), &["plugins", "inspect", hostile], None);
    assert!(inspected.status.success(), "{}", stderr(&inspected));
    for (what, text, most) in [
        ("the error", stderr(&pulled), 3 * 4096),
        (
            "the description",
            String::from_utf8(inspected.stdout).unwrap(),
            64 << 10,
        ),
    ] {
        assert!(text.len() < most, "{what}: {} bytes", text.len());
        assert!(
            !text.contains('\x1b') && !text.contains('\r') && !text.contains('\u{202e}'),
            "{what} holds raw escapes: {text:?}"
        );
        assert!(text.contains("\\u{1b}[2J"), "{what}: {text}");
    }
}
