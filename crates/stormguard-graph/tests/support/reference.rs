//! Reading `docs/reference.md` and holding it to a parser, for the graph file's test
//! (`stormguard-graph/tests/reference.rs`) and the proxy settings' (`stormguard-proxy/tests/
//! reference.rs`), which both include this file: one reading of the reference, so that the two
//! files' sections are held to their parsers the same way.
//!
//! A section documents a table when it holds a key table, a Markdown table under
//! [`KEY_TABLE_HEADER`]. A [`Table`] says where a file holds that table; from it the checks ask
//! the parser itself which keys the table accepts (the "valid keys here" list of its error for
//! an unknown key) and what it applies for a key left out, so nothing here lists keys by hand.

use std::collections::BTreeSet;
use std::path::PathBuf;

use stormguard_graph::parse::policy_keys::POLICY_KEYS;
use stormguard_graph::parse::ranges::{Bounds, ValueRange, POLICY, RANGES};

/// The header of every key table of the reference.
pub const KEY_TABLE_HEADER: &str = "| Key | Type and valid values | Default | Meaning |";

/// The heading of the section whose table is [`POLICY_KEYS`], as the reference prints it.
pub const POLICY_HEADING: &str = "A call's and a route's policy";

/// A key no table accepts, put in a table to make the parser list the keys it does.
const UNKNOWN: &str = "zz_not_a_key";

/// `docs/reference.md`, from either crate's tests (both are two folders below the workspace).
pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference.md")
}

/// The text of `docs/reference.md`.
pub fn read() -> String {
    std::fs::read_to_string(path()).expect("reading docs/reference.md")
}

/// A section of the reference: a heading and the lines up to the next heading.
pub struct Section {
    /// Its heading without `#`s and backticks: `[services.NAME]`, `hedge`.
    pub heading: String,
    /// 2 for `##`, 3 for `###`.
    pub level: usize,
    /// Its lines, the heading left out.
    pub lines: Vec<String>,
}

/// Every section of `doc`, in order; `#` lines inside fenced code blocks are not headings.
pub fn sections(doc: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        if !fenced && level > 0 && line[level..].starts_with(' ') {
            sections.push(Section {
                heading: line[level..].trim().replace('`', ""),
                level,
                lines: Vec::new(),
            });
        } else if let Some(section) = sections.last_mut() {
            section.lines.push(line.to_string());
        }
    }
    sections
}

/// The section headed `heading` (without `#`s and backticks).
pub fn section<'a>(sections: &'a [Section], heading: &str) -> Option<&'a Section> {
    sections.iter().find(|section| section.heading == heading)
}

/// The sections of the part headed `## heading`: that section and those below it up to the next
/// `##`.
pub fn part<'a>(sections: &'a [Section], heading: &str) -> Vec<&'a Section> {
    sections
        .iter()
        .skip_while(|section| !(section.level == 2 && section.heading == heading))
        .enumerate()
        .take_while(|(i, section)| *i == 0 || section.level > 2)
        .map(|(_, section)| section)
        .collect()
}

/// The cells of a Markdown table row, split at the `|`s that are not escaped.
pub fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|');
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut cells = vec![String::new()];
    let mut escaped = false;
    for c in row.chars() {
        match c {
            '|' if !escaped => cells.push(String::new()),
            _ => cells.last_mut().unwrap().push(c),
        }
        escaped = c == '\\';
    }
    cells
        .iter()
        .map(|cell| cell.trim().replace("\\|", "|"))
        .collect()
}

/// The rows of the first table of `section` whose header starts with `header`, header and
/// separator left out.
pub fn table_rows(section: &Section, header: &str) -> Option<Vec<Vec<String>>> {
    let start = section
        .lines
        .iter()
        .position(|line| line.trim().starts_with(header))?;
    Some(
        section.lines[start + 2..]
            .iter()
            .take_while(|line| line.trim_start().starts_with('|'))
            .map(|line| cells(line))
            .collect(),
    )
}

/// The text of the code spans of `text`, in order.
pub fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// `text` when it is a single code span, its content.
pub fn only_code_span(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// One row of a key table.
pub struct Row {
    /// The key, as a file writes it.
    pub key: String,
    /// What the "Type and valid values" cell says.
    pub unit: String,
    /// What the Default cell says.
    pub default: String,
}

/// The rows of the key table of `section`, or `None` when it has none; a row whose Key cell is
/// not one code span is a problem of its own.
pub fn key_rows(section: &Section) -> Option<Result<Vec<Row>, String>> {
    let rows = table_rows(section, KEY_TABLE_HEADER)?;
    Some(
        rows.into_iter()
            .map(
                |cells| match (cells.first().map(|c| only_code_span(c)), cells.len()) {
                    (Some(Some(key)), 4) => Ok(Row {
                        key: key.to_string(),
                        unit: cells[1].clone(),
                        default: cells[2].clone(),
                    }),
                    _ => Err(format!(
                    "section `{}`: the row {cells:?} is not `| `key` | type | default | meaning |`",
                    section.heading
                )),
                },
            )
            .collect(),
    )
}

/// What a Default cell says a key left out means.
pub enum Documented {
    /// A value as a file writes it (the cell's first code span): what the parser applies.
    Value(toml::Value),
    /// The file must give the key.
    Required,
    /// No value; the cell says what happens instead.
    None,
}

/// Reads a Default cell: a value in backticks, then any words; or `required...`; or `none...`.
pub fn documented_default(cell: &str) -> Result<Documented, String> {
    if cell.starts_with("required") {
        return Ok(Documented::Required);
    }
    if cell.starts_with("none") {
        return Ok(Documented::None);
    }
    let literal = match (cell.starts_with('`'), code_spans(cell).first()) {
        (true, Some(literal)) => *literal,
        _ => {
            return Err(format!(
                "the default {cell:?} is neither a value in backticks, `required` nor `none`"
            ))
        }
    };
    let parsed: toml::Table = format!("v = {literal}")
        .parse()
        .map_err(|error| format!("the default `{literal}` is not a TOML value: {error}"))?;
    Ok(Documented::Value(parsed["v"].clone()))
}

/// A refusal of a parser, in the terms the checks need.
pub struct Refusal {
    /// The dotted key at fault, if any.
    pub key: Option<String>,
    /// The whole error, as printed.
    pub message: String,
}

/// A file's parser, giving the model's `Debug` text (compared between files) or its refusal.
pub type Parse = fn(&str) -> Result<String, Refusal>;

/// What a parser gave, as a [`Parse`] returns it.
pub fn outcome<T: std::fmt::Debug>(
    parsed: Result<T, stormguard_graph::ParseError>,
) -> Result<String, Refusal> {
    parsed
        .map(|model| format!("{model:?}"))
        .map_err(|error| Refusal {
            key: error.key.clone(),
            message: error.to_string(),
        })
}

/// Where a file holds one of its tables, for the checks to edit it there.
pub struct Table {
    /// The heading of the section documenting it, without `#`s and backticks.
    pub heading: &'static str,
    /// A file that parses and holds the table, every key it requires given.
    pub base: &'static str,
    /// The table's place in `base`: keys, and indices (digits) into arrays of tables.
    pub path: &'static [&'static str],
    /// Whether the table also takes every key of [`POLICY_KEYS`] (a call, a route).
    pub policy: bool,
}

impl Table {
    /// `base` with `edit` applied to the table, as TOML text.
    fn edited(&self, edit: impl FnOnce(&mut toml::Table)) -> String {
        let root: toml::Table = self
            .base
            .parse()
            .unwrap_or_else(|error| panic!("the base file of `{}`: {error}", self.heading));
        let mut root = toml::Value::Table(root);
        let mut value = &mut root;
        for step in self.path {
            value = match step.parse::<usize>() {
                Ok(index) => &mut value.as_array_mut().expect("an array of tables")[index],
                Err(_) => value
                    .as_table_mut()
                    .and_then(|table| table.get_mut(*step))
                    .unwrap_or_else(|| panic!("`{}`: no `{step}` in its base", self.heading)),
            };
        }
        edit(value.as_table_mut().expect("a table"));
        toml::to_string(&root).expect("printing TOML")
    }

    /// The keys the parser accepts in this table: the list its error for an unknown key gives.
    fn accepted_keys(&self, parse: Parse) -> Result<BTreeSet<String>, String> {
        let text = self.edited(|table| {
            table.insert(UNKNOWN.into(), toml::Value::Integer(1));
        });
        let message = match parse(&text) {
            Ok(_) => return Err(format!("the key `{UNKNOWN}` was accepted")),
            Err(refusal) => refusal.message,
        };
        let list = message
            .split_once("valid keys here: ")
            .map(|(_, list)| list)
            .ok_or_else(|| {
                format!("the key `{UNKNOWN}` was refused without the valid keys: {message}")
            })?;
        Ok(list
            .split(", ")
            .map(|key| key.trim().trim_matches('`').to_string())
            .collect())
    }
}

/// The rows documenting `table`: its section's, and the policy table's when it takes those.
fn documented_rows(sections: &[Section], table: &Table) -> Result<Vec<Row>, String> {
    let section = section(sections, table.heading)
        .ok_or_else(|| format!("docs/reference.md has no section `{}`", table.heading))?;
    let mut rows = key_rows(section).ok_or_else(|| {
        format!(
            "section `{}` has no key table ({KEY_TABLE_HEADER})",
            table.heading
        )
    })??;
    if table.policy {
        rows.extend(POLICY_KEYS.iter().map(|doc| Row {
            key: doc.key.to_string(),
            unit: doc.unit.to_string(),
            default: doc.default.to_string(),
        }));
    }
    Ok(rows)
}

/// What is wrong between the keys each of `tables` accepts and those its section documents.
pub fn key_problems(tables: &[Table], parse: Parse) -> Vec<String> {
    let sections = sections(&read());
    let mut problems = Vec::new();
    for table in tables {
        let heading = table.heading;
        let rows = match documented_rows(&sections, table) {
            Ok(rows) => rows,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let accepted = match table.accepted_keys(parse) {
            Ok(keys) => keys,
            Err(problem) => {
                problems.push(format!("`{heading}`: {problem}"));
                continue;
            }
        };
        let mut documented = BTreeSet::new();
        for row in &rows {
            if !documented.insert(row.key.clone()) {
                problems.push(format!(
                    "section `{heading}` documents `{}` twice (a policy key belongs to the \
                     table of `{POLICY_HEADING}` only)",
                    row.key
                ));
            }
        }
        for key in accepted.difference(&documented) {
            problems.push(format!(
                "`{heading}` accepts `{key}`, which its section does not document: add its row"
            ));
        }
        for key in documented.difference(&accepted) {
            problems.push(format!(
                "section `{heading}` documents `{key}`, which the parser refuses there: remove \
                 its row, or accept the key"
            ));
        }
    }
    problems
}

/// What is wrong between the defaults the sections of `tables` document and what the parser
/// applies: a value in backticks must be what leaving the key out gives (writing it changes
/// nothing), and a `required` key left out must be refused by name.
pub fn default_problems(tables: &[Table], parse: Parse) -> Vec<String> {
    let sections = sections(&read());
    let mut problems = Vec::new();
    for table in tables {
        let heading = table.heading;
        if let Err(refusal) = parse(table.base) {
            problems.push(format!(
                "`{heading}`: its base file is refused: {}",
                refusal.message
            ));
            continue;
        }
        let Ok(rows) = documented_rows(&sections, table) else {
            continue; // key_problems says why
        };
        for Row { key, default, .. } in rows {
            let without = table.edited(|t| {
                t.remove(&key);
            });
            match documented_default(&default) {
                Err(problem) => problems.push(format!("`{heading}`, `{key}`: {problem}")),
                Ok(Documented::None) => {}
                Ok(Documented::Required) => match parse(&without) {
                    Err(Refusal { key: Some(at), .. })
                        if at == key || at.ends_with(&format!(".{key}")) => {}
                    Err(refusal) => problems.push(format!(
                        "`{heading}`, `{key}` is documented as required, but leaving it out is \
                         refused for something else: {}",
                        refusal.message
                    )),
                    Ok(_) => problems.push(format!(
                        "`{heading}`, `{key}` is documented as required, but a file without it \
                         is accepted"
                    )),
                },
                Ok(Documented::Value(value)) => {
                    let with = table.edited(|t| {
                        t.insert(key.clone(), value.clone());
                    });
                    match (parse(&without), parse(&with)) {
                        (Ok(left_out), Ok(written)) => {
                            let (left_out, written) =
                                (without_spans(&left_out), without_spans(&written));
                            if left_out != written {
                                problems.push(format!(
                                    "`{heading}`, `{key}`: the documented default `{value}` is not \
                                     what leaving the key out gives; {}",
                                    first_difference(&left_out, &written)
                                ));
                            }
                        }
                        (_, Err(refusal)) | (Err(refusal), _) => problems.push(format!(
                            "`{heading}`, `{key}`: writing the documented default `{value}` is \
                             refused: {}",
                            refusal.message
                        )),
                    }
                }
            }
        }
    }
    problems
}

/// The kinds of value whose rows must state a range: a row whose type starts with one of these
/// and that no range of [`RANGES`] names is a value read unbounded.
const RANGED: &[&str] = &[
    "duration",
    "count",
    "whole number",
    "a number",
    "requests a second",
    "[size]",
    "a status",
];

/// The range of [`RANGES`] that names `key` of the section headed `section`.
fn range_of(section: &str, key: &str) -> Option<&'static ValueRange> {
    RANGES.iter().copied().find(|range| {
        range
            .keys
            .iter()
            .any(|k| k.section == section && k.key == key)
    })
}

/// Values just outside `bounds`, as a file writes them: one below (unless nothing of the type
/// is, a duration or size below 0) and one above.
fn outside(bounds: Bounds) -> Vec<toml::Value> {
    let duration = |nanos: u128| toml::Value::String(format!("{nanos}ns"));
    let size = |bytes: u64| toml::Value::String(format!("{bytes}B"));
    let step = |v: f64| (v.abs() * 1e-6).max(1e-6);
    match bounds {
        Bounds::Duration(min, max) => {
            let mut values = vec![duration(max.as_nanos() + 1)];
            if !min.is_zero() {
                values.push(duration(min.as_nanos() - 1));
            }
            values
        }
        Bounds::Whole(min, max) => {
            vec![toml::Value::Integer(min - 1), toml::Value::Integer(max + 1)]
        }
        Bounds::Number {
            min,
            min_excluded,
            max,
            max_excluded,
        } => vec![
            toml::Value::Float(if min_excluded { min } else { min - step(min) }),
            toml::Value::Float(if max_excluded { max } else { max + step(max) }),
        ],
        Bounds::Size(min, max) => {
            let mut values = vec![size(max + 1)];
            if min > 0 {
                values.push(size(min - 1));
            }
            values
        }
    }
}

/// What is wrong between the ranges the sections of `tables` state and [`RANGES`] and the
/// parser: each row of a value (a duration, a count, a number, a size) must be named by a range
/// of [`RANGES`] and state it (`1ms to 1h`), and a file that writes a value just outside it must
/// be refused for that key.
pub fn range_problems(tables: &[Table], parse: Parse) -> Vec<String> {
    let sections = sections(&read());
    let mut problems = Vec::new();
    for table in tables {
        let Some(section) = section(&sections, table.heading) else {
            continue; // key_problems says why
        };
        let Some(Ok(own)) = key_rows(section) else {
            continue;
        };
        let policy = if table.policy {
            POLICY_KEYS
                .iter()
                .map(|doc| (POLICY, doc.key.to_string(), doc.unit.to_string()))
                .collect()
        } else {
            Vec::new()
        };
        let rows = own
            .into_iter()
            .map(|row| (table.heading, row.key, row.unit))
            .chain(policy);
        for (heading, key, unit) in rows {
            let Some(range) = range_of(heading, &key) else {
                if RANGED.iter().any(|kind| unit.starts_with(kind)) {
                    problems.push(format!(
                        "`{heading}`, `{key}` is a value ({unit:?}) that no range of RANGES \
                         (crates/stormguard-graph/src/parse/ranges.rs) names: give it one"
                    ));
                }
                continue;
            };
            let stated = range.bounds.to_string();
            if !unit.contains(&stated) {
                problems.push(format!(
                    "`{heading}`, `{key}`: its type {unit:?} does not state its range `{stated}` \
                     ({})",
                    range.subject
                ));
            }
            if !RANGED.iter().any(|kind| unit.starts_with(kind)) {
                continue; // a text (a backoff, a hedge delay) is probed by its parser's tests
            }
            for value in outside(range.bounds) {
                let text = table.edited(|t| {
                    t.insert(key.clone(), value.clone());
                });
                match parse(&text) {
                    Err(Refusal { key: Some(at), .. })
                        if at == key || at.ends_with(&format!(".{key}")) => {}
                    Err(refusal) => problems.push(format!(
                        "`{heading}`, `{key} = {value}` is out of its range `{stated}`, but is \
                         refused for something else: {}",
                        refusal.message
                    )),
                    Ok(_) => problems.push(format!(
                        "`{heading}`, `{key} = {value}` is out of its range `{stated}`, but is \
                         accepted"
                    )),
                }
            }
        }
    }
    problems
}

/// The headings of the sections of `parts` that hold a key table but no entry of `tables`, and
/// the other way round, so that a new table is both documented and probed.
pub fn probe_problems(parts: &[&str], tables: &[Table]) -> Vec<String> {
    let sections = sections(&read());
    let documented: BTreeSet<&str> = parts
        .iter()
        .flat_map(|heading| part(&sections, heading))
        .filter(|section| section.heading != POLICY_HEADING && key_rows(section).is_some())
        .map(|section| section.heading.as_str())
        .collect();
    let probed: BTreeSet<&str> = tables.iter().map(|table| table.heading).collect();
    let mut problems = Vec::new();
    for heading in documented.difference(&probed) {
        problems.push(format!(
            "section `{heading}` has a key table that no `Table` of this test probes: add one \
             with a file that holds the table"
        ));
    }
    for heading in probed.difference(&documented) {
        problems.push(format!(
            "this test probes `{heading}`, which has no section with a key table in {parts:?}"
        ));
    }
    problems
}

/// `debug` with every `Span { line: .., column: .. }` blanked: a key written adds a line, and
/// moves the tables after it, which changes nothing else.
fn without_spans(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(start) = rest.find("Span { line: ") {
        out.push_str(&rest[..start]);
        out.push_str("Span");
        rest = &rest[start..];
        rest = &rest[rest.find('}').map_or(rest.len(), |end| end + 1)..];
    }
    out.push_str(rest);
    // What the text left to its defaults is of the text, as a span is: cut it off (it is the
    // last field of the graph).
    if let Some(at) = out.find(", assumed: Assumed {") {
        out.truncate(at);
    }
    out
}

/// Where two `Debug` texts first differ, a little of each.
fn first_difference(left_out: &str, written: &str) -> String {
    let at = left_out
        .char_indices()
        .zip(written.chars())
        .find(|((_, a), b)| a != b)
        .map_or(left_out.len().min(written.len()), |((i, _), _)| i);
    let start = left_out[..at]
        .char_indices()
        .rev()
        .nth(60)
        .map_or(0, |(i, _)| i);
    let excerpt = |text: &str| text[start..].chars().take(160).collect::<String>();
    format!(
        "left out: ...{}...; written: ...{}...",
        excerpt(left_out),
        excerpt(written)
    )
}

/// The problems, as one panic message.
pub fn assert_none(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "docs/reference.md: {what}:\n  {}\n(see its section \"Keeping this reference true\")",
        problems.join("\n  ")
    );
}
