//! The graph file with suggested timeouts written in, and nothing else changed.
//!
//! Why edit the document rather than write the model back: a graph file is written by hand,
//! with comments saying why each value is what it is, and kept in review. A suggestion must
//! come back as a diff of the lines it changes, so the user's comments, order and layout stay
//! as they were ([`toml_edit`] keeps them). The same document gives the calls' `metrics` keys,
//! which the graph parser accepts and checks but does not model (no rule reads them).

use std::time::Duration;

use toml_edit::{DocumentMut, Item, TableLike, Value};

use crate::calls::MetricsKeys;

/// A graph file, open for its `metrics` keys and for new timeouts.
///
/// ```
/// use std::time::Duration;
/// use stormguard_recommend::rewrite::GraphFile;
///
/// let mut file = GraphFile::parse(r#"
/// [[services.web.calls]]
/// to = "api"
/// timeout = "5s"   # copied from the sample code
/// metrics = { job = "api" }
/// "#).unwrap();
/// assert_eq!(file.metrics_keys()[&("web".to_string(), 0)]["job"], "api");
/// assert!(file.set_timeout("web", 0, Duration::from_millis(300), "p99.9 287ms"));
/// assert!(file.to_string().contains("timeout = \"300ms\"   # copied from the sample code\n"));
/// ```
#[derive(Clone, Debug)]
pub struct GraphFile {
    document: DocumentMut,
    /// Whether the file was written with `\r\n` line ends, which toml_edit writes as `\n`: kept,
    /// so that a diff shows the changed lines, not every line.
    crlf: bool,
}

impl GraphFile {
    /// The file `text` (already accepted by [`stormguard_graph::parse()`], whose errors say
    /// where; this one's are TOML syntax only).
    pub fn parse(text: &str) -> Result<GraphFile, toml_edit::TomlError> {
        Ok(GraphFile {
            document: text.parse()?,
            crlf: text.contains("\r\n"),
        })
    }

    /// Every call's `metrics` key, by calling service and the call's index.
    pub fn metrics_keys(&self) -> MetricsKeys {
        let mut keys = MetricsKeys::new();
        let Some(services) = self.document.get("services").and_then(Item::as_table_like) else {
            return keys;
        };
        for (service, item) in services.iter() {
            let Some(calls) = item.as_table_like().and_then(|s| s.get("calls")) else {
                continue;
            };
            for index in 0..calls_len(calls) {
                let labels = call(calls, index)
                    .and_then(|c| c.get("metrics"))
                    .and_then(Item::as_table_like)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.to_string(), v.as_str()?.to_string())))
                            .collect()
                    });
                if let Some(labels) = labels {
                    keys.insert((service.to_string(), index), labels);
                }
            }
        }
        keys
    }

    /// Sets the timeout of `service`'s call `index` to `timeout`, in the policy core's syntax
    /// (`"300ms"`). An existing value keeps its place and its comment; where it had no comment,
    /// and the call is a table of its own (inline tables take no comments), `note` becomes one,
    /// so the reviewer of the change sees where the value came from. `false` when there is no
    /// such call.
    pub fn set_timeout(
        &mut self,
        service: &str,
        index: usize,
        timeout: Duration,
        note: &str,
    ) -> bool {
        let Some(call) = self
            .document
            .get_mut("services")
            .and_then(Item::as_table_like_mut)
            .and_then(|services| services.get_mut(service))
            .and_then(Item::as_table_like_mut)
            .and_then(|service| service.get_mut("calls"))
            .and_then(|calls| call_mut(calls, index))
        else {
            return false;
        };
        let inline = call.0;
        let call = call.1;
        let mut value = Value::from(stormguard::duration::format(timeout));
        match call.get_mut("timeout").and_then(Item::as_value_mut) {
            Some(old) => {
                let decor = old.decor().clone();
                let commented = decor
                    .suffix()
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| s.contains('#'));
                *value.decor_mut() = decor;
                if !commented && !inline {
                    value.decor_mut().set_suffix(format!(" # {note}"));
                }
                *old = value;
            }
            None => {
                if !inline {
                    value.decor_mut().set_suffix(format!(" # {note}"));
                }
                call.insert("timeout", Item::Value(value));
            }
        }
        true
    }
}

impl std::fmt::Display for GraphFile {
    /// The whole file, as written with the new timeouts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let original = if self.crlf { "\r\n" } else { "\n" };
        let text = stormguard_graph::fix::with_line_ends_of(original, self.document.to_string());
        f.write_str(&text)
    }
}

/// How many calls `calls = ...` holds, written as `[[...calls]]` tables or an inline array.
fn calls_len(calls: &Item) -> usize {
    match calls {
        Item::ArrayOfTables(tables) => tables.len(),
        Item::Value(Value::Array(array)) => array.len(),
        _ => 0,
    }
}

fn call(calls: &Item, index: usize) -> Option<&dyn TableLike> {
    match calls {
        Item::ArrayOfTables(tables) => tables.get(index).map(|t| t as &dyn TableLike),
        Item::Value(Value::Array(array)) => array
            .get(index)?
            .as_inline_table()
            .map(|t| t as &dyn TableLike),
        _ => None,
    }
}

/// The call `index`, and whether it is an inline table.
fn call_mut(calls: &mut Item, index: usize) -> Option<(bool, &mut dyn TableLike)> {
    match calls {
        Item::ArrayOfTables(tables) => tables
            .get_mut(index)
            .map(|t| (false, t as &mut dyn TableLike)),
        Item::Value(Value::Array(array)) => array
            .get_mut(index)?
            .as_inline_table_mut()
            .map(|t| (true, t as &mut dyn TableLike)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with `\r\n` line ends is written back with them.
    #[test]
    fn crlf_line_ends_are_kept() {
        let text = "[entry]\r\nservice = \"web\"\r\n[services.web]\r\n[[services.web.calls]]\r\n\
                    to = \"api\"\r\ntimeout = \"1s\"\r\n[services.api]\r\n";
        let mut file = GraphFile::parse(text).unwrap();
        // As toml_edit writes it: every line end a bare `\n`.
        assert!(!file.document.to_string().contains('\r'));
        assert_eq!(file.to_string(), text);
        file.set_timeout("web", 0, Duration::from_millis(300), "recommended");
        let written = file.to_string();
        assert!(written.contains("timeout = \"300ms\""), "{written:?}");
        assert!(!written.replace("\r\n", "").contains('\n'), "{written:?}");
    }

    const FILE: &str = r#"# The storefront.
[entry]
service = "web"

[[services.web.calls]]
to = "api"   # the API tier
timeout = "5s"
max_attempts = 3

[[services.web.calls]]
to = "cdn"
metrics = { job = "edge", route = "/img" }

[services.api]
calls = [
  { to = "db", timeout = "2s" },
]
"#;

    #[test]
    fn metrics_keys_are_read_by_service_and_index() {
        let keys = GraphFile::parse(FILE).unwrap().metrics_keys();
        assert_eq!(keys.len(), 1);
        let key = &keys[&("web".to_string(), 1)];
        assert_eq!(key["job"], "edge");
        assert_eq!(key["route"], "/img");
    }

    #[test]
    fn only_the_timeouts_change() {
        let mut file = GraphFile::parse(FILE).unwrap();
        assert!(file.set_timeout("web", 0, Duration::from_millis(300), "p99.9 287ms, was 5s"));
        assert!(file.set_timeout("web", 1, Duration::from_millis(1500), "p99.9 1.2s"));
        assert!(file.set_timeout("api", 0, Duration::from_millis(40), "p99.9 33ms"));
        assert!(!file.set_timeout("api", 1, Duration::from_millis(40), "no such call"));
        assert!(!file.set_timeout("nobody", 0, Duration::from_millis(40), "no such service"));
        let expected = FILE
            .replace(
                "timeout = \"5s\"\n",
                "timeout = \"300ms\" # p99.9 287ms, was 5s\n",
            )
            .replace(
                "metrics = { job = \"edge\", route = \"/img\" }\n",
                "metrics = { job = \"edge\", route = \"/img\" }\ntimeout = \"1500ms\" # p99.9 1.2s\n",
            )
            .replace("timeout = \"2s\" }", "timeout = \"40ms\" }");
        assert_eq!(file.to_string(), expected);
    }

    #[test]
    fn a_value_with_a_comment_keeps_it() {
        let text = "[[services.web.calls]]\nto = \"api\"\ntimeout   =  \"5s\"  # why 5s\n";
        let mut file = GraphFile::parse(text).unwrap();
        assert!(file.set_timeout("web", 0, Duration::from_millis(300), "note"));
        assert_eq!(
            file.to_string(),
            "[[services.web.calls]]\nto = \"api\"\ntimeout   =  \"300ms\"  # why 5s\n"
        );
    }
}
