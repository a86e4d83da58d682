//! Reading a graph file: TOML in, a [`Graph`] with every default applied out, or an error that
//! names the file, line, column and key, and says what would be valid.
//!
//! ## Why errors get this much care
//! A graph file is written by hand and read by `check` in CI: the error is all its author sees.
//! So every refusal carries `file:line:column` of the offending key or value (columns count
//! characters), the dotted key (`services.web.calls[0].timeout`), and the valid alternatives:
//! the valid keys of the table, the known services, the duration or backoff syntax (the policy
//! core's own messages, so the file and the library never disagree on syntax).
//!
//! Every duration, count, number and size has one range, stated in [`ranges`] (and printed in
//! `docs/reference.md`), and a value outside it is refused with the range and why: zero where it
//! makes the graph meaningless rather than merely unwise (a zero `rtt`, a zero `entry.timeout`,
//! zero instances, concurrency, attempts, counts or token-bucket capacity), and values so large
//! that they mean nothing a system does, or would make `sim` run away (`rate = 1e300`, a
//! timeout of a year). Whole numbers that do not fit the key's type are refused by serde with
//! the range that is valid for the key.
//!
//! Two steps: serde reads the shape into `raw` structs (unknown keys and wrong types are
//! refused there, with `deny_unknown_fields`), then `convert` checks meaning and applies the
//! defaults. A missing `timeout` or `connect_timeout` on a call is not an input error: the model
//! keeps it as `None` and the checks report it.
//!
//! ## Shared with the proxy's settings
//! The proxy's settings file is read the same way, with the pieces made public here: [`locate`]
//! (positions and dotted keys), [`serde_error`] (serde's errors in the file's terms),
//! [`values`] (located durations, counts, numbers and sizes), [`ranges`] (the range of each),
//! [`size`] (the syntax of sizes), [`keys`] (the tables of a call's policy) and
//! [`policy_keys`] (every policy key a proxy route shares with a call, with the one set of
//! defaults), so that both files refuse the same mistake in the same words and mean the same.
//!
//! ## Spans
//! `Entry`, `Service`, `Endpoint`, `Call` and `Scenario` get the position of their table header
//! (`[entry]`, `[services.web]`, `[services.web.endpoints.browse]`, `[[services.web.calls]]`,
//! `[scenarios.x]`): the `[` of the header line.
//! When the table is written inline (`entry = { ... }`) it is the `{`; when a service has no
//! header of its own (only `[[services.web.calls]]`), it is the service's name in the first
//! header that names it.

mod call;
mod convert;
mod endpoint;
pub mod keys;
pub mod locate;
pub mod policy_keys;
mod queue;
pub mod ranges;
mod raw;
mod scenario;
pub mod size;
pub mod values;

use crate::model::Graph;

/// A graph file (or another of the project's TOML files, such as the proxy's settings) that
/// cannot be used: where, which key, and what would be valid.
///
/// Displayed as `FILE:LINE:COLUMN: `KEY`: MESSAGE` (the key part is left out when the error is
/// not about a key, e.g. a TOML syntax error), the form editors and CI logs turn into links.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", key.as_deref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
pub struct ParseError {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key at fault, dotted (`services.web.calls[0].timeout`), when there is one.
    pub key: Option<String>,
    /// What is wrong and what would be valid.
    pub message: String,
}

/// Parses the graph file `text`; `file` names it in errors.
///
/// Returns the first error found: serde's (syntax, unknown keys, types) before any of meaning,
/// then meaning in a fixed order (entry, services by name, check, scenarios by name), so the
/// same file always gives the same error.
pub fn parse(file: &str, text: &str) -> Result<Graph, ParseError> {
    let lines = locate::Lines::new(text);
    let raw: raw::RawGraph =
        toml::from_str(text).map_err(|error| serde_error(file, text, &lines, &error))?;
    convert::Converter::new(file, &lines).graph(raw)
}

/// A `toml`/serde error in `text` (indexed by `lines`) as a [`ParseError`]: its position, the
/// dotted key found again at that position, and serde's message in the file's terms ("unknown
/// key `x`; valid keys here: ...", "expected a whole number from 1 to ...").
///
/// Public so that every TOML file of the project reports shape errors (syntax, unknown keys,
/// wrong types) in the same words; the raw structs a caller deserializes into should be named
/// `Raw...` so that serde's "struct RawX" reads as "a table".
///
/// ```
/// use stormguard_graph::parse::{locate::Lines, serde_error};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct RawListen { address: Option<String> }
///
/// let text = "adress = \"x\"\n";
/// let error = toml::from_str::<RawListen>(text).err().unwrap();
/// let error = serde_error("p.toml", text, &Lines::new(text), &error);
/// assert_eq!(error.to_string(), "p.toml:1:1: `adress`: unknown key `adress`; did you mean `address`? valid keys here: `address`");
/// ```
pub fn serde_error(
    file: &str,
    text: &str,
    lines: &locate::Lines<'_>,
    error: &toml::de::Error,
) -> ParseError {
    let offset = error.span().map_or(0, |span| span.start);
    let position = lines.position(offset);
    if let Some(message) = duplicate_message(text, error) {
        return ParseError {
            file: file.to_string(),
            line: position.line,
            column: position.column,
            message,
            key: None,
        };
    }
    let key = locate::key_at(text, offset);
    ParseError {
        file: file.to_string(),
        line: position.line,
        column: position.column,
        message: convert::serde_message(
            error.message(),
            key.as_ref().and_then(locate::KeyPath::last_key),
        ),
        key: key.map(|path| path.to_string()),
    }
}

/// The toml crate's bare "duplicate key", with the key (or the table) named and where it was
/// first given, for a person to find the two.
fn duplicate_message(text: &str, error: &toml::de::Error) -> Option<String> {
    if error.message() != "duplicate key" {
        return None;
    }
    let span = error.span()?;
    let key = text.get(span.clone())?.trim();
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[span.start..]
        .find('\n')
        .map_or(text.len(), |i| span.start + i);
    let line = text[line_start..line_end].trim();
    if line.starts_with('[') {
        // A table header given twice: the first one like it.
        let header = line.split('#').next().unwrap_or(line).trim();
        let first = text[..line_start]
            .lines()
            .position(|l| l.split('#').next().unwrap_or(l).trim() == header)
            .map(|i| format!(" (first at line {})", i + 1))
            .unwrap_or_default();
        return Some(format!(
            "the table {header} is given twice{first}: TOML holds each table once; put its keys \
             in one"
        ));
    }
    Some(format!(
        "duplicate key `{key}`: a table holds each key once; remove one of them"
    ))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_fix;
#[cfg(test)]
mod tests_ranges;
#[cfg(test)]
mod tests_roundtrip;
#[cfg(test)]
mod tests_writer;
