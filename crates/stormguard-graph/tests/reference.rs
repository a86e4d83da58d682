//! `docs/reference.md` against the graph file's parser and the policy core: every key each table
//! accepts is documented in its section and every documented key is accepted; every default
//! written as a value is what the parser applies; the table of a call's and a route's policy is
//! [`POLICY_KEYS`] as is, and the table of ranges [`RANGES`]; every value's row states its range,
//! and a value just outside it is refused; the `retry_on` conditions, backoff forms and
//! `[check]` thresholds are the code's. The proxy's sections are held to its parser by `stormguard-proxy/tests/
//! reference.rs`, with the same support code.
//!
//! When [`POLICY_KEYS`] or [`RANGES`] changes, `UPDATE_REFERENCE=1 cargo test -p
//! stormguard-graph --test reference` rewrites the reference's tables from them; review the diff.

#[path = "support/reference.rs"]
mod reference;

use std::collections::BTreeSet;

use reference::{
    assert_none, code_spans, default_problems, key_problems, only_code_span, probe_problems,
    range_problems, section, sections, table_rows, Refusal, Table,
};
use stormguard::backoff::Backoff;
use stormguard::classify::{AttemptResult, Class, Classifier, Condition, RetryOn, RetryOnError};
use stormguard::hedge::HedgeDelay;
use stormguard_graph::check::RULES;
use stormguard_graph::parse::policy_keys::{KeyDoc, POLICY_KEYS};
use stormguard_graph::parse::ranges::{ValueRange, POLICY, RANGES};

/// The smallest graph: an entry and its service.
const GRAPH: &str = "[entry]\nservice = \"a\"\n[services.a]\n";

/// A graph with one call, a to b.
const CALL: &str = "[entry]\nservice = \"a\"\n[services.b]\n[[services.a.calls]]\nto = \"b\"\n";

const CALL_PATH: &[&str] = &["services", "a", "calls", "0"];

/// Every table of the graph file (and the policy's inline tables, held in a call), where a file
/// holds it. A table added to the file needs an entry here and a section in the reference;
/// `every_section_with_keys_is_probed` fails until both exist.
const TABLES: &[Table] = &[
    Table {
        heading: "The graph file",
        base: GRAPH,
        path: &[],
        policy: false,
    },
    Table {
        heading: "[entry]",
        base: GRAPH,
        path: &["entry"],
        policy: false,
    },
    Table {
        heading: "[services.NAME]",
        base: GRAPH,
        path: &["services", "a"],
        policy: false,
    },
    Table {
        heading: "[services.NAME.endpoints.EP]",
        base: "[entry]\nservice = \"a\"\n[services.a.endpoints.e]\nweight = 2\n",
        path: &["services", "a", "endpoints", "e"],
        policy: false,
    },
    Table {
        heading: "latency",
        base:
            "[entry]\nservice = \"a\"\n[services.a]\nlatency = { p50 = \"2ms\", p99 = \"20ms\" }\n",
        path: &["services", "a", "latency"],
        policy: false,
    },
    Table {
        heading: "codel",
        base: concat!(
            "[entry]\nservice = \"a\"\n[services.a]\nqueue_discipline = \"codel\"\n",
            "codel = {}\n"
        ),
        path: &["services", "a", "codel"],
        policy: false,
    },
    Table {
        heading: "[[services.NAME.calls]]",
        base: CALL,
        path: CALL_PATH,
        policy: true,
    },
    Table {
        heading: "retry_budget",
        base: concat!(
            "[entry]\nservice = \"a\"\n[services.b]\n[[services.a.calls]]\nto = \"b\"\n",
            "retry_budget = {}\n"
        ),
        path: &["services", "a", "calls", "0", "retry_budget"],
        policy: false,
    },
    Table {
        heading: "token_bucket",
        base: concat!(
            "[entry]\nservice = \"a\"\n[services.b]\n[[services.a.calls]]\nto = \"b\"\n",
            "token_bucket = {}\n"
        ),
        path: &["services", "a", "calls", "0", "token_bucket"],
        policy: false,
    },
    Table {
        heading: "hedge",
        base: concat!(
            "[entry]\nservice = \"a\"\n[services.b]\n[[services.a.calls]]\nto = \"b\"\n",
            "hedge = { delay = \"50ms\" }\n"
        ),
        path: &["services", "a", "calls", "0", "hedge"],
        policy: false,
    },
    Table {
        heading: "[check]",
        base: "[entry]\nservice = \"a\"\n[services.a]\n[check]\n",
        path: &["check"],
        policy: false,
    },
    Table {
        heading: "[scenarios.NAME]",
        base: "[entry]\nservice = \"a\"\n[services.a]\n[scenarios.s]\nduration = \"60s\"\n",
        path: &["scenarios", "s"],
        policy: false,
    },
    Table {
        heading: "[[scenarios.NAME.faults]]",
        base: concat!(
            "[entry]\nservice = \"a\"\n[services.a]\n[scenarios.s]\nduration = \"60s\"\n",
            // Two effects, so that leaving either out (to check its default) leaves a fault
            // that changes something, which the parser requires.
            "[[scenarios.s.faults]]\nservice = \"a\"\nfrom = \"1s\"\nto = \"2s\"\n",
            "slowdown = 2.0\nerror_rate = 0.5\n"
        ),
        path: &["scenarios", "s", "faults", "0"],
        policy: false,
    },
    Table {
        heading: "[[scenarios.NAME.load]]",
        base: concat!(
            "[entry]\nservice = \"a\"\n[services.a]\n[scenarios.s]\nduration = \"60s\"\n",
            "[[scenarios.s.load]]\nfrom = \"1s\"\nto = \"2s\"\nrate = 10.0\n"
        ),
        path: &["scenarios", "s", "load", "0"],
        policy: false,
    },
];

/// The graph file's parser, as the support code calls it.
fn parse(text: &str) -> Result<String, Refusal> {
    reference::outcome(stormguard_graph::parse("g.toml", text))
}

#[test]
fn every_key_of_the_graph_file_is_documented_and_every_documented_key_is_accepted() {
    assert_none("the graph file's keys", key_problems(TABLES, parse));
}

#[test]
fn every_default_of_the_graph_file_is_what_the_parser_applies() {
    assert_none("the graph file's defaults", default_problems(TABLES, parse));
}

#[test]
fn every_value_of_the_graph_file_states_its_range_and_is_refused_outside_it() {
    assert_none("the graph file's ranges", range_problems(TABLES, parse));
}

#[test]
fn every_section_with_keys_is_probed() {
    let parts = ["The graph file", reference::POLICY_HEADING];
    assert_none("the graph file's sections", probe_problems(&parts, TABLES));
}

/// The key table of the policy every call and route takes, as the reference prints it between
/// its markers.
fn policy_table() -> String {
    let escape = |text: &str| text.replace('|', "\\|");
    let mut table = format!("{}\n|---|---|---|---|\n", reference::KEY_TABLE_HEADER);
    for KeyDoc {
        key,
        unit,
        default,
        meaning,
    } in POLICY_KEYS
    {
        table.push_str(&format!(
            "| `{key}` | {} | {} | {} |\n",
            escape(unit),
            escape(default),
            escape(meaning)
        ));
    }
    table
}

/// The table of every range, as the reference prints it between its markers.
fn ranges_table() -> String {
    let escape = |text: &str| text.replace('|', "\\|");
    let mut table = String::from("| Values | Range | Keys | Why no less; why no more |\n");
    table.push_str("|---|---|---|---|\n");
    for ValueRange {
        subject,
        bounds,
        below,
        above,
        keys,
    } in RANGES.iter().copied()
    {
        // The keys of one section together: `timeout`, `request_timeout` (of a call or route).
        let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
        for key in keys.iter() {
            let name = format!("`{}`", key.key);
            match groups.last_mut() {
                Some((section, names)) if *section == key.section => names.push(name),
                _ => groups.push((key.section, vec![name])),
            }
        }
        let keys = groups
            .iter()
            .map(|(section, names)| {
                let place = if *section == POLICY {
                    "a call or route".to_string()
                } else {
                    format!("`{section}`")
                };
                format!("{} of {place}", names.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ");
        table.push_str(&format!(
            "| {} | {bounds} | {} | {}; {} |\n",
            escape(subject),
            escape(&keys),
            escape(below),
            escape(above)
        ));
    }
    table
}

/// Checks that the text between the line starting `begin` and the line `end` of the reference
/// is `generated`, or writes it there under `UPDATE_REFERENCE=1`; `source` names where it is
/// printed from, for the failure.
fn generated_part(begin: &str, end: &str, generated: &str, source: &str) {
    let doc = reference::read();
    let start = doc
        .find(begin)
        .unwrap_or_else(|| panic!("docs/reference.md: no `{begin}` line"));
    let start = start + doc[start..].find('\n').expect("a line after it") + 1;
    let end = start
        + doc[start..]
            .find(end)
            .unwrap_or_else(|| panic!("docs/reference.md: no `{end}` line"));
    if doc[start..end] == *generated {
        return;
    }
    if std::env::var_os("UPDATE_REFERENCE").is_some() {
        let updated = format!("{}{generated}{}", &doc[..start], &doc[end..]);
        std::fs::write(reference::path(), updated).expect("writing docs/reference.md");
        return;
    }
    panic!(
        "docs/reference.md: the table is not {source}. Edit it there, not the table, then run \
         `UPDATE_REFERENCE=1 cargo test -p stormguard-graph --test reference` and review the \
         diff.\nwritten:\n{}\nprinted:\n{generated}",
        &doc[start..end]
    );
}

#[test]
fn the_policy_table_is_policy_keys() {
    generated_part(
        "<!-- BEGIN POLICY_KEYS",
        "<!-- END POLICY_KEYS -->",
        &policy_table(),
        "POLICY_KEYS (crates/stormguard-graph/src/parse/policy_keys.rs)",
    );
}

#[test]
fn the_table_of_ranges_is_ranges() {
    generated_part(
        "<!-- BEGIN RANGES",
        "<!-- END RANGES -->",
        &ranges_table(),
        "RANGES (crates/stormguard-graph/src/parse/ranges.rs)",
    );
}

/// Every key a range names has its row, which states the range (the proxy's keys included: this
/// test reads every section; each file's test probes its own parser).
#[test]
fn every_key_a_range_names_states_it_in_its_row() {
    let doc = reference::read();
    let sections = sections(&doc);
    let mut problems = Vec::new();
    for range in RANGES {
        let stated = range.bounds.to_string();
        for key in range.keys {
            let unit = if key.section == POLICY {
                POLICY_KEYS
                    .iter()
                    .find(|doc| doc.key == key.key)
                    .map(|doc| doc.unit.to_string())
            } else {
                section(&sections, key.section)
                    .and_then(reference::key_rows)
                    .and_then(Result::ok)
                    .and_then(|rows| rows.into_iter().find(|row| row.key == key.key))
                    .map(|row| row.unit)
            };
            match unit {
                None => problems.push(format!(
                    "`{}`, `{}`: RANGES names it, but it has no row",
                    key.section, key.key
                )),
                Some(unit) if !unit.contains(&stated) => problems.push(format!(
                    "`{}`, `{}`: its type {unit:?} does not state its range `{stated}`",
                    key.section, key.key
                )),
                Some(_) => {}
            }
        }
    }
    assert_none("the ranges", problems);
}

#[test]
fn the_policy_table_is_in_its_section() {
    let doc = reference::read();
    let sections = sections(&doc);
    let policy = section(&sections, reference::POLICY_HEADING).expect("the policy section");
    let keys: Vec<String> = reference::key_rows(policy)
        .expect("a key table")
        .expect("rows of keys")
        .into_iter()
        .map(|row| row.key)
        .collect();
    let expected: Vec<&str> = POLICY_KEYS.iter().map(|doc| doc.key).collect();
    assert_eq!(keys, expected);
}

#[test]
fn each_check_threshold_names_the_rules_that_read_it() {
    let doc = reference::read();
    let sections = sections(&doc);
    let check = section(&sections, "[check]").expect("a [check] section");
    let ids: BTreeSet<&str> = RULES.iter().map(|rule| rule.id).collect();
    for row in table_rows(check, reference::KEY_TABLE_HEADER).expect("a key table") {
        let key = only_code_span(&row[0]).expect("a key");
        let named: BTreeSet<&str> = code_spans(&row[3])
            .into_iter()
            .filter(|span| ids.contains(span))
            .collect();
        let reading: BTreeSet<&str> = RULES
            .iter()
            .filter(|rule| rule.thresholds.iter().any(|t| t.key() == key))
            .map(|rule| rule.id)
            .collect();
        assert_eq!(
            named, reading,
            "docs/reference.md, [check] `{key}`: the rules its meaning names are not the rules \
             that read it"
        );
    }
}

/// What one `retry_on` condition allows: the outcomes retried for an idempotent request, and
/// those retried for any.
fn retried(condition: Condition) -> (Vec<AttemptResult>, Vec<AttemptResult>) {
    let classifier = Classifier::default().retry_on(RetryOn::none().with(condition));
    let outcomes = [
        AttemptResult::ConnectRefused,
        AttemptResult::ConnectTimeout,
        AttemptResult::ResetBeforeWritten,
        AttemptResult::RefusedStream,
        AttemptResult::TimeoutAfterWritten,
        AttemptResult::ErrorAfterWritten,
    ]
    .into_iter()
    .chain((400..=599).map(|status| AttemptResult::Response {
        status,
        retry_after: None,
    }))
    .chain((1..=16).map(|code| AttemptResult::Grpc {
        code,
        pushback: None,
    }));
    let mut idempotent = Vec::new();
    let mut any = Vec::new();
    for outcome in outcomes {
        for (list, is_idempotent) in [(&mut idempotent, true), (&mut any, false)] {
            if matches!(
                classifier.classify(outcome, is_idempotent, None),
                Class::Retryable { .. }
            ) {
                list.push(outcome);
            }
        }
    }
    (idempotent, any)
}

#[test]
fn the_retry_on_conditions_are_the_parsers_and_retried_as_documented() {
    let doc = reference::read();
    let sections = sections(&doc);
    let conditions = section(&sections, "retry_on conditions").expect("a retry_on section");
    let rows = table_rows(conditions, "| Condition |").expect("a table of conditions");
    let mut documented = BTreeSet::new();
    for row in &rows {
        // Rows of one name; the others describe a family (a status, a gRPC name) in words.
        let Some(name) = only_code_span(&row[0]) else {
            continue;
        };
        documented.insert(name.to_string());
        if name == "default" {
            continue;
        }
        let condition: Condition = name
            .parse()
            .unwrap_or_else(|error| panic!("docs/reference.md, retry_on `{name}`: {error}"));
        let (idempotent, any) = retried(condition);
        let says = row[2].as_str();
        let holds = match says {
            "any request" => !any.is_empty() && any == idempotent,
            "idempotent requests only" => any.is_empty() && !idempotent.is_empty(),
            _ => !any.is_empty() && any != idempotent,
        };
        assert!(
            holds,
            "docs/reference.md, retry_on `{name}` says it is retried for {says:?}, but the \
             classifier retries {any:?} for any request and {idempotent:?} for idempotent ones"
        );
    }
    // The names the parser lists when it refuses one, read from its message.
    let message = RetryOnError::Unknown(String::new()).to_string();
    let listed = message
        .split_once("use ")
        .and_then(|(_, rest)| rest.split_once(", a status"))
        .map(|(names, _)| names)
        .expect("the parser's list of conditions");
    for name in listed.split(", ") {
        assert!(
            documented.contains(name),
            "docs/reference.md: the retry_on condition `{name}` has no row"
        );
    }
    assert!(documented.contains("default"));
}

/// The first code span of each row of the table headed `| Text |` in `heading`'s section,
/// without the quotes a file writes around text.
fn examples(doc: &str, heading: &str) -> Vec<String> {
    let sections = sections(doc);
    let section = section(&sections, heading).unwrap_or_else(|| panic!("a section `{heading}`"));
    table_rows(section, "| Text |")
        .unwrap_or_else(|| panic!("a `| Text |` table in `{heading}`"))
        .iter()
        .filter_map(|row| {
            code_spans(&row[0])
                .first()
                .map(|s| s.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn every_example_of_a_syntax_parses() {
    let doc = reference::read();
    for text in examples(&doc, "Durations") {
        assert!(
            stormguard::duration::parse(&text).is_ok(),
            "duration {text:?}"
        );
    }
    for text in examples(&doc, "Hedge delays") {
        assert!(text.parse::<HedgeDelay>().is_ok(), "hedge delay {text:?}");
    }
    let forms = examples(&doc, "Backoff texts");
    for text in &forms {
        assert!(text.parse::<Backoff>().is_ok(), "backoff {text:?}");
    }
    // Every kind the parser names when it refuses a text has its example.
    let message = "".parse::<Backoff>().unwrap_err().to_string();
    let (_, valid) = message
        .split_once("valid forms: ")
        .expect("the parser's forms");
    let kind = |form: &str| form.split('(').next().unwrap_or(form).trim().to_string();
    let documented: BTreeSet<String> = forms.iter().map(|form| kind(form)).collect();
    let mut depth = 0;
    let mut named = BTreeSet::new();
    let mut form = String::new();
    for c in valid.chars().chain([',']) {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                named.insert(kind(&form));
                form.clear();
                continue;
            }
            _ => {}
        }
        form.push(c);
    }
    assert_eq!(documented, named, "docs/reference.md: the backoff kinds");
}

/// The anchor GitHub gives a heading: lower case, punctuation but `-` and `_` dropped, spaces
/// as `-`.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_link_to_a_section_of_the_reference_finds_it() {
    let doc = reference::read();
    let anchors: BTreeSet<String> = sections(&doc)
        .iter()
        .map(|section| anchor(&section.heading))
        .collect();
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .expect("reading README.md");
    for (file, text, prefix) in [
        ("docs/reference.md", &doc, "](#"),
        ("README.md", &readme, "](docs/reference.md#"),
    ] {
        for (at, _) in text.match_indices(prefix) {
            let rest = &text[at + prefix.len()..];
            let target = &rest[..rest.find(')').unwrap_or(rest.len())];
            assert!(
                anchors.contains(target),
                "{file}: the link to #{target} finds no heading of docs/reference.md"
            );
        }
    }
}
