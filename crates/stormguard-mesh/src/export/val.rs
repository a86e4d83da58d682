//! The values an export writes, and how they are spelled in YAML and JSON.
//!
//! ## Why not serde_json::Value
//! The written resources are read by people (in a pull request) as well as by the mesh: keys
//! stay in the order the system's own documentation shows them (`timeout` before `retries`),
//! which serde_json's map does not keep without a feature the other crates do not enable, and
//! the same tree is written either as a new YAML document or as a fragment inserted into a
//! user's file at a given indentation.

use std::fmt::Write as _;
use std::time::Duration;

/// A value to write: a scalar, a list or a mapping in key order.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// A string (quoted when YAML would read it as something else).
    Str(String),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A list.
    List(Vec<Val>),
    /// A mapping, in the order written.
    Map(Vec<(String, Val)>),
    /// No value: the key is removed from a user's file (a retry stanza of a call that no
    /// longer retries). Never part of a new resource.
    Remove,
}

impl Val {
    /// A string value.
    pub fn str(text: impl Into<String>) -> Val {
        Val::Str(text.into())
    }

    /// An empty mapping, to push entries into.
    pub fn map() -> Val {
        Val::Map(Vec::new())
    }

    /// Sets `key` of a mapping (replacing it), creating nested mappings along `path`.
    ///
    /// ```
    /// use stormguard_mesh::export::val::Val;
    /// let mut v = Val::map();
    /// v.set(&["retries", "attempts"], Val::Int(2));
    /// assert_eq!(v.to_yaml(0), "retries:\n  attempts: 2\n");
    /// ```
    pub fn set(&mut self, path: &[&str], value: Val) {
        let Val::Map(entries) = self else {
            *self = Val::map();
            return self.set(path, value);
        };
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let index = match entries.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                entries.push((first.to_string(), Val::map()));
                entries.len() - 1
            }
        };
        if rest.is_empty() {
            entries[index].1 = value;
        } else {
            entries[index].1.set(rest, value);
        }
    }

    /// Sets the value at `path` (keys and list indexes), creating mappings and lists on the way
    /// (a list grows with empty mappings up to the index).
    ///
    /// ```
    /// use stormguard_mesh::export::edit::parse_path;
    /// use stormguard_mesh::export::val::Val;
    /// let mut v = Val::map();
    /// v.put(&parse_path("thresholds[0].retry_budget.min_retry_concurrency"), Val::Int(3));
    /// assert_eq!(v.to_yaml(0), "thresholds:\n  - retry_budget:\n      min_retry_concurrency: 3\n");
    /// ```
    pub fn put(&mut self, path: &[crate::export::edit::Seg], value: Val) {
        use crate::export::edit::Seg;
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return;
        };
        let child = match first {
            Seg::Key(key) => {
                if !matches!(self, Val::Map(_)) {
                    *self = Val::map();
                }
                let Val::Map(entries) = self else {
                    unreachable!()
                };
                let index = match entries.iter().position(|(k, _)| k == key) {
                    Some(i) => i,
                    None => {
                        entries.push((key.clone(), Val::map()));
                        entries.len() - 1
                    }
                };
                &mut entries[index].1
            }
            Seg::Index(i) => {
                if !matches!(self, Val::List(_)) {
                    *self = Val::List(Vec::new());
                }
                let Val::List(items) = self else {
                    unreachable!()
                };
                while items.len() <= *i {
                    items.push(Val::map());
                }
                &mut items[*i]
            }
        };
        child.put(rest, value);
    }

    /// The value at `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Val> {
        match self {
            Val::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether it is a mapping or a list (written on lines of its own in block YAML).
    pub fn is_collection(&self) -> bool {
        matches!(self, Val::Map(_) | Val::List(_))
    }

    /// Block YAML, every line indented by `indent` spaces (a mapping or list; a scalar is
    /// written on one line).
    pub fn to_yaml(&self, indent: usize) -> String {
        let mut out = String::new();
        write_block(self, indent, &mut out);
        out
    }

    /// One-line YAML: a scalar as YAML reads it back, a collection in flow style.
    pub fn to_yaml_inline(&self) -> String {
        match self {
            Val::Str(s) => yaml_string(s),
            Val::List(items) => {
                let items: Vec<String> = items.iter().map(Val::to_yaml_inline).collect();
                format!("[{}]", items.join(", "))
            }
            Val::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", yaml_string(k), v.to_yaml_inline()))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
            scalar => scalar_text(scalar),
        }
    }

    /// JSON, pretty-printed with two spaces, the first line unindented and the others indented
    /// by `indent` spaces (so it can be inserted at a place in a file).
    pub fn to_json(&self, indent: usize) -> String {
        let mut out = String::new();
        write_json(self, indent, &mut out);
        out
    }
}

fn scalar_text(v: &Val) -> String {
    match v {
        Val::Str(s) => yaml_string(s),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => float_text(*f),
        Val::Bool(b) => b.to_string(),
        Val::Remove => "~".to_string(),
        other => other.to_yaml_inline(),
    }
}

/// A float without binary noise (`20.0` → `20`, `0.1 + 0.2` → `0.3`).
pub fn float_text(f: f64) -> String {
    let rounded = (f * 1e9).round() / 1e9;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

fn write_block(v: &Val, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Val::Map(entries) if entries.is_empty() => {
            let _ = writeln!(out, "{pad}{{}}");
        }
        Val::List(items) if items.is_empty() => {
            let _ = writeln!(out, "{pad}[]");
        }
        Val::Map(entries) => {
            for (key, value) in entries {
                write_entry(&pad, &yaml_string(key), value, indent, out);
            }
        }
        Val::List(items) => {
            for item in items {
                match item {
                    Val::Map(entries) if !entries.is_empty() => {
                        // `- key: value` then the other keys under the first.
                        let mut inner = String::new();
                        write_block(item, indent + 2, &mut inner);
                        let _ = write!(out, "{pad}- {}", &inner[indent + 2..]);
                    }
                    Val::List(inner_items) if !inner_items.is_empty() => {
                        let _ = writeln!(out, "{pad}-");
                        write_block(item, indent + 2, out);
                    }
                    scalar => {
                        let _ = writeln!(out, "{pad}- {}", scalar.to_yaml_inline());
                    }
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", scalar.to_yaml_inline());
        }
    }
}

fn write_entry(pad: &str, key: &str, value: &Val, indent: usize, out: &mut String) {
    match value {
        Val::Map(entries) if !entries.is_empty() => {
            let _ = writeln!(out, "{pad}{key}:");
            write_block(value, indent + 2, out);
        }
        Val::List(items) if !items.is_empty() => {
            let _ = writeln!(out, "{pad}{key}:");
            write_block(value, indent + 2, out);
        }
        other => {
            let _ = writeln!(out, "{pad}{key}: {}", other.to_yaml_inline());
        }
    }
}

fn write_json(v: &Val, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent + 2);
    let close = " ".repeat(indent);
    match v {
        Val::Map(entries) if entries.is_empty() => out.push_str("{}"),
        Val::List(items) if items.is_empty() => out.push_str("[]"),
        Val::Map(entries) => {
            out.push_str("{\n");
            for (i, (key, value)) in entries.iter().enumerate() {
                let _ = write!(out, "{pad}{}: ", json_string(key));
                write_json(value, indent + 2, out);
                out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
            }
            let _ = write!(out, "{close}}}");
        }
        Val::List(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad);
                write_json(item, indent + 2, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            let _ = write!(out, "{close}]");
        }
        Val::Str(s) => out.push_str(&json_string(s)),
        scalar => out.push_str(&scalar_text(scalar)),
    }
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A YAML scalar that reads back as the string `s`: plain when nothing in it means something
/// else to YAML (a number, a boolean, null, an indicator character), else double-quoted.
///
/// ```
/// use stormguard_mesh::export::val::yaml_string;
/// assert_eq!(yaml_string("reviews"), "reviews");
/// assert_eq!(yaml_string("2"), "\"2\"");
/// assert_eq!(yaml_string("connect-failure,503"), "connect-failure,503");
/// assert_eq!(yaml_string("true"), "\"true\"");
/// ```
pub fn yaml_string(s: &str) -> String {
    if plain_is_safe(s) {
        s.to_string()
    } else {
        json_string(s)
    }
}

fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
        || s.starts_with('.')
        || s.chars()
            .all(|c| c.is_ascii_digit() || c == '_' || c == ':');
    !reserved
        && !numeric
        && !"-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.ends_with(' ')
        && !s.contains('\n')
        && s.chars().all(|c| !c.is_control())
}

/// A duration as Go and Kubernetes write it, whole milliseconds at the finest (Gateway API's
/// `^([0-9]{1,5}(h|m|s|ms)){1,4}$`): `250ms`, `2s`, `1m30s`. A sub-millisecond part rounds up,
/// so a timeout is never written shorter than the graph's.
///
/// ```
/// use std::time::Duration;
/// use stormguard_mesh::export::val::go_duration;
/// assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
/// assert_eq!(go_duration(Duration::from_secs(90)), "90s");
/// assert_eq!(go_duration(Duration::from_secs(3600)), "1h");
/// assert_eq!(go_duration(Duration::from_micros(1200)), "2ms");
/// // Past five digits of milliseconds, in parts: Gateway API refuses "123456ms".
/// assert_eq!(go_duration(Duration::from_millis(123_456)), "2m3s456ms");
/// assert_eq!(go_duration(Duration::from_millis(3_723_004)), "1h2m3s4ms");
/// ```
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    if ms == 0 {
        "0s".to_string()
    } else if ms % 3_600_000 == 0 && ms / 3_600_000 < 100_000 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 1000 == 0 && ms / 1000 < 100_000 {
        format!("{}s", ms / 1000)
    } else if ms < 100_000 {
        format!("{ms}ms")
    } else {
        // Hours, minutes, seconds and milliseconds, each at most five digits below 10^5 h
        // (a graph's durations stop at 24 h); a zero part is left out.
        let parts = [
            (ms / 3_600_000, "h"),
            (ms / 60_000 % 60, "m"),
            (ms / 1000 % 60, "s"),
            (ms % 1000, "ms"),
        ];
        parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, unit)| format!("{n}{unit}"))
            .collect()
    }
}

/// A duration as proto3's JSON writes `google.protobuf.Duration` (Envoy, gRPC service
/// configs): decimal seconds with an `s`, `0.25s`, `15s`, `1.5s`; sub-millisecond parts
/// round up to the millisecond, as Envoy rounds them.
///
/// ```
/// use std::time::Duration;
/// use stormguard_mesh::export::val::proto_duration;
/// assert_eq!(proto_duration(Duration::from_millis(250)), "0.25s");
/// assert_eq!(proto_duration(Duration::from_secs(15)), "15s");
/// assert_eq!(proto_duration(Duration::from_millis(1001)), "1.001s");
/// ```
pub fn proto_duration(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("{secs}s")
    } else {
        let frac = format!("{frac:03}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every duration a graph holds (1 ms to 24 h) is written in Gateway API's pattern,
    /// `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, and its parts add up to the same milliseconds.
    #[test]
    fn go_durations_fit_gateway_api_s_pattern() {
        // The milliseconds of `text` if it fits the pattern.
        let read = |text: &str| -> Option<u64> {
            let (mut parts, mut total, mut rest) = (0, 0u64, text);
            while !rest.is_empty() {
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                if !(1..=5).contains(&digits) {
                    return None;
                }
                let n: u64 = rest[..digits].parse().ok()?;
                rest = &rest[digits..];
                let (unit, scale) = [("ms", 1), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
                    .into_iter()
                    .find(|(u, _)| rest.starts_with(u))?;
                rest = &rest[unit.len()..];
                total += n * scale;
                parts += 1;
            }
            (1..=4).contains(&parts).then_some(total)
        };
        let mut ms: u64 = 1;
        while ms <= 86_400_000 {
            for d in [ms, ms + 1, ms * 7 + 3] {
                let text = go_duration(Duration::from_millis(d));
                assert_eq!(read(&text), Some(d), "{d} ms -> {text}");
            }
            ms = ms * 3 + 1;
        }
    }

    fn sample() -> Val {
        Val::Map(vec![
            ("name".into(), Val::str("reviews")),
            (
                "http".into(),
                Val::List(vec![Val::Map(vec![
                    ("timeout".into(), Val::str("2s")),
                    (
                        "retries".into(),
                        Val::Map(vec![
                            ("attempts".into(), Val::Int(2)),
                            ("retryOn".into(), Val::str("connect-failure,503")),
                        ]),
                    ),
                ])]),
            ),
            (
                "codes".into(),
                Val::List(vec![Val::Int(500), Val::Int(503)]),
            ),
            ("ratio".into(), Val::Float(20.0)),
        ])
    }

    #[test]
    fn block_yaml_reads_back_in_order() {
        let text = sample().to_yaml(0);
        assert_eq!(
            text,
            "name: reviews\nhttp:\n  - timeout: 2s\n    retries:\n      attempts: 2\n      \
             retryOn: connect-failure,503\ncodes:\n  - 500\n  - 503\nratio: 20\n"
        );
        let docs = crate::doc::parse_documents("v.yaml", &text).unwrap();
        let http = &docs[0].root.get("http").unwrap().items()[0];
        assert_eq!(
            http.get("retries")
                .unwrap()
                .get("attempts")
                .unwrap()
                .as_u64(),
            Some(2)
        );
    }

    #[test]
    fn json_parses_back() {
        let text = sample().to_json(0);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["http"][0]["retries"]["attempts"], 2);
        assert_eq!(value["codes"][1], 503);
    }

    #[test]
    fn strings_that_look_like_other_things_are_quoted() {
        for s in ["2", "1.5", "null", "yes", "- x", "a: b", "", "#x", "010"] {
            let text = format!("k: {}\n", yaml_string(s));
            let docs = crate::doc::parse_documents("q.yaml", &text).unwrap();
            let node = docs[0].root.get("k");
            let plain =
                node.map(|n| matches!(n.value, crate::doc::Value::Scalar { plain: true, .. }));
            assert_ne!(plain, Some(true), "{s:?} written plain: {text}");
        }
    }
}
