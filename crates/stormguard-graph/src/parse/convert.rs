//! From the raw file to the model: every default applied, every value checked for meaning,
//! every refusal located.
//!
//! The defaults live here and nowhere else, so the file format has one definition; the checks
//! here are only those that make a value meaningless (a value outside its range of
//! [`super::ranges`], `p99 < p50`), never those that make it unwise, which are findings of
//! `check` and must not stop the file from loading.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

use toml::Spanned;

use super::locate::{KeyPath, Lines};
use super::ranges::{
    ADDED, AMPLIFICATION, CONCURRENCY, FALSE_TIMEOUT_RATE, INSTANCES, LATENCY, QUEUE, RATE,
    RTT_MULTIPLE, TIMEOUT,
};
use super::raw::{RawCheck, RawEntry, RawGraph, RawLatency, RawService};
use super::values::ValueReader;
use super::ParseError;
use crate::model::{CheckConfig, Entry, Graph, Latency, Service};

/// How many service names an error lists before it says how many more there are: a graph of
/// thousands of services must not print them all to say one name is wrong.
const LISTED_SERVICES: usize = 20;

/// Walks the raw graph, knowing where each value is and which services exist.
///
/// Reads values through the shared [`ValueReader`] (as the proxy's settings do), so the
/// methods of both are called on it alike; what it adds is the service names.
pub(super) struct Converter<'a> {
    values: ValueReader<'a>,
    known: Vec<String>,
    /// The named endpoints of each service, in file order, for a call's `endpoint`.
    pub(super) endpoints: BTreeMap<String, Vec<String>>,
}

impl<'a> Deref for Converter<'a> {
    type Target = ValueReader<'a>;

    fn deref(&self) -> &ValueReader<'a> {
        &self.values
    }
}

impl<'a> Converter<'a> {
    pub(super) fn new(file: &'a str, lines: &'a Lines<'a>) -> Self {
        Converter {
            values: ValueReader::new(file, lines),
            known: Vec::new(),
            endpoints: BTreeMap::new(),
        }
    }

    pub(super) fn graph(mut self, raw: RawGraph) -> Result<Graph, ParseError> {
        self.known = raw.services.keys().cloned().collect();
        self.endpoints = raw
            .services
            .iter()
            .map(|(name, service)| (name.clone(), super::endpoint::names(service.get_ref())))
            .collect();
        let assumed = assumed(&raw.services);
        let entry = self.entry(raw.entry)?;
        let services = raw
            .services
            .into_iter()
            .map(|(name, service)| Ok((name.clone(), self.service(name, service)?)))
            .collect::<Result<BTreeMap<_, _>, ParseError>>()?;
        let check = match raw.check {
            Some(check) => self.check(check)?,
            None => CheckConfig::default(),
        };
        let scenarios = raw
            .scenarios
            .into_iter()
            .map(|(name, scenario)| {
                let path = KeyPath::default().key("scenarios").key(&name);
                self.printable_name(&name, scenario.span().start, &path)?;
                Ok((name, self.scenario(scenario, &path, &services)?))
            })
            .collect::<Result<BTreeMap<_, _>, ParseError>>()?;
        Ok(Graph {
            entry,
            services,
            check,
            scenarios,
            assumed,
        })
    }

    /// Refuses a name (of a service, an endpoint or a scenario) holding a control character:
    /// every report prints names as they are, and an escape sequence or a line break in one
    /// would recolour or rewrite the reader's terminal, or forge a line of the report. The key
    /// in the error is quoted with its control characters escaped.
    pub(super) fn printable_name(
        &self,
        name: &str,
        offset: usize,
        path: &KeyPath,
    ) -> Result<(), ParseError> {
        if !name.chars().any(char::is_control) {
            return Ok(());
        }
        Err(self.error(
            offset,
            path,
            "a name may not hold control characters (escape sequences, line breaks, tabs): \
             every report prints it as it is",
        ))
    }

    fn entry(&self, raw: Option<Spanned<RawEntry>>) -> Result<Entry, ParseError> {
        let path = &KeyPath::default().key("entry");
        let Some(raw) = raw else {
            return Err(self.error(
                0,
                path,
                format!(
                    "missing [entry] table: add one with service = \"NAME\", the service users \
                     call; {}",
                    self.known_services()
                ),
            ));
        };
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let service =
            self.required_service(raw.service.as_ref(), offset, path, "service", "users call")?;
        Ok(Entry {
            service,
            timeout: self.duration_or(
                raw.timeout.as_ref(),
                path,
                "timeout",
                &TIMEOUT,
                Duration::from_secs(10),
            )?,
            rate: self.number_or(raw.rate.as_ref(), path, "rate", &RATE, 100.0)?,
            span: self.span(offset),
        })
    }

    fn service(&self, name: String, raw: Spanned<RawService>) -> Result<Service, ParseError> {
        let path = &KeyPath::default().key("services").key(&name);
        let offset = raw.span().start;
        self.printable_name(&name, offset, path)?;
        let raw = raw.into_inner();
        let instances = self.whole_or(raw.instances.as_ref(), path, "instances", &INSTANCES, 1)?;
        let concurrency = self.whole_or(
            raw.concurrency.as_ref(),
            path,
            "concurrency",
            &CONCURRENCY,
            16,
        )?;
        let latency = match raw.latency {
            Some(latency) => self.latency(latency, &path.key("latency"))?,
            None => Latency::default(),
        };
        let (calls, endpoints) = self.service_calls(raw.calls, raw.endpoints, path)?;
        let (queue_discipline, queue_timeout) = self.queue_keys(
            raw.queue_discipline.as_ref(),
            raw.codel,
            raw.queue_timeout.as_ref(),
            path,
        )?;
        Ok(Service {
            name,
            instances,
            concurrency,
            queue: self.whole_or(raw.queue.as_ref(), path, "queue", &QUEUE, 64)?,
            latency,
            contention: self.duration_or(
                raw.contention.as_ref(),
                path,
                "contention",
                &ADDED,
                Duration::ZERO,
            )?,
            queue_discipline,
            queue_timeout,
            calls,
            endpoints,
            span: self.span(offset),
        })
    }

    fn latency(&self, raw: Spanned<RawLatency>, path: &KeyPath) -> Result<Latency, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let missing = |key: &str| {
            self.error(
                offset,
                &path.key(key),
                "missing: a latency is fitted to two quantiles, give both, e.g. \
                 latency = { p50 = \"4ms\", p99 = \"40ms\" }",
            )
        };
        let p50_value = raw.p50.as_ref().ok_or_else(|| missing("p50"))?;
        let p99_value = raw.p99.as_ref().ok_or_else(|| missing("p99"))?;
        let p50 = self.duration(p50_value, path, "p50", &LATENCY)?;
        let p99 = self.duration(p99_value, path, "p99", &LATENCY)?;
        if p99 < p50 {
            return Err(self.error(
                p99_value.span().start,
                &path.key("p99"),
                format!(
                    "p99 {} is below p50 {}: a 99th percentile is never below the median; use \
                     p99 >= p50",
                    stormguard::duration::format(p99),
                    stormguard::duration::format(p50)
                ),
            ));
        }
        Ok(Latency { p50, p99 })
    }

    fn check(&self, raw: Spanned<RawCheck>) -> Result<CheckConfig, ParseError> {
        let path = &KeyPath::default().key("check");
        let raw = raw.into_inner();
        let defaults = CheckConfig::default();
        Ok(CheckConfig {
            max_amplification: self.number_or(
                raw.max_amplification.as_ref(),
                path,
                "max_amplification",
                &AMPLIFICATION,
                defaults.max_amplification,
            )?,
            connect_timeout_rtt_multiple: self.number_or(
                raw.connect_timeout_rtt_multiple.as_ref(),
                path,
                "connect_timeout_rtt_multiple",
                &RTT_MULTIPLE,
                defaults.connect_timeout_rtt_multiple,
            )?,
            false_timeout_rate: self.number_or(
                raw.false_timeout_rate.as_ref(),
                path,
                "false_timeout_rate",
                &FALSE_TIMEOUT_RATE,
                defaults.false_timeout_rate,
            )?,
        })
    }

    /// "known services: a, b, c" (or "... and N more"), the valid values of a service name.
    pub(super) fn known_services(&self) -> String {
        if self.known.is_empty() {
            return "the file defines no services yet: add [services.NAME] tables".to_string();
        }
        let listed = self.known[..self.known.len().min(LISTED_SERVICES)].join(", ");
        match self.known.len().checked_sub(LISTED_SERVICES) {
            Some(more) if more > 0 => format!("known services: {listed} and {more} more"),
            _ => format!("known services: {listed}"),
        }
    }

    /// A service key the file must give (`to`, `service`): its name checked against the known
    /// services, or, when it is missing, an error at `offset` saying which service it should
    /// name (`what`) and listing the known ones.
    pub(super) fn required_service(
        &self,
        name: Option<&Spanned<String>>,
        offset: usize,
        parent: &KeyPath,
        key: &str,
        what: &str,
    ) -> Result<String, ParseError> {
        match name {
            Some(name) => self.known_service(name, parent, key),
            None => Err(self.error(
                offset,
                &parent.key(key),
                format!(
                    "missing: name the service {what}; {}",
                    self.known_services()
                ),
            )),
        }
    }

    pub(super) fn known_service(
        &self,
        name: &Spanned<String>,
        parent: &KeyPath,
        key: &str,
    ) -> Result<String, ParseError> {
        if self.known.binary_search(name.get_ref()).is_ok() {
            return Ok(name.get_ref().clone());
        }
        Err(self.error(
            name.span().start,
            &parent.key(key),
            format!(
                "unknown service {:?}: there is no [services.{}]; {}",
                name.get_ref(),
                KeyPath::default().key(name.get_ref()),
                self.known_services()
            ),
        ))
    }
}

/// The valid key (of serde's list, "`a`, `b`") a typo most likely meant: the nearest by edit
/// distance, if within a third of its length (at least one edit), and the only one that near.
fn closest_key<'v>(typed: &str, valid: &'v str) -> Option<&'v str> {
    let mut best: Option<(usize, &str)> = None;
    let mut tie = false;
    for key in valid.split(", ").map(|k| k.trim_matches('`')) {
        let distance = edit_distance(typed, key);
        if distance > (key.chars().count() / 3).max(1) {
            continue;
        }
        match best {
            Some((d, _)) if d < distance => {}
            Some((d, _)) if d == distance => tie = true,
            _ => {
                best = Some((distance, key));
                tie = false;
            }
        }
    }
    best.filter(|_| !tie).map(|(_, key)| key)
}

/// Edit distance in characters, a swap of two neighbours counting one edit as a typo does
/// (optimal string alignment); keys are short, so three rows of a table do.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (previous[j] + 1)
                .min(row[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut row);
    }
    previous[b.len()]
}

/// Rewords serde's messages in the file's terms: "key" and "table" instead of "field" and
/// "struct RawCall", and number types as a person would say them; `key` is the last key of
/// the path at fault, if known, for the range a whole number takes there (its range of
/// [`super::ranges`], or the type's when it has none).
pub(super) fn serde_message(message: &str, key: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        // serde lists the valid fields as "one of `a`, `b`", "`a` or `b`" or "`a`".
        return match rest.split_once(", expected ") {
            Some((key, valid)) => {
                let valid = valid
                    .trim_start_matches("one of ")
                    .replace("` or `", "`, `");
                match closest_key(key.trim_matches('`'), &valid) {
                    Some(near) => {
                        format!(
                            "unknown key {key}; did you mean `{near}`? valid keys here: {valid}"
                        )
                    }
                    None => format!("unknown key {key}; valid keys here: {valid}"),
                }
            }
            None => format!("unknown key {rest}"),
        };
    }
    let (min, max) = key
        .and_then(super::ranges::whole_bounds)
        .unwrap_or((0, u32::MAX.into()));
    let mut message = message
        .replace(
            "expected u32",
            &format!("expected a whole number from {min} to {max}"),
        )
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table");
    while let Some(start) = message.find("struct Raw") {
        let name_start = start + "struct Raw".len();
        let end = message[name_start..]
            .find(|c: char| !c.is_alphanumeric())
            .map_or(message.len(), |len| name_start + len);
        message.replace_range(start..end, "a table");
    }
    message
}

/// What the file left to the defaults (see [`crate::model::Assumed`]).
fn assumed(services: &BTreeMap<String, Spanned<super::raw::RawService>>) -> crate::model::Assumed {
    let mut assumed = crate::model::Assumed::default();
    for (name, service) in services {
        let service = service.get_ref();
        if service.latency.is_none() {
            assumed.latency.push(name.clone());
        }
        if service.instances.is_none() {
            assumed.instances.push(name.clone());
        }
        let calls = service.calls.iter().chain(
            service
                .endpoints
                .values()
                .flat_map(|e| e.get_ref().calls.iter()),
        );
        for call in calls {
            let call = call.get_ref();
            if call.rtt.is_none() {
                let to = call.to.as_ref().map_or("?", |to| to.get_ref().as_str());
                let edge = format!("{name} -> {to}");
                if !assumed.rtt.contains(&edge) {
                    assumed.rtt.push(edge);
                }
            }
        }
    }
    assumed
}
