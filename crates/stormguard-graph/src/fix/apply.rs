//! Edits written into the file's text with `toml_edit`, which keeps every comment, blank line
//! and key order it is not asked to change; and the note beside each changed value.

use std::collections::BTreeMap;

use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::{Change, FixError, Setting};
use crate::report::Edit;

/// Writes `edits` into the graph file `text` (`file` names it in errors), each as one key of
/// one call's table: a value replaced keeps its place and the comment after it, a key added
/// goes after the call's other keys, a key removed takes its line with it.
///
/// Nothing is checked but that each call is where the edit says (its caller's calls at
/// `index`, calling `to`); [`fix`](super::fix) checks the result parses.
///
/// ```
/// use stormguard_graph::fix::apply;
/// use stormguard_graph::report::Edit;
///
/// let text = "[[services.api.calls]]\nto = \"db\"\ntimeout = \"5s\" # why 5 s\n";
/// let edits = [
///     Edit::set("api", "db", 0, "timeout", "\"250ms\""),
///     Edit::set("api", "db", 0, "max_attempts", "2"),
/// ];
/// assert_eq!(
///     apply("g.toml", text, &edits).unwrap(),
///     "[[services.api.calls]]\nto = \"db\"\ntimeout = \"250ms\" # why 5 s\nmax_attempts = 2\n"
/// );
/// ```
///
/// # Errors
/// [`FixError::Toml`] when `text` is not TOML, [`FixError::NoCall`] when a call is not where an
/// edit says, and [`FixError::Toml`] when an edit's value is not a TOML value.
pub fn apply(file: &str, text: &str, edits: &[Edit]) -> Result<String, FixError> {
    let mut doc = document(file, text)?;
    for edit in edits {
        let place = Place {
            from: &edit.from,
            endpoint: edit.endpoint.as_deref(),
            index: edit.index,
            to: &edit.to,
        };
        let (table, _) =
            call_table(&mut doc, &place).map_err(|reason| no_call(file, edit, reason))?;
        match &edit.value {
            None => {
                table.remove(edit.key);
            }
            Some(text) => {
                let mut value: Value = text.parse().map_err(|e: toml_edit::TomlError| {
                    toml_error(file, format!("the value {text} of {edit}: {e}"))
                })?;
                match table.get_mut(edit.key) {
                    Some(Item::Value(old)) => {
                        // The old value's spacing and trailing comment stay with the new one.
                        *value.decor_mut() = old.decor().clone();
                        *old = value;
                    }
                    Some(old) => *old = Item::Value(value),
                    None => {
                        value.decor_mut().clear();
                        table.insert(edit.key, Item::Value(value));
                    }
                }
            }
        }
    }
    Ok(doc.to_string())
}

/// The settings `touched` (by caller, endpoint, call index and key, with the callee) whose
/// value in `fixed` differs from that in `original`, each with the rules that wrote it.
pub(super) fn changes(
    file: &str,
    original: &str,
    fixed: &str,
    touched: &BTreeMap<Setting, String>,
    rules_of: &BTreeMap<Setting, Vec<&'static str>>,
) -> Result<Vec<Change>, FixError> {
    let mut before_doc = document(file, original)?;
    let mut after_doc = document(file, fixed)?;
    let mut changes = Vec::new();
    for (setting, to) in touched {
        let (from, endpoint, index, key) = setting;
        let place = Place {
            from,
            endpoint: endpoint.as_deref(),
            index: *index,
            to,
        };
        let read = |doc: &mut DocumentMut| -> Option<String> {
            let (table, _) = call_table(doc, &place).ok()?;
            table.get(key).map(value_text)
        };
        let (before, after) = (read(&mut before_doc), read(&mut after_doc));
        if before != after {
            changes.push(Change {
                from: from.clone(),
                endpoint: endpoint.clone(),
                to: to.clone(),
                index: *index,
                key,
                before,
                after,
                rules: rules_of.get(setting).cloned().unwrap_or_default(),
            });
        }
    }
    Ok(changes)
}

/// `fixed` with a comment after each changed value saying what it was and which rules changed
/// it (`# was "5s" (check --fix: same-timeout-everywhere)`), before any comment the user had
/// there; a removed key is noted after the call's `to`. Calls written as inline tables get no
/// note, since a comment cannot go inside one.
pub(super) fn annotate(file: &str, fixed: &str, changes: &[Change]) -> Result<String, FixError> {
    let mut doc = document(file, fixed)?;
    for change in changes {
        let place = Place {
            from: &change.from,
            endpoint: change.endpoint.as_deref(),
            index: change.index,
            to: &change.to,
        };
        let Ok((table, false)) = call_table(&mut doc, &place) else {
            continue;
        };
        let rules = change.rules.join(", ");
        let (key, note) = match (&change.before, &change.after) {
            (Some(before), Some(_)) => (change.key, format!("was {before} (check --fix: {rules})")),
            (None, _) => (change.key, format!("added by check --fix ({rules})")),
            (Some(before), None) => (
                "to",
                format!("{} = {before} removed (check --fix: {rules})", change.key),
            ),
        };
        let Some(value) = table.get_mut(key).and_then(Item::as_value_mut) else {
            continue;
        };
        let user = value
            .decor()
            .suffix()
            .and_then(|s| s.as_str())
            .map(str::trim)
            .and_then(|s| s.strip_prefix('#'))
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let suffix = match user {
            Some(user) => format!("  # {note}; {user}"),
            None => format!("  # {note}"),
        };
        value.decor_mut().set_suffix(suffix);
    }
    Ok(doc.to_string())
}

/// A call of a fixed graph file: its caller, the caller's endpoint, its index there, and the
/// service it calls (which the file's call must name).
pub type CallPlace<'a> = (&'a str, Option<&'a str>, usize, &'a str);

/// The settings of each call at `places` in the fixed graph `text` that `check --fix` changed,
/// read from the notes the fix writes after them (`max_attempts = 2  # was 3 (check --fix:
/// retry-amplification)`), as `key = value (was 3; check --fix: retry-amplification)`; a removed
/// key as its note on `to`. One reader beside the writer of the notes, so that both change
/// together; `export` lists an imported application's own fixed calls with it. A call not found
/// (or not calling its `to`), or a file that is not TOML, has none.
///
/// ```
/// let text = "[services.web]\n[[services.web.calls]]\nto = \"api\"\n\
///             max_attempts = 1  # was 3 (check --fix: retry-amplification)\n";
/// let changes = stormguard_graph::fix::noted_changes(text, &[("web", None, 0, "api")]);
/// assert_eq!(changes, [["max_attempts = 1 (was 3; check --fix: retry-amplification)"]]);
/// ```
pub fn noted_changes(text: &str, places: &[CallPlace<'_>]) -> Vec<Vec<String>> {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return vec![Vec::new(); places.len()];
    };
    places
        .iter()
        .map(|&(from, endpoint, index, to)| {
            let place = Place {
                from,
                endpoint,
                index: Some(index),
                to,
            };
            match call_table(&mut doc, &place) {
                Ok((table, _)) => noted(table),
                Err(_) => Vec::new(),
            }
        })
        .collect()
}

/// `text` with what `check --fix` changed at each `(call, key)` of `reverts` put back: the
/// value its note says was there (`# was "10s" (check --fix: ...)`), or no key at all where the
/// fix added it (`# added by check --fix (...)`); what followed the note (an import's source)
/// stays as the comment. A key without a note, a call not found, or a note whose old value is
/// not a TOML value is left as it is. Returns the text and, for each of `reverts`, whether it
/// was undone.
///
/// Why: `stormguard export` writes a fixed graph's values into a system's resources, but not
/// those that rest on a default no file gave (a connect timeout from an assumed 1 ms round
/// trip): it exports the graph with those changes undone, unless asked to write them.
///
/// ```
/// let text = "[services.web]\n[[services.web.calls]]\nto = \"api\"\n\
///             connect_timeout = \"3ms\"  # was \"10s\" (check --fix: connect-timeout-too-long); a.yaml:3\n\
///             timeout = \"23ms\"  # added by check --fix (missing-timeout)\n";
/// let call = ("web", None, 0, "api");
/// let reverts = [(call, "connect_timeout"), (call, "timeout"), (call, "max_attempts")];
/// let (back, undone) = stormguard_graph::fix::revert_fixes(text, &reverts);
/// assert!(back.contains("connect_timeout = \"10s\"  # a.yaml:3\n"), "{back}");
/// assert!(!back.contains("timeout = \"23ms\""), "{back}");
/// assert_eq!(undone, [true, true, false]);
/// ```
pub fn revert_fixes(text: &str, reverts: &[(CallPlace<'_>, &str)]) -> (String, Vec<bool>) {
    let mut undone = vec![false; reverts.len()];
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return (text.to_string(), undone);
    };
    for (&((from, endpoint, index, to), key), undone) in reverts.iter().zip(&mut undone) {
        let place = Place {
            from,
            endpoint,
            index: Some(index),
            to,
        };
        let Ok((table, _)) = call_table(&mut doc, &place) else {
            continue;
        };
        let Some(value) = table.get(key).and_then(Item::as_value) else {
            continue;
        };
        let Some(note) = fix_note(value) else {
            continue;
        };
        // What followed the note: `; ` and an import's source, or a user's comment.
        let comment = value
            .decor()
            .suffix()
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .trim()
            .trim_start_matches('#')
            .trim();
        let rest = comment
            .strip_prefix(note.as_str())
            .unwrap_or_default()
            .trim_start_matches(';')
            .trim()
            .to_string();
        if note.starts_with("added by check --fix") {
            table.remove(key);
            *undone = true;
            continue;
        }
        let Some(was) = note
            .strip_prefix("was ")
            .and_then(|n| n.split_once(" (check --fix"))
            .map(|(was, _)| was)
        else {
            continue;
        };
        let Ok(mut old) = was.parse::<Value>() else {
            continue;
        };
        if rest.is_empty() {
            old.decor_mut().clear();
        } else {
            old.decor_mut().set_suffix(format!("  # {rest}"));
        }
        old.decor_mut().set_prefix(" ");
        table.insert(key, Item::Value(old));
        *undone = true;
    }
    (doc.to_string(), undone)
}

/// How many of the calls at `places` in `text` are inline tables (`calls = [{ ... }]`), where
/// `check --fix` can write no note (a comment cannot sit inside one), so that what it changed
/// there cannot be read back: `export` says so rather than let them pass unchecked.
///
/// ```
/// let text = "[services.web]\ncalls = [{ to = \"api\", max_attempts = 1 }]\n";
/// assert_eq!(stormguard_graph::fix::inline_calls(text, &[("web", None, 0, "api")]), 1);
/// ```
pub fn inline_calls(text: &str, places: &[CallPlace<'_>]) -> usize {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return 0;
    };
    places
        .iter()
        .filter(|&&(from, endpoint, index, to)| {
            let place = Place {
                from,
                endpoint,
                index: Some(index),
                to,
            };
            matches!(call_table(&mut doc, &place), Ok((_, true)))
        })
        .count()
}

/// The settings of a call table that carry a `check --fix` note, as `key = value (note)`.
fn noted(table: &dyn TableLike) -> Vec<String> {
    let mut out = Vec::new();
    for (key, item) in table.iter() {
        let Some(note) = item.as_value().and_then(fix_note) else {
            continue;
        };
        if key == "to" {
            out.push(note);
            continue;
        }
        let note = note
            .trim_end_matches(')')
            .replacen(" (check --fix: ", "; check --fix: ", 1)
            .replacen("check --fix (", "check --fix: ", 1);
        out.push(format!("{key} = {} ({note})", value_text(item)));
    }
    out
}

/// What `check --fix` noted after a value (`# was 3 (check --fix: rule)`, `# added by check
/// --fix (rule)`), without a user's comment that follows it.
fn fix_note(value: &Value) -> Option<String> {
    let comment = value.decor().suffix()?.as_str()?.trim();
    let comment = comment.strip_prefix('#')?.trim();
    // The note ends at the parenthesis that closes its rules (a value before it may hold
    // parentheses of its own: `full-jitter(base=25ms, cap=250ms)`); a user's comment follows.
    let rules = comment.find("check --fix")?;
    let end = comment[rules..]
        .find(')')
        .map_or(comment.len(), |i| rules + i + 1);
    Some(comment[..end].to_string())
}

/// `written` with the line ends of `original`: toml_edit writes `\n`, and a file written with
/// `\r\n` keeps them, so that a diff shows the changed lines rather than every line. `check
/// --fix` and `recommend --format toml` both write through it.
///
/// ```
/// let written = stormguard_graph::fix::with_line_ends_of("a = 1\r\n", "a = 2\n".to_string());
/// assert_eq!(written, "a = 2\r\n");
/// ```
pub fn with_line_ends_of(original: &str, written: String) -> String {
    if original.contains("\r\n") {
        written.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        written
    }
}

/// The TOML text of a value, without the spacing and comment around it (a table as an inline
/// table, so that it fits on one line): what a fix compares before and after, and what an
/// import (stormguard-mesh) quotes in "the base had ..." when it replaces a value. One
/// function, so that both quote a value alike.
///
/// ```
/// let doc: toml_edit::DocumentMut = "a = 3 # note\n[b]\nx = 1\n".parse().unwrap();
/// assert_eq!(stormguard_graph::fix::value_text(&doc["a"]), "3");
/// assert_eq!(stormguard_graph::fix::value_text(&doc["b"]), "{ x = 1 }");
/// ```
pub fn value_text(item: &Item) -> String {
    match item {
        Item::Value(value) => {
            let mut bare = value.clone();
            bare.decor_mut().clear();
            bare.to_string()
        }
        Item::Table(table) => table.clone().into_inline_table().to_string(),
        other => other.to_string().trim().to_string(),
    }
}

fn document(file: &str, text: &str) -> Result<DocumentMut, FixError> {
    text.parse()
        .map_err(|e: toml_edit::TomlError| toml_error(file, e.to_string()))
}

fn toml_error(file: &str, message: String) -> FixError {
    FixError::Toml {
        file: file.to_string(),
        message,
    }
}

fn no_call(file: &str, edit: &Edit, reason: String) -> FixError {
    FixError::NoCall {
        file: file.to_string(),
        edit: Box::new(edit.clone()),
        reason,
    }
}

/// Where a call is in the file: the `index`-th call of service `from` (of its endpoint
/// `endpoint`, when it has one), which calls `to`; with no `index`, the service's own table.
struct Place<'a> {
    from: &'a str,
    endpoint: Option<&'a str>,
    index: Option<usize>,
    to: &'a str,
}

impl Place<'_> {
    /// The caller as errors name it: `from`, or `from/endpoint`.
    fn caller(&self) -> String {
        match self.endpoint {
            Some(endpoint) => format!("{}/{endpoint}", self.from),
            None => self.from.to_string(),
        }
    }
}

/// The call at `place` as an editable table, and whether it is an inline table (a call in
/// `calls = [{ ... }]`); an error saying what is missing when it is not there or does not call
/// `to`. A place without a call index is the service's own table ([`service_table`]).
fn call_table<'d>(
    doc: &'d mut DocumentMut,
    place: &Place<'_>,
) -> Result<(&'d mut dyn TableLike, bool), String> {
    let Some(index) = place.index else {
        return service_table(doc, place.from);
    };
    let (from, to) = (&place.caller(), place.to);
    let service = doc
        .get_mut("services")
        .and_then(Item::as_table_like_mut)
        .and_then(|services| services.get_mut(place.from))
        .and_then(Item::as_table_like_mut);
    let holder = match place.endpoint {
        Some(endpoint) => service
            .and_then(|service| service.get_mut("endpoints"))
            .and_then(Item::as_table_like_mut)
            .and_then(|endpoints| endpoints.get_mut(endpoint))
            .and_then(Item::as_table_like_mut),
        None => service,
    };
    let calls = holder
        .and_then(|holder| holder.get_mut("calls"))
        .ok_or_else(|| format!("the file has no calls of service {from:?}"))?;
    let (table, inline): (&mut dyn TableLike, bool) = match calls {
        Item::ArrayOfTables(tables) => (
            tables
                .get_mut(index)
                .ok_or_else(|| format!("service {from:?} has no call {index}"))?,
            false,
        ),
        Item::Value(Value::Array(array)) => (
            array
                .get_mut(index)
                .and_then(Value::as_inline_table_mut)
                .ok_or_else(|| format!("service {from:?} has no call {index}"))?,
            true,
        ),
        _ => {
            return Err(format!(
                "the calls of service {from:?} are not a list of tables"
            ))
        }
    };
    match table.get("to").and_then(Item::as_str) {
        Some(callee) if callee == to => Ok((table, inline)),
        Some(callee) => Err(format!(
            "call {index} of {from:?} calls {callee:?}, not {to:?}"
        )),
        None => Err(format!("call {index} of {from:?} has no `to`")),
    }
}

/// Service `name`'s own table (`[services.NAME]`), and whether it is inline. A service the file
/// only names in `[[services.NAME.calls]]` headers has an implicit table, made explicit here so
/// that a key set on it is written under a header of its own.
fn service_table<'d>(
    doc: &'d mut DocumentMut,
    name: &str,
) -> Result<(&'d mut dyn TableLike, bool), String> {
    let service = doc
        .get_mut("services")
        .and_then(Item::as_table_like_mut)
        .and_then(|services| services.get_mut(name))
        .ok_or_else(|| format!("the file has no service {name:?}"))?;
    match service {
        Item::Table(table) => {
            table.set_implicit(false);
            Ok((table, false))
        }
        Item::Value(Value::InlineTable(table)) => Ok((table, true)),
        _ => Err(format!("service {name:?} is not a table")),
    }
}
