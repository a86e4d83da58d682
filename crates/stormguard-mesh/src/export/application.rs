//! The application's own calls in an imported graph: what `check --fix` changed in them, which
//! no mesh resource holds, so that `export` can say so instead of leaving them out unsaid.
//!
//! An import with `--base` keeps the application's client settings on its calls to its own
//! sidecar (`CALLER-sidecar`, see [`crate::assemble`]); `export` writes the sidecars' calls
//! (the mesh's resources) and nothing else. A fix to the application's call (its own retries
//! cut, a connect timeout added) must be made in the application's HTTP client: the list
//! below says which, read from the notes `check --fix` leaves in the graph it writes
//! (`max_attempts = 2  # was 3 (check --fix: retry-amplification)`).

use std::fmt;

use stormguard_graph::Graph;
use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::plan::sidecars;

/// One of the application's own calls that `check --fix` changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationCall {
    /// The caller, with its endpoint when it has named ones (`frontend (browse)`).
    pub caller: String,
    /// Where the call goes through the sidecar (the destinations of the sidecar's endpoint).
    pub to: Vec<String>,
    /// The sidecar it goes through.
    pub sidecar: String,
    /// Each changed setting as the graph writes it, with what `check --fix` noted
    /// (`max_attempts = 2 (was 3; check --fix: retry-amplification)`).
    pub changes: Vec<String>,
}

impl fmt::Display for ApplicationCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = if self.to.is_empty() {
            self.sidecar.clone()
        } else {
            format!("{}, through {}", self.to.join(", "), self.sidecar)
        };
        write!(f, "{} -> {to}: {}", self.caller, self.changes.join(", "))
    }
}

/// The application's own calls in `graph` (its file's `text`) that `check --fix` changed, in
/// the graph's order. A graph without sidecars, or with no such notes, has none.
///
/// ```
/// let text = "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\n\
///             to = \"web-sidecar\"\nendpoint = \"api\"\ntimeout = \"1s\"\n\
///             max_attempts = 1  # was 3 (check --fix: retry-amplification)\n\
///             [services.web-sidecar.endpoints.api]\n[[services.web-sidecar.endpoints.api.calls]]\n\
///             to = \"api\"\ntimeout = \"500ms\"\n[services.api]\n";
/// let graph = stormguard_graph::parse("g.toml", text).unwrap();
/// let calls = stormguard_mesh::export::application_calls(&graph, text);
/// assert_eq!(
///     calls[0].to_string(),
///     "web -> api, through web-sidecar: max_attempts = 1 (was 3; check --fix: retry-amplification)"
/// );
/// ```
pub fn application_calls(graph: &Graph, text: &str) -> Vec<ApplicationCall> {
    let sidecars = sidecars(graph);
    if sidecars.is_empty() {
        return Vec::new();
    }
    let Ok(doc) = text.parse::<DocumentMut>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, service) in &graph.services {
        for endpoint in service.each_endpoint() {
            for (index, call) in endpoint.calls.iter().enumerate() {
                if sidecars.get(call.to.as_str()) != Some(&name.as_str()) {
                    continue;
                }
                let Some(table) = call_table(&doc, name, endpoint.name, index) else {
                    continue;
                };
                let changes = changes(table);
                if changes.is_empty() {
                    continue;
                }
                let to = graph
                    .services
                    .get(&call.to)
                    .into_iter()
                    .flat_map(|sidecar| sidecar.each_endpoint())
                    .filter(|e| e.name == call.endpoint.as_deref() || call.endpoint.is_none())
                    .flat_map(|e| e.calls.iter())
                    .map(|c| match &c.endpoint {
                        Some(ep) => format!("{} ({ep})", c.to),
                        None => c.to.clone(),
                    })
                    .fold(Vec::new(), |mut all, to| {
                        if !all.contains(&to) {
                            all.push(to);
                        }
                        all
                    });
                out.push(ApplicationCall {
                    caller: match endpoint.name {
                        Some(ep) => format!("{name} ({ep})"),
                        None => name.clone(),
                    },
                    to,
                    sidecar: call.to.clone(),
                    changes,
                });
            }
        }
    }
    out
}

/// The table of call `index` of service `from` (of its endpoint, if named) in the document.
fn call_table<'d>(
    doc: &'d DocumentMut,
    from: &str,
    endpoint: Option<&str>,
    index: usize,
) -> Option<&'d dyn TableLike> {
    let service = doc
        .get("services")
        .and_then(Item::as_table_like)
        .and_then(|services| services.get(from))
        .and_then(Item::as_table_like)?;
    let holder = match endpoint {
        Some(endpoint) => service
            .get("endpoints")
            .and_then(Item::as_table_like)
            .and_then(|endpoints| endpoints.get(endpoint))
            .and_then(Item::as_table_like)?,
        None => service,
    };
    match holder.get("calls")? {
        Item::ArrayOfTables(tables) => tables.get(index).map(|t| t as &dyn TableLike),
        Item::Value(Value::Array(array)) => array
            .get(index)
            .and_then(Value::as_inline_table)
            .map(|t| t as &dyn TableLike),
        _ => None,
    }
}

/// The settings of a call table that carry a `check --fix` note, as `key = value (note)`; a
/// removed key is noted on `to` (`max_attempts = 3 removed (check --fix: ...)`).
fn changes(table: &dyn TableLike) -> Vec<String> {
    let mut out = Vec::new();
    for (key, item) in table.iter() {
        let Some(value) = item.as_value() else {
            continue;
        };
        let Some(note) = fix_note(value) else {
            continue;
        };
        if key == "to" {
            out.push(note);
            continue;
        }
        let text = stormguard_graph::fix::value_text(item);
        let note = note
            .trim_end_matches(')')
            .replacen(" (check --fix: ", "; check --fix: ", 1)
            .replacen("check --fix (", "check --fix: ", 1);
        out.push(format!("{key} = {text} ({note})"));
    }
    out
}

/// What `check --fix` noted after a value (`# was 3 (check --fix: rule)`, `# added by check
/// --fix (rule)`), without a user's comment that follows it.
fn fix_note(value: &Value) -> Option<String> {
    let comment = value.decor().suffix()?.as_str()?.trim();
    let comment = comment.strip_prefix('#')?.trim();
    if !comment.contains("check --fix") {
        return None;
    }
    // The note ends at the parenthesis that closes its rules (a value before it may hold
    // parentheses of its own: `full-jitter(base=25ms, cap=250ms)`); a user's comment follows.
    let rules = comment.find("check --fix")?;
    let end = comment[rules..]
        .find(')')
        .map_or(comment.len(), |i| rules + i + 1);
    Some(comment[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = "[entry]\nservice = \"web\"\n\
        [services.web.endpoints.read]\n[[services.web.endpoints.read.calls]]\n\
        to = \"web-sidecar\"  # was \"api\": through its sidecar\nendpoint = \"api-get\"\n\
        timeout = \"1s\"\n\
        backoff = \"full-jitter(base=10ms, cap=100ms)\"  # was \"full-jitter(base=25ms, cap=250ms)\" (check --fix: backoff-cap); the client's own\n\
        connect_timeout = \"3ms\"  # added by check --fix (missing-connect-timeout)\n\
        [services.web.endpoints.write]\n[[services.web.endpoints.write.calls]]\n\
        to = \"web-sidecar\"\nendpoint = \"api-post\"\ntimeout = \"1s\"\n\
        [services.web-sidecar.endpoints.api-get]\n[[services.web-sidecar.endpoints.api-get.calls]]\n\
        to = \"api\"\ntimeout = \"500ms\"\nmax_attempts = 1  # was 3 (check --fix: layered-retries)\n\
        [services.web-sidecar.endpoints.api-post]\n[[services.web-sidecar.endpoints.api-post.calls]]\n\
        to = \"api\"\ntimeout = \"500ms\"\n[services.api]\n";

    /// Only the application's calls are listed (the sidecar's own fix goes into the mesh's
    /// resources), only those `check --fix` changed, each setting with its note, a value with
    /// parentheses of its own and a user's comment after the note included.
    #[test]
    fn the_application_s_fixed_calls_are_listed_with_what_changed() {
        let graph = stormguard_graph::parse("g.toml", GRAPH).unwrap();
        let calls = application_calls(&graph, GRAPH);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].caller, "web (read)");
        assert_eq!(calls[0].to, ["api"]);
        assert_eq!(
            calls[0].changes,
            [
                "backoff = \"full-jitter(base=10ms, cap=100ms)\" (was \
                 \"full-jitter(base=25ms, cap=250ms)\"; check --fix: backoff-cap)",
                "connect_timeout = \"3ms\" (added by check --fix: missing-connect-timeout)",
            ]
        );
    }

    #[test]
    fn a_graph_without_sidecars_or_without_notes_lists_none() {
        let plain = GRAPH.replace("check --fix", "checked");
        let graph = stormguard_graph::parse("g.toml", &plain).unwrap();
        assert!(application_calls(&graph, &plain).is_empty());
        let text = "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\n\
                    to = \"api\"\ntimeout = \"1s\"\nmax_attempts = 1  # was 3 (check --fix: x)\n\
                    [services.api]\n";
        let graph = stormguard_graph::parse("g.toml", text).unwrap();
        assert!(application_calls(&graph, text).is_empty());
    }
}
