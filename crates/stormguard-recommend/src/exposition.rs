//! The Prometheus text exposition format (and OpenMetrics text, which the proxy's `/metrics`
//! speaks), read for its classic histograms.
//!
//! ## Why a parser of our own
//! Only `_bucket` samples matter here, and the formats are small: a sample is a name, labels in
//! braces with three escapes, a value, an optional timestamp and (OpenMetrics) an optional
//! exemplar after `#`. A refusal names the line and column, as every input error of stormguard
//! does, which a general-purpose parser would not. Everything else (`_sum`, `_count`,
//! `_created`, counters, gauges, `# HELP`) is read past; `# TYPE` says which families are
//! histograms, `# UNIT` (OpenMetrics) may state their unit, and `# EOF` ends the page.

use std::collections::{BTreeMap, HashMap};

use crate::series::{Grouper, Series, Unit};

/// A line that is not valid exposition text: where, and what was expected there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ExpositionError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what would be valid.
    pub message: String,
}

/// The histogram series of an exposition page, in a stable order (metric, then labels).
///
/// A family counts as a histogram when `# TYPE` says `histogram` (or `gaugehistogram`), or when
/// nothing types it and its `_bucket` samples carry `le`. Its unit comes from its name
/// (`_seconds`, `_milliseconds`, `_ms`), else from a `# UNIT` line; a family with neither is
/// kept with no unit.
///
/// ```
/// use stormguard_recommend::exposition::parse;
///
/// let text = "\
/// ## TYPE rpc_seconds histogram
/// rpc_seconds_bucket{route=\"/a\",le=\"0.1\"} 90
/// rpc_seconds_bucket{route=\"/a\",le=\"+Inf\"} 100
/// rpc_seconds_sum{route=\"/a\"} 7.5
/// rpc_seconds_count{route=\"/a\"} 100
/// ";
/// let series = parse(text).unwrap();
/// assert_eq!(series[0].to_string(), "rpc_seconds{route=\"/a\"}");
/// // Rank 50 is the 50th of the 90 requests of the lowest bucket, (0, 0.1].
/// assert!((series[0].histogram.quantile(0.5).unwrap() - 0.1 * 50.0 / 90.0).abs() < 1e-12);
/// ```
pub fn parse(text: &str) -> Result<Vec<Series>, ExpositionError> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut units: HashMap<String, String> = HashMap::new();
    let mut grouper = Grouper::default();
    let mut seen: HashMap<(String, Vec<(String, String)>), usize> = HashMap::new();
    // Each series' buckets so far: by bound (its bits), count and line.
    type Seen = BTreeMap<u64, (f64, usize)>;
    let mut buckets_seen: HashMap<(String, BTreeMap<String, String>), Seen> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("EOF"), None, _) => break,
                (Some("TYPE"), Some(name), Some(kind)) => {
                    types.insert(name.to_string(), kind.to_string());
                }
                (Some("UNIT"), Some(name), Some(unit)) => {
                    units.insert(name.to_string(), unit.to_string());
                }
                _ => {}
            }
            continue;
        }
        let offset = raw.len() - trimmed.len();
        let sample = Cursor::new(trimmed)
            .sample()
            .map_err(|(at, message)| ExpositionError {
                line,
                column: raw[..offset + at].chars().count() + 1,
                message,
            })?;
        let Some(base) = sample.name.strip_suffix("_bucket") else {
            continue;
        };
        let histogram_type = match types.get(base).map(String::as_str) {
            Some("histogram" | "gaugehistogram") => true,
            Some(_) => continue,
            None => !types.contains_key(sample.name),
        };
        if !histogram_type {
            continue;
        }
        let mut labels = BTreeMap::new();
        let mut le = None;
        for (name, value, at) in &sample.labels {
            if name == "le" {
                le = Some((value, *at));
            } else {
                labels.insert(name.clone(), value.clone());
            }
        }
        let error = |at: usize, message: String| ExpositionError {
            line,
            column: raw[..offset + at].chars().count() + 1,
            message,
        };
        let Some((le, at)) = le else {
            if types.contains_key(base) {
                return Err(error(
                    sample.name.len(),
                    format!(
                        "`{}` has no `le` label: every bucket of histogram `{base}` needs its \
                         upper bound, e.g. {{le=\"0.25\"}} or {{le=\"+Inf\"}}",
                        sample.name
                    ),
                ));
            }
            continue;
        };
        let upper = parse_float(le)
            .filter(|upper| !upper.is_nan())
            .ok_or_else(|| {
                error(
                    at,
                    format!(
                        "le=\"{le}\" is not a bound: use a number such as \"0.25\", or \"+Inf\""
                    ),
                )
            })?;
        if upper < 0.0 {
            return Err(error(
                at,
                format!(
                    "le=\"{le}\" is below zero: a latency bucket's bound is a duration, 0 or more"
                ),
            ));
        }
        if !(sample.value >= 0.0 && sample.value.is_finite()) {
            return Err(error(
                sample.value_at,
                format!(
                    "{} is not a count of requests: a bucket's value is a number 0 or more",
                    sample.value
                ),
            ));
        }
        // A bucket is known by its bound's value, not its text: "0.1" and "0.10" are one
        // bucket written twice, whose counts would be added into one of twice the requests.
        let mut identity: Vec<(String, String)> = sample
            .labels
            .iter()
            .map(|(n, v, _)| {
                let v = if n == "le" {
                    format!("{upper:?}")
                } else {
                    v.clone()
                };
                (n.clone(), v)
            })
            .collect();
        identity.sort();
        if let Some(first) = seen.insert((base.to_string(), identity), line) {
            return Err(error(
                0,
                format!(
                    "the same bucket again (first on line {first}, with the same labels and a bound \
                     of the same value): a page exposes each series once"
                ),
            ));
        }
        // Cumulative counts never fall with a rising bound on one page: a page where they do
        // is not one scrape of a histogram, and any quantile read from it is wrong.
        // The series' buckets so far are in order (each was checked against its neighbours),
        // so the new one need only be checked against its own: a page of a million buckets
        // costs a million lookups, not a million squared.
        let lines = buckets_seen
            .entry((base.to_string(), labels.clone()))
            .or_default();
        // Non-negative floats order as their bits do (+0.0 for -0.0).
        let key = (upper + 0.0).to_bits();
        let below = lines
            .range(..key)
            .next_back()
            .filter(|(_, (count, _))| *count > sample.value);
        let above = lines
            .range(key + 1..)
            .next()
            .filter(|(_, (count, _))| *count < sample.value);
        if let Some((other, (other_count, other_line))) = below.or(above) {
            return Err(error(
                sample.value_at,
                format!(
                    "{} requests at or below le=\"{le}\", but {other_count} at or below {} \
                     (line {other_line}): a histogram's buckets count cumulatively, so a higher \
                     bound never counts fewer",
                    sample.value,
                    show_bound(f64::from_bits(*other))
                ),
            ));
        }
        lines.insert(key, (sample.value, line));
        grouper.add(base, labels, upper, sample.value);
    }
    Ok(grouper.finish(|metric| {
        Unit::from_metric_name(metric)
            .or_else(|| units.get(metric).and_then(|u| Unit::from_stated(u)))
    }))
}

/// A bound as an `le` label writes it.
fn show_bound(upper: f64) -> String {
    if upper == f64::INFINITY {
        "le=\"+Inf\"".to_string()
    } else {
        format!("le=\"{upper}\"")
    }
}

/// A float as the exposition formats write them: Go's syntax, with `+Inf`, `-Inf` and `NaN`.
fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE_".contains(&b)) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// One sample line: the metric name, its labels with the byte offset of each value (for
/// errors), and its value.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(String, String, usize)>,
    value: f64,
    /// The byte offset of the value, for errors about it.
    value_at: usize,
}

/// Reads a sample line left to right; an error is the byte offset where it went wrong.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

type Failure = (usize, String);

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, at: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn blanks(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
        self.at > start
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, Failure> {
        Err((self.at, message.into()))
    }

    /// A metric (`first` allows `:`) or label name.
    fn name(&mut self, what: &str, colon: bool) -> Result<&'a str, Failure> {
        let start = self.at;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (colon && c == ':')
                || (self.at > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        if self.at == start {
            return self.fail(format!(
                "expected a {what} (letters, digits and `_`{}, not starting with a digit)",
                if colon { ", `:`" } else { "" }
            ));
        }
        Ok(&self.text[start..self.at])
    }

    fn sample(mut self) -> Result<Sample<'a>, Failure> {
        let name = self.name("metric name", true)?;
        let mut labels = Vec::new();
        self.blanks();
        if self.peek() == Some('{') {
            self.at += 1;
            labels = self.labels()?;
            self.blanks();
        }
        let start = self.at;
        while let Some(c) = self.peek().filter(|&c| c != ' ' && c != '\t') {
            self.at += c.len_utf8();
        }
        let token = &self.text[start..self.at];
        if token.is_empty() {
            return self.fail(format!("expected the value of `{name}` after its labels"));
        }
        let value = parse_float(token).ok_or((
            start,
            format!("`{token}` is not a number: a value is a float such as 12, 0.5, 1e3 or +Inf"),
        ))?;
        // What follows is a timestamp and, in OpenMetrics, `# {exemplar labels} value`: neither
        // matters to a quantile, but anything else means the line is not what it seems.
        self.blanks();
        if !matches!(self.peek(), None | Some('#')) {
            let at = self.at;
            while let Some(c) = self.peek().filter(|&c| c != ' ' && c != '\t') {
                self.at += c.len_utf8();
            }
            let token = &self.text[at..self.at];
            if parse_float(token).is_none_or(|t| !t.is_finite()) {
                return Err((
                    at,
                    format!(
                        "`{token}` after the value of `{name}` is not a timestamp: a sample is a \
                         name, labels, a value and an optional timestamp (a number)"
                    ),
                ));
            }
            self.blanks();
            if !matches!(self.peek(), None | Some('#')) {
                return self.fail(format!(
                    "more after the timestamp of `{name}`: only an OpenMetrics exemplar (`# ...`) \
                     may follow it"
                ));
            }
        }
        Ok(Sample {
            name,
            labels,
            value,
            value_at: start,
        })
    }

    fn labels(&mut self) -> Result<Vec<(String, String, usize)>, Failure> {
        let mut labels: Vec<(String, String, usize)> = Vec::new();
        loop {
            self.blanks();
            if self.peek() == Some('}') {
                self.at += 1;
                return Ok(labels);
            }
            let start = self.at;
            let name = self.name("label name", false)?;
            if labels.iter().any(|(n, _, _)| n == name) {
                return Err((start, format!("label `{name}` given twice in one sample")));
            }
            self.blanks();
            if self.peek() != Some('=') {
                return self.fail(format!("expected `=` after label name `{name}`"));
            }
            self.at += 1;
            self.blanks();
            let value_at = self.at;
            let value = self.quoted(name)?;
            labels.push((name.to_string(), value, value_at));
            self.blanks();
            match self.peek() {
                Some(',') => self.at += 1,
                Some('}') => {}
                _ => return self.fail("expected `,` or `}` after a label"),
            }
        }
    }

    /// A label value in double quotes, with `\\`, `\"` and `\n` unescaped.
    fn quoted(&mut self, name: &str) -> Result<String, Failure> {
        if self.peek() != Some('"') {
            return self.fail(format!("expected `\"` to open the value of label `{name}`"));
        }
        self.at += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.fail(format!(
                    "the value of label `{name}` is never closed with `\"`"
                ));
            };
            self.at += c.len_utf8();
            match c {
                '"' => return Ok(value),
                '\\' => {
                    let escaped = match self.peek() {
                        Some('\\') => '\\',
                        Some('"') => '"',
                        Some('n') => '\n',
                        _ => return self.fail(
                            "unknown escape in a label value: only \\\\, \\\" and \\n are valid",
                        ),
                    };
                    self.at += 1;
                    value.push(escaped);
                }
                c => value.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests;
