//! The README, run: what it shows a command printing is what the command prints today, so a
//! change of output fails here instead of misleading the next person who tries it.
//!
//! - Every ```` ```console ```` block is a [trycmd] case: each `$ stormguard ...` line runs the
//!   binary this test was built with, and what it prints (stdout and stderr, as a terminal shows
//!   them) must be the lines below it, where a line `...` stands for any lines and `? N` is the
//!   exit status when it is not 0. The commands run in a scratch directory holding a copy of
//!   `examples/`, so what they write (`demo`'s files, `check --fix --out`) stays out of the
//!   checkout.
//! - The `/config` excerpt is checked against what the admin endpoint serves for
//!   `examples/proxy/stormguard.toml` (showing it for real needs a running proxy).
//! - Any other block that shows a `$ ` command must be in [`UNCHECKED`], with the reason: a new
//!   example is checked unless someone says why it cannot be.
//!
//! After a change of output that is meant, `TRYCMD=overwrite cargo test -p stormguard-cli
//! --test readme` rewrites the blocks in place (keeping each `...` where it still matches);
//! review the diff of README.md as you would the change itself.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use stormguard_proxy::{admin, config};

/// Blocks that show a command the README test cannot run, by the start of their first `$ `
/// line, and why. The README says the same near each.
const UNCHECKED: &[(&str, &str)] = &[
    (
        "$ stormguard demo --live",
        "real sockets and timers: its ports and counts change from run to run",
    ),
    (
        "$ stormguard proxy --config examples/proxy/stormguard.toml",
        "serves until SIGTERM, on ports of this machine",
    ),
    (
        "$ curl -s 127.0.0.1:9901/config",
        "needs a running proxy; the excerpt is checked by \
         the_config_excerpt_is_what_the_admin_endpoint_serves",
    ),
    (
        "$ stormguard recommend --metrics http://",
        "reads the histograms of a proxy that served traffic: figures of one run",
    ),
];

/// The graph file behind the README's example of a bad input: a timeout written as a bare
/// number on line 7, column 11.
const BAD_GRAPH: &str = "[entry]\nservice = \"web\"\n\n[services.web]\n[[services.web.calls]]\n\
                         to = \"api\"\ntimeout = 5\n\n[services.api]\n";

/// The `$ ` line whose output is the `/config` excerpt.
const CONFIG_COMMAND: &str = "$ curl -s 127.0.0.1:9901/config";

/// The settings file the excerpt shows, as the README starts the proxy with it.
const PROXY_SETTINGS: &str = "examples/proxy/stormguard.toml";

/// The tests that read or rewrite README.md take turns: under `TRYCMD=overwrite` two of them
/// write it.
static README: Mutex<()> = Mutex::new(());

fn readme_lock() -> MutexGuard<'static, ()> {
    README
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

fn readme_path() -> PathBuf {
    workspace().join("README.md")
}

fn overwriting() -> bool {
    std::env::var_os("TRYCMD").is_some_and(|mode| mode == "overwrite")
}

#[test]
fn every_console_block_prints_what_the_readme_shows() {
    let _readme = readme_lock();
    let work = scratch_directory();
    // trycmd runs a README's commands in the test's working directory; this test is the only
    // one here that depends on it, and the others use absolute paths.
    std::env::set_current_dir(&work).expect("entering the scratch directory");
    let path = std::env::join_paths(std::iter::once(work.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("a PATH with the scratch directory first");
    // `stormguard` is found on PATH, as a user who installed it runs it, so the program name
    // the commands print back (demo's next steps) is `stormguard`, not this build's path.
    trycmd::TestCases::new()
        .register_bin("stormguard", PathBuf::from("stormguard"))
        .env("PATH", path.to_string_lossy())
        .case(readme_path())
        .run();
}

/// A fresh directory with a copy of `examples/`, the bad graph, and `stormguard` (a link to the
/// binary under test).
fn scratch_directory() -> PathBuf {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme");
    if work.exists() {
        std::fs::remove_dir_all(&work).expect("clearing the scratch directory");
    }
    std::fs::create_dir_all(&work).expect("creating the scratch directory");
    copy_dir(&workspace().join("examples"), &work.join("examples"));
    std::fs::write(work.join("graph.toml"), BAD_GRAPH).expect("writing graph.toml");
    let binary = Path::new(env!("CARGO_BIN_EXE_stormguard"));
    #[cfg(unix)]
    std::os::unix::fs::symlink(binary, work.join("stormguard")).expect("linking the binary");
    #[cfg(not(unix))]
    std::fs::copy(binary, work.join("stormguard")).expect("copying the binary");
    work
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a directory of the copy");
    for entry in std::fs::read_dir(from).expect("listing examples/") {
        let entry = entry.expect("an entry of examples/");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying an example");
        }
    }
}

#[test]
fn the_config_excerpt_is_what_the_admin_endpoint_serves() {
    let _readme = readme_lock();
    let readme = std::fs::read_to_string(readme_path()).expect("reading README.md");
    let excerpt = config_excerpt(&readme);
    let settings =
        config::load(&workspace().join(PROXY_SETTINGS)).unwrap_or_else(|error| panic!("{error}"));
    let served = served_config(&settings);
    if matches(&served, &excerpt.text).is_ok() {
        return;
    }
    if overwriting() {
        let updated = updated_excerpt(&served, &excerpt.text).unwrap_or_else(|line| {
            panic!(
                "README.md: the /config excerpt's line `{line}` has no counterpart in what \
                 /config serves now; edit the excerpt by hand:\n{served}"
            )
        });
        if let Err(error) = matches(&served, &updated) {
            panic!("README.md: the rewritten /config excerpt still differs:\n{error}");
        }
        let mut lines: Vec<&str> = readme.lines().collect();
        lines.splice(excerpt.lines.clone(), updated.lines());
        std::fs::write(readme_path(), lines.join("\n") + "\n").expect("writing README.md");
        return;
    }
    let error = matches(&served, &excerpt.text).unwrap_err();
    panic!(
        "README.md: the /config excerpt (after `{CONFIG_COMMAND}`) is not what the admin endpoint \
         serves for {PROXY_SETTINGS}:\n{error}\nTo update it: TRYCMD=overwrite cargo test -p \
         stormguard-cli --test readme"
    );
}

/// What `GET /config` answers for a proxy started with `--config` on the example settings,
/// before any reload (generation 1). The addresses are the file's: the ports it names are what
/// the proxy binds.
fn served_config(settings: &config::Config) -> String {
    let json = admin::config_json(settings, 1, Path::new(PROXY_SETTINGS));
    serde_json::to_string_pretty(&json).expect("JSON of strings and numbers") + "\n"
}

/// The `/config` excerpt: the lines after [`CONFIG_COMMAND`], up to the next `$ ` line or the
/// end of the block.
struct Excerpt {
    /// Its lines in README.md, 0-based.
    lines: std::ops::Range<usize>,
    /// Its text, each line ending in a newline.
    text: String,
}

fn config_excerpt(readme: &str) -> Excerpt {
    let lines: Vec<&str> = readme.lines().collect();
    let command = lines
        .iter()
        .position(|l| l.starts_with(CONFIG_COMMAND))
        .unwrap_or_else(|| panic!("README.md has no `{CONFIG_COMMAND}` line"));
    let start = command + 1;
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.starts_with("$ ") || l.starts_with("```"))
            .expect("the block of the /config excerpt ends");
    let text = lines[start..end].iter().map(|l| format!("{l}\n")).collect();
    Excerpt {
        lines: start..end,
        text,
    }
}

/// Whether `served` is `excerpt` where each `...` line stands for any lines, as trycmd matches.
fn matches(served: &str, excerpt: &str) -> Result<(), snapbox::assert::Error> {
    snapbox::Assert::new().try_eq(
        Some(&"GET /config"),
        snapbox::Data::text(served),
        snapbox::Data::text(excerpt),
    )
}

/// The excerpt with each of its lines replaced by the line of `served` that has the same key
/// (the text up to `": `), in order, or by the same line where it has no key (`{`, `],`); the
/// `...` lines kept. `Err` with the first line that has no counterpart.
fn updated_excerpt(served: &str, excerpt: &str) -> Result<String, String> {
    let served: Vec<&str> = served.lines().collect();
    let mut next = 0;
    let mut out = String::new();
    for line in excerpt.lines() {
        if line == "..." {
            out.push_str("...\n");
            continue;
        }
        let key = line.find("\": ").map_or(line, |at| &line[..at + 3]);
        let found = served[next..]
            .iter()
            .position(|s| s.starts_with(key) && (key != line || *s == line))
            .ok_or_else(|| line.to_string())?;
        out.push_str(served[next + found]);
        out.push('\n');
        next += found + 1;
    }
    Ok(out)
}

#[test]
fn every_block_with_a_command_is_checked_or_says_why_not() {
    let _readme = readme_lock();
    let readme = std::fs::read_to_string(readme_path()).expect("reading README.md");
    let mut unchecked_seen = vec![false; UNCHECKED.len()];
    for block in fenced_blocks(&readme) {
        let commands: Vec<&str> = block
            .lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("$ "))
            .collect();
        if block.language == "console" {
            // trycmd skips a command whose program it does not know, silently.
            for command in commands {
                assert!(
                    command.starts_with("$ stormguard "),
                    "README.md line {}: `{command}` in a console block: trycmd runs only \
                     `stormguard` here and would skip it unchecked",
                    block.line
                );
            }
            continue;
        }
        let Some(first) = commands.first() else {
            continue;
        };
        match UNCHECKED
            .iter()
            .position(|(start, _)| first.starts_with(start))
        {
            Some(k) => unchecked_seen[k] = true,
            None => panic!(
                "README.md line {}: a ```{} block shows `{first}` unchecked: make it a \
                 ```console block, or add it to UNCHECKED in {} with the reason",
                block.line,
                block.language,
                file!()
            ),
        }
    }
    for (seen, (start, _)) in unchecked_seen.iter().zip(UNCHECKED) {
        assert!(
            seen,
            "UNCHECKED names `{start}`, which README.md no longer shows"
        );
    }
}

/// A fenced block of a markdown file.
struct Block<'a> {
    /// The info string's first word: `console`, `text`, `sh`, `rust`.
    language: &'a str,
    /// The 1-based line of its opening fence.
    line: usize,
    lines: Vec<&'a str>,
}

fn fenced_blocks(markdown: &str) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    let mut open: Option<Block<'_>> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                let language = info.split([',', ' ']).next().unwrap_or_default();
                open = Some(Block {
                    language,
                    line: i + 1,
                    lines: Vec::new(),
                });
            }
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(block), None) => block.lines.push(line),
            (None, None) => {}
        }
    }
    blocks
}
