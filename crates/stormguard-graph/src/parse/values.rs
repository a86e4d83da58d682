//! Reading one value of a TOML file into what it means, or into an error located at it.
//!
//! Every TOML file of the project (the graph file, the proxy's settings) reads the same kinds
//! of value the same way: a duration in the policy core's syntax, a count, a number or a size,
//! each within its range of [`super::ranges`]. A [`ValueReader`] knows the file's name and
//! lines, so each refusal it makes already carries `file:line:column` and the dotted key; the
//! converters of both files are built on it, so that the same mistake reads the same in either
//! file. Every reading takes a range: no value of a file is read unbounded.
//!
//! Defaults are passed in by the caller, never chosen here: the same key may default
//! differently in a file that describes what is (the graph) and one that says what should be
//! (the proxy).

use std::fmt;
use std::time::Duration;

use toml::Spanned;

use super::locate::{KeyPath, Lines};
use super::ranges::ValueRange;
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
/// use stormguard_graph::parse::ranges::CONCURRENCY;
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
///     .whole_or(raw.workers.as_ref(), &KeyPath::default(), "workers", &CONCURRENCY, 4)
///     .unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "s.toml:1:11: `workers`: 0 is out of range: an instance that works on no request serves \
///      nothing; an instance's concurrency is 1 to 100000"
/// );
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
/// // A negative number is told that too, with fixes a file may hold.
/// assert!(bare_number_message(-5).contains("never negative; write a string with a unit, e.g. \"5s\""));
/// ```
pub fn bare_number_message(number: impl fmt::Display) -> String {
    let number = number.to_string();
    match number.strip_prefix('-') {
        Some(magnitude) => format!(
            "the bare number {number} is not a duration: it has no unit, and a duration is \
             never negative; write a string with a unit, e.g. \"{magnitude}s\" or \
             \"{magnitude}ms\""
        ),
        None => format!(
            "the bare number {number} is not a duration: it has no unit; write a string with a \
             unit, e.g. \"{number}s\" or \"{number}ms\""
        ),
    }
}

/// What a duration (`what`: "a duration", or "a duration or a size") written as a table, or as
/// an unquoted TOML date or time (`timeout = 07:32:00`, which TOML reads as a time of day), gets
/// told, where serde said "invalid type: map": the toml crate hands a date or time to a
/// visitor as a map of one private key.
///
/// ```
/// use serde::de::IntoDeserializer;
/// use stormguard_graph::parse::values::map_message;
///
/// let map = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(
///     [("$__toml_private_datetime", "07:32:00")].into_iter(),
/// );
/// let error: serde::de::value::Error = map_message(map, "a duration");
/// assert!(error.to_string().contains("07:32:00 is a TOML date or time, not a duration"));
/// ```
pub fn map_message<'de, A: serde::de::MapAccess<'de>>(mut map: A, what: &str) -> A::Error {
    use serde::de::Error;
    const DATETIME: &str = "$__toml_private_datetime";
    let fix = if what.contains("size") {
        "write a string with a unit, e.g. \"250ms\" for a duration or \"64KiB\" for a size"
    } else {
        "write a string with a unit, e.g. \"2s\" or \"250ms\""
    };
    match map.next_key::<String>() {
        Ok(Some(key)) if key == DATETIME => match map.next_value::<String>() {
            Ok(when) => A::Error::custom(format!(
                "the unquoted {when} is a TOML date or time, not {what}: {fix}"
            )),
            Err(error) => error,
        },
        Ok(_) => A::Error::custom(format!("a table is not {what}: {fix}")),
        Err(error) => error,
    }
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

    /// The duration `parent.key`, or its error at the value: not a duration, or outside
    /// `range`.
    pub fn duration<T: DurationValue>(
        &self,
        value: &Spanned<T>,
        parent: &KeyPath,
        key: &str,
        range: &ValueRange,
    ) -> Result<Duration, ParseError> {
        value
            .get_ref()
            .duration()
            .and_then(|duration| range.duration(duration))
            .map_err(|message| self.error(value.span().start, &parent.key(key), message))
    }

    /// The duration `parent.key` when the file gives it, in `range`.
    pub fn optional_duration<T: DurationValue>(
        &self,
        value: Option<&Spanned<T>>,
        parent: &KeyPath,
        key: &str,
        range: &ValueRange,
    ) -> Result<Option<Duration>, ParseError> {
        value
            .map(|value| self.duration(value, parent, key, range))
            .transpose()
    }

    /// The duration `parent.key` in `range`, or `default` when the file leaves it out (the
    /// caller's to keep in range).
    pub fn duration_or<T: DurationValue>(
        &self,
        value: Option<&Spanned<T>>,
        parent: &KeyPath,
        key: &str,
        range: &ValueRange,
        default: Duration,
    ) -> Result<Duration, ParseError> {
        Ok(self
            .optional_duration(value, parent, key, range)?
            .unwrap_or(default))
    }

    /// The whole number `parent.key` in `range`, or `default` when the file leaves it out.
    pub fn whole_or<T: Copy + Into<i64>>(
        &self,
        value: Option<&Spanned<T>>,
        parent: &KeyPath,
        key: &str,
        range: &ValueRange,
        default: T,
    ) -> Result<T, ParseError> {
        let Some(value) = value else {
            return Ok(default);
        };
        range
            .whole((*value.get_ref()).into())
            .map(|_| *value.get_ref())
            .map_err(|message| self.error(value.span().start, &parent.key(key), message))
    }

    /// The number `parent.key` in `range` (finite).
    pub fn number(
        &self,
        value: &Spanned<f64>,
        parent: &KeyPath,
        key: &str,
        range: &ValueRange,
    ) -> Result<f64, ParseError> {
        range
            .number(*value.get_ref())
            .map_err(|message| self.error(value.span().start, &parent.key(key), message))
    }

    /// The number `parent.key` in `range`, or `default` when the file leaves it out.
    pub fn number_or(
        &self,
        value: Option<&Spanned<f64>>,
        parent: &KeyPath,
        key: &str,
        range: &ValueRange,
        default: f64,
    ) -> Result<f64, ParseError> {
        value.map_or(Ok(default), |value| self.number(value, parent, key, range))
    }

    /// A size of `bytes`, read at `offset` for `parent.key`, in `range`.
    pub fn size(
        &self,
        offset: usize,
        parent: &KeyPath,
        key: &str,
        range: &ValueRange,
        bytes: u64,
    ) -> Result<u64, ParseError> {
        range
            .size(bytes)
            .map_err(|message| self.error(offset, &parent.key(key), message))
    }
}
