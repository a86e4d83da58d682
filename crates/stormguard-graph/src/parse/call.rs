//! One call: the edge of the graph where nearly every setting lives, so nearly every check.

use std::time::Duration;

use stormguard::backoff::Backoff;
use toml::Spanned;

use super::convert::Converter;
use super::locate::KeyPath;
use super::raw::RawCall;
use super::ParseError;
use crate::model::Call;

impl Converter<'_> {
    pub(super) fn call(&self, raw: Spanned<RawCall>, path: &KeyPath) -> Result<Call, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let to = self.required_service(raw.to.as_ref(), offset, path, "to", "this call goes to")?;
        let max_attempts = self.max_attempts(raw.max_attempts.as_ref(), path, 1)?;
        let count = self.at_least_one(
            raw.count.as_ref(),
            path,
            "count",
            1,
            "a call made 0 times per request is no call; use 1 or more, or remove the call",
        )?;
        let backoff = self.backoff(raw.backoff.as_ref(), path, Backoff::None)?;
        // A call without a limiter retries without one: the graph describes what is, and
        // `check` reports a retry that nothing limits.
        let limiter = self.limiter(raw.retry_budget, raw.token_bucket, path, "call")?;
        let hedge = raw.hedge.map(|hedge| self.hedge(hedge, path)).transpose()?;
        Ok(Call {
            to,
            timeout: self.optional_duration(raw.timeout.as_ref(), path, "timeout")?,
            connect_timeout: self.optional_duration(
                raw.connect_timeout.as_ref(),
                path,
                "connect_timeout",
            )?,
            rtt: self.nonzero_duration_or(
                raw.rtt.as_ref(),
                path,
                "rtt",
                Duration::from_millis(1),
                "a round trip over a network takes some time, and every check of a connect \
                 timeout is a multiple of it; use the measured round trip, e.g. \"1ms\"",
            )?,
            max_attempts,
            backoff,
            limiter,
            idempotent: raw.idempotent.unwrap_or(true),
            count,
            parallel: raw.parallel.unwrap_or(false),
            required: raw.required.unwrap_or(true),
            hedge,
            propagate_deadline: raw.propagate_deadline.unwrap_or(false),
            span: self.span(offset),
        })
    }
}
