//! Reading one value of a TOML file into what it means, or into an error located at it.
//!
//! Every TOML file of the project (the graph file, the proxy's settings) reads the same kinds
//! of value the same way: a duration in the policy core's syntax, a count that is meaningless
//! at zero, a key a table must have. A [`ValueReader`] knows the file's name and lines, so each
//! refusal it makes already carries `file:line:column` and the dotted key; the converters of
//! both files are built on it, so that the same mistake reads the same in either file.
//!
//! Defaults are passed in by the caller, never chosen here: the same key may default
//! differently in a file that describes what is (the graph) and one that says what should be
//! (the proxy).

use std::fmt;
use std::time::Duration;

use toml::Spanned;

use super::locate::{KeyPath, Lines};
use super::ParseError;
use crate::model::Span;

/// The values of one TOML file, read with their positions: every error it returns points at the
/// value (or the table) at fault, with the dotted key and what would be valid.
///
/// A file's converter holds one and adds what only that file knows (the graph's service names,
/// the proxy's upstreams).
///
/// ```
/// use std::time::Duration;
/// use stormguard_graph::parse::locate::{KeyPath, Lines};
/// use stormguard_graph::parse::values::ValueReader;
///
/// #[derive(serde::Deserialize)]
/// struct RawServer { workers: Option<toml::Spanned<u32>> }
///
/// let text = "workers = 0\n";
/// let lines = Lines::new(text);
/// let values = ValueReader::new("s.toml", &lines);
/// let raw: RawServer = toml::from_str(text).unwrap();
/// let error = values
///     .at_least_one(raw.workers.as_ref(), &KeyPath::default(), "workers", 4, "no worker serves")
///     .unwrap_err();
/// assert_eq!(error.to_string(), "s.toml:1:11: `workers`: 0 is not valid: no worker serves");
/// ```
pub struct ValueReader<'a> {
    file: &'a str,
    lines: &'a Lines<'a>,
}

/// A value that a key reads as a duration, in whatever shape its file lets serde accept.
///
/// The graph file refuses anything but text while serde reads it; the proxy's settings accept a
/// number too (a size in bytes shares the type) and refuse it for a duration only here. Both
/// give the same messages: [`stormguard::duration::parse`]'s, or [`bare_number_message`].
pub trait DurationValue {
    /// The duration, or what is wrong with the value and what would be valid.
    fn duration(&self) -> Result<Duration, String>;
}

/// What a duration written as a bare number gets told: it has no unit, the
/// ten-seconds-or-ten-milliseconds mistake, and the two likely fixes.
///
/// ```
/// use stormguard_graph::parse::values::bare_number_message;
///
/// assert!(bare_number_message(5).contains("\"5s\" or \"5ms\""));
/// ```
pub fn bare_number_message(number: impl fmt::Display) -> String {
    format!(
        "the bare number {number} is not a duration: it has no unit; write a string with a \
         unit, e.g. \"{number}s\" or \"{number}ms\""
    )
}

impl<'a> ValueReader<'a> {
    /// Reads the values of `file`, whose text `lines` indexes.
    pub fn new(file: &'a str, lines: &'a Lines<'a>) -> Self {
        ValueReader { file, lines }
    }

    /// The line and column of a byte offset of the file.
    pub fn span(&self, offset: usize) -> Span {
        self.lines.position(offset)
    }

    /// An error at byte `offset` of the file, about the key `path`.
    pub fn error(&self, offset: usize, path: &KeyPath, message: impl Into<String>) -> ParseError {
        let position = self.span(offset);
        ParseError {
            file: self.file.to_string(),
            line: position.line,
            column: position.column,
            key: Some(path.to_string()),
            message: message.into(),
        }
    }

    /// The duration `parent.key`, or its error at the value.
    pub fn duration<T: DurationValue>(
        &self,
        value: &Spanned<T>,
        parent: &KeyPath,
        key: &str,
    ) -> Result<Duration, ParseError> {
        value
            .get_ref()
            .duration()
            .map_err(|message| self.error(value.span().start, &parent.key(key), message))
    }

    /// The duration `parent.key` when the file gives it.
    pub fn optional_duration<T: DurationValue>(
        &self,
        value: Option<&Spanned<T>>,
        parent: &KeyPath,
        key: &str,
    ) -> Result<Option<Duration>, ParseError> {
        value
            .map(|value| self.duration(value, parent, key))
            .transpose()
    }

    /// The duration `parent.key`, or `default` when the file leaves it out.
    pub fn duration_or<T: DurationValue>(
        &self,
        value: Option<&Spanned<T>>,
        parent: &KeyPath,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ParseError> {
        Ok(self
            .optional_duration(value, parent, key)?
            .unwrap_or(default))
    }

    /// A duration that is meaningless at zero (a round trip, what a user waits); `why` says
    /// why, for the error. Only a zero the file wrote is refused: the caller's default is its
    /// own to check.
    pub fn nonzero_duration_or<T: DurationValue>(
        &self,
        value: Option<&Spanned<T>>,
        parent: &KeyPath,
        key: &str,
        default: Duration,
        why: &str,
    ) -> Result<Duration, ParseError> {
        let duration = self.duration_or(value, parent, key, default)?;
        match value {
            Some(value) if duration.is_zero() => Err(self.error(
                value.span().start,
                &parent.key(key),
                format!("0s is not valid: {why}"),
            )),
            _ => Ok(duration),
        }
    }

    /// A count that is meaningless at zero, or `default` when the file leaves it out; `why`
    /// says why, for the error.
    pub fn at_least_one(
        &self,
        value: Option<&Spanned<u32>>,
        parent: &KeyPath,
        key: &str,
        default: u32,
        why: &str,
    ) -> Result<u32, ParseError> {
        match value {
            Some(value) if *value.get_ref() == 0 => Err(self.error(
                value.span().start,
                &parent.key(key),
                format!("0 is not valid: {why}"),
            )),
            Some(value) => Ok(*value.get_ref()),
            None => Ok(default),
        }
    }
}
