//! Positions and key paths: what turns a byte range reported by `toml` into the
//! `file:line:column` and dotted key a person can act on.
//!
//! serde errors come with a byte range but no key path, and conversion errors come with a key
//! path built as the tree is walked; both end up here so every error reads the same way.
//!
//! Public so that every TOML file of the project (the graph file, the proxy's settings) points
//! at its errors the same way, with one implementation of columns and key paths.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::model::Span;

/// The byte offset where each line starts, so that an offset becomes a line by binary search
/// instead of a rescan of the text for every span.
pub struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    /// Indexes the line starts of `text` once, for every position asked of it later.
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// The 1-based line and column of a byte offset. The column counts characters, not bytes,
    /// because that is what editors show; offsets past the end or inside a character are
    /// clamped rather than trusted, since they come from another crate.
    pub fn position(&self, offset: usize) -> Span {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self.starts[line - 1];
        Span {
            line,
            column: self.text[line_start..offset].chars().count() + 1,
        }
    }
}

/// One step of a dotted key: a table key or an index into an array of tables.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted key such as `services.web.calls[0].timeout`, written the way a TOML reader would
/// find it again (keys that are not bare are quoted).
///
/// Built as a file is walked, one step at a time, so that an error deep in a table names the
/// whole key a person has to look for:
///
/// ```
/// use stormguard_graph::parse::locate::KeyPath;
///
/// let path = KeyPath::default().key("routes").index(0).key("timeout");
/// assert_eq!(path.to_string(), "routes[0].timeout");
/// assert_eq!(KeyPath::default().key("upstreams").key("a b").to_string(), "upstreams.\"a b\"");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// This path followed by the table key `key`.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_string()));
        path
    }

    /// This path followed by element `index` of an array (of tables).
    pub fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// The last table key of the path (`max_attempts` of `services.web.calls[0].max_attempts`),
    /// which decides what values are valid there.
    pub fn last_key(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
    }

    fn depth(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The dotted key of the most specific key or value of `text` that contains `offset`.
///
/// serde reports where an error is, not which key it is under; re-reading the document as a
/// spanned tree and taking the smallest span around the offset recovers the key. The smallest,
/// because a table's span (its header) can contain its keys' spans; on a tie the deeper path
/// wins, because an array of tables shares its first element's header span. Only called on the
/// error path, so the second parse costs nothing in the common case.
pub fn key_at(text: &str, offset: usize) -> Option<KeyPath> {
    let document = DeTable::parse(text).ok()?;
    let mut best = None;
    visit_table(document.get_ref(), &KeyPath::default(), offset, &mut best);
    best.map(|(_, path)| path)
}

type Best = Option<(usize, KeyPath)>;

fn consider(span: Range<usize>, path: &KeyPath, offset: usize, best: &mut Best) {
    let contains = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if !contains {
        return;
    }
    let better = match best {
        None => true,
        Some((len, old)) => span.len() < *len || (span.len() == *len && path.depth() > old.depth()),
    };
    if better {
        *best = Some((span.len(), path.clone()));
    }
}

fn visit_table(table: &DeTable<'_>, path: &KeyPath, offset: usize, best: &mut Best) {
    for (key, value) in table.iter() {
        let path = path.key(key.get_ref());
        consider(key.span(), &path, offset, best);
        visit_value(value, &path, offset, best);
    }
}

fn visit_value(value: &Spanned<DeValue<'_>>, path: &KeyPath, offset: usize, best: &mut Best) {
    consider(value.span(), path, offset, best);
    match value.get_ref() {
        DeValue::Table(table) => visit_table(table, path, offset, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                visit_value(item, &path.index(i), offset, best);
            }
        }
        _ => {}
    }
}
