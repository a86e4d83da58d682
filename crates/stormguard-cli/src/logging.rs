//! The log of `stormguard proxy`: `tracing` events as lines on stderr, filtered by
//! `STORMGUARD_LOG`, timestamped, as text or JSON.
//!
//! ## Why these choices
//! - **Refused at start, not ignored.** `STORMGUARD_LOG=bogus` once meant "info" without a word,
//!   and `tracing-subscriber`'s own syntax would read it as "everything of a target named
//!   `bogus`", which is no better. A word alone must be a level; a target takes `=LEVEL`
//!   (`stormguard::access=off`); anything else stops the proxy before it listens, with exit 2,
//!   the variable and what is wrong, so that a typo in a deployment is seen at once.
//! - **Timestamps on every line**, in UTC (RFC 3339, microseconds), from the subscriber's own
//!   formatter: a collector adds its own stamp when it reads a line, which is not when the
//!   request ended, and a file or `kubectl logs` has none.
//! - **One write per line**, as the subscriber formats a line into its buffer and writes it
//!   whole: lines from several threads never interleave.
//! - **JSON for collectors** (`--log-format json`): one object per line, the event's fields at
//!   the top level beside `timestamp`, `level` and `target`.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::InputError;

/// The variable that sets what is logged.
pub(crate) const LOG_VARIABLE: &str = "STORMGUARD_LOG";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `2026-12-06T08:00:00.123456Z  INFO target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the message and the fields.
    Json,
}

/// The filter `value` (the variable's text, if set) asks for: `info` when unset or empty.
///
/// # Errors
/// An [`InputError`] (exit 2) naming the variable, the directive and what would be valid.
pub(crate) fn filter(value: Option<&str>) -> Result<EnvFilter, InputError> {
    let text = value.map(str::trim).filter(|text| !text.is_empty());
    let Some(text) = text else {
        return Ok(EnvFilter::new("info"));
    };
    let refused = |what: String| {
        InputError(format!(
            "{LOG_VARIABLE}={text:?}: {what}; write a level (error, warn, info, debug, trace, \
             off) or TARGET=LEVEL, comma-separated (info,stormguard::access=off)"
        ))
    };
    let mut directives = Vec::new();
    for directive in text.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        if !directive.contains('=') && directive.parse::<LevelFilter>().is_err() {
            return Err(refused(format!("`{directive}` is not a level")));
        }
        directives.push(directive);
    }
    // `tracing-subscriber` takes no space after a comma; people write one.
    EnvFilter::builder()
        .with_regex(false)
        .parse(directives.join(","))
        .map_err(|error| refused(error.to_string()))
}

/// Sends `tracing` events to stderr through `filter`, in `format`. A second call in one
/// process (tests) keeps the first subscriber, which is as good.
pub(crate) fn install(filter: EnvFilter, format: LogFormat) {
    let _ = tracing::subscriber::set_global_default(subscriber(filter, format, std::io::stderr));
}

/// The subscriber [`install`] sets, writing to `writer` (the tests catch its lines).
fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_targets_are_taken() {
        for good in [
            None,
            Some(""),
            Some("debug"),
            Some("WARN"),
            Some("info,stormguard::access=off"),
            Some("stormguard_proxy=trace, hyper=warn"),
            Some("off"),
        ] {
            assert!(filter(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_word_that_is_no_level_and_a_bad_level_are_refused_by_name() {
        let error = filter(Some("bogus")).unwrap_err().0;
        assert!(
            error.starts_with("STORMGUARD_LOG=\"bogus\": `bogus` is not a level; write a level"),
            "{error}"
        );
        let error = filter(Some("info,stormguard::access=loud")).unwrap_err().0;
        assert!(
            error.starts_with("STORMGUARD_LOG=\"info,stormguard::access=loud\": "),
            "{error}"
        );
        assert!(error.contains("TARGET=LEVEL"), "{error}");
    }

    /// What `install` writes, caught: a text line starts with its UTC timestamp and level, and
    /// a JSON line is one object with the event's fields at the top.
    #[test]
    fn lines_have_a_timestamp_and_json_lines_parse() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Caught(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Caught {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let text = Caught::default();
        let writer = text.clone();
        let log = subscriber(filter(Some("info")).unwrap(), LogFormat::Text, move || {
            writer.clone()
        });
        tracing::subscriber::with_default(log, || {
            tracing::info!(generation = 2, trigger = "SIGHUP", "settings reloaded");
            tracing::debug!("below the level: not written");
        });
        let line = String::from_utf8(text.0.lock().unwrap().clone()).unwrap();
        // 2026-12-06T08:00:00.123456Z  INFO ...
        assert_eq!(line.lines().count(), 1, "{line}");
        assert_eq!(&line[4..5], "-", "{line}");
        assert!(
            line[..30].contains('T') && line[..30].contains('Z'),
            "{line}"
        );
        assert!(line.contains(" INFO "), "{line}");
        assert!(
            line.contains("settings reloaded generation=2 trigger=\"SIGHUP\""),
            "{line}"
        );

        let json = Caught::default();
        let writer = json.clone();
        let log = subscriber(filter(None).unwrap(), LogFormat::Json, move || {
            writer.clone()
        });
        tracing::subscriber::with_default(log, || {
            tracing::info!(target: "stormguard::access", status = 200, route = "api");
        });
        let line = String::from_utf8(json.0.lock().unwrap().clone()).unwrap();
        let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(value["status"], 200);
        assert_eq!(value["route"], "api");
        assert_eq!(value["target"], "stormguard::access");
        assert!(value["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
