//! A route's own inline tables: `adaptive_timeout` and `fault`. (Its `retry_budget`,
//! `token_bucket` and `hedge` are a graph call's, read by `stormguard_graph::parse::keys`.)
//!
//! An adaptive timeout is checked by the policy core's own constructor
//! (`AdaptiveTimeout::new`) and its message passed on, so that the proxy accepts exactly what
//! the library runs; only the position and the key are added here.

use std::time::Duration;

use stormguard::estimate::{AdaptiveTimeout, EstimateError};
use stormguard_graph::parse::locate::KeyPath;
use stormguard_graph::parse::ranges::{ABORT_STATUS, ADAPTIVE_RATE, ADDED, PERCENT, TIMEOUT};
use stormguard_graph::parse::ParseError;
use toml::Spanned;

use super::convert::Converter;
use super::model::{AdaptiveTimeoutSpec, FaultSpec};
use super::raw::{RawAdaptive, RawFault};

/// The status of a fault that gives `abort_percent` but no `abort_status`: what an overloaded
/// upstream answers, so that clients' retry paths are exercised.
const DEFAULT_ABORT_STATUS: u16 = 503;

impl Converter<'_> {
    /// `adaptive_timeout`, bounded above by the route's `timeout` so that `timeout` stays the
    /// longest any attempt takes (what `/config` shows and the worst case is computed from).
    pub(super) fn adaptive(
        &self,
        raw: Spanned<RawAdaptive>,
        timeout: Duration,
        path: &KeyPath,
    ) -> Result<AdaptiveTimeoutSpec, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let defaults = AdaptiveTimeout::default();
        let max = self.duration_or(raw.max.as_ref(), path, "max", &TIMEOUT, timeout)?;
        let min = self.duration_or(
            raw.min.as_ref(),
            path,
            "min",
            &TIMEOUT,
            defaults.min.min(max),
        )?;
        let rate = self.number_or(
            raw.false_timeout_rate.as_ref(),
            path,
            "false_timeout_rate",
            &ADAPTIVE_RATE,
            defaults.false_timeout_rate,
        )?;
        // Where each value is, or the table when the file left it out.
        let rate_at = raw
            .false_timeout_rate
            .as_ref()
            .map_or(offset, |v| v.span().start);
        let min_at = raw.min.as_ref().map_or(offset, |v| v.span().start);
        let max_at = raw.max.as_ref().map_or(offset, |v| v.span().start);
        if let Err(error) = AdaptiveTimeout::new(rate, min, max) {
            let (at, key) = match error {
                EstimateError::FalseTimeoutRate(_) => (rate_at, "false_timeout_rate"),
                EstimateError::MinimumAboveMaximum { .. } if raw.min.is_none() => (max_at, "max"),
                _ => (min_at, "min"),
            };
            return Err(self.error(at, &path.key(key), error.to_string()));
        }
        if max > timeout {
            return Err(self.error(
                max_at,
                &path.key("max"),
                format!(
                    "max {} is above the route's timeout {}: the timeout is the longest an \
                     attempt may take; use a max of at most {}, or raise timeout",
                    stormguard::duration::format(max),
                    stormguard::duration::format(timeout),
                    stormguard::duration::format(timeout),
                ),
            ));
        }
        Ok(AdaptiveTimeoutSpec {
            false_timeout_rate: rate,
            min,
            max,
        })
    }

    /// `fault`: a share given without its fault is refused, a fault given without its share
    /// applies to every request, and a fault with neither a delay nor an abort is refused,
    /// since it would look like an injection and do nothing.
    pub(super) fn fault(
        &self,
        raw: Spanned<RawFault>,
        path: &KeyPath,
    ) -> Result<FaultSpec, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        if raw.delay.is_none() && raw.abort_status.is_none() && raw.abort_percent.is_none() {
            return Err(self.error(
                offset,
                path,
                "a fault with neither delay nor abort_status does nothing: give delay = \
                 \"200ms\" (with delay_percent) or abort_status = 503 (with abort_percent)",
            ));
        }
        if let (None, Some(percent)) = (&raw.delay, &raw.delay_percent) {
            return Err(self.error(
                percent.span().start,
                &path.key("delay_percent"),
                "delay_percent without delay delays requests by nothing: add delay, e.g. \
                 delay = \"200ms\"",
            ));
        }
        let percent = |value: &Option<Spanned<f64>>, key: &str, given: bool| {
            self.number_or(
                value.as_ref(),
                path,
                key,
                &PERCENT,
                if given { 100.0 } else { 0.0 },
            )
        };
        let abort_status = self.whole_or(
            raw.abort_status.as_ref(),
            path,
            "abort_status",
            &ABORT_STATUS,
            i64::from(DEFAULT_ABORT_STATUS),
        )? as u16;
        Ok(FaultSpec {
            delay: self.duration_or(raw.delay.as_ref(), path, "delay", &ADDED, Duration::ZERO)?,
            delay_percent: percent(&raw.delay_percent, "delay_percent", raw.delay.is_some())?,
            abort_status,
            abort_percent: percent(
                &raw.abort_percent,
                "abort_percent",
                raw.abort_status.is_some(),
            )?,
        })
    }
}
