//! The manifest reader behind `stormguard import` (YAML and JSON as trees with a position on
//! every node), and what runs on every file it accepts: the reader of each kind (Kubernetes,
//! Istio, Gateway API, Linkerd, Envoy, gRPC) and the assembler.
//!
//! Promises checked: a refusal points inside the file; every node's position is one place in
//! the file, its line and column those of the character at its byte offset (export edits the
//! file at that offset, SARIF shows the line); a reader's refusal and every origin it records
//! (of a setting, a route, a thing not read, a finding) point inside the file; the assembler
//! never fails without a base graph, and the graph it writes parses with the graph's own
//! parser, so `check` reads whatever `import` wrote.

use stormguard_mesh::doc::{parse_documents, Node, Value};
use stormguard_mesh::source::Origin;
use stormguard_mesh::{assemble, inventory, ImportError, Options};

/// The file name errors and origins carry; any name does.
const FILE: &str = "fuzz.yaml";

/// Runs one input (UTF-8 text; other bytes are not a manifest and are skipped).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let places = Places::new(text);
    let documents = match parse_documents(FILE, text) {
        Ok(documents) => documents,
        Err(error) => {
            places.assert_error(&error);
            return;
        }
    };
    for (index, document) in documents.iter().enumerate() {
        assert_eq!(document.index, index, "documents are numbered in order");
        places.assert_node(&document.root, 0);
    }
    let inv = match inventory(&documents) {
        Ok(inv) => inv,
        Err(error) => {
            places.assert_error(&error);
            return;
        }
    };
    for route in &inv.routes {
        places.assert_origin(&route.origin);
        for setting in &route.policy.settings {
            places.assert_origin(&setting.origin);
        }
    }
    for destination in &inv.destinations {
        places.assert_origin(&destination.origin);
        for setting in &destination.policy.settings {
            places.assert_origin(&setting.origin);
        }
    }
    for workload in &inv.workloads {
        places.assert_origin(&workload.origin);
    }
    for unread in &inv.unread {
        places.assert_origin(&unread.origin);
    }
    for finding in &inv.findings {
        places.assert_origin(&finding.origin);
    }
    let imported = match assemble(&inv, &Options::default()) {
        Ok(imported) => imported,
        Err(error) => panic!("assemble failed without a base graph: {error}"),
    };
    for origin in imported.sources.lines.values() {
        places.assert_origin(origin);
    }
    if !imported.toml.trim().is_empty() {
        if let Err(error) = stormguard_graph::parse("imported.toml", &imported.toml) {
            panic!(
                "the imported graph does not parse: {error}\n--- graph:\n{}",
                imported.toml
            );
        }
    }
    let _ = serde_json::to_string(&imported.json);
}

/// Where each byte of a text is: its line and column as YAML counts them (a line ends at `\n`,
/// `\r\n` or a lone `\r`; columns in characters, from 1).
struct Places<'a> {
    text: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> Places<'a> {
    fn new(text: &'a str) -> Places<'a> {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => starts.push(i + 1),
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                    starts.push(i + 2);
                    i += 1;
                }
                b'\r' => starts.push(i + 1),
                _ => {}
            }
            i += 1;
        }
        Places { text, starts }
    }

    /// The line and column (1-based) of byte `offset`, which must start a character.
    fn at(&self, offset: usize) -> (usize, usize) {
        assert!(
            offset <= self.text.len(),
            "offset {offset} past the end of a text of {} bytes",
            self.text.len()
        );
        assert!(
            self.text.is_char_boundary(offset),
            "offset {offset} is inside a character"
        );
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }

    /// Panics unless line `line`, column `column` is in the text or just past one of its lines.
    fn assert_inside(&self, line: usize, column: usize, what: &dyn std::fmt::Display) {
        assert!(
            (1..=self.starts.len()).contains(&line),
            "line {line} of a text of {} lines: {what}",
            self.starts.len()
        );
        let start = self.starts[line - 1];
        let end = self.starts.get(line).copied().unwrap_or(self.text.len());
        let width = self.text[start..end]
            .trim_end_matches(['\n', '\r'])
            .chars()
            .count();
        assert!(
            (1..=width + 1).contains(&column),
            "column {column} of line {line}, {width} characters long: {what}"
        );
    }

    fn assert_error(&self, error: &ImportError) {
        match error {
            ImportError::At {
                file, line, column, ..
            } => {
                assert_eq!(file, FILE, "{error}");
                self.assert_inside(*line as usize, *column as usize, error);
            }
            ImportError::File { .. } => panic!("a text in memory is refused as a file: {error}"),
        }
    }

    fn assert_origin(&self, origin: &Origin) {
        if let Some((file, line, column)) = origin.file_line() {
            assert_eq!(file, FILE, "{origin}");
            self.assert_inside(line as usize, column as usize, origin);
        }
    }

    /// Every node of the tree: its offset starts a character of the text, and its line and
    /// column are that character's.
    fn assert_node(&self, node: &Node, depth: usize) {
        assert!(
            depth <= stormguard_mesh::doc::MAX_DEPTH + 1,
            "nested too deep"
        );
        let pos = node.pos;
        assert_eq!(
            self.at(pos.offset),
            (pos.line as usize, pos.column as usize),
            "the node at offset {} says line {} column {}",
            pos.offset,
            pos.line,
            pos.column
        );
        match &node.value {
            Value::Scalar { .. } => {}
            Value::Seq(items) => items.iter().for_each(|n| self.assert_node(n, depth + 1)),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                self.assert_node(k, depth + 1);
                self.assert_node(v, depth + 1);
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_count_lines_as_yaml_does() {
        let places = Places::new("a\nb\r\nc\rdé: x");
        assert_eq!(places.at(0), (1, 1));
        assert_eq!(places.at(2), (2, 1));
        assert_eq!(places.at(5), (3, 1));
        assert_eq!(places.at(7), (4, 1));
        // `é` is two bytes: the colon after it is the third character.
        assert_eq!(places.at(10), (4, 3));
    }
}
