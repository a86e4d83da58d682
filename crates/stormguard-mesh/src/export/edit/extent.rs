//! Where a node's text ends: the doc tree knows where each node starts, the editor reads the
//! text from there (a quoted scalar to its closing quote, a plain one to the end of its line or
//! its comment, a flow collection to its closing bracket, a block collection to its last
//! child's end).

use super::{EditError, Editor, Seg};
use crate::doc::{Node, Value};

impl Editor<'_> {
    /// Whether byte `at` is inside a flow collection (or a JSON file).
    pub(super) fn in_flow(&self, at: usize) -> bool {
        let mut depth: i32 = 0;
        let bytes = self.text.as_bytes();
        // Scan from the start of the document's root (its own offset) to `at`.
        let from = self.doc.root.pos.offset.min(at);
        let mut i = from;
        while i < at {
            match bytes[i] {
                b'"' | b'\''
                    if i == from
                        || matches!(
                            bytes[i - 1],
                            b' ' | b'\t' | b'\n' | b'[' | b'{' | b',' | b':'
                        ) =>
                {
                    i = if bytes[i] == b'"' {
                        skip_double(bytes, i)
                    } else {
                        skip_single(bytes, i)
                    }
                }
                b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n') => {
                    while i < at && bytes[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        depth > 0
    }

    pub(super) fn scalar_end(
        &self,
        start: usize,
        flow: bool,
        path: &[Seg],
        node: &Node,
    ) -> Result<usize, EditError> {
        let bytes = self.text.as_bytes();
        Ok(match bytes.get(start) {
            Some(b'"') => skip_double(bytes, start) + 1,
            Some(b'\'') => skip_single(bytes, start) + 1,
            Some(b'|' | b'>') => {
                return Err(self.error(node, path, "a block scalar: edit it by hand"))
            }
            _ => {
                let mut i = start;
                while i < bytes.len() {
                    let b = bytes[i];
                    if b == b'\n'
                        || b == b'\r'
                        || (flow && matches!(b, b',' | b']' | b'}'))
                        || (b == b'#' && i > start && matches!(bytes[i - 1], b' ' | b'\t'))
                    {
                        break;
                    }
                    i += 1;
                }
                while i > start && matches!(bytes[i - 1], b' ' | b'\t') {
                    i -= 1;
                }
                i
            }
        })
    }

    /// One past the last byte of `node`'s text.
    pub(super) fn end_of(&self, node: &Node, flow: bool, path: &[Seg]) -> Result<usize, EditError> {
        let bytes = self.text.as_bytes();
        if self.is_flow(node) {
            return Ok(matching_close(bytes, node.pos.offset));
        }
        match &node.value {
            Value::Scalar { text, .. } if text.is_empty() => Ok(node.pos.offset),
            Value::Scalar { .. } => self.scalar_end(node.pos.offset, flow, path, node),
            Value::Seq(items) => match items.last() {
                Some(last) => self.end_of(last, flow, path),
                None => Ok(node.pos.offset),
            },
            // A merge key's entries stand in their anchor, elsewhere: the mapping ends with its
            // own last entry.
            Value::Map(entries) => match entries.iter().rfind(|(key, _)| !key.merged) {
                Some((key, value)) if value.is_null() => {
                    let key_end = self.end_of(key, flow, path)?;
                    // `key: ~` or `key: null` ends after its value.
                    Ok(
                        if value.pos.offset >= key_end
                            && self.text[key_end..value.pos.offset]
                                .trim_start_matches([':', ' '])
                                .is_empty()
                            && !matches!(&value.value, Value::Scalar { text, .. } if text.is_empty())
                        {
                            self.scalar_end(value.pos.offset, flow, path, value)?
                        } else {
                            key_end
                        },
                    )
                }
                Some((_, value)) => self.end_of(value, flow, path),
                None => Ok(node.pos.offset),
            },
        }
    }
}

/// The index of the closing quote of the double-quoted scalar at `start`.
pub(super) fn skip_double(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len().saturating_sub(1)
}

/// The index of the closing quote of the single-quoted scalar at `start` (`''` is a quote).
pub(super) fn skip_single(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i;
        }
        i += 1;
    }
    bytes.len().saturating_sub(1)
}

/// One past the bracket that closes the one at `open`.
pub(super) fn matching_close(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_double(bytes, i),
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// One past the newline ending the line that holds byte `at` (the text's end on the last line).
pub(super) fn line_end(bytes: &[u8], at: usize) -> usize {
    match bytes[at.min(bytes.len())..]
        .iter()
        .position(|&b| b == b'\n')
    {
        Some(n) => at + n + 1,
        None => bytes.len(),
    }
}

/// A block inserted at the very end of a file without a final newline starts on a line of its
/// own.
pub(super) fn ensure_newline_before(bytes: &[u8], at: usize, block: String) -> String {
    if at > 0 && at == bytes.len() && bytes[at - 1] != b'\n' {
        format!("\n{block}")
    } else {
        block
    }
}

/// The indentation (spaces) of the line that holds byte `at`.
pub(super) fn line_indent(text: &str, at: usize) -> usize {
    let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
    text[line_start..]
        .bytes()
        .take_while(|&b| b == b' ')
        .count()
}
