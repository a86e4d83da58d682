//! The text form of a [`Backoff`]: `full-jitter(base=25ms, cap=1s)`.
//!
//! Parsing is strict because a backoff that parses "nearly right" is worse than an error: an
//! uncapped or zero-base backoff silently turns into unbounded waits or a tight retry loop.
//! Printing is canonical (base before cap, `", "` between), so configs round-trip exactly.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::Backoff;
use crate::duration::{self, DurationError};

const VALID_FORMS: &str = "valid forms: none, constant(100ms), exponential(base=25ms, cap=1s), \
     full-jitter(base=25ms, cap=1s), equal-jitter(base=25ms, cap=1s), \
     decorrelated-jitter(base=25ms, cap=1s)";

/// Why a backoff text was refused.
///
/// Each message names what was wrong and shows what would be valid, because these texts are
/// written by people in config files and the error is all they will see.
///
/// ```rust
/// use stormguard::backoff::{Backoff, BackoffParseError};
///
/// let err = "full-jitter(base=25ms)".parse::<Backoff>().unwrap_err();
/// assert!(matches!(err, BackoffParseError::MissingCap { .. }));
/// assert!(err.to_string().contains("uncapped backoff is a bug"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffParseError {
    /// Nothing but whitespace was given.
    #[error("empty backoff text; {VALID_FORMS}")]
    Empty,
    /// The name before the parenthesis is not a backoff kind.
    #[error("unknown backoff kind {kind:?}; {VALID_FORMS}")]
    UnknownKind {
        /// The name that was given.
        kind: String,
    },
    /// A kind that needs arguments was given without parentheses.
    #[error("`{kind}` needs arguments in parentheses, e.g. {example}; {VALID_FORMS}")]
    MissingArguments {
        /// The kind that was given.
        kind: &'static str,
        /// A valid text of that kind.
        example: &'static str,
    },
    /// An opening parenthesis was never closed.
    #[error("`{kind}(` is never closed with `)`; {VALID_FORMS}")]
    UnclosedParenthesis {
        /// The kind that was given.
        kind: &'static str,
    },
    /// Text follows a complete backoff (or `none` was given arguments).
    #[error("unexpected {rest:?} after `{parsed}`: a backoff text ends after its kind or its `)`; {VALID_FORMS}")]
    TrailingText {
        /// The part that was understood.
        parsed: String,
        /// What came after it.
        rest: String,
    },
    /// A growing backoff without `cap`.
    #[error("`{kind}` has no cap: uncapped backoff is a bug (delays double without bound): add cap=..., e.g. {example}; {VALID_FORMS}")]
    MissingCap {
        /// The kind that was given.
        kind: &'static str,
        /// A valid text of that kind.
        example: &'static str,
    },
    /// A growing backoff without `base`.
    #[error("`{kind}` has no base: add base=..., e.g. {example}; {VALID_FORMS}")]
    MissingBase {
        /// The kind that was given.
        kind: &'static str,
        /// A valid text of that kind.
        example: &'static str,
    },
    /// `constant()` without its delay.
    #[error(
        "`constant` needs its delay, e.g. constant(100ms) or constant(delay=100ms); {VALID_FORMS}"
    )]
    MissingDelay,
    /// A key the kind does not take.
    #[error("unknown key {key:?} in `{kind}`; it takes {valid}; {VALID_FORMS}")]
    UnknownKey {
        /// The kind that was given.
        kind: &'static str,
        /// The key that was given.
        key: String,
        /// The keys the kind takes.
        valid: &'static str,
    },
    /// The same key twice.
    #[error("key {key:?} is given twice in `{kind}`; give each key once; {VALID_FORMS}")]
    DuplicateKey {
        /// The kind that was given.
        kind: &'static str,
        /// The repeated key.
        key: String,
    },
    /// An argument that is not `key=value` (or an extra argument to `constant`).
    #[error("malformed argument {argument:?} in `{kind}`: expected {expected}; {VALID_FORMS}")]
    MalformedArgument {
        /// The kind that was given.
        kind: &'static str,
        /// The argument as given.
        argument: String,
        /// What the kind expects instead.
        expected: &'static str,
    },
    /// A value that is not a valid duration.
    #[error("bad {key} in `{kind}`: {source}")]
    BadDuration {
        /// The kind that was given.
        kind: &'static str,
        /// Which argument held the bad duration.
        key: &'static str,
        /// Why the duration was refused.
        #[source]
        source: DurationError,
    },
    /// `base` above `cap`: the cap would clip every delay, so the text is surely a mistake.
    #[error("base {} is above cap {} in `{kind}`: the cap would clip every delay; use base <= cap; {VALID_FORMS}", duration::format(*base), duration::format(*cap))]
    BaseAboveCap {
        /// The kind that was given.
        kind: &'static str,
        /// The base that was given.
        base: Duration,
        /// The cap that was given.
        cap: Duration,
    },
    /// A delay outside [`MIN_DELAY`] to [`MAX_DELAY`]: zero (a tight retry loop, which is
    /// `none` when meant), below a millisecond (no wait at all for a callee), or above an hour
    /// (a wait no caller outlives, and an instant past the end of time when added to a clock).
    #[error(
        "{key} {} in `{kind}` is out of range: a backoff waits {} to {}{}; {VALID_FORMS}",
        duration::format(*delay),
        duration::format(MIN_DELAY),
        duration::format(MAX_DELAY),
        delay_advice(*delay)
    )]
    DelayOutOfRange {
        /// The kind that was given.
        kind: &'static str,
        /// Which argument: `delay`, `base` or `cap`.
        key: &'static str,
        /// The delay that was given.
        delay: Duration,
    },
}

/// The shortest delay a backoff text may give: a wait below a millisecond is no wait for a
/// callee (a network round trip is longer), so the text says `none` instead, and a zero that
/// would make every growing delay zero (0 × 2^n = 0) cannot hide in a `base`.
pub const MIN_DELAY: Duration = Duration::from_millis(1);

/// The longest delay a backoff text may give: a retry an hour away has outlived every caller
/// and deadline it was for, and a delay this bounded can be added to any clock's instant.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// What to write instead of an out-of-range delay.
fn delay_advice(delay: Duration) -> &'static str {
    if delay.is_zero() {
        " (write `none` to retry at once: a zero wait in a backoff is a tight retry loop, \
         0 × 2^n = 0)"
    } else if delay < MIN_DELAY {
        " (a wait below a millisecond is no wait for a callee: write `none` to retry at once, \
         or at least 1ms)"
    } else {
        " (a retry an hour away has outlived every caller it was for; write at most 1h)"
    }
}

/// The kinds whose delays grow from `base` to `cap`; kept apart so that building one from a base
/// and a cap is total.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Growing {
    Exponential,
    FullJitter,
    EqualJitter,
    DecorrelatedJitter,
}

impl Growing {
    #[cfg(test)]
    const ALL: [Growing; 4] = [
        Growing::Exponential,
        Growing::FullJitter,
        Growing::EqualJitter,
        Growing::DecorrelatedJitter,
    ];

    fn with(self, base: Duration, cap: Duration) -> Backoff {
        match self {
            Growing::Exponential => Backoff::Exponential { base, cap },
            Growing::FullJitter => Backoff::FullJitter { base, cap },
            Growing::EqualJitter => Backoff::EqualJitter { base, cap },
            Growing::DecorrelatedJitter => Backoff::DecorrelatedJitter { base, cap },
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Constant,
    Growing(Growing),
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::None,
        Kind::Constant,
        Kind::Growing(Growing::Exponential),
        Kind::Growing(Growing::FullJitter),
        Kind::Growing(Growing::EqualJitter),
        Kind::Growing(Growing::DecorrelatedJitter),
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Constant => "constant",
            Kind::Growing(Growing::Exponential) => "exponential",
            Kind::Growing(Growing::FullJitter) => "full-jitter",
            Kind::Growing(Growing::EqualJitter) => "equal-jitter",
            Kind::Growing(Growing::DecorrelatedJitter) => "decorrelated-jitter",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Constant => "constant(100ms)",
            Kind::Growing(Growing::Exponential) => "exponential(base=25ms, cap=1s)",
            Kind::Growing(Growing::FullJitter) => "full-jitter(base=25ms, cap=1s)",
            Kind::Growing(Growing::EqualJitter) => "equal-jitter(base=25ms, cap=1s)",
            Kind::Growing(Growing::DecorrelatedJitter) => "decorrelated-jitter(base=25ms, cap=1s)",
        }
    }

    fn of(backoff: &Backoff) -> Kind {
        match backoff {
            Backoff::None => Kind::None,
            Backoff::Constant(_) => Kind::Constant,
            Backoff::Exponential { .. } => Kind::Growing(Growing::Exponential),
            Backoff::FullJitter { .. } => Kind::Growing(Growing::FullJitter),
            Backoff::EqualJitter { .. } => Kind::Growing(Growing::EqualJitter),
            Backoff::DecorrelatedJitter { .. } => Kind::Growing(Growing::DecorrelatedJitter),
        }
    }
}

/// Prints the canonical text: `none`, `constant(100ms)`, `full-jitter(base=25ms, cap=1s)`.
/// Durations are printed with [`duration::format`], so the text parses back to the same value.
impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Backoff::None => f.write_str("none"),
            Backoff::Constant(delay) => write!(f, "constant({})", duration::format(delay)),
            Backoff::Exponential { base, cap }
            | Backoff::FullJitter { base, cap }
            | Backoff::EqualJitter { base, cap }
            | Backoff::DecorrelatedJitter { base, cap } => write!(
                f,
                "{}(base={}, cap={})",
                Kind::of(self).name(),
                duration::format(base),
                duration::format(cap)
            ),
        }
    }
}

/// Reads the forms listed in the [module documentation](super): keys in any order, optional
/// spaces around names, `=` and `,`, surrounding whitespace ignored. Refuses a missing cap, a
/// delay outside [`MIN_DELAY`] to [`MAX_DELAY`] (zero included: `none` says it), `base > cap`,
/// unknown or repeated keys and trailing text.
impl FromStr for Backoff {
    type Err = BackoffParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(BackoffParseError::Empty);
        }
        let name_len = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(text.len());
        let name = &text[..name_len];
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == name) else {
            let kind = text.split('(').next().unwrap_or(text).trim();
            return Err(BackoffParseError::UnknownKind {
                kind: kind.to_owned(),
            });
        };
        let after_name = text[name_len..].trim_start();
        let arguments = if after_name.is_empty() {
            None
        } else if kind == Kind::None || !after_name.starts_with('(') {
            return Err(BackoffParseError::TrailingText {
                parsed: name.to_owned(),
                rest: after_name.to_owned(),
            });
        } else {
            let inside = &after_name[1..];
            let close = inside
                .find(')')
                .ok_or(BackoffParseError::UnclosedParenthesis { kind: kind.name() })?;
            let rest = inside[close + 1..].trim();
            if !rest.is_empty() {
                return Err(BackoffParseError::TrailingText {
                    parsed: format!("{name}({})", &inside[..close]),
                    rest: rest.to_owned(),
                });
            }
            Some(&inside[..close])
        };
        match (kind, arguments) {
            (Kind::None, _) => Ok(Backoff::None),
            (_, None) => Err(BackoffParseError::MissingArguments {
                kind: kind.name(),
                example: kind.example(),
            }),
            (Kind::Constant, Some(arguments)) => parse_constant(arguments),
            (Kind::Growing(growing), Some(arguments)) => parse_growing(growing, arguments),
        }
    }
}

/// Splits `a=1, b` into `(Some("a"), "1")`, `(None, "b")`; an empty list has no arguments.
fn split_arguments(arguments: &str) -> Vec<(Option<&str>, &str)> {
    if arguments.trim().is_empty() {
        return Vec::new();
    }
    arguments
        .split(',')
        .map(|argument| match argument.split_once('=') {
            Some((key, value)) => (Some(key.trim()), value.trim()),
            None => (None, argument.trim()),
        })
        .collect()
}

/// A delay of the text, in [`MIN_DELAY`] to [`MAX_DELAY`].
fn parse_duration(
    kind: Kind,
    key: &'static str,
    value: &str,
) -> Result<Duration, BackoffParseError> {
    let delay = duration::parse(value).map_err(|source| BackoffParseError::BadDuration {
        kind: kind.name(),
        key,
        source,
    })?;
    if !(MIN_DELAY..=MAX_DELAY).contains(&delay) {
        return Err(BackoffParseError::DelayOutOfRange {
            kind: kind.name(),
            key,
            delay,
        });
    }
    Ok(delay)
}

fn parse_constant(arguments: &str) -> Result<Backoff, BackoffParseError> {
    let mut delay = None;
    for (key, value) in split_arguments(arguments) {
        match key {
            None | Some("delay") => {}
            Some(other) => {
                return Err(BackoffParseError::UnknownKey {
                    kind: Kind::Constant.name(),
                    key: other.to_owned(),
                    valid: "one delay, written alone or as delay=...",
                });
            }
        }
        if delay.is_some() {
            let argument = match key {
                Some(key) => format!("{key}={value}"),
                None => value.to_owned(),
            };
            return Err(BackoffParseError::MalformedArgument {
                kind: Kind::Constant.name(),
                argument,
                expected: "a single delay, e.g. constant(100ms)",
            });
        }
        delay = Some(parse_duration(Kind::Constant, "delay", value)?);
    }
    delay
        .map(Backoff::Constant)
        .ok_or(BackoffParseError::MissingDelay)
}

fn parse_growing(growing: Growing, arguments: &str) -> Result<Backoff, BackoffParseError> {
    let kind = Kind::Growing(growing);
    let mut base = None;
    let mut cap = None;
    for (key, value) in split_arguments(arguments) {
        let (slot, key) = match key {
            Some("base") => (&mut base, "base"),
            Some("cap") => (&mut cap, "cap"),
            Some(other) => {
                return Err(BackoffParseError::UnknownKey {
                    kind: kind.name(),
                    key: other.to_owned(),
                    valid: "base=... and cap=...",
                });
            }
            None => {
                return Err(BackoffParseError::MalformedArgument {
                    kind: kind.name(),
                    argument: value.to_owned(),
                    expected: "key=value with keys base and cap",
                });
            }
        };
        if slot.is_some() {
            return Err(BackoffParseError::DuplicateKey {
                kind: kind.name(),
                key: key.to_owned(),
            });
        }
        *slot = Some(parse_duration(kind, key, value)?);
    }
    let cap = cap.ok_or(BackoffParseError::MissingCap {
        kind: kind.name(),
        example: kind.example(),
    })?;
    let base = base.ok_or(BackoffParseError::MissingBase {
        kind: kind.name(),
        example: kind.example(),
    })?;
    if base > cap {
        return Err(BackoffParseError::BaseAboveCap {
            kind: kind.name(),
            base,
            cap,
        });
    }
    Ok(growing.with(base, cap))
}

#[cfg(test)]
mod tests;
