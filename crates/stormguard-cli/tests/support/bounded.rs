//! Running the built binary with a bound on how long it may take, for the tests of commands
//! that must end on their own (the demo, a simulation that once never did): a regression fails
//! the test instead of hanging the suite.

use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the binary with `args`, killed if it takes longer than `limit`: its exit code, stdout and
/// stderr.
pub fn within(args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Counted sleeps rather than the clock, which the workspace reads only through tokio.
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        if waited > limit {
            let _ = child.kill();
            panic!("stormguard {args:?} still running after {limit:?}");
        }
        std::thread::sleep(step);
        waited += step;
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
