//! One `[[routes]]` table: which requests, which upstream, and the policy as a graph call.
//!
//! The policy keys are a graph call's, read by the same code with the same defaults
//! ([`stormguard_graph::parse::policy_keys`]): `timeout` is each attempt, connecting included;
//! `request_timeout` the whole request; `max_attempts` counts the first; and so on. What a
//! route adds is what only a proxy has (a match, an upstream, an adaptive timeout, a deadline
//! reserve, a replay limit, faults), and two refusals where the proxy cannot run what a graph
//! may describe: a route without `timeout`, and one that resends without `request_timeout`.

use std::time::Duration;

use stormguard::backoff::Backoff;
use stormguard::policy::RetryPolicy;
use stormguard_graph::model::{Call, Idempotent};
use stormguard_graph::parse::locate::KeyPath;
use stormguard_graph::parse::policy_keys::DEFAULT_METHOD;
use stormguard_graph::parse::ranges::{ADDED, BODY, LATENCY};
use stormguard_graph::parse::ParseError;
use toml::Spanned;

use super::convert::Converter;
use super::model::{Route, RouteMatch};
use super::raw::{RawMatch, RawRoute, Scalar};

/// The most `latency_buckets` a route takes: each is a series of both of its histograms.
pub(crate) const MAX_LATENCY_BUCKETS: usize = 16;

/// How many upstream names an error lists before it says how many more there are.
const LISTED_UPSTREAMS: usize = 20;

/// The longest every attempt of a route and the waits between them take: `attempts x timeout
/// + the backoff's longest waits`.
fn worst_case(timeout: Duration, attempts: u32, backoff: &Backoff) -> Duration {
    timeout
        .saturating_mul(attempts.max(1))
        .saturating_add(backoff.worst_case_total(attempts.saturating_sub(1)))
}

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
        let raw_hedge_at = raw.hedge.as_ref().map(|hedge| hedge.span().start);
        let policy = self.policy(stormguard_graph::policy_keys!(raw, offset), path, "route")?;
        // Every remote call has a timeout: a graph call without one is a finding of `check`, a
        // route without one would hold a client and an upstream slot for as long as the upstream
        // hangs, so the proxy does not run it.
        let Some(timeout) = policy.timeout else {
            return Err(self.error(
                offset,
                &path.key("timeout"),
                "missing: every route needs a timeout for each attempt, e.g. timeout = \"2s\" \
                 (connecting included); request_timeout bounds the whole request",
            ));
        };
        // A hedge runs within its attempt's timeout, so only retries can outlast it.
        let retries = policy.max_attempts > 1;
        if let (true, None, Some(value)) = (retries, policy.request_timeout, raw.timeout.as_ref()) {
            // Until this release a route's `timeout` also capped the whole request; it now bounds
            // each attempt, as in a graph call. A route that sends more than once must say how
            // long the whole request may take, so that no old file silently loses its cap.
            let every = stormguard::duration::format(worst_case(
                timeout,
                policy.max_attempts,
                &policy.backoff,
            ));
            return Err(self.error(
                value.span().start,
                &path.key("request_timeout"),
                format!(
                    "missing: this route retries, and `timeout` bounds \
                     each attempt only (it no longer caps the whole request, as it did before \
                     request_timeout existed); add request_timeout = \"{}\" to keep that cap, \
                     or request_timeout = \"{every}\" to let every attempt and wait run",
                    stormguard::duration::format(timeout),
                ),
            ));
        }
        if let (Some(hedge), Idempotent::No) = (&raw_hedge_at, policy.idempotent) {
            let at = raw
                .idempotent
                .as_ref()
                .map_or(*hedge, |value| value.span().start);
            return Err(self.error(
                at,
                &path.key("idempotent"),
                "a route with idempotent = false takes no hedge: both copies of a hedged request \
                 may run; remove hedge, or remove idempotent = false if running a request twice \
                 is safe",
            ));
        }
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
            // A route goes to an upstream, which has no endpoints.
            endpoint: None,
            timeout: Some(timeout),
            request_timeout: policy.request_timeout,
            connect_timeout: policy.connect_timeout,
            // For `check` alone, which reads it as the network's round trip to the upstream
            // (its connect-timeout findings name it); the proxy neither reads nor measures it.
            // The graph's key and default, so that the finding's "set the call's rtt" can be
            // followed in a settings file too.
            rtt: self.rtt(raw.rtt.as_ref(), path)?,
            max_attempts: policy.max_attempts,
            backoff: policy.backoff,
            limiter: policy.limiter,
            idempotent: policy.idempotent,
            // A route takes every method: "by-method" is decided per request. A graph reading
            // of the route (`check`, `sim`) takes the commonest, GET.
            method: DEFAULT_METHOD.to_string(),
            retry_on: policy.retry_on,
            count: 1,
            parallel: false,
            required: true,
            hedge: policy.hedge,
            propagate_deadline: policy.propagate_deadline,
            span: self.span(offset),
        };
        let deadline_reserve = self.duration_or(
            raw.deadline_reserve.as_ref(),
            path,
            "deadline_reserve",
            &ADDED,
            recommended.deadline.reserve,
        )?;
        // Every attempt gets at most what is left less the reserve: a reserve of the whole
        // request_timeout leaves none, and every request would be answered 504 without an
        // attempt (a review: "3s" for "3ms" reloaded into a route that failed every request).
        if let (Some(whole), Some(reserve)) = (call.request_timeout, &raw.deadline_reserve) {
            if deadline_reserve >= whole {
                return Err(self.error(
                    reserve.span().start,
                    &path.key("deadline_reserve"),
                    format!(
                        "{} is all of the route's request_timeout ({}) or more: the reserve is \
                         kept back from every request's time, so no attempt would ever start \
                         and every request would be answered 504; a reserve is a few ms \
                         (default {})",
                        stormguard::duration::format(deadline_reserve),
                        stormguard::duration::format(whole),
                        stormguard::duration::format(recommended.deadline.reserve),
                    ),
                ));
            }
        }
        Ok(Route {
            name,
            matcher,
            upstream,
            call,
            adaptive_timeout,
            deadline_reserve,
            retry_body_limit: self.size_or(
                raw.retry_body_limit.as_ref(),
                path,
                "retry_body_limit",
                &BODY,
                stormguard::layer::DEFAULT_BODY_LIMIT as u64,
            )?,
            latency_buckets: self.latency_buckets(raw.latency_buckets.as_ref(), path)?,
            fault,
        })
    }

    /// `latency_buckets`: durations in [`LATENCY`]'s range, at most [`MAX_LATENCY_BUCKETS`].
    fn latency_buckets(
        &self,
        raw: Option<&Spanned<Vec<Spanned<Scalar>>>>,
        path: &KeyPath,
    ) -> Result<Vec<Duration>, ParseError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        if raw.get_ref().len() > MAX_LATENCY_BUCKETS {
            return Err(self.error(
                raw.span().start,
                &path.key("latency_buckets"),
                format!(
                    "{} bounds, and at most {MAX_LATENCY_BUCKETS} are taken: each is a series of \
                     both of the route's latency histograms; keep your objectives",
                    raw.get_ref().len()
                ),
            ));
        }
        raw.get_ref()
            .iter()
            .map(|bound| {
                self.duration_or(
                    Some(bound),
                    path,
                    "latency_buckets",
                    &LATENCY,
                    Duration::ZERO,
                )
            })
            .collect()
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
