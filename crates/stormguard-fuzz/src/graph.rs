//! The graph file's parser, and what runs on every graph it accepts: `check`, its renderings,
//! and `check --fix`.
//!
//! Promises checked: a refusal points inside the text; a graph that parses can be checked,
//! rendered and fixed without a panic; a fix either writes a file that parses again, or says
//! it cannot reach a call (calls written as dotted keys), never that a rule broke the file.

use stormguard_graph::fix::{fix, FixError};
use stormguard_graph::{check::check, parse, render};

use crate::assert_position;

/// The file name errors carry; any name does.
const FILE: &str = "fuzz.toml";

/// Runs one input (UTF-8 text; other bytes are not a graph file and are skipped).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let graph = match parse(FILE, text) {
        Ok(graph) => graph,
        Err(error) => {
            assert_eq!(error.file, FILE);
            assert_position(text, error.line, error.column, &error);
            return;
        }
    };
    let report = check(&graph);
    let _ = render::text(&graph, &report, false);
    let _ = render::json(&report);
    let _ = render::sarif(&report, FILE);
    let _ = render::mermaid(&graph, &report);
    match fix(FILE, text) {
        Ok(fixed) => {
            if let Err(error) = parse(FILE, &fixed.text) {
                panic!(
                    "the fixed file does not parse: {error}\n--- fixed:\n{}",
                    fixed.text
                );
            }
        }
        Err(FixError::NoCall { .. }) => {}
        Err(error) => panic!("a graph that parses could not be fixed: {error}"),
    }
}
