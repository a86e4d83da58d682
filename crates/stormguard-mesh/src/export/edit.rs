//! Writes values into a YAML or JSON file the user keeps, in place: a value that is there is
//! replaced where it stands (in the same quoting), a key that is missing is added at the end of
//! its mapping at the mapping's indentation, and every other byte of the file (comments, blank
//! lines, key order, the other documents) stays as it was.
//!
//! ## Why text edits instead of rewriting the tree
//! A fix is reviewed as a diff. Re-serialising a parsed manifest would reorder keys, drop every
//! comment and restyle every scalar, and the diff would be the whole file. The parsed tree
//! ([`crate::doc`]) knows where each node starts; the editor finds where it ends by reading the
//! text from there (a quoted scalar to its closing quote, a plain one to the end of its line or
//! comment, a flow collection to its closing bracket, a block collection to its last child's
//! end), which is all a replacement or an insertion needs.

use crate::doc::{lower_camel, Document, Node, Value};
use crate::export::plan::path_text;
use crate::export::val::{json_string, yaml_string, Val};
use extent::{ensure_newline_before, line_end, line_indent, matching_close};

/// One step of a path into a document: a mapping's key or a sequence's index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    /// A key (a snake_case key also finds its lowerCamelCase spelling, as [`Node::get`] does).
    Key(String),
    /// An index, from 0.
    Index(usize),
}

/// A path from a document's root.
pub type Path = Vec<Seg>;

/// `spec.http[1]` → `[Key("spec"), Key("http"), Index(1)]`, as the readers write a resource's
/// path (`Resource::path`). An empty text is the root.
///
/// ```
/// use stormguard_mesh::export::edit::{parse_path, Seg};
/// assert_eq!(parse_path("spec.http[1]"), vec![Seg::Key("spec".into()), Seg::Key("http".into()), Seg::Index(1)]);
/// assert_eq!(parse_path(""), vec![]);
/// ```
pub fn parse_path(text: &str) -> Path {
    let mut path = Vec::new();
    for part in text.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                path.push(Seg::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let close = stripped.find(']').unwrap_or(stripped.len());
                match stripped[..close].parse() {
                    Ok(i) => path.push(Seg::Index(i)),
                    Err(_) => path.push(Seg::Key(stripped[..close].to_string())),
                }
                rest = stripped.get(close + 1..).unwrap_or("");
            }
        } else {
            path.push(Seg::Key(rest.to_string()));
        }
    }
    path
}

/// Keys from `&str`s, for building paths in code.
pub fn keys(keys: &[&str]) -> Path {
    keys.iter().map(|k| Seg::Key(k.to_string())).collect()
}

/// A replacement of `start..end` of a file's text by `text` (an insertion when they are equal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextEdit {
    /// First byte replaced.
    pub start: usize,
    /// One past the last byte replaced.
    pub end: usize,
    /// The new text.
    pub text: String,
}

/// Why a value could not be written into a document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: cannot write `{path}`: {why}")]
pub struct EditError {
    /// The file.
    pub file: String,
    /// The line of the node that stopped it.
    pub line: u32,
    /// The path written.
    pub path: String,
    /// Why.
    pub why: String,
}

/// What to write under one node: values by path, merged so that two values under one missing
/// mapping are inserted as one block.
#[derive(Clone, Debug, PartialEq)]
enum Want {
    Leaf(Val),
    Branch(Vec<(Seg, Want)>),
}

impl Want {
    fn insert(&mut self, path: &[Seg], value: Val) {
        let Some((first, rest)) = path.split_first() else {
            *self = Want::Leaf(value);
            return;
        };
        if !matches!(self, Want::Branch(_)) {
            *self = Want::Branch(Vec::new());
        }
        let Want::Branch(children) = self else {
            unreachable!()
        };
        let index = match children.iter().position(|(s, _)| s == first) {
            Some(i) => i,
            None => {
                children.push((first.clone(), Want::Branch(Vec::new())));
                children.len() - 1
            }
        };
        children[index].1.insert(rest, value);
    }

    /// Whether it only removes keys (so where nothing is, nothing is written).
    fn only_removals(&self) -> bool {
        match self {
            Want::Leaf(v) => *v == Val::Remove,
            Want::Branch(children) => children.iter().all(|(_, w)| w.only_removals()),
        }
    }

    /// As a value, for writing a whole missing part at once (indexes become list items).
    fn to_val(&self, camel: bool) -> Val {
        match self {
            Want::Leaf(v) => v.clone(),
            Want::Branch(children) if children.iter().all(|(s, _)| matches!(s, Seg::Index(_))) => {
                Val::List(children.iter().map(|(_, w)| w.to_val(camel)).collect())
            }
            Want::Branch(children) => Val::Map(
                children
                    .iter()
                    .filter(|(_, w)| !w.only_removals())
                    .map(|(s, w)| (seg_name(s, camel), w.to_val(camel)))
                    .collect(),
            ),
        }
    }
}

fn seg_name(seg: &Seg, camel: bool) -> String {
    match seg {
        Seg::Key(k) if camel => lower_camel(k),
        Seg::Key(k) => k.clone(),
        Seg::Index(i) => i.to_string(),
    }
}

/// The edits that write every `(path, value)` of `values` into `doc` (paths from its root).
///
/// # Errors
/// A path through a scalar or past the end of a sequence, or a block scalar to replace.
pub fn edits(doc: &Document, values: &[(Path, Val)]) -> Result<Vec<TextEdit>, EditError> {
    let mut want = Want::Branch(Vec::new());
    for (path, value) in values {
        want.insert(path, value.clone());
    }
    let mut editor = Editor {
        doc,
        text: &doc.text,
        json: doc.text.trim_start().starts_with(['{', '[']),
        edits: Vec::new(),
    };
    let Want::Branch(children) = &want else {
        unreachable!()
    };
    editor.under(&doc.root, children, &mut Vec::new())?;
    editor.outside_what_aliases_copy()?;
    Ok(editor.edits)
}

/// The node of `root`'s tree (itself or below) that starts at `offset`, the first in file
/// order: an anchor's own node comes before any copy of it.
fn node_at(root: &Node, offset: usize) -> Option<&Node> {
    if root.pos.offset == offset && !matches!(root.value, Value::Scalar { .. }) {
        return Some(root);
    }
    match &root.value {
        Value::Scalar { .. } => (root.pos.offset == offset).then_some(root),
        Value::Seq(items) => items.iter().find_map(|item| node_at(item, offset)),
        Value::Map(entries) => entries
            .iter()
            .filter(|(key, _)| !key.merged)
            .find_map(|(key, value)| node_at(key, offset).or_else(|| node_at(value, offset))),
    }
}

/// `text` with `edits` applied (edits must not overlap; insertions at one offset keep their
/// order).
///
/// # Panics
/// Never on edits from [`edits`] for this text; overlapping edits are a bug and panic.
pub fn apply(text: &str, mut edits: Vec<TextEdit>) -> String {
    // A stable sort keeps the order of insertions at one offset.
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(text.len() + 256);
    let mut cursor = 0;
    for edit in edits {
        assert!(
            edit.start >= cursor,
            "overlapping edits at byte {}",
            edit.start
        );
        out.push_str(&text[cursor..edit.start]);
        out.push_str(&edit.text);
        cursor = edit.end;
    }
    out.push_str(&text[cursor..]);
    out
}

struct Editor<'a> {
    doc: &'a Document,
    text: &'a str,
    /// A JSON file: values and keys are written as JSON; else flow collections in YAML style.
    json: bool,
    edits: Vec<TextEdit>,
}

impl Editor<'_> {
    /// Refuses edits that change text an alias (`*name`) or a merge key (`<<: *name`) copies
    /// elsewhere in the file: what the files read as another route's value would change with
    /// it (a review: a route's timeout written into a mapping another route merged moved that
    /// route too).
    fn outside_what_aliases_copy(&self) -> Result<(), EditError> {
        let changes: Vec<&TextEdit> = self
            .edits
            .iter()
            .filter(|e| self.text.get(e.start..e.end) != Some(e.text.as_str()))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        for &offset in self.doc.shared.iter() {
            let Some(node) = node_at(&self.doc.root, offset) else {
                continue;
            };
            let end = self.end_of(node, false, &[])?;
            if let Some(edit) = changes.iter().find(|e| e.start <= end && e.end >= offset) {
                let line = self.text[..edit.start.min(self.text.len())]
                    .matches('\n')
                    .count() as u32
                    + 1;
                return Err(EditError {
                    file: self.doc.file.to_string(),
                    line,
                    path: "a part an alias copies".to_string(),
                    why: format!(
                        "the part of the file that starts at line {} is copied elsewhere by an \
                         alias (*name) or a merge key (<<): changed there, it would change every \
                         copy too; make the change by hand",
                        node.pos.line
                    ),
                });
            }
        }
        Ok(())
    }

    fn error(&self, node: &Node, path: &[Seg], why: impl Into<String>) -> EditError {
        EditError {
            file: self.doc.file.to_string(),
            line: node.pos.line,
            path: path_text(path),
            why: why.into(),
        }
    }

    fn is_flow(&self, node: &Node) -> bool {
        matches!(self.text.as_bytes().get(node.pos.offset), Some(b'[' | b'{'))
            && matches!(node.value, Value::Map(_) | Value::Seq(_))
    }

    /// Writes `children` under `node` (a mapping or a sequence).
    fn under(
        &mut self,
        node: &Node,
        children: &[(Seg, Want)],
        path: &mut Vec<Seg>,
    ) -> Result<(), EditError> {
        let mut missing: Vec<(String, Val)> = Vec::new();
        let camel = uses_camel_case(node);
        for (seg, want) in children {
            path.push(seg.clone());
            match seg {
                Seg::Key(key) if *want == Want::Leaf(Val::Remove) => {
                    if let Some((k, v)) = find_entry(node, key) {
                        self.delete(node, k, v, path)?;
                    } else if find_merged(node, key).is_some() {
                        return Err(self.error(
                            node,
                            path,
                            "brought in by a merge key (<<), and so in its anchor, which other \
                             mappings may merge too: remove it there, or override it here, by \
                             hand",
                        ));
                    }
                }
                Seg::Key(key) => {
                    match find_entry(node, key) {
                        Some((k, v)) if empties_a_string_map(path, v, want) => {
                            self.delete(node, k, v, path)?
                        }
                        Some((k, v)) if v.is_null() => self.fill_null(k, v, want, camel)?,
                        Some((_, v)) => self.write(v, want, path)?,
                        // Brought in by a merge key: nothing is written where the merged value says
                        // it already (an unchanged export wrote every merged key out: a review); a
                        // value is written here, over the merged one, as YAML's merge lets a
                        // mapping's own keys do; a part of a merged mapping is not, as a mapping
                        // written here replaces the merged one whole, and the rest of it would be
                        // lost.
                        None if find_merged(node, key).is_some() => {
                            let (_, merged) = find_merged(node, key).expect("found just above");
                            let before = self.edits.len();
                            let tried = self.write(merged, want, path);
                            let changes = self.edits[before..]
                                .iter()
                                .any(|e| self.text.get(e.start..e.end) != Some(e.text.as_str()));
                            self.edits.truncate(before);
                            match (tried, changes, want) {
                                (Ok(()), false, _) => {}
                                (_, _, Want::Leaf(_)) => {
                                    missing.push((seg_name(seg, camel), want.to_val(camel)))
                                }
                                _ => return Err(self.error(
                                    node,
                                    path,
                                    "part of a mapping brought in by a merge key (<<): written \
                                     here it would replace the merged mapping whole; spell the \
                                     mapping out here, or change its anchor, by hand",
                                )),
                            }
                        }
                        None if want.only_removals() => {}
                        None if node.is_map() || node.is_null() => {
                            missing.push((seg_name(seg, camel), want.to_val(camel)))
                        }
                        None => return Err(self.error(node, path, "not a mapping")),
                    }
                }
                Seg::Index(i) => match node.items().get(*i) {
                    Some(item) => self.write(item, want, path)?,
                    None => {
                        return Err(self.error(node, path, format!("no item {i} in this list")))
                    }
                },
            }
            path.pop();
        }
        if !missing.is_empty() {
            self.insert(node, missing, path)?;
        }
        Ok(())
    }

    /// Writes `want` at `node`: replaces it, or recurses into it.
    fn write(&mut self, node: &Node, want: &Want, path: &mut Vec<Seg>) -> Result<(), EditError> {
        match want {
            Want::Branch(children) if node.is_map() || !node.items().is_empty() => {
                self.under(node, children, path)
            }
            _ => {
                let value = want.to_val(uses_camel_case(node));
                self.replace(node, &value, path)
            }
        }
    }

    /// Replaces `node` with `value` where it stands.
    fn replace(&mut self, node: &Node, value: &Val, path: &[Seg]) -> Result<(), EditError> {
        let start = node.pos.offset;
        let flow = self.in_flow(start);
        let (end, text) = match &node.value {
            Value::Scalar { .. } => {
                let end = self.scalar_end(start, flow, path, node)?;
                let original = &self.text[start..end];
                (end, self.scalar_text(value, original, flow, start))
            }
            _ => {
                let end = self.end_of(node, flow, path)?;
                (end, self.inline(value, flow, start))
            }
        };
        // A block sequence starts at its first item's value: the flow list that replaces it
        // goes on its key's line (`codes: [502]`), where any indentation is right.
        let (start, text) = match &node.value {
            Value::Seq(_) if !self.is_flow(node) => {
                let before = self.text[..start].trim_end_matches(' ');
                let key_colon = before
                    .strip_suffix('-')
                    .map(|b| b.trim_end_matches([' ', '\n', '\r']))
                    .filter(|b| b.ends_with(':'));
                match key_colon {
                    Some(b) => (b.len(), format!(" {text}")),
                    None => (start, text),
                }
            }
            _ => (start, text),
        };
        if self.text[start..end] != text {
            self.edits.push(TextEdit { start, end, text });
        }
        Ok(())
    }

    /// A value where a scalar written as `original` stood, in the same quoting.
    fn scalar_text(&self, value: &Val, original: &str, flow: bool, at: usize) -> String {
        let as_string = match value {
            Val::Str(s) => Some(s.clone()),
            Val::Int(i) => Some(i.to_string()),
            Val::Float(f) => Some(crate::export::val::float_text(*f)),
            Val::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match (original.chars().next(), as_string) {
            (Some('"'), Some(s)) => json_string(&s),
            (Some('\''), Some(s)) => format!("'{}'", s.replace('\'', "''")),
            _ => self.inline(value, flow, at),
        }
    }

    /// A value on one line (a collection in flow style), as JSON when in a flow collection.
    fn inline(&self, value: &Val, flow: bool, at: usize) -> String {
        if flow && self.json {
            value.to_json(line_indent(self.text, at))
        } else {
            value.to_yaml_inline()
        }
    }

    /// Removes the entry `key: value` of mapping `map`, with its line(s) in a block mapping
    /// and its comma in a flow one.
    fn delete(
        &mut self,
        map: &Node,
        key: &Node,
        value: &Node,
        path: &[Seg],
    ) -> Result<(), EditError> {
        let bytes = self.text.as_bytes();
        let flow = self.is_flow(map);
        let value_end = if value.is_null() {
            self.end_of(key, flow, path)?
        } else {
            self.end_of(value, flow, path)?
        };
        if flow {
            let mut start = key.pos.offset;
            let mut end = value_end;
            let mut after = end;
            while after < bytes.len() && bytes[after].is_ascii_whitespace() {
                after += 1;
            }
            if bytes.get(after) == Some(&b',') {
                end = after + 1;
                while end < bytes.len() && bytes[end].is_ascii_whitespace() {
                    end += 1;
                }
            } else {
                let mut before = start;
                while before > 0 && bytes[before - 1].is_ascii_whitespace() {
                    before -= 1;
                }
                if before > 0 && bytes[before - 1] == b',' {
                    start = before - 1;
                }
            }
            self.edits.push(TextEdit {
                start,
                end,
                text: String::new(),
            });
            return Ok(());
        }
        let line_start = self.text[..key.pos.offset].rfind('\n').map_or(0, |n| n + 1);
        if !self.text[line_start..key.pos.offset]
            .bytes()
            .all(|b| b == b' ')
        {
            return Err(self.error(key, path, "the first key of a list item: remove it by hand"));
        }
        self.edits.push(TextEdit {
            start: line_start,
            end: line_end(bytes, value_end),
            text: String::new(),
        });
        Ok(())
    }

    /// `key:` with no value (or `~`/`null`): the wanted value goes under it.
    fn fill_null(
        &mut self,
        key: &Node,
        value: &Node,
        want: &Want,
        camel: bool,
    ) -> Result<(), EditError> {
        let val = want.to_val(camel);
        let key_end = self.end_of(key, false, &[])?;
        let bytes = self.text.as_bytes();
        let flow = self.in_flow(key.pos.offset);
        // Where the null is written, if it is (`~`, `null`): replace it.
        let written = !matches!(&value.value, Value::Scalar { text, .. } if text.is_empty())
            && value.pos.offset >= key_end
            && !self.text[key_end..value.pos.offset].contains('\n');
        if flow || (written && !val.is_collection()) {
            let start = if written {
                value.pos.offset
            } else {
                key_end + 1
            };
            let end = if written {
                self.scalar_end(value.pos.offset, flow, &[], value)?
            } else {
                start
            };
            let text = self.inline(&val, flow, start);
            let text = if written { text } else { format!(" {text}") };
            self.edits.push(TextEdit { start, end, text });
            return Ok(());
        }
        if written {
            let end = self.scalar_end(value.pos.offset, false, &[], value)?;
            let mut start = value.pos.offset;
            while start > key_end && bytes[start - 1] == b' ' {
                start -= 1;
            }
            self.edits.push(TextEdit {
                start,
                end,
                text: String::new(),
            });
        }
        let indent = key.pos.column as usize - 1 + 2;
        let at = line_end(bytes, key_end);
        let block = if val.is_collection() {
            val.to_yaml(indent)
        } else {
            format!("{}{}\n", " ".repeat(indent), val.to_yaml_inline())
        };
        self.edits.push(TextEdit {
            start: at,
            end: at,
            text: ensure_newline_before(bytes, at, block),
        });
        Ok(())
    }

    /// Adds `missing` entries at the end of mapping `node`.
    fn insert(
        &mut self,
        node: &Node,
        missing: Vec<(String, Val)>,
        path: &[Seg],
    ) -> Result<(), EditError> {
        let bytes = self.text.as_bytes();
        let value = Val::Map(missing);
        if self.is_flow(node) {
            let close = matching_close(bytes, node.pos.offset) - 1;
            let mut last = close;
            while last > node.pos.offset && bytes[last - 1].is_ascii_whitespace() {
                last -= 1;
            }
            let empty = last == node.pos.offset + 1;
            let multiline = self.text[node.pos.offset..close].contains('\n');
            let Val::Map(entries) = value else {
                unreachable!()
            };
            let pad = match node.entries().iter().find(|(k, _)| !k.merged) {
                Some((k, _)) if multiline => " ".repeat(k.pos.column as usize - 1),
                _ if multiline => " ".repeat(line_indent(self.text, node.pos.offset) + 2),
                _ => String::new(),
            };
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| {
                    if self.json {
                        format!("{}: {}", json_string(k), v.to_json(pad.len()))
                    } else {
                        format!("{}: {}", yaml_string(k), v.to_yaml_inline())
                    }
                })
                .collect();
            let separator = if multiline {
                format!(",\n{pad}")
            } else {
                ", ".to_string()
            };
            let mut text = String::new();
            if !empty {
                text.push(',');
            }
            if multiline {
                text.push('\n');
                text.push_str(&pad);
            } else if !empty {
                text.push(' ');
            }
            text.push_str(&parts.join(&separator));
            if empty && multiline {
                text.push('\n');
                text.push_str(&" ".repeat(line_indent(self.text, close)));
            }
            self.edits.push(TextEdit {
                start: last,
                end: last,
                text,
            });
            return Ok(());
        }
        let Some((first_key, _)) = node.entries().iter().find(|(k, _)| !k.merged) else {
            return Err(self.error(node, path, "an empty block mapping"));
        };
        let indent = first_key.pos.column as usize - 1;
        let end = self.end_of(node, false, path)?;
        let at = line_end(bytes, end);
        let block = value.to_yaml(indent);
        self.edits.push(TextEdit {
            start: at,
            end: at,
            text: ensure_newline_before(bytes, at, block),
        });
        Ok(())
    }
}

/// Whether `want` removes every entry of `map`, the `metadata.annotations` or
/// `metadata.labels` at `path`: a Kubernetes map of strings, for which an empty value and none
/// are the same, so the key goes with its last entry (an `annotations:` left behind with nothing
/// under it reads as null).
fn empties_a_string_map(path: &[Seg], map: &Node, want: &Want) -> bool {
    let [.., Seg::Key(parent), Seg::Key(key)] = path else {
        return false;
    };
    let Want::Branch(children) = want else {
        return false;
    };
    parent == "metadata"
        && (key == "annotations" || key == "labels")
        && map.is_map()
        && !map.entries().is_empty()
        && want.only_removals()
        && map.entries().iter().all(|(k, _)| {
            children
                .iter()
                .any(|(seg, _)| matches!(seg, Seg::Key(name) if k.as_str() == Some(name)))
        })
}

/// The entry of `key` in mapping `node` that a merge key brought in ([`Node::merged`]).
fn find_merged<'n>(node: &'n Node, key: &str) -> Option<(&'n Node, &'n Node)> {
    let camel = lower_camel(key);
    node.entries()
        .iter()
        .filter(|(k, _)| k.merged)
        .find(|(k, _)| k.as_str() == Some(key) || k.as_str() == Some(camel.as_str()))
        .map(|(k, v)| (k, v))
}

/// The entry of `key` in mapping `node`: the key as given, or its lowerCamelCase spelling,
/// written in it: one a merge key (`<<: *defaults`) brought
/// in ([`Node::merged`]) stands in its anchor, and an edit there would change every mapping
/// that merges it; such a key is missing here, and a value for it is written into this
/// mapping, where it overrides the merged one.
fn find_entry<'n>(node: &'n Node, key: &str) -> Option<(&'n Node, &'n Node)> {
    let entries: Vec<&(Node, Node)> = node.entries().iter().filter(|(k, _)| !k.merged).collect();
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .or_else(|| {
            let camel = lower_camel(key);
            entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(camel.as_str()))
        })
        .map(|(k, v)| (k, v))
}

/// Whether a mapping spells its keys in lowerCamelCase (a `/config_dump`): new keys follow.
fn uses_camel_case(node: &Node) -> bool {
    let keys: Vec<&str> = node
        .entries()
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .collect();
    keys.iter()
        .any(|k| k.chars().any(|c| c.is_ascii_uppercase()))
        && !keys.iter().any(|k| k.contains('_'))
}

mod extent;
#[cfg(test)]
mod tests;
