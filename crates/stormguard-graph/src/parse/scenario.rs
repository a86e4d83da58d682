//! Fault scenarios for the simulator: when which service is slow, failing or gone, and when
//! users come in faster.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::convert::Converter;
use super::locate::KeyPath;
use super::ranges::{ERROR_STATUS, INSTANCES, RATE, RUN_LENGTH, SCENARIO_TIME, SHARE, SLOWDOWN};
use super::raw::{DurationText, RawFault, RawLoad, RawScenario};
use super::ParseError;
use crate::model::{Fault, LoadStep, Scenario, Service};

impl Converter<'_> {
    pub(super) fn scenario(
        &self,
        raw: Spanned<RawScenario>,
        path: &KeyPath,
        services: &BTreeMap<String, Service>,
    ) -> Result<Scenario, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let Some(duration_value) = &raw.duration else {
            return Err(self.error(
                offset,
                &path.key("duration"),
                "missing: say how long the scenario runs, e.g. duration = \"120s\"",
            ));
        };
        let duration = self.duration(duration_value, path, "duration", &RUN_LENGTH)?;
        let rate = raw
            .rate
            .as_ref()
            .map(|rate| self.number(rate, path, "rate", &RATE))
            .transpose()?;
        let faults_path = path.key("faults");
        let faults = raw
            .faults
            .into_iter()
            .enumerate()
            .map(|(i, fault)| self.fault(fault, &faults_path.index(i), services, duration))
            .collect::<Result<Vec<_>, _>>()?;
        let load_path = path.key("load");
        let load = raw
            .load
            .into_iter()
            .enumerate()
            .map(|(i, step)| self.load_step(step, &load_path.index(i), duration))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scenario {
            duration,
            rate,
            faults,
            load,
            span: self.span(offset),
        })
    }

    fn fault(
        &self,
        raw: Spanned<RawFault>,
        path: &KeyPath,
        services: &BTreeMap<String, Service>,
        run: Duration,
    ) -> Result<Fault, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let service = self.required_service(
            raw.service.as_ref(),
            offset,
            path,
            "service",
            "the fault hits",
        )?;
        let (from, to) = self.window(offset, (&raw.from, &raw.to), run, path, "a fault")?;
        let slowdown = self.number_or(raw.slowdown.as_ref(), path, "slowdown", &SLOWDOWN, 1.0)?;
        let error_rate =
            self.number_or(raw.error_rate.as_ref(), path, "error_rate", &SHARE, 0.0)?;
        let error_status = self.whole_or(
            raw.error_status.as_ref(),
            path,
            "error_status",
            &ERROR_STATUS,
            503,
        )? as u16;
        self.whole_or(raw.instances.as_ref(), path, "instances", &INSTANCES, 1)?;
        let instances = match &raw.instances {
            Some(value) => {
                let available = services[&service].instances;
                let count = *value.get_ref();
                if count == 0 || count > available {
                    return Err(self.error(
                        value.span().start,
                        &path.key("instances"),
                        format!(
                            "{count} is not valid: {service} has {available} instance(s); use 1 \
                             to {available}, or leave instances out to hit them all"
                        ),
                    ));
                }
                Some(count)
            }
            None => None,
        };
        let (down, blackhole) = (raw.down.unwrap_or(false), raw.blackhole.unwrap_or(false));
        if slowdown == 1.0 && error_rate == 0.0 && !down && !blackhole {
            // A fault that changes nothing would be simulated as one, and its recovery
            // reported: a placeholder or a typo (`error-rate`) is told.
            return Err(self.error(
                offset,
                path,
                "this fault changes nothing: give it slowdown (above 1), error_rate (above 0), \
                 down = true or blackhole = true",
            ));
        }
        Ok(Fault {
            service,
            from,
            to,
            slowdown,
            error_rate,
            error_status,
            down,
            blackhole,
            instances,
        })
    }

    fn load_step(
        &self,
        raw: Spanned<RawLoad>,
        path: &KeyPath,
        run: Duration,
    ) -> Result<LoadStep, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let (from, to) = self.window(offset, (&raw.from, &raw.to), run, path, "a load step")?;
        let Some(rate) = &raw.rate else {
            return Err(self.error(
                offset,
                &path.key("rate"),
                "missing: give the user requests per second during the step, e.g. rate = 600",
            ));
        };
        Ok(LoadStep {
            from,
            to,
            rate: self.number(rate, path, "rate", &RATE)?,
        })
    }

    /// `from` and `to` of a fault or load step: both required, `from < to`, and `from` before
    /// `run`, the scenario's duration: a fault that starts after the users stop arriving never
    /// happens, and a run that reported it as a fault never recovered from was a contradiction.
    fn window(
        &self,
        offset: usize,
        (from, to): (
            &Option<Spanned<DurationText>>,
            &Option<Spanned<DurationText>>,
        ),
        run: Duration,
        path: &KeyPath,
        what: &str,
    ) -> Result<(Duration, Duration), ParseError> {
        let required = |value: &Option<Spanned<DurationText>>, key: &str| match value {
            Some(value) => self
                .duration(value, path, key, &SCENARIO_TIME)
                .map(|d| (d, value.span().start)),
            None => Err(self.error(
                offset,
                &path.key(key),
                format!(
                    "missing: {what} needs from and to, times since the scenario's start, e.g. \
                     from = \"30s\", to = \"45s\""
                ),
            )),
        };
        let (from, from_offset) = required(from, "from")?;
        let (to, to_offset) = required(to, "to")?;
        if from >= run {
            return Err(self.error(
                from_offset,
                &path.key("from"),
                format!(
                    "{} is not before the scenario's duration {}: {what} that starts after the \
                     users stop arriving never happens; use from < duration",
                    stormguard::duration::format(from),
                    stormguard::duration::format(run)
                ),
            ));
        }
        if from >= to {
            return Err(self.error(
                to_offset,
                &path.key("to"),
                format!(
                    "{} is not after from {}: {what} ends after it starts; use to > from",
                    stormguard::duration::format(to),
                    stormguard::duration::format(from)
                ),
            ));
        }
        Ok((from, to))
    }
}
