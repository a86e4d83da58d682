//! Replays every kept input of every fuzz target: the seeds and what the fuzzer added to them
//! (`fuzz/corpus/TARGET/`), and the inputs of past findings (`fuzz/regressions/TARGET/`), so
//! that a finding fixed once stays fixed without nightly or a fuzzer.

use std::path::{Path, PathBuf};

/// `fuzz/` at the workspace's root.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/KIND/TARGET/`, sorted; none when the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable folder").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every kept input of `target`; fails naming each input that panicked.
fn replay(target: &str) {
    let corpus = inputs("corpus", target);
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ has no seeds");
    let regressions = inputs("regressions", target);
    run_all(target, corpus.iter().chain(&regressions));
}

/// Runs `paths` through `target`; fails naming each input that panicked.
fn run_all<'a>(target: &str, paths: impl Iterator<Item = &'a PathBuf>) {
    let (_, run) = stormguard_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of that name");
    let mut failed = Vec::new();
    for path in paths {
        let data = std::fs::read(path).expect("a readable input");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: inputs that fail:\n{}",
        failed.join("\n")
    );
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    for (target, _) in stormguard_fuzz::TARGETS {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}

#[test]
fn graph() {
    replay("graph");
}

#[test]
fn proxy_settings() {
    replay("proxy_settings");
}

#[test]
fn backoff() {
    replay("backoff");
}

#[test]
fn deadline_headers() {
    replay("deadline_headers");
}

#[test]
fn exposition() {
    replay("exposition");
}

#[test]
fn proxy_request() {
    replay("proxy_request");
}

#[test]
fn mesh() {
    replay("mesh");
}

#[test]
fn upstream_response() {
    replay("upstream_response");
}
