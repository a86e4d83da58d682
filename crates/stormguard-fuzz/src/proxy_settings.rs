//! The proxy's settings parser, and what the proxy does with every file it accepts: build
//! the routes, show them at `/config`, and read them as a graph for `check`.
//!
//! Promises checked: a refusal points inside the text; a file that parses is taken for a
//! settings file (not a graph file) by the CLI, builds a running proxy (a reload that parsed
//! must never fail later without a position), has every route's policy accepted by the core,
//! and can be shown and checked without a panic.

use std::path::Path;

use prometheus_client::registry::Registry;
use stormguard_proxy::config::{self, hedge_policy, route_policy};
use stormguard_proxy::Proxy;

use crate::assert_position;

/// The file name errors carry; any name does.
const FILE: &str = "stormguard.toml";

/// Runs one input (UTF-8 text; other bytes are not a settings file and are skipped).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let settings = match config::parse(FILE, text) {
        Ok(settings) => settings,
        Err(error) => {
            assert_eq!(error.file, FILE);
            assert_position(text, error.line, error.column, &error);
            return;
        }
    };
    assert!(
        config::is_settings_file(text),
        "a file that parses as settings is not taken for one"
    );
    for route in &settings.routes {
        if let Err(error) = route_policy(route) {
            panic!("a parsed route's policy is refused by the core: {error}");
        }
        if let Err(error) = hedge_policy(route) {
            panic!("a parsed route's hedge is refused by the core: {error}");
        }
        let _ = config::per_try_timeout(route);
        let _ = config::worst_case_total(route);
    }
    let json = stormguard_proxy::admin::config_json(&settings, 1, Path::new(FILE));
    let _ = json.to_string();
    let graph = config::to_graph(&settings);
    let report = stormguard_graph::check::check(&graph);
    let _ = stormguard_graph::render::text(&graph, &report, false);
    if let Err(error) = Proxy::new(settings, &mut Registry::default()) {
        panic!("a parsed settings file does not build: {error}");
    }
}
