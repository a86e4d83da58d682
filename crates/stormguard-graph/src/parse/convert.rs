//! From the raw file to the model: every default applied, every value checked for meaning,
//! every refusal located.
//!
//! The defaults live here and nowhere else, so the file format has one definition; the checks
//! here are only those that make a value meaningless (zero instances, attempts or counts,
//! `p99 < p50`, a zero `rtt` or `entry.timeout`), never those that make it unwise, which are
//! findings of `check` and must not stop the file from loading.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

use toml::Spanned;

use super::locate::{KeyPath, Lines};
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
                Ok((name, self.scenario(scenario, &path, &services)?))
            })
            .collect::<Result<BTreeMap<_, _>, ParseError>>()?;
        Ok(Graph {
            entry,
            services,
            check,
            scenarios,
        })
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
            timeout: self.nonzero_duration_or(
                raw.timeout.as_ref(),
                path,
                "timeout",
                Duration::from_secs(10),
                "a user who waits no time gets no answer, and every graph would miss its \
                 budget; use how long a user waits, e.g. \"10s\"",
            )?,
            rate: match &raw.rate {
                Some(rate) => self.rate(rate, path, "rate")?,
                None => 100.0,
            },
            span: self.span(offset),
        })
    }

    fn service(&self, name: String, raw: Spanned<RawService>) -> Result<Service, ParseError> {
        let path = &KeyPath::default().key("services").key(&name);
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let instances = self.at_least_one(
            raw.instances.as_ref(),
            path,
            "instances",
            1,
            "a service needs at least 1 instance",
        )?;
        let concurrency = self.at_least_one(
            raw.concurrency.as_ref(),
            path,
            "concurrency",
            16,
            "an instance that works on no request at once serves nothing; use 1 or more",
        )?;
        let latency = match raw.latency {
            Some(latency) => self.latency(latency, &path.key("latency"))?,
            None => Latency::default(),
        };
        let (calls, endpoints) = self.service_calls(raw.calls, raw.endpoints, path)?;
        Ok(Service {
            name,
            instances,
            concurrency,
            queue: raw.queue.map_or(64, Spanned::into_inner),
            latency,
            contention: self.duration_or(
                raw.contention.as_ref(),
                path,
                "contention",
                Duration::ZERO,
            )?,
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
        let p50 = self.duration(p50_value, path, "p50")?;
        let p99 = self.duration(p99_value, path, "p99")?;
        if p50.is_zero() {
            return Err(self.error(
                p50_value.span().start,
                &path.key("p50"),
                "p50 is 0s: a service's own work takes some time; use a median above 0, e.g. \"1ms\"",
            ));
        }
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
        let number = |value: &Option<Spanned<f64>>,
                      key: &str,
                      valid: fn(f64) -> bool,
                      wanted: &str,
                      default: f64| match value {
            Some(value) if !valid(*value.get_ref()) => Err(self.error(
                value.span().start,
                &path.key(key),
                format!("{} is not valid: use {wanted}", value.get_ref()),
            )),
            Some(value) => Ok(*value.get_ref()),
            None => Ok(default),
        };
        Ok(CheckConfig {
            max_amplification: number(
                &raw.max_amplification,
                "max_amplification",
                |v| v.is_finite() && v >= 1.0,
                "a finite number of attempts per user request, at least 1, e.g. 10",
                defaults.max_amplification,
            )?,
            connect_timeout_rtt_multiple: number(
                &raw.connect_timeout_rtt_multiple,
                "connect_timeout_rtt_multiple",
                |v| v.is_finite() && v >= 1.0,
                "a finite multiple of the round trip, at least 1, e.g. 10",
                defaults.connect_timeout_rtt_multiple,
            )?,
            false_timeout_rate: number(
                &raw.false_timeout_rate,
                "false_timeout_rate",
                |v| v > 0.0 && v < 1.0,
                "a share of calls strictly between 0 and 1, e.g. 0.001 for the p99.9",
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

    /// A request rate: finite and not negative (0 is allowed: no load, e.g. a step that stops
    /// users for a while).
    pub(super) fn rate(
        &self,
        value: &Spanned<f64>,
        parent: &KeyPath,
        key: &str,
    ) -> Result<f64, ParseError> {
        let rate = *value.get_ref();
        if rate.is_finite() && rate >= 0.0 {
            return Ok(rate);
        }
        Err(self.error(
            value.span().start,
            &parent.key(key),
            format!(
                "rate {rate} is not valid: use requests per second, a finite number >= 0, e.g. 100"
            ),
        ))
    }
}

/// The keys whose whole number is refused at 0 after serde reads it, so that serde's own type
/// error for them (a negative number, a fraction) names the range that is valid, from 1.
const FROM_ONE: [&str; 5] = [
    "instances",
    "concurrency",
    "max_attempts",
    "count",
    "capacity",
];

/// Rewords serde's messages in the file's terms: "key" and "table" instead of "field" and
/// "struct RawCall", and number types as a person would say them; `key` is the last key of
/// the path at fault, if known, for the range a whole number takes there.
pub(super) fn serde_message(message: &str, key: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        // serde lists the valid fields as "one of `a`, `b`", "`a` or `b`" or "`a`".
        return match rest.split_once(", expected ") {
            Some((key, valid)) => {
                let valid = valid
                    .trim_start_matches("one of ")
                    .replace("` or `", "`, `");
                format!("unknown key {key}; valid keys here: {valid}")
            }
            None => format!("unknown key {rest}"),
        };
    }
    let mut message = message
        .replace(
            "expected u32",
            if key.is_some_and(|key| FROM_ONE.contains(&key)) {
                "expected a whole number from 1 to 4294967295"
            } else {
                "expected a whole number from 0 to 4294967295"
            },
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
