//! Fault injection: delays and aborts on purpose, to see retries, budgets and deadlines work.
//!
//! ## Why in the proxy
//! A policy that has never run is a guess; injecting a fault in front of a real upstream shows
//! what callers see when it is slow or failing, without breaking it. A route's `fault` delays a
//! share of its requests and aborts a share with a status; the headers
//! `stormguard-fault-delay-ms: N` and `stormguard-fault-abort: STATUS` do the same for one
//! request and win over the route's draw. All of it acts only when `[faults] enabled = true`, so
//! that no request header can make a production proxy fail. The headers are consumed there, so
//! a proxy further along does not inject the same fault again.
//!
//! A delay happens before the route's stack and is spent from the caller's budget, as a slow
//! network would spend it; an abort is answered by the proxy with `stormguard-reason: fault`.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use rand::Rng;

use crate::config::FaultSpec;

/// Delays this request by the given milliseconds.
pub const DELAY_HEADER: &str = "stormguard-fault-delay-ms";
/// Answers this request with the given status.
pub const ABORT_HEADER: &str = "stormguard-fault-abort";

/// The longest delay a header may ask for, so a typo cannot hold a request for days.
const LONGEST_DELAY: Duration = Duration::from_secs(600);

/// What to inject into one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Injected {
    /// Wait this long before forwarding.
    pub(crate) delay: Option<Duration>,
    /// Answer with this status instead of forwarding.
    pub(crate) abort: Option<StatusCode>,
}

/// Draws the route's faults for one request and applies the fault headers (removing them).
/// `rng` is called only when the route has a fault to draw.
pub(crate) fn decide<R: Rng>(
    spec: Option<&FaultSpec>,
    headers: &mut HeaderMap,
    rng: impl FnOnce() -> R,
) -> Injected {
    let mut injected = Injected::default();
    if let Some(spec) = spec {
        let mut rng = rng();
        if rng.random::<f64>() * 100.0 < spec.delay_percent {
            injected.delay = Some(spec.delay);
        }
        if rng.random::<f64>() * 100.0 < spec.abort_percent {
            injected.abort = StatusCode::from_u16(spec.abort_status).ok();
        }
    }
    if let Some(value) = headers.remove(DELAY_HEADER) {
        match value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(ms) => injected.delay = Some(Duration::from_millis(ms).min(LONGEST_DELAY)),
            None => tracing::debug!(?value, "ignoring {DELAY_HEADER}: not a number of ms"),
        }
    }
    if let Some(value) = headers.remove(ABORT_HEADER) {
        let status = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u16>().ok())
            .filter(|s| (200..=599).contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok());
        match status {
            Some(status) => injected.abort = Some(status),
            None => tracing::debug!(?value, "ignoring {ABORT_HEADER}: not a status 200-599"),
        }
    }
    injected
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rng() -> stormguard::backoff::JitterRng {
        stormguard::backoff::seeded(7)
    }

    fn spec(delay_percent: f64, abort_percent: f64) -> FaultSpec {
        FaultSpec {
            delay: Duration::from_millis(200),
            delay_percent,
            abort_status: 503,
            abort_percent,
        }
    }

    #[test]
    fn percentages_of_zero_and_a_hundred_are_never_and_always() {
        let mut headers = HeaderMap::new();
        for _ in 0..100 {
            assert_eq!(
                decide(Some(&spec(0.0, 0.0)), &mut headers, rng),
                Injected::default()
            );
        }
        let always = decide(Some(&spec(100.0, 100.0)), &mut headers, rng);
        assert_eq!(always.delay, Some(Duration::from_millis(200)));
        assert_eq!(always.abort, Some(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn a_share_is_drawn_near_its_percentage() {
        let spec = spec(10.0, 0.0);
        let mut seed = 0;
        let delayed = (0..10_000)
            .filter(|_| {
                seed += 1;
                decide(Some(&spec), &mut HeaderMap::new(), || {
                    stormguard::backoff::seeded(seed)
                })
                .delay
                .is_some()
            })
            .count();
        assert!((800..1200).contains(&delayed), "{delayed}");
    }

    #[test]
    fn headers_win_and_are_consumed() {
        let mut headers = HeaderMap::new();
        headers.insert(DELAY_HEADER, HeaderValue::from_static("50"));
        headers.insert(ABORT_HEADER, HeaderValue::from_static("429"));
        let injected = decide(None, &mut headers, rng);
        assert_eq!(injected.delay, Some(Duration::from_millis(50)));
        assert_eq!(injected.abort, Some(StatusCode::TOO_MANY_REQUESTS));
        assert!(headers.is_empty());
        headers.insert(ABORT_HEADER, HeaderValue::from_static("42"));
        assert_eq!(decide(None, &mut headers, rng).abort, None);
    }
}
