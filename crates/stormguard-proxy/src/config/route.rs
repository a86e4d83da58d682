//! One `[[routes]]` table: which requests, which upstream, and the policy as a graph call.
//!
//! The keys a graph call has mean what they mean there (`timeout` is per attempt, `max_attempts`
//! counts the first, `backoff` and `hedge` use the policy core's text forms), but the defaults
//! are the library's recommended policy ([`RetryPolicy::recommended`]) rather than the graph's
//! "nothing": a graph file describes what a service does today, a proxy route says what it
//! should do, and a route that says nothing should get the safe behaviour.

use std::time::Duration;

use stormguard::budget::RetryBudget;
use stormguard::policy::RetryPolicy;
use stormguard_graph::model::{Call, LimiterSpec};
use stormguard_graph::parse::locate::KeyPath;
use stormguard_graph::parse::ParseError;
use toml::Spanned;

use super::convert::Converter;
use super::model::{Route, RouteMatch};
use super::raw::{RawMatch, RawRoute};

/// The connect timeout of a route that gives none (capped by its `timeout`): a second is ten
/// round trips on the worst links and still lets a retry go elsewhere when a SYN is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The hedge budget of a `hedge` that gives no `max_extra`: the library's 5% (see
/// `stormguard::hedge`). The graph file leaves it out and `check` warns; a proxy must not
/// double a slow upstream's load, so it fills it in.
pub(super) const HEDGE_MAX_EXTRA: f64 = 0.05;

/// How many upstream names an error lists before it says how many more there are.
const LISTED_UPSTREAMS: usize = 20;

impl Converter<'_> {
    pub(super) fn route(
        &self,
        raw: Spanned<RawRoute>,
        path: &KeyPath,
    ) -> Result<Route, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let recommended = RetryPolicy::recommended();
        let name =
            match &raw.name {
                Some(name) if name.get_ref().trim().is_empty() => {
                    return Err(self.error(
                        name.span().start,
                        &path.key("name"),
                        "an empty name cannot label metrics and logs: use e.g. \"api\"",
                    ))
                }
                Some(name) => name.get_ref().clone(),
                None => return Err(self.error(
                    offset,
                    &path.key("name"),
                    "missing: name the route, e.g. name = \"api\"; the name labels its metrics \
                     and logs",
                )),
            };
        let matcher = match raw.matcher {
            Some(matcher) => self.matcher(matcher.into_inner(), &path.key("match"))?,
            None => RouteMatch::default(),
        };
        let upstream = self.known_upstream(raw.upstream.as_ref(), offset, path)?;
        let timeout = self.nonzero_duration_or(
            raw.timeout.as_ref(),
            path,
            "timeout",
            recommended.deadline.per_try_timeout,
            "every attempt would time out before it started; use e.g. \"2s\"",
        )?;
        let connect_timeout = self.nonzero_duration_or(
            raw.connect_timeout.as_ref(),
            path,
            "connect_timeout",
            CONNECT_TIMEOUT.min(timeout),
            "no connection is made in no time; use e.g. \"100ms\"",
        )?;
        if let Some(value) = raw
            .connect_timeout
            .as_ref()
            .filter(|_| connect_timeout > timeout)
        {
            return Err(self.error(
                value.span().start,
                &path.key("connect_timeout"),
                format!(
                    "connect_timeout {} is above timeout {}: an attempt's timeout includes \
                     connecting, so it would never fire; use at most {}",
                    stormguard::duration::format(connect_timeout),
                    stormguard::duration::format(timeout),
                    stormguard::duration::format(timeout),
                ),
            ));
        }
        let max_attempts =
            self.max_attempts(raw.max_attempts.as_ref(), path, recommended.max_attempts)?;
        let backoff = self.backoff(raw.backoff.as_ref(), path, recommended.backoff)?;
        // A route cannot turn its limiter off: without one it gets the recommended budget.
        let limiter = match self.limiter(raw.retry_budget, raw.token_bucket, path, "route")? {
            Some(limiter) => limiter,
            None => {
                let budget = RetryBudget::recommended();
                LimiterSpec::Budget {
                    ratio: budget.ratio(),
                    min_per_sec: budget.min_per_sec(),
                }
            }
        };
        let idempotent = raw.idempotent.as_ref().is_none_or(|value| *value.get_ref());
        let hedge = match raw.hedge {
            Some(hedge) => {
                if let Some(value) = raw.idempotent.as_ref().filter(|_| !idempotent) {
                    return Err(self.error(
                        value.span().start,
                        &path.key("idempotent"),
                        "a route with idempotent = false takes no hedge: both copies of a \
                         hedged request may run; remove hedge, or idempotent = false",
                    ));
                }
                let mut hedge = self.hedge(hedge, path)?;
                hedge.max_extra.get_or_insert(HEDGE_MAX_EXTRA);
                Some(hedge)
            }
            None => None,
        };
        let adaptive_timeout = raw
            .adaptive_timeout
            .map(|adaptive| self.adaptive(adaptive, timeout, &path.key("adaptive_timeout")))
            .transpose()?;
        let fault = raw
            .fault
            .map(|fault| self.fault(fault, &path.key("fault")))
            .transpose()?;
        let call = Call {
            to: upstream.clone(),
            timeout: Some(timeout),
            connect_timeout: Some(connect_timeout),
            // The graph's default: only `check` reads it, and a proxy does not measure it.
            rtt: Duration::from_millis(1),
            max_attempts,
            backoff,
            limiter: Some(limiter),
            idempotent,
            count: 1,
            parallel: false,
            required: true,
            hedge,
            propagate_deadline: raw
                .propagate_deadline
                .unwrap_or(recommended.propagate_deadline),
            span: self.span(offset),
        };
        Ok(Route {
            name,
            matcher,
            upstream,
            call,
            adaptive_timeout,
            deadline_reserve: self.duration_or(
                raw.deadline_reserve.as_ref(),
                path,
                "deadline_reserve",
                recommended.deadline.reserve,
            )?,
            retry_body_limit: self.size_or(
                raw.retry_body_limit.as_ref(),
                path,
                "retry_body_limit",
                stormguard::layer::DEFAULT_BODY_LIMIT as u64,
            )?,
            fault,
        })
    }

    fn matcher(&self, raw: RawMatch, path: &KeyPath) -> Result<RouteMatch, ParseError> {
        if let Some(prefix) = raw
            .path_prefix
            .as_ref()
            .filter(|p| !p.get_ref().starts_with('/'))
        {
            return Err(self.error(
                prefix.span().start,
                &path.key("path_prefix"),
                format!(
                    "{:?} does not start with '/', and every request path does: use e.g. \"/\" \
                     or \"/api/\"",
                    prefix.get_ref()
                ),
            ));
        }
        let host = match &raw.host {
            Some(host) => {
                let name = host.get_ref();
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
                if !valid {
                    return Err(self.error(
                        host.span().start,
                        &path.key("host"),
                        format!(
                            "{name:?} is not a host name: the Host header is compared without \
                             port and case, so write only the name, e.g. \"api.internal\", or \
                             leave host out to match any host"
                        ),
                    ));
                }
                Some(name.to_ascii_lowercase())
            }
            None => None,
        };
        Ok(RouteMatch {
            path_prefix: raw.path_prefix.map(Spanned::into_inner),
            host,
        })
    }

    fn known_upstream(
        &self,
        name: Option<&Spanned<String>>,
        offset: usize,
        path: &KeyPath,
    ) -> Result<String, ParseError> {
        let Some(name) = name else {
            return Err(self.error(
                offset,
                &path.key("upstream"),
                format!(
                    "missing: name the upstream this route sends to; {}",
                    self.known_upstreams()
                ),
            ));
        };
        if self.upstreams.binary_search(name.get_ref()).is_ok() {
            return Ok(name.get_ref().clone());
        }
        Err(self.error(
            name.span().start,
            &path.key("upstream"),
            format!(
                "unknown upstream {:?}: there is no [{}]; {}",
                name.get_ref(),
                KeyPath::default().key("upstreams").key(name.get_ref()),
                self.known_upstreams()
            ),
        ))
    }

    /// "known upstreams: a, b" (or "... and N more"), the valid values of `upstream`.
    fn known_upstreams(&self) -> String {
        if self.upstreams.is_empty() {
            return "the file defines no upstreams yet: add [upstreams.NAME] with instances = \
                    [\"host:port\", ...]"
                .to_string();
        }
        let listed = self.upstreams[..self.upstreams.len().min(LISTED_UPSTREAMS)].join(", ");
        match self.upstreams.len().checked_sub(LISTED_UPSTREAMS) {
            Some(more) if more > 0 => format!("known upstreams: {listed} and {more} more"),
            _ => format!("known upstreams: {listed}"),
        }
    }
}
