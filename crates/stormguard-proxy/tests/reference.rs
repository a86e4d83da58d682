//! `docs/reference.md` against the proxy settings' parser: every key each table accepts is
//! documented in its section and every documented key is accepted (a route's policy keys in the
//! table it shares with a graph call), and every default written as a value is what the parser
//! applies, the policy's included, so that a route's defaults are held to the same table as a
//! call's. The reading of the reference and the checks are the graph file's test's
//! (`stormguard-graph/tests/support/reference.rs`).

#[path = "../../stormguard-graph/tests/support/reference.rs"]
mod reference;

use reference::{
    assert_none, code_spans, default_problems, key_problems, probe_problems, range_problems,
    section, sections, table_rows, Refusal, Table,
};
use stormguard_proxy::config;

/// The smallest settings: one upstream and one route to it.
const SETTINGS: &str = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\n\
                        name = \"api\"\nupstream = \"api\"\ntimeout = \"2s\"\n";

/// Every table of the settings file (and the policy's inline tables, held in a route), where a
/// file holds it. A table added to the file needs an entry here and a section in the reference;
/// `every_section_with_keys_is_probed` fails until both exist.
const TABLES: &[Table] = &[
    Table {
        heading: "The proxy settings file",
        base: SETTINGS,
        path: &[],
        policy: false,
    },
    Table {
        heading: "[listen]",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\n[listen]\n"
        ),
        path: &["listen"],
        policy: false,
    },
    Table {
        heading: "[admin]",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\n[admin]\n"
        ),
        path: &["admin"],
        policy: false,
    },
    Table {
        heading: "[upstreams.NAME]",
        base: SETTINGS,
        path: &["upstreams", "api"],
        policy: false,
    },
    Table {
        heading: "discovery",
        base: concat!(
            "[upstreams.api]\ndiscovery = { dns = \"api.internal:80\" }\n[[routes]]\n",
            "name = \"api\"\nupstream = \"api\"\ntimeout = \"2s\"\n"
        ),
        path: &["upstreams", "api", "discovery"],
        policy: false,
    },
    Table {
        heading: "[dns]",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\n[dns]\n"
        ),
        path: &["dns"],
        policy: false,
    },
    Table {
        heading: "[[routes]]",
        base: SETTINGS,
        path: &["routes", "0"],
        policy: true,
    },
    Table {
        heading: "match",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\nmatch = {}\n"
        ),
        path: &["routes", "0", "match"],
        policy: false,
    },
    Table {
        heading: "retry_budget",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\nretry_budget = {}\n"
        ),
        path: &["routes", "0", "retry_budget"],
        policy: false,
    },
    Table {
        heading: "token_bucket",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\ntoken_bucket = {}\n"
        ),
        path: &["routes", "0", "token_bucket"],
        policy: false,
    },
    Table {
        heading: "hedge",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\nhedge = { delay = \"50ms\" }\n"
        ),
        path: &["routes", "0", "hedge"],
        policy: false,
    },
    Table {
        heading: "adaptive_timeout",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\nadaptive_timeout = {}\n"
        ),
        path: &["routes", "0", "adaptive_timeout"],
        policy: false,
    },
    Table {
        heading: "fault",
        // Each share's default depends on its fault being given, so both are.
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\n",
            "fault = { delay = \"1ms\", abort_status = 500, abort_percent = 5.0 }\n"
        ),
        path: &["routes", "0", "fault"],
        policy: false,
    },
    Table {
        heading: "[faults]",
        base: concat!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\n",
            "upstream = \"api\"\ntimeout = \"2s\"\n[faults]\n"
        ),
        path: &["faults"],
        policy: false,
    },
];

/// The settings' parser, as the support code calls it.
fn parse(text: &str) -> Result<String, Refusal> {
    reference::outcome(config::parse("p.toml", text))
}

#[test]
fn every_key_of_the_settings_is_documented_and_every_documented_key_is_accepted() {
    assert_none("the proxy settings' keys", key_problems(TABLES, parse));
}

#[test]
fn every_default_of_the_settings_is_what_the_parser_applies() {
    assert_none(
        "the proxy settings' defaults",
        default_problems(TABLES, parse),
    );
}

#[test]
fn every_value_of_the_settings_states_its_range_and_is_refused_outside_it() {
    assert_none("the proxy settings' ranges", range_problems(TABLES, parse));
}

#[test]
fn every_section_with_keys_is_probed() {
    let parts = ["The proxy settings file", reference::POLICY_HEADING];
    assert_none(
        "the proxy settings' sections",
        probe_problems(&parts, TABLES),
    );
}

#[test]
fn every_example_of_a_size_parses() {
    let doc = reference::read();
    let sections = sections(&doc);
    let sizes = section(&sections, "Sizes").expect("a section `Sizes`");
    let rows = table_rows(sizes, "| Text |").expect("a `| Text |` table of sizes");
    assert!(!rows.is_empty());
    for row in rows {
        let text = code_spans(&row[0])[0];
        let parsed = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(text) => config::size::parse(text).map_err(|e| e.to_string()),
            None => text.parse::<u64>().map_err(|e| e.to_string()),
        };
        assert!(
            parsed.is_ok(),
            "docs/reference.md: the size {text}: {parsed:?}"
        );
    }
}
