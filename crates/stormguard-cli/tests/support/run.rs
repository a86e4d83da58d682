//! The built `stormguard` binary, run as a user runs it from the workspace's root: one helper
//! for every CLI test file, so that they all run it alike (no colour, the same directory).

use std::process::Command;

/// Runs `stormguard ARGS` from the workspace root: its exit status (-1 when killed by a
/// signal), standard output and standard error.
pub fn stormguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
