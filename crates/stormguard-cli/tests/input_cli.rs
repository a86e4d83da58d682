//! What every command that reads a graph or settings file refuses, the same way: anything but a
//! regular file (a FIFO made the command wait forever for a writer), and files over 4 MiB.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the binary with `args` for at most 10 s: (exit code, stderr); `None` if it was still
/// running then (it is killed).
fn stormguard(args: &[&str]) -> Option<(i32, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 500 looks 20 ms apart: 10 s.
    for _ in 0..500 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "stormguard-input-cli-{}-{name}",
        std::process::id()
    ))
}

/// Each command that reads a file, with `file` as that file.
fn readers(file: &str) -> [Vec<&str>; 3] {
    [
        vec!["check", file],
        vec!["sim", file],
        vec!["proxy", "--config", file, "--validate"],
    ]
}

#[test]
fn a_saved_metrics_page_is_read_from_a_regular_file_only() {
    let path = temp("fifo.prom");
    if !mkfifo(&path) {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    }
    let file = path.display().to_string();
    let outcome = stormguard(&["recommend", "--metrics", &file]);
    std::fs::remove_file(&path).unwrap();
    let (code, err) = outcome.expect("recommend still waiting on the FIFO after 10 s");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{file}: cannot read")) && err.contains("not a regular file"),
        "{err}"
    );
}

fn mkfifo(path: &Path) -> bool {
    let _ = std::fs::remove_file(path);
    Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn a_fifo_is_refused_at_once_by_every_command_naming_it() {
    let path = temp("fifo.toml");
    if !mkfifo(&path) {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    }
    let file = path.display().to_string();
    for args in readers(&file) {
        let outcome = stormguard(&args);
        let Some((code, err)) = outcome else {
            std::fs::remove_file(&path).unwrap();
            panic!("{args:?}: still waiting on the FIFO after 10 s");
        };
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!("{file}: cannot read")) && err.contains("is a FIFO"),
            "{args:?}: {err}"
        );
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_file_over_4_mib_is_refused_by_every_command_naming_the_limit() {
    let path = temp("large.toml");
    let mut text = String::from("[entry]\nservice = \"web\"\n");
    text.push('#');
    text.push_str(&"x".repeat(4 * 1024 * 1024));
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    let file = path.display().to_string();
    for args in readers(&file) {
        let (code, err) = stormguard(&args).expect("the command ended");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!("{file}: cannot read"))
                && err.contains("is larger than 4 MiB, the limit for a graph or settings file"),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_file(&path).unwrap();
}

/// A reader that left is no failure: `stormguard reference | grep -q ...` (as `.ci/run` does)
/// or `| head` ends the reading, and the command exits 0 without a word, as the shell's tools do.
#[test]
fn a_pipe_whose_reader_left_ends_the_output_quietly() {
    for args in [&["reference"][..], &["completions", "bash"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        // Closed before the command starts: its first write finds no reader, every time.
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_stormguard"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            (output.status.code(), err.as_ref()),
            (Some(0), ""),
            "{args:?}"
        );
    }
}
