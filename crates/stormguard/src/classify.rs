//! What an attempt's outcome means for retrying it.
//!
//! ## Why classify before retrying?
//! A retry helps only when the failure was transient AND repeating the request is safe. Retrying
//! a 404 cannot succeed; retrying a POST whose response was lost may charge a card twice. So every
//! outcome is sorted into [`Class::Success`], [`Class::Retryable`] or [`Class::Final`] by two
//! questions: could another try succeed, and did this one possibly take effect?
//!
//! The second question is answered by where the failure happened. A refused or timed-out
//! connection, or a reset before the request was written, never reached the server: retrying is
//! safe for ANY method. After the request was written, only idempotent requests
//! ([`is_idempotent`]) may be retried, because the server may have done the work.
//!
//! Statuses follow the same rule. 502, 504 and (opt-in) 500 may come after the upstream did the
//! work, so they are retried only for idempotent requests. 429, 503 and 408 are the server saying
//! it did NOT do the work, so they are retried for any method. This is deliberate: nginx does not
//! pass a POST to the next upstream once it was sent, while Envoy's `retriable-status-codes` ignore
//! idempotency, which is the bug avoided here.
//!
//! The classifier is pure: no I/O, no clock. Whether time remains for the retry is the deadline's
//! decision ([`crate::deadline::DeadlinePolicy`]); the classifier only uses the remaining time to
//! refuse a `Retry-After` that cannot be honoured in time.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method};

/// What one attempt came to, as the mechanism saw it.
///
/// The transport variants say WHERE the attempt failed, relative to writing the request, because
/// that decides whether a non-idempotent request may be retried.
///
/// ```rust
/// use stormguard::classify::{AttemptResult, Class, Classifier, RetryKind};
///
/// let class = Classifier::default().classify(AttemptResult::ConnectRefused, false, None);
/// assert_eq!(class, Class::Retryable { kind: RetryKind::Refused, not_before: None });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// A response arrived with this status and, if the server sent one, a parsed `Retry-After`
    /// (see [`parse_retry_after`]).
    Response {
        /// The HTTP status code.
        status: u16,
        /// How long the server asked the client to wait before trying again.
        retry_after: Option<Duration>,
    },
    /// The connection was refused: the request never reached the server.
    ConnectRefused,
    /// The connection was not established in time: the request never reached the server.
    ConnectTimeout,
    /// The connection was reset before the request was written.
    ResetBeforeWritten,
    /// The per-try timeout fired after the request was written: the server may have acted.
    TimeoutAfterWritten,
    /// A reset or I/O error after the request was written: the server may have acted.
    ErrorAfterWritten,
}

impl AttemptResult {
    /// Whether nothing of the request was written: the connection was refused, not made in
    /// time, or reset before the request went out. Such an attempt may be made again with any
    /// body the caller still has, streamed or not, since the server saw none of it.
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self,
            Self::ConnectRefused | Self::ConnectTimeout | Self::ResetBeforeWritten
        )
    }
}

/// Why an attempt is worth retrying (or, inside [`FinalReason::NotIdempotent`], would have been).
///
/// Kept apart from [`AttemptResult`] so that budgets and metrics can count retries by cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryKind {
    /// The connection was refused.
    Refused,
    /// The connection was not established in time.
    ConnectTimeout,
    /// The connection was reset before the request was written.
    Reset,
    /// The per-try timeout fired after the request was written.
    Timeout,
    /// An I/O error after the request was written.
    Error,
    /// The server answered with this status.
    Status(u16),
}

impl RetryKind {
    /// True for [`Timeout`](Self::Timeout) and [`ConnectTimeout`](Self::ConnectTimeout).
    ///
    /// Token buckets charge timeouts more than other failures: a timeout held a connection and a
    /// slot upstream for the whole per-try timeout, so retrying it costs the overloaded side most.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout | Self::ConnectTimeout)
    }

    /// Whether the request may have reached the server (and so may have taken effect).
    ///
    /// False only for [`Refused`](Self::Refused), [`ConnectTimeout`](Self::ConnectTimeout) and
    /// [`Reset`](Self::Reset), which all happened before the request was written.
    pub fn reached_server(&self) -> bool {
        !matches!(self, Self::Refused | Self::ConnectTimeout | Self::Reset)
    }
}

/// Why an attempt's outcome is final: it will be returned to the caller as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalReason {
    /// A status that another try cannot change (most 4xx), or one not configured as retryable.
    Status(u16),
    /// The failure is transient, but the request was not idempotent and may have taken effect,
    /// so repeating it could do the work twice.
    NotIdempotent(RetryKind),
    /// The server asked to wait longer than the deadline leaves or than
    /// [`Classifier::max_retry_after`] allows; waiting would only hold resources for nothing.
    RetryAfterTooLong {
        /// The wait the server asked for.
        retry_after: Duration,
    },
}

/// The meaning of one attempt's outcome for the retry loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The attempt succeeded (status below 400): return it.
    Success,
    /// Another attempt may succeed and is safe to send.
    Retryable {
        /// Why, for budgets and metrics.
        kind: RetryKind,
        /// The earliest the next attempt may start, as the server asked via `Retry-After`; the
        /// backoff should wait at least this long.
        not_before: Option<Duration>,
    },
    /// Do not retry: return this outcome to the caller.
    Final(FinalReason),
}

/// Sorts attempt outcomes into success, retryable and final.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::classify::{AttemptResult, Class, Classifier, FinalReason, RetryKind};
///
/// let classifier = Classifier::default();
/// let bad_gateway = AttemptResult::Response { status: 502, retry_after: None };
/// // A 502 may come after the upstream did the work: retried only when idempotent.
/// assert!(matches!(classifier.classify(bad_gateway, true, None), Class::Retryable { .. }));
/// assert_eq!(
///     classifier.classify(bad_gateway, false, None),
///     Class::Final(FinalReason::NotIdempotent(RetryKind::Status(502))),
/// );
/// // A 429 asking for a wait longer than the deadline leaves is final.
/// let throttled = AttemptResult::Response { status: 429, retry_after: Some(Duration::from_secs(2)) };
/// assert!(matches!(
///     classifier.classify(throttled, false, Some(Duration::from_secs(1))),
///     Class::Final(FinalReason::RetryAfterTooLong { .. }),
/// ));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classifier {
    /// Retry 500 Internal Server Error (idempotent requests only). Off by default: a 500 is more
    /// often a bug that fails every time than a transient fault, and retrying it multiplies load.
    pub retry_500: bool,
    /// The longest `Retry-After` honoured; longer ones make the outcome final.
    pub max_retry_after: Duration,
}

impl Default for Classifier {
    /// `retry_500` off; `max_retry_after` 300 s, Envoy's default `rate_limited_retry_back_off`
    /// maximum.
    fn default() -> Self {
        Self {
            retry_500: false,
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl Classifier {
    /// Classifies one attempt's outcome.
    ///
    /// `idempotent` says whether the request may safely be repeated ([`is_idempotent`]);
    /// `remaining` is the time left before the deadline, when there is one, and bounds only how
    /// long a `Retry-After` may be. The rules:
    /// - status below 400: [`Class::Success`];
    /// - 408, and 429 and 503 (which honour `retry_after`): retryable for any method, because the
    ///   server says it did not do the work; but [`FinalReason::RetryAfterTooLong`] when the wait
    ///   exceeds `remaining` or [`max_retry_after`](Self::max_retry_after);
    /// - other 4xx: final;
    /// - 502, 504, and 500 when [`retry_500`](Self::retry_500): retryable if idempotent, else
    ///   [`FinalReason::NotIdempotent`]; other 5xx and beyond: final;
    /// - refused, connect timeout, reset before written: retryable, whatever the method;
    /// - timeout or error after written: retryable if idempotent, else `NotIdempotent`.
    pub fn classify(
        &self,
        result: AttemptResult,
        idempotent: bool,
        remaining: Option<Duration>,
    ) -> Class {
        let retryable = |kind| Class::Retryable {
            kind,
            not_before: None,
        };
        let if_idempotent = |kind| {
            if idempotent {
                retryable(kind)
            } else {
                Class::Final(FinalReason::NotIdempotent(kind))
            }
        };
        match result {
            AttemptResult::ConnectRefused => retryable(RetryKind::Refused),
            AttemptResult::ConnectTimeout => retryable(RetryKind::ConnectTimeout),
            AttemptResult::ResetBeforeWritten => retryable(RetryKind::Reset),
            AttemptResult::TimeoutAfterWritten => if_idempotent(RetryKind::Timeout),
            AttemptResult::ErrorAfterWritten => if_idempotent(RetryKind::Error),
            AttemptResult::Response {
                status,
                retry_after,
            } => match status {
                0..=399 => Class::Success,
                408 => retryable(RetryKind::Status(status)),
                429 | 503 => self.honour_retry_after(status, retry_after, remaining),
                502 | 504 => if_idempotent(RetryKind::Status(status)),
                500 if self.retry_500 => if_idempotent(RetryKind::Status(status)),
                _ => Class::Final(FinalReason::Status(status)),
            },
        }
    }

    fn honour_retry_after(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        remaining: Option<Duration>,
    ) -> Class {
        if let Some(wait) = retry_after {
            let past_deadline = remaining.is_some_and(|remaining| wait > remaining);
            if past_deadline || wait > self.max_retry_after {
                return Class::Final(FinalReason::RetryAfterTooLong { retry_after: wait });
            }
        }
        Class::Retryable {
            kind: RetryKind::Status(status),
            not_before: retry_after,
        }
    }
}

/// `Idempotency-Key`: a client that sends it says the request may be applied more than once.
/// A constant, because a lookup by `&str` would parse the name on every request.
pub const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

/// Whether `method` is idempotent by RFC 9110 (GET, HEAD, OPTIONS, PUT, DELETE, TRACE); a request
/// of another method may still be, with an [`IDEMPOTENCY_KEY`] (see [`is_idempotent`]).
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether a request may be sent twice without changing the outcome, and so may be retried after
/// it reached the server.
///
/// True for the methods RFC 9110 §9.2.2 defines as idempotent (GET, HEAD, OPTIONS, PUT, DELETE,
/// TRACE), and for any request carrying an `Idempotency-Key` header, with which the client tells
/// the server to deduplicate. Unknown and extension methods are treated as not idempotent, the
/// safe side.
///
/// ```rust
/// use http::{HeaderMap, Method};
/// use stormguard::classify::is_idempotent;
///
/// let mut headers = HeaderMap::new();
/// assert!(is_idempotent(&Method::PUT, &headers));
/// assert!(!is_idempotent(&Method::POST, &headers));
/// headers.insert("idempotency-key", "8e03978e".parse().unwrap());
/// assert!(is_idempotent(&Method::POST, &headers));
/// ```
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    is_idempotent_method(method) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date, measured from `now`.
///
/// A date in the past means "now", so `Some(ZERO)`. Delta-seconds too large for a `u64` saturate
/// rather than fail: the server plainly asked for a very long wait, which
/// [`Classifier::max_retry_after`] then refuses. Anything else (empty, negative, fractional, not a
/// date) is `None`, i.e. treated as if the header were absent, because one malformed hint should
/// not turn a retryable response final.
///
/// ```rust
/// use std::time::{Duration, SystemTime};
/// use http::HeaderValue;
/// use stormguard::classify::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
/// let date = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:47 GMT");
/// assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(10)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("120"), now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim_matches([' ', '\t']);
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The HTTP status a gRPC status stands for, so that one classifier serves both.
///
/// gRPC reports failures as HTTP 200 with a `grpc-status`; a failure before any message comes as
/// a "trailers-only" response whose headers carry it. The mapping follows what each code means
/// for a retry (gRPC A6 retries `UNAVAILABLE` by default): `OK` is 200; `UNAVAILABLE` (14) is
/// 503, retryable for any method, since the server did not process the call; `RESOURCE_EXHAUSTED`
/// (8) is 429, throttling; `DEADLINE_EXCEEDED` (4) is 504; `INTERNAL` (13) and `UNKNOWN` (2) are
/// 500, retried only when 500 is; `CANCELLED` (1) is 499 and every other code (invalid argument,
/// not found, permission denied, ...) is 400: final, a retry cannot change the answer.
///
/// ```
/// use stormguard::classify::grpc_status_as_http;
/// assert_eq!(grpc_status_as_http(14), 503);
/// assert_eq!(grpc_status_as_http(3), 400);
/// ```
pub fn grpc_status_as_http(code: u32) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        2 | 13 => 500,
        4 => 504,
        8 => 429,
        14 => 503,
        _ => 400,
    }
}

/// The wait a gRPC server asks for in `grpc-retry-pushback-ms` (gRPC A6): `Some(delay)`, or
/// `Some(Duration::MAX)` when the value is negative or malformed, which A6 defines as "do not
/// retry" (a wait longer than any deadline makes the classifier final). `None` without the header.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderValue;
/// use stormguard::classify::parse_grpc_pushback;
/// assert_eq!(parse_grpc_pushback(Some(&HeaderValue::from_static("250"))), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_pushback(Some(&HeaderValue::from_static("-1"))), Some(Duration::MAX));
/// ```
pub fn parse_grpc_pushback(value: Option<&HeaderValue>) -> Option<Duration> {
    let value = value?;
    let millis = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    Some(millis.map_or(Duration::MAX, Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use AttemptResult::*;
    use Class::{Final, Retryable, Success};

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    fn status(status: u16) -> AttemptResult {
        Response {
            status,
            retry_after: None,
        }
    }
    fn after(status: u16, wait: u64) -> AttemptResult {
        Response {
            status,
            retry_after: Some(secs(wait)),
        }
    }
    fn retry(kind: RetryKind) -> Class {
        Retryable {
            kind,
            not_before: None,
        }
    }
    fn not_idempotent(kind: RetryKind) -> Class {
        Final(FinalReason::NotIdempotent(kind))
    }
    fn too_long(wait: u64) -> Class {
        Final(FinalReason::RetryAfterTooLong {
            retry_after: secs(wait),
        })
    }

    #[test]
    fn every_status_rule_for_both_kinds_of_method() {
        use RetryKind::Status as S;
        let d = Classifier::default();
        let d500 = Classifier {
            retry_500: true,
            ..Classifier::default()
        };
        let f = |n| Final(FinalReason::Status(n));
        let w = |n, w| Retryable {
            kind: S(n),
            not_before: Some(secs(w)),
        };
        let (r, ni, tl) = (retry, not_idempotent, too_long);
        // (classifier, result, remaining, class when idempotent, class when not)
        let table: Vec<(&Classifier, AttemptResult, Option<u64>, Class, Class)> = vec![
            (&d, status(100), None, Success, Success),
            (&d, status(200), None, Success, Success),
            (&d, status(304), None, Success, Success),
            (&d, status(399), None, Success, Success),
            (&d, status(400), None, f(400), f(400)),
            (&d, status(404), None, f(404), f(404)),
            (&d, after(409, 1), None, f(409), f(409)),
            (&d, status(408), None, r(S(408)), r(S(408))),
            (&d, status(429), None, r(S(429)), r(S(429))),
            (&d, status(503), None, r(S(503)), r(S(503))),
            (&d, after(429, 2), Some(5), w(429, 2), w(429, 2)),
            (&d, after(503, 5), Some(5), w(503, 5), w(503, 5)),
            (&d, after(503, 6), Some(5), tl(6), tl(6)),
            (&d, after(429, 300), None, w(429, 300), w(429, 300)),
            (&d, after(429, 301), None, tl(301), tl(301)),
            (&d, after(503, 301), Some(999), tl(301), tl(301)),
            (&d, status(502), None, r(S(502)), ni(S(502))),
            (&d, status(504), None, r(S(504)), ni(S(504))),
            (&d, after(502, 1), None, r(S(502)), ni(S(502))),
            (&d, status(500), None, f(500), f(500)),
            (&d500, status(500), None, r(S(500)), ni(S(500))),
            (&d, status(501), None, f(501), f(501)),
            (&d, status(505), None, f(505), f(505)),
            (&d, status(599), None, f(599), f(599)),
            (&d, status(600), None, f(600), f(600)),
        ];
        for (classifier, result, remaining, idempotent, not) in table {
            let remaining = remaining.map(secs);
            let got = |idem| classifier.classify(result, idem, remaining);
            assert_eq!(got(true), idempotent, "{result:?} idempotent");
            assert_eq!(got(false), not, "{result:?} not idempotent");
        }
    }

    #[test]
    fn transport_failures_are_retried_unless_the_request_was_written() {
        use RetryKind as K;
        // (result, kind, safe for any method because the request never arrived)
        let table = [
            (ConnectRefused, K::Refused, true),
            (ConnectTimeout, K::ConnectTimeout, true),
            (ResetBeforeWritten, K::Reset, true),
            (TimeoutAfterWritten, K::Timeout, false),
            (ErrorAfterWritten, K::Error, false),
        ];
        let classifier = Classifier::default();
        for (result, kind, never_arrived) in table {
            // An exhausted deadline is the deadline policy's business, not the classifier's.
            for remaining in [None, Some(Duration::ZERO)] {
                let got = |idem| classifier.classify(result, idem, remaining);
                assert_eq!(got(true), retry(kind), "{result:?}");
                let want = if never_arrived {
                    retry(kind)
                } else {
                    not_idempotent(kind)
                };
                assert_eq!(got(false), want, "{result:?}");
                assert_eq!(kind.reached_server(), !never_arrived);
            }
        }
    }

    #[test]
    fn retry_kinds_know_timeouts_and_whether_the_server_was_reached() {
        use RetryKind::*;
        let table = [
            (Refused, false, false),
            (ConnectTimeout, true, false),
            (Reset, false, false),
            (Timeout, true, true),
            (Error, false, true),
            (Status(503), false, true),
        ];
        for (kind, timeout, reached) in table {
            assert_eq!(kind.is_timeout(), timeout, "{kind:?}");
            assert_eq!(kind.reached_server(), reached, "{kind:?}");
        }
    }

    #[test]
    fn idempotent_methods_and_idempotency_key() {
        let none = HeaderMap::new();
        let mut keyed = HeaderMap::new();
        keyed.insert("Idempotency-Key", HeaderValue::from_static("k1"));
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ] {
            assert!(is_idempotent(&m, &none), "{m}");
        }
        let custom = Method::from_bytes(b"PURGE").unwrap();
        for m in [Method::POST, Method::PATCH, Method::CONNECT, custom] {
            assert!(!is_idempotent(&m, &none), "{m}");
            assert!(is_idempotent(&m, &keyed), "{m} with key");
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let table: [(&'static str, Option<Duration>); 12] = [
            ("0", Some(Duration::ZERO)),
            ("120", Some(secs(120))),
            (" 7\t", Some(secs(7))),
            ("99999999999999999999999", Some(secs(u64::MAX))),
            ("Sun, 06 Nov 1994 08:49:47 GMT", Some(secs(10))),
            ("Sunday, 06-Nov-94 08:49:47 GMT", Some(secs(10))),
            ("Sun Nov  6 08:49:47 1994", Some(secs(10))),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(Duration::ZERO)),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("tomorrow", None),
        ];
        for (text, want) in table {
            assert_eq!(
                parse_retry_after(&HeaderValue::from_static(text), now),
                want,
                "{text:?}"
            );
        }
        let bytes = HeaderValue::from_bytes(b"\xff").unwrap();
        assert_eq!(parse_retry_after(&bytes, now), None);
    }

    fn any_result() -> impl Strategy<Value = AttemptResult> {
        prop_oneof![
            (any::<u16>(), proptest::option::of(0u64..1000)).prop_map(|(s, w)| Response {
                status: s,
                retry_after: w.map(secs)
            }),
            Just(ConnectRefused),
            Just(ConnectTimeout),
            Just(ResetBeforeWritten),
            Just(TimeoutAfterWritten),
            Just(ErrorAfterWritten),
        ]
    }

    proptest! {
        #[test]
        fn classification_invariants(
            result in any_result(), idempotent in any::<bool>(), retry_500 in any::<bool>(),
            max in 0u64..1000, remaining in proptest::option::of(0u64..1000),
        ) {
            let classifier = Classifier { retry_500, max_retry_after: secs(max) };
            let class = classifier.classify(result, idempotent, remaining.map(secs));
            if let Response { status, .. } = result {
                prop_assert_eq!(class == Success, status < 400);
                if (400..500).contains(&status) && status != 408 && status != 429 {
                    prop_assert_eq!(class, Final(FinalReason::Status(status)));
                }
            }
            if !idempotent && matches!(result, TimeoutAfterWritten | ErrorAfterWritten) {
                prop_assert!(matches!(class, Final(FinalReason::NotIdempotent(_))));
            }
            if let Retryable { kind, not_before } = class {
                // Whatever reached the server is retried only when idempotent or when the
                // server said it did not do the work.
                let declined = matches!(kind, RetryKind::Status(408 | 429 | 503));
                prop_assert!(idempotent || !kind.reached_server() || declined);
                if let Some(wait) = not_before {
                    prop_assert!(wait <= secs(max) && remaining.is_none_or(|r| wait <= secs(r)));
                }
            }
        }
    }

    #[test]
    fn grpc_unavailable_retries_like_503_and_invalid_argument_is_final() {
        let c = Classifier::default();
        let response = |code| AttemptResult::Response {
            status: grpc_status_as_http(code),
            retry_after: None,
        };
        assert_eq!(
            c.classify(response(14), false, None),
            Class::Retryable {
                kind: RetryKind::Status(503),
                not_before: None
            }
        );
        assert_eq!(c.classify(response(0), true, None), Class::Success);
        assert!(matches!(
            c.classify(response(3), true, None),
            Class::Final(_)
        ));
        assert!(matches!(
            c.classify(response(13), true, None),
            Class::Final(_)
        ));
        assert_eq!(parse_grpc_pushback(None), None);
        assert_eq!(
            parse_grpc_pushback(Some(&HeaderValue::from_static("x"))),
            Some(Duration::MAX)
        );
    }
}
