//! The log of `stormguard proxy`: `tracing` events as lines on stderr, filtered by
//! `STORMGUARD_LOG`, timestamped, as text or JSON.
//!
//! ## Why these choices
//! - **Refused at start, not ignored.** `STORMGUARD_LOG=bogus` once meant "info" without a word,
//!   and `tracing-subscriber`'s own syntax would read it as "everything of a target named
//!   `bogus`", which is no better. A word alone must be a level; a target takes `=LEVEL`
//!   (`stormguard::access=off`); anything else stops the proxy before it listens, with exit 2,
//!   the variable and what is wrong, so that a typo in a deployment is seen at once.
//! - **Timestamps on every line**, in UTC (RFC 3339, microseconds): a collector adds its own
//!   stamp when it reads a line, which is not when the request ended, and a file or `kubectl
//!   logs` has none. [`UtcMicros`] writes the same text as the subscriber's own formatter, with
//!   the date and time of day made once a second: with an access line per request, the
//!   calendar arithmetic and `core::fmt` of every stamp were a quarter of the line's cost.
//! - **One write per line**, as the subscriber formats a line into its buffer and writes it
//!   whole: lines from several threads never interleave.
//! - **JSON for collectors** (`--log-format json`): one object per line, the event's fields at
//!   the top level beside `timestamp`, `level` and `target`.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
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
        .with_timer(UtcMicros)
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Text => {
            let lines = MadeLines {
                inner: tracing_subscriber::fmt::format()
                    .with_timer(UtcMicros)
                    .with_ansi(false),
                json: false,
            };
            Box::new(builder.event_format(lines).finish())
        }
        LogFormat::Json => {
            let lines = MadeLines {
                inner: tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_timer(UtcMicros),
                json: true,
            };
            Box::new(
                builder
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(lines)
                    .finish(),
            )
        }
    }
}

/// Whether `event` is an access log line made already, with its one field `name`
/// ([`stormguard_proxy::AccessLineFormat`]).
fn made_line(event: &Event<'_>, name: &str) -> bool {
    let metadata = event.metadata();
    metadata.target() == stormguard_proxy::ACCESS_LOG_TARGET
        && metadata.fields().len() == 1
        && metadata.fields().field(name).is_some()
}

/// A format of `tracing-subscriber` (`F`, text or JSON), except for the access log's lines
/// made already by the proxy ([`stormguard_proxy::AccessLineFormat`]): their one field is
/// written as it is where the format would write the ten fields, which reads exactly as they
/// would and saves formatting each of them (a fifth of a request's instructions as text, a
/// third as JSON).
struct MadeLines<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for MadeLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let field = if self.json { "json" } else { "line" };
        if !made_line(event, field) {
            return self.inner.format_event(ctx, writer, event);
        }
        let metadata = event.metadata();
        if !self.json {
            // `2026-12-06T08:00:00.123456Z  INFO stormguard::access: route=api ...`
            UtcMicros.format_time(&mut writer)?;
            write!(writer, " {:>5} {}: ", metadata.level(), metadata.target())?;
            write_field(&mut writer, event, field)?;
            return writer.write_char('\n');
        }
        // `tracing-subscriber` puts a flattened event's fields between the level and the
        // target, in their order; the target is a constant without anything to escape.
        writer.write_str("{\"timestamp\":\"")?;
        UtcMicros.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",", metadata.level())?;
        write_field(&mut writer, event, field)?;
        writeln!(writer, ",\"target\":\"{}\"}}", metadata.target())
    }
}

/// Writes the field `name` (`line` or `json`) of a made access line `event` as it is.
fn write_field(writer: &mut Writer<'_>, event: &Event<'_>, name: &'static str) -> std::fmt::Result {
    let mut line = LineField {
        name,
        writer,
        written: Ok(()),
    };
    event.record(&mut line);
    line.written
}

/// Writes the field `name` (`line` or `json`) of an access log event as it is.
struct LineField<'w, 'a> {
    name: &'static str,
    writer: &'w mut Writer<'a>,
    written: std::fmt::Result,
}

impl Visit for LineField<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.name {
            self.written = self.writer.write_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.name {
            self.written = write!(self.writer, "{value:?}");
        }
    }
}

/// `2026-12-06T08:12:03.482113Z`: the time in UTC to the microsecond, as `tracing-subscriber`'s
/// `SystemTime` writes it, the part up to the second made once a second per thread.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UtcMicros;

thread_local! {
    /// The second last written and its text, up to and including the seconds.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for UtcMicros {
    // A log line's stamp is the one place beside Retry-After dates where the wall clock is the
    // point: it says when, in the collector's terms, the event happened.
    #[allow(clippy::disallowed_methods)]
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (secs, micros) = (now.as_secs(), now.subsec_micros());
        SECOND.with(|second| {
            let mut second = second.borrow_mut();
            if second.0 != secs {
                second.1 = second_text(secs);
                second.0 = secs;
            }
            w.write_str(&second.1)
        })?;
        let mut fraction = *b".000000Z";
        let mut rest = micros;
        for digit in fraction[1..7].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        // ASCII only.
        w.write_str(std::str::from_utf8(&fraction).unwrap_or(".000000Z"))
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` after the Unix epoch, in UTC (the proleptic Gregorian
/// calendar, by Howard Hinnant's `civil_from_days`).
fn second_text(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3_600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer the tests read back: what the subscriber wrote.
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

    /// What `events` log, through the subscriber the proxy builds for `STORMGUARD_LOG` set to
    /// `directives` and `format`, as text.
    fn written_as(directives: Option<&str>, format: LogFormat, events: impl FnOnce()) -> String {
        let caught = Caught::default();
        let writer = caught.clone();
        let log = subscriber(filter(directives).unwrap(), format, move || writer.clone());
        tracing::subscriber::with_default(log, events);
        let bytes = caught.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

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
        let line = written_as(Some("info"), LogFormat::Text, || {
            tracing::info!(generation = 2, trigger = "SIGHUP", "settings reloaded");
            tracing::debug!("below the level: not written");
        });
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

        let line = written_as(None, LogFormat::Json, || {
            tracing::info!(target: "stormguard::access", status = 200, route = "api");
        });
        let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(value["status"], 200);
        assert_eq!(value["route"], "api");
        assert_eq!(value["target"], "stormguard::access");
        assert!(value["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn the_time_reads_as_the_subscribers_own() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_796_544_723, "2026-12-06T08:12:03"),
            (4_107_542_399, "2100-02-28T23:59:59"),
            (253_402_300_799, "9999-12-31T23:59:59"),
        ] {
            assert_eq!(second_text(secs), text);
        }
        let mut ours = String::new();
        UtcMicros.format_time(&mut Writer::new(&mut ours)).unwrap();
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        // Read a moment apart, so only their shapes can be compared.
        assert_eq!(
            (ours.len(), &ours[10..11], &ours[26..]),
            (27, "T", "Z"),
            "{ours}"
        );
        let shape = |t: &str| t.chars().map(|c| c.is_ascii_digit()).collect::<Vec<_>>();
        assert_eq!(shape(&ours), shape(&theirs), "{ours} {theirs}");
    }

    #[test]
    fn an_access_line_made_as_text_is_written_as_it_is() {
        let text = written_as(None, LogFormat::Text, || {
            tracing::info!(target: "stormguard::access", line = "route=api status=200");
            tracing::info!(target: "stormguard::access", status = 200u16, route = %"api");
            tracing::info!(target: "stormguard::reload", line = "not the access log");
        });
        let lines: Vec<&str> = text.lines().map(|l| &l[27..]).collect();
        assert_eq!(
            lines,
            [
                "  INFO stormguard::access: route=api status=200",
                "  INFO stormguard::access: status=200 route=api",
                "  INFO stormguard::reload: line=\"not the access log\"",
            ],
            "{text}"
        );
    }

    #[test]
    fn an_access_line_made_as_json_reads_as_its_fields_would() {
        let text = written_as(None, LogFormat::Json, || {
            tracing::callsite::rebuild_interest_cache();
            tracing::info!(
                target: "stormguard::access",
                route = %"a\"b",
                status = 503u16,
                reason = %"-"
            );
            tracing::info!(
                target: "stormguard::access",
                json = r#""route":"a\"b","status":503,"reason":"-""#
            );
            tracing::info!(target: "stormguard::reload", json = "not the access log");
        });
        // The stamps differ by a few microseconds: each taken out.
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                let (head, rest) = line.split_at(line.find("\"level\"").unwrap());
                let stamp: serde_json::Value =
                    serde_json::from_str(&format!("{head}}}").replace(",}", "}")).unwrap();
                assert!(
                    stamp["timestamp"].as_str().unwrap().ends_with('Z'),
                    "{line}"
                );
                rest.to_string()
            })
            .collect();
        assert_eq!(
            lines,
            [
                r#""level":"INFO","route":"a\"b","status":503,"reason":"-","target":"stormguard::access"}"#,
                r#""level":"INFO","route":"a\"b","status":503,"reason":"-","target":"stormguard::access"}"#,
                r#""level":"INFO","json":"not the access log","target":"stormguard::reload"}"#,
            ],
            "{text}"
        );
    }
}
