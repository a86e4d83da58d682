//! YAML and JSON documents as trees whose every node knows its line and column.
//!
//! ## Why our own tree
//! An imported value is written with the `file:line` it came from, an error names the line of
//! the bad field, and `check` points SARIF at the manifest the user keeps: the reader needs the
//! position of every node, which the usual YAML-to-serde path throws away. The tree is built
//! from yaml-rust2's events, which carry a marker each.
//!
//! Scalars stay text: YAML's core schema would turn `"2"` and `2` into different types, while
//! every system read here means the same thing by both (Envoy's `/config_dump` even writes 64-bit
//! integers as strings), so each reader asks for the type it wants ([`Node::as_u64`],
//! [`Node::as_duration`]) and gets an error naming the line when the text is not one.
//!
//! ## Bounds
//! Every file is a parser's garbage input some day. Nesting is limited to [`MAX_DEPTH`], and
//! aliases are expanded by copying within a budget of [`MAX_NODES`] nodes per file, so that the
//! "billion laughs" (an alias of an alias of ...) is an error, not 10^9 nodes.

use std::sync::Arc;
use std::time::Duration;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::ImportError;

/// Deepest nesting read: real manifests nest some 15 levels; a deeper one is garbage or an
/// attack on the reader's stack.
pub const MAX_DEPTH: usize = 128;

/// Most nodes in one file, aliases expanded: 1,000 large VirtualServices are some 200,000.
pub const MAX_NODES: usize = 4_000_000;

/// Where a node is in its file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// Byte offset of the node's first character (a quoted scalar's quote), for writers that
    /// replace a value in place.
    pub offset: usize,
}

/// A node's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar as written (without quotes); `plain` is false for a quoted or block scalar,
    /// so that `"null"` is text and `null` is not.
    Scalar {
        /// The text.
        text: String,
        /// Whether it was written without quotes.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(Node, Node)>),
}

/// One node of a document, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What it holds.
    pub value: Value,
    /// Where it starts.
    pub pos: Pos,
    /// A mapping's key that a merge key (`<<: *defaults`) brought in: it stands in its anchor,
    /// and a writer that changed it there would change every mapping that merges it.
    pub merged: bool,
}

/// One document of a file (a YAML stream holds several, separated by `---`).
#[derive(Clone, Debug)]
pub struct Document {
    /// The file, as the user named it (or as found under a directory they named).
    pub file: Arc<str>,
    /// Which document of the file, from 0.
    pub index: usize,
    /// The whole text of the file, for writers that edit it in place.
    pub text: Arc<str>,
    /// The root node.
    pub root: Node,
    /// Where the nodes an alias (`*name`, or a merge key's) copies start, by byte offset in
    /// the file: a writer that changed one would change every copy too, which the files read
    /// as parts of their own.
    pub shared: Arc<[usize]>,
}

impl Document {
    /// An error at `node` about `field` (a path such as `http[0].retries.attempts`).
    pub fn error(&self, node: &Node, field: &str, message: impl Into<String>) -> ImportError {
        ImportError::At {
            file: self.file.to_string(),
            line: node.pos.line,
            column: node.pos.column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// `node` as a duration ([`Node::as_duration`]), or an error at its line naming `field`
    /// and showing how the system writes one (`example`: `"500ms or 2s"`). Every reader reads
    /// its durations so, for one form of the message.
    ///
    /// # Errors
    /// `not a duration: write e.g. {example}`, at `node`.
    pub fn duration(
        &self,
        node: &Node,
        field: &str,
        example: &str,
    ) -> Result<Duration, ImportError> {
        node.as_duration()
            .ok_or_else(|| self.error(node, field, format!("not a duration: write e.g. {example}")))
    }
}

impl Node {
    /// Whether it is YAML's null (`null`, `~`, or nothing).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value of key `key` of a mapping; `None` for another kind of node or a missing key.
    /// A key given as `snake_case` also finds its `lowerCamelCase` spelling, which proto3's JSON
    /// (Envoy's `/config_dump`) uses for the same field: `get("per_try_timeout")` finds
    /// `perTryTimeout`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        let Value::Map(entries) = &self.value else {
            return None;
        };
        let found = entries.iter().find(|(k, _)| k.as_str() == Some(key));
        if found.is_some() || !key.contains('_') {
            return found.map(|(_, v)| v).filter(|v| !v.is_null());
        }
        let camel = lower_camel(key);
        entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(camel.as_str()))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    /// The entries of a mapping (empty for another kind of node).
    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The items of a sequence (empty for another kind of node).
    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    /// Whether it is a mapping.
    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }

    /// A scalar's text; `None` for a mapping or sequence.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A non-negative integer, written as a number or, as proto3's JSON writes 64-bit ones, as
    /// a string; a protobuf wrapper (`{ value: 3 }`) is read through.
    pub fn as_u64(&self) -> Option<u64> {
        if let Some(inner) = self.get("value") {
            return inner.as_u64();
        }
        self.as_str()?.trim().parse().ok()
    }

    /// A number, written as a number or a string; a protobuf wrapper is read through.
    pub fn as_f64(&self) -> Option<f64> {
        if let Some(inner) = self.get("value") {
            return inner.as_f64();
        }
        let v: f64 = self.as_str()?.trim().parse().ok()?;
        v.is_finite().then_some(v)
    }

    /// A boolean (`true`/`false`, any case; a protobuf wrapper is read through).
    pub fn as_bool(&self) -> Option<bool> {
        if let Some(inner) = self.get("value") {
            return inner.as_bool();
        }
        match self.as_str()?.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// A duration, in any of the forms the systems read here write: Go's and Gateway API's
    /// (`1h2m3.5s`, `250ms`, `10us`), proto3 JSON's (`"0.250s"`), or a protobuf `Duration`
    /// mapping (`{ seconds: 1, nanos: 500000000 }`). See [`parse_duration`].
    pub fn as_duration(&self) -> Option<Duration> {
        if self.is_map() {
            let seconds = self.get("seconds").map_or(Some(0), Node::as_u64)?;
            let nanos = self.get("nanos").map_or(Some(0), Node::as_u64)?;
            if nanos >= 1_000_000_000 || seconds > MAX_DURATION_SECS {
                return None;
            }
            return Some(Duration::new(seconds, nanos as u32));
        }
        parse_duration(self.as_str()?)
    }
}

/// The longest duration read: 10,000 years is longer than any timeout means and keeps every
/// sum of a few of them far from overflow.
const MAX_DURATION_SECS: u64 = 10_000 * 365 * 24 * 3600;

/// Parses a Go-style duration: one or more `NUMBER UNIT` with units `h`, `m`, `s`, `ms`, `us`
/// (or `µs`), `ns`; numbers may have a fraction (`1.5s`, proto3's `0.250s`). `0` alone is zero.
/// `None` for anything else, a negative duration, or one over 10,000 years.
///
/// ```
/// use std::time::Duration;
/// use stormguard_mesh::doc::parse_duration;
/// assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
/// assert_eq!(parse_duration("0.250s"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_duration("25ms"), Some(Duration::from_millis(25)));
/// assert_eq!(parse_duration("-1s"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut nanos = whole.checked_mul(unit_nanos)?;
        let mut scale = unit_nanos;
        for digit in fraction.chars().take(18) {
            scale /= 10;
            nanos += u128::from(digit.to_digit(10)?) * scale;
        }
        total_nanos = total_nanos.checked_add(nanos)?;
        rest = tail;
    }
    let secs = total_nanos / 1_000_000_000;
    if secs > u128::from(MAX_DURATION_SECS) {
        return None;
    }
    Some(Duration::new(
        secs as u64,
        (total_nanos % 1_000_000_000) as u32,
    ))
}

/// `per_try_timeout` → `perTryTimeout`: how manifests and proto3 JSON spell a field the
/// readers and the export name in snake case.
pub(crate) fn lower_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads every document of a YAML or JSON text (JSON is read as YAML's flow style, so both get
/// positions). Empty documents are skipped.
///
/// # Errors
/// The first syntax error, at its line and column; nesting deeper than [`MAX_DEPTH`]; more than
/// [`MAX_NODES`] nodes once aliases are expanded; an alias to an unknown anchor.
///
/// ```
/// let docs = stormguard_mesh::doc::parse_documents("a.yaml", "kind: A\n---\nkind: B\n  \n").unwrap();
/// assert_eq!(docs.len(), 2);
/// assert_eq!(docs[1].root.get("kind").unwrap().pos.line, 3);
/// ```
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, ImportError> {
    if let Some((line, column, c)) = unprintable(text) {
        // yaml-rust2 reads a NUL as the end of the text (and some controls as breaks), so that
        // positions after it would be wrong; YAML allows none of them anyway.
        return Err(ImportError::At {
            file: file.to_string(),
            line,
            column,
            field: String::new(),
            message: format!(
                "not YAML or JSON: the control character U+{:04X}, which YAML does not allow \
                 (only tab, line breaks and printable characters)",
                c as u32
            ),
        });
    }
    let file: Arc<str> = Arc::from(file);
    let shared_text: Arc<str> = Arc::from(text);
    let mut builder = Builder {
        offsets: ByteOffsets::new(shared_text.clone()),
        lines: LinesWalked::default(),
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(text);
    let loaded = parser.load(&mut builder, true);
    if let Some(error) = builder.error.take() {
        return Err(ImportError::At {
            file: file.to_string(),
            line: error.0.line,
            column: error.0.column,
            field: String::new(),
            message: error.1,
        });
    }
    if let Err(error) = loaded {
        let marker = error.marker();
        // At the end of an unfinished text the scanner stands on a line after the last one.
        let (line, column) = within(text, marker.line() as u32, marker.col() as u32 + 1);
        return Err(ImportError::At {
            file: file.to_string(),
            line,
            column,
            field: String::new(),
            message: format!("not YAML or JSON: {}", error.info()),
        });
    }
    let shared: Arc<[usize]> = builder.shared.into();
    Ok(builder
        .documents
        .into_iter()
        .filter(|root| !root.is_null())
        .enumerate()
        .map(|(index, root)| Document {
            file: file.clone(),
            index,
            text: shared_text.clone(),
            root,
            shared: shared.clone(),
        })
        .collect())
}

/// The first character YAML 1.2 does not allow in a text (c-printable: a C0 or C1 control
/// other than tab, line feed, carriage return and NEL; DEL; U+FFFE and U+FFFF), with its line
/// and column as YAML counts them.
fn unprintable(text: &str) -> Option<(u32, u32, char)> {
    let allowed = |c: char| {
        let control = c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}');
        !control && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    let at = text.find(|c: char| !allowed(c))?;
    let (line, column) = line_column(&text[..at]);
    Some((line, column, text[at..].chars().next()?))
}

/// The line and column (1-based, in characters) just after `before`, lines ending at `\n`,
/// `\r\n` or a lone `\r` as YAML's.
fn line_column(before: &str) -> (u32, u32) {
    let mut line = 1;
    let mut start = 0;
    let bytes = before.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ends = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
        if ends {
            line += 1;
            start = i + 1;
        }
    }
    (line, before[start..].chars().count() as u32 + 1)
}

/// `line`, `column` moved inside `text` when past its end: to just after its last character.
fn within(text: &str, line: u32, column: u32) -> (u32, u32) {
    let (last_line, end_column) = line_column(text);
    if line > last_line || (line == last_line && column > end_column) {
        (last_line, end_column)
    } else {
        (line, column)
    }
}

/// Builds nodes from events; remembers the first error (the receiver cannot return one).
#[derive(Default)]
struct Builder {
    /// The open sequences and mappings, innermost last.
    stack: Vec<Open>,
    anchors: std::collections::HashMap<usize, Node>,
    /// Where each node an alias copied starts ([`Document::shared`]).
    shared: Vec<usize>,
    documents: Vec<Node>,
    nodes: usize,
    error: Option<(Pos, String)>,
    offsets: ByteOffsets,
    lines: LinesWalked,
}

/// A collection being read: its node so far, a map's pending key, its anchor, and a map's keys
/// with the line of each.
struct Open {
    node: Node,
    key: Option<Node>,
    anchor: usize,
    keys: std::collections::HashMap<String, u32>,
}

/// Byte offsets from yaml-rust2's markers, whose index counts characters (its docs say bytes:
/// true only of ASCII text), so that `Pos::offset` slices the text where the node starts.
#[derive(Default)]
struct ByteOffsets {
    text: Arc<str>,
    ascii: bool,
    /// The last conversion, from which the next one walks on: markers come in file order.
    chars: usize,
    bytes: usize,
}

impl ByteOffsets {
    fn new(text: Arc<str>) -> ByteOffsets {
        ByteOffsets {
            ascii: text.is_ascii(),
            text,
            chars: 0,
            bytes: 0,
        }
    }

    /// The byte offset of character `index` (the text's length past its end).
    fn of(&mut self, index: usize) -> usize {
        if self.ascii {
            return index.min(self.text.len());
        }
        // Back a little (yaml-rust2 marks some events before the last one), not from the start
        // of the text: restarting made a file of thousands of documents quadratic.
        while index < self.chars {
            let c = self.text[..self.bytes]
                .chars()
                .next_back()
                .expect("a character before a count above 0");
            self.chars -= 1;
            self.bytes -= c.len_utf8();
        }
        for c in self.text[self.bytes..].chars() {
            if self.chars >= index {
                break;
            }
            self.chars += 1;
            self.bytes += c.len_utf8();
        }
        self.bytes
    }
}

/// Line and column of byte offsets, counted by [`line_column`]'s rule, walking on from the last
/// offset asked (markers come in file order, so a text is walked about once).
///
/// Why not the marker's own line and column: yaml-rust2 counts some lone carriage returns
/// (inside block scalars) apart from the rest of the text, so a node's line could disagree with
/// its offset (found by the `mesh` fuzz target: a node at line 28 whose offset is on line 30),
/// and a finding would point at one line while an export edit lands on another.
#[derive(Default)]
struct LinesWalked {
    /// The byte offset reached, and its line and column (1-based; the column in characters).
    offset: usize,
    line: u32,
    column: u32,
}

impl LinesWalked {
    fn at(&mut self, text: &str, offset: usize) -> (u32, u32) {
        let offset = offset.min(text.len());
        let bytes = text.as_bytes();
        let ends_line = |at: usize| {
            bytes[at] == b'\n' || (bytes[at] == b'\r' && bytes.get(at + 1) != Some(&b'\n'))
        };
        if self.line == 0 {
            (self.offset, self.line, self.column) = (0, 1, 1);
        } else if offset < self.offset {
            // Back a little (yaml-rust2 marks some events before the last one), not from the
            // start of the text: restarting made a file of thousands of documents quadratic.
            let breaks = (offset..self.offset).filter(|&at| ends_line(at)).count();
            self.line -= breaks as u32;
            let start = (0..offset)
                .rev()
                .find(|&at| ends_line(at))
                .map_or(0, |at| at + 1);
            self.column = text[start..offset].chars().count() as u32 + 1;
            self.offset = offset;
            return (self.line, self.column);
        }
        for (i, c) in text[self.offset..offset].char_indices() {
            let at = self.offset + i;
            let ends = c == '\n' || (c == '\r' && bytes.get(at + 1) != Some(&b'\n'));
            if ends {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.offset = offset;
        (self.line, self.column)
    }
}

impl Builder {
    fn pos_of(&mut self, mark: Marker) -> Pos {
        let offset = self.offsets.of(mark.index());
        let (line, column) = self.lines.at(&self.offsets.text, offset);
        Pos {
            line,
            column,
            offset,
        }
    }
}

fn count(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar { .. } => 0,
        Value::Seq(items) => items.iter().map(count).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| count(k) + count(v)).sum(),
    }
}

impl Builder {
    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some((pos, message));
        }
    }

    /// Puts a finished node into its parent (or makes it a document).
    fn add(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let mut duplicate = None;
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(open) => match &mut open.node.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match open.key.take() {
                    None => {
                        // A key given twice: YAML says keys are unique, and tools disagree on
                        // which value wins (kubectl's strict decoding refuses it). `<<`, the
                        // merge key, may repeat.
                        if let Value::Scalar { text, .. } = &node.value {
                            if text != "<<" {
                                if let Some(&first) = open.keys.get(text.as_str()) {
                                    duplicate = Some((node.pos, text.clone(), first));
                                } else {
                                    open.keys.insert(text.clone(), node.pos.line);
                                }
                            }
                        }
                        open.key = Some(node);
                    }
                    Some(k) => entries.push((k, node)),
                },
                Value::Scalar { .. } => unreachable!("scalars are never open"),
            },
        }
        if let Some((pos, key, first)) = duplicate {
            self.fail(
                pos,
                format!(
                    "duplicate key {key:?} (first at line {first}): a mapping holds each key once, \
                     and tools differ on which value they take; remove one"
                ),
            );
        }
    }

    fn open(&mut self, value: Value, pos: Pos, anchor: usize) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(pos, format!("nested deeper than {MAX_DEPTH} levels"));
            return;
        }
        self.stack.push(Open {
            node: Node {
                value,
                pos,
                merged: false,
            },
            key: None,
            anchor,
            keys: std::collections::HashMap::new(),
        });
    }

    fn close(&mut self) {
        if let Some(mut open) = self.stack.pop() {
            if let Value::Map(entries) = &mut open.node.value {
                if let Err(message) = merge_keys(entries) {
                    self.fail(open.node.pos, message);
                }
            }
            self.add(open.node, open.anchor);
        }
    }
}

/// Whether `key` is YAML's merge key: `<<`, unquoted.
fn is_merge_key(key: &Node) -> bool {
    matches!(&key.value, Value::Scalar { text, plain: true } if text == "<<")
}

/// Expands YAML's merge key (`<<: *defaults`, or a list of such mappings) in a mapping's
/// `entries`: each merged mapping's keys the mapping lacks are added, the first merged mapping
/// taking precedence over later ones, and the mapping's own keys over all (as Kubernetes'
/// YAML decoder does). Left as a key named `<<`, a route written `- <<: *route` plus its own
/// name was read with no destination and dropped (a review). A merge of something other than
/// mappings is an error, as in go-yaml ("map merge requires map or sequence of maps").
fn merge_keys(entries: &mut Vec<(Node, Node)>) -> Result<(), String> {
    if !entries.iter().any(|(key, _)| is_merge_key(key)) {
        return Ok(());
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = std::mem::take(entries)
        .into_iter()
        .partition(|(key, _)| is_merge_key(key));
    for (_, value) in merges {
        let sources = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items,
            Value::Scalar { .. } => {
                return Err("a merge key (<<) takes a mapping or a list of mappings".to_string())
            }
        };
        for source in sources {
            let Value::Map(from) = source.value else {
                return Err("a merge key (<<) takes a mapping or a list of mappings".to_string());
            };
            for (mut key, value) in from {
                key.merged = true;
                let taken = key
                    .as_str()
                    .is_some_and(|name| own.iter().any(|(k, _)| k.as_str() == Some(name)));
                if !taken {
                    own.push((key, value));
                }
            }
        }
    }
    *entries = own;
    Ok(())
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = self.pos_of(mark);
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            self.fail(pos, format!("more than {MAX_NODES} nodes"));
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain && !is_string_tag(tag.as_ref());
                self.add(
                    Node {
                        value: Value::Scalar { text, plain },
                        pos,
                        merged: false,
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.open(Value::Seq(Vec::new()), pos, anchor),
            Event::MappingStart(anchor, _) => self.open(Value::Map(Vec::new()), pos, anchor),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    self.shared.push(node.pos.offset);
                    self.nodes += count(&node);
                    if self.nodes > MAX_NODES {
                        self.fail(
                            pos,
                            format!("more than {MAX_NODES} nodes once aliases are expanded"),
                        );
                        return;
                    }
                    node.pos = pos;
                    self.add(node, 0);
                }
                None => self.fail(pos, "an alias to an anchor not defined before it".into()),
            },
            Event::DocumentEnd => {
                // A document with only a stream of nothing leaves no node: keep one index per
                // document anyway (filtered out later as null).
                self.stack.clear();
                self.anchors.clear();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

fn is_string_tag(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|t| t.suffix == "str")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key given twice in one mapping is refused at the second, naming the first's line,
    /// where the first value was read silently; the merge key and equal keys in different
    /// mappings are not duplicates.
    #[test]
    fn a_key_given_twice_is_refused_at_its_second() {
        let text = "a: 1\nb:\n  timeout: 5s\n  timeout: 1s\n";
        let error = parse_documents("vs.yaml", text).unwrap_err();
        let shown = error.to_string();
        assert!(shown.contains("vs.yaml:4:"), "{shown}");
        assert!(
            shown.contains("duplicate key \"timeout\" (first at line 3)"),
            "{shown}"
        );
        let fine = "a: {timeout: 1s}\nb: {timeout: 2s}\nbase: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n";
        parse_documents("ok.yaml", fine).unwrap();
        let json = "{\"methodConfig\": [], \"methodConfig\": []}";
        assert!(parse_documents("sc.json", json).is_err());
    }

    /// YAML's merge key brings in the mapping it names (or each of a list), under the
    /// mapping's own keys and the first merged before later ones, as Kubernetes' decoder reads
    /// it; a merge of a scalar is an error at the mapping (a review: a route written
    /// `- <<: *r` plus its own name was read with no destination).
    #[test]
    fn a_merge_key_brings_in_its_mappings_keys_under_the_own_ones() {
        let text = "http:\n- &r\n  name: one\n  timeout: 2s\n  route: [{host: a}]\n\
                    - <<: *r\n  name: two\n- <<: [{retries: 1, name: x}, {retries: 2, y: 3}]\n";
        let docs = parse_documents("vs.yaml", text).unwrap();
        let http = docs[0].root.get("http").unwrap().items();
        let two = &http[1];
        assert_eq!(two.get("name").and_then(Node::as_str), Some("two"));
        assert_eq!(two.get("timeout").and_then(Node::as_str), Some("2s"));
        assert!(two.get("route").is_some());
        assert!(two.get("<<").is_none());
        // The merged value keeps the place it is written at: the anchor's line.
        assert_eq!(two.get("timeout").unwrap().pos.line, 4);
        let third = &http[2];
        assert_eq!(third.get("retries").and_then(Node::as_str), Some("1"));
        assert_eq!(third.get("name").and_then(Node::as_str), Some("x"));
        assert_eq!(third.get("y").and_then(Node::as_str), Some("3"));
        // Quoted, it is a key like any other.
        let quoted = parse_documents("q.yaml", "a:\n  \"<<\": 1\n").unwrap();
        assert!(quoted[0].root.get("a").unwrap().get("<<").is_some());
        let error = parse_documents("s.yaml", "a:\n  <<: 5\n").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("a merge key (<<) takes a mapping"),
            "{error}"
        );
    }

    /// Walked forward and back a little (as yaml-rust2's markers come), byte offsets and lines
    /// agree with counting from the start each time, in ASCII and beyond, across `\n`, `\r\n`
    /// and lone `\r` line ends: stepping back no longer restarts from the start of the text.
    #[test]
    fn walking_back_a_little_agrees_with_counting_from_the_start() {
        let pieces = ["a", "é", "\n", "\r\n", "\r", "  ", "日本", "x: 1"];
        let mut seed: u64 = 7;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..200 {
            let text: String = (0..60).map(|_| pieces[next(pieces.len())]).collect();
            let shared: Arc<str> = Arc::from(text.as_str());
            let (mut offsets, mut lines) = (ByteOffsets::new(shared), LinesWalked::default());
            let chars = text.chars().count();
            let mut index = 0usize;
            for _ in 0..80 {
                // Mostly forward, now and then a few characters back.
                index = if next(4) == 0 {
                    index.saturating_sub(next(5))
                } else {
                    (index + next(4)).min(chars)
                };
                let offset = offsets.of(index);
                let expected_offset = text
                    .char_indices()
                    .nth(index)
                    .map_or(text.len(), |(b, _)| b);
                assert_eq!(offset, expected_offset, "{text:?} at char {index}");
                let split_crlf = offset > 0
                    && text.as_bytes()[offset - 1] == b'\r'
                    && text.as_bytes().get(offset) == Some(&b'\n');
                let walked = lines.at(&text, offset);
                if !split_crlf {
                    assert_eq!(walked, line_column(&text[..offset]), "{text:?} at {offset}");
                }
            }
        }
    }

    #[test]
    fn positions_and_camel_case() {
        let text = "a:\n  perTryTimeout: \"0.250s\"\n  numRetries: '3'\n  list: [1, 2]\n";
        let docs = parse_documents("f.yaml", text).unwrap();
        let a = docs[0].root.get("a").unwrap();
        let per_try = a.get("per_try_timeout").unwrap();
        assert_eq!((per_try.pos.line, per_try.pos.column), (2, 18));
        assert_eq!(per_try.as_duration(), Some(Duration::from_millis(250)));
        assert_eq!(a.get("num_retries").unwrap().as_u64(), Some(3));
        assert_eq!(a.get("list").unwrap().items().len(), 2);
        assert_eq!(&text[per_try.pos.offset..per_try.pos.offset + 1], "\"");
    }

    #[test]
    fn offsets_are_bytes_after_non_ascii_text() {
        let text = "note: \"été — 😀\"\nname: café\ntimeout: 2s\n";
        let docs = parse_documents("u.yaml", text).unwrap();
        for (key, value) in [("name", "café"), ("timeout", "2s")] {
            let node = docs[0].root.get(key).unwrap();
            assert_eq!(&text[node.pos.offset..][..value.len()], value, "{key}");
        }
        let timeout = docs[0].root.get("timeout").unwrap();
        assert_eq!((timeout.pos.line, timeout.pos.column), (3, 10));
    }

    #[test]
    fn a_control_character_is_refused_at_its_place() {
        // A NUL read as the end of the text by the scanner moved every later position.
        let error = parse_documents("n.yaml", "a: 1\nb: x\0y\n").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("n.yaml:2:5: not YAML or JSON: the control character U+0000"),
            "{error}"
        );
        assert!(parse_documents("t.yaml", "a: \"x\ty\"\r\nb: x\u{85}\n").is_ok());
    }

    #[test]
    fn a_node_at_the_end_of_the_text_is_on_its_last_line() {
        let text = "g\":\":";
        let docs = parse_documents("e.yaml", text).unwrap();
        let value = &docs[0].root.entries()[0].1;
        assert_eq!(
            (value.pos.line, value.pos.column, value.pos.offset),
            (1, 6, 5)
        );
    }

    #[test]
    fn an_error_at_the_end_of_an_unfinished_text_is_inside_it() {
        // The scanner reports it on the line after the last.
        for (text, at) in [("{\nlo=d&g", "u.yaml:2:7:"), ("{\n", "u.yaml:2:1:")] {
            let error = parse_documents("u.yaml", text).unwrap_err();
            assert!(error.to_string().starts_with(at), "{text:?}: {error}");
        }
    }

    #[test]
    fn json_reads_with_lines() {
        let text = "{\n  \"configs\": [\n    {\"@type\": \"x\", \"n\": \"5\"}\n  ]\n}";
        let docs = parse_documents("dump.json", text).unwrap();
        let first = &docs[0].root.get("configs").unwrap().items()[0];
        assert_eq!(first.get("@type").unwrap().as_str(), Some("x"));
        assert_eq!(first.get("n").unwrap().pos.line, 3);
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut previous = 'a';
        for name in 'b'..='k' {
            text.push_str(&format!(
                "{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
            ));
            previous = name;
        }
        let error = parse_documents("laughs.yaml", &text).unwrap_err();
        assert!(error.to_string().contains("nodes"), "{error}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(10_000);
        let error = parse_documents("deep.yaml", &text).unwrap_err();
        assert!(error.to_string().contains("deep.yaml:1"), "{error}");
    }

    #[test]
    fn syntax_error_names_line() {
        let error = parse_documents("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(error.to_string().starts_with("bad.yaml:"), "{error}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
        let node = &parse_documents("d.yaml", "{seconds: 2, nanos: 5}").unwrap()[0].root;
        assert_eq!(node.as_duration(), Some(Duration::new(2, 5)));
    }
}
