//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same harnesses the
//! fuzzer runs (`stateplug::fuzzing`), so every input the fuzzer kept stays checked by `cargo
//! test`. A missing or empty corpus fails the test: it cannot pass by replaying nothing.

use crate::common;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = common::workspace_root().join("fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing ({e}); see FUZZING.md", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus {} is empty; see FUZZING.md",
        dir.display()
    );
    files
}

fn replay(target: &str, harness: fn(&[u8])) {
    for file in corpus(target) {
        let data = std::fs::read(&file).expect("a readable corpus file");
        let outcome = std::panic::catch_unwind(|| harness(&data));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("{target}: {} fails: {message}", file.display());
        }
    }
}

#[test]
fn path_corpus() {
    replay("path", stateplug::fuzzing::path);
}

#[test]
fn state_doc_corpus() {
    replay("state_doc", stateplug::fuzzing::state_doc);
}

#[test]
fn lock_info_corpus() {
    replay("lock_info", stateplug::fuzzing::lock_info);
}

#[test]
fn config_corpus() {
    replay("config", stateplug::fuzzing::config);
}

#[test]
fn router_corpus() {
    replay("router", stateplug::fuzzing::router);
}
