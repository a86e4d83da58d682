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

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method};

mod retry_on;

pub use retry_on::{grpc_name, Condition, RetryOn, RetryOnError};

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
    /// An HTTP/2 stream the server refused (`REFUSED_STREAM`, or above a `GOAWAY`'s last
    /// stream id): RFC 9113 guarantees it was not processed.
    RefusedStream,
    /// A gRPC call failed with `code` (1 to 16) before any message: a "trailers-only" answer,
    /// HTTP 200 with the `grpc-status` in its headers. `pushback` is the wait the server asked
    /// for in `grpc-retry-pushback-ms` (`Duration::MAX`: "do not retry").
    Grpc {
        /// The gRPC status code.
        code: u8,
        /// The server's `grpc-retry-pushback-ms`, if any.
        pushback: Option<Duration>,
    },
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
            Self::ConnectRefused
                | Self::ConnectTimeout
                | Self::ResetBeforeWritten
                | Self::RefusedStream
        )
    }

    /// The HTTP status this outcome stands for when it is an answer: the status itself, or
    /// for a gRPC failure the status of the same meaning ([`grpc_status_as_http`]). Ejection
    /// and metrics read answers through this, so a gRPC `UNAVAILABLE` counts as a 503.
    pub fn http_status(&self) -> Option<u16> {
        match *self {
            Self::Response { status, .. } => Some(status),
            Self::Grpc { code, .. } => Some(grpc_status_as_http(code.into())),
            _ => None,
        }
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
    /// The server refused the HTTP/2 stream; it was not processed.
    RefusedStream,
    /// The per-try timeout fired after the request was written.
    Timeout,
    /// An I/O error after the request was written.
    Error,
    /// The server answered with this status.
    Status(u16),
    /// A gRPC call failed with this status code.
    Grpc(u8),
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
    /// False only for [`Refused`](Self::Refused), [`ConnectTimeout`](Self::ConnectTimeout),
    /// [`Reset`](Self::Reset) and [`RefusedStream`](Self::RefusedStream), which all happened
    /// before the request was processed.
    pub fn reached_server(&self) -> bool {
        !matches!(
            self,
            Self::Refused | Self::ConnectTimeout | Self::Reset | Self::RefusedStream
        )
    }

    /// Whether the failure says the server did not do the work although it got the request:
    /// 408, 429, 503 and every other 4xx, and gRPC `RESOURCE_EXHAUSTED`, `ABORTED` and
    /// `UNAVAILABLE`. Such an answer may be retried for any method.
    pub fn declined(&self) -> bool {
        match *self {
            Self::Status(status) => (400..=499).contains(&status) || status == 503,
            Self::Grpc(code) => matches!(code, 8 | 10 | 14),
            _ => false,
        }
    }
}

/// Why an attempt's outcome is final: it will be returned to the caller as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalReason {
    /// A status that another try cannot change (most 4xx), or one not configured as retryable.
    Status(u16),
    /// A failure that `retry_on` does not list (statuses are [`FinalReason::Status`]).
    NotListed(RetryKind),
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
/// Two questions decide: is the failure one that [`retry_on`](Self::retry_on) lists, and may
/// the request be repeated? A user [`Rule`] may answer first, to extend or replace the list.
///
/// ```rust
/// use std::time::Duration;
/// use stormguard::classify::{AttemptResult, Class, Classifier, FinalReason, RetryKind, RetryOn};
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
/// // `retry_on = ["409"]`: a 409 (a lost race, not done) is retried for any method, and a 503
/// // no longer is.
/// let only_409 = Classifier::default().retry_on(RetryOn::parse_list(["409"]).unwrap());
/// let conflict = AttemptResult::Response { status: 409, retry_after: None };
/// assert!(matches!(only_409.classify(conflict, false, None), Class::Retryable { .. }));
/// let unavailable = AttemptResult::Response { status: 503, retry_after: None };
/// assert_eq!(only_409.classify(unavailable, true, None), Class::Final(FinalReason::Status(503)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classifier {
    /// The failures that may be retried (default: [`RetryOn::default`], what stormguard has
    /// always retried). 500 is not in it: a 500 is more often a bug that fails every time than
    /// a transient fault, and retrying it multiplies load; list `"500"` or `"5xx"` to retry it.
    pub retry_on: RetryOn,
    /// The longest `Retry-After` honoured; longer ones make the outcome final.
    pub max_retry_after: Duration,
    /// A user's rule, asked before the list: `Some(class)` decides, `None` leaves the outcome
    /// to `retry_on`.
    pub rule: Option<Rule>,
}

impl Default for Classifier {
    /// `retry_on` the default list; `max_retry_after` 300 s, Envoy's default
    /// `rate_limited_retry_back_off` maximum; no rule.
    fn default() -> Self {
        Self {
            retry_on: RetryOn::default(),
            max_retry_after: Duration::from_secs(300),
            rule: None,
        }
    }
}

/// A user's own classification, asked before `retry_on`, as tower's `Policy::retry` lets a user
/// decide: it sees the outcome and whether the request may be repeated, and returns the class
/// it wants (`Some`) or leaves the outcome to the list (`None`).
///
/// A rule that answers `Retryable` for a request that is not idempotent and reached the server
/// is taken at its word: that is the user allowing the request to run twice.
///
/// ```
/// use stormguard::classify::{AttemptResult, Class, Classifier, RetryKind, RetryOn, Rule};
///
/// // Replace the list: retry nothing but a 425 Too Early.
/// let classifier = Classifier::default()
///     .retry_on(RetryOn::none())
///     .rule(Rule::new(|result, _idempotent| match result {
///         AttemptResult::Response { status: 425, .. } => Some(Class::Retryable {
///             kind: RetryKind::Status(425),
///             not_before: None,
///         }),
///         _ => None,
///     }));
/// let too_early = AttemptResult::Response { status: 425, retry_after: None };
/// assert!(matches!(classifier.classify(too_early, false, None), Class::Retryable { .. }));
/// assert!(matches!(
///     classifier.classify(AttemptResult::ConnectRefused, true, None),
///     Class::Final(_)
/// ));
/// ```
#[derive(Clone)]
pub struct Rule(Arc<RuleFn>);

/// The closure behind a [`Rule`].
type RuleFn = dyn Fn(&AttemptResult, bool) -> Option<Class> + Send + Sync;

impl Rule {
    /// A rule from a closure of the outcome and the request's idempotency.
    pub fn new(
        rule: impl Fn(&AttemptResult, bool) -> Option<Class> + Send + Sync + 'static,
    ) -> Self {
        Rule(Arc::new(rule))
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rule(..)")
    }
}

impl PartialEq for Rule {
    /// The same rule: one closure, shared.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Rule {}

impl Classifier {
    /// This classifier with `retry_on` replaced.
    pub fn retry_on(mut self, retry_on: RetryOn) -> Self {
        self.retry_on = retry_on;
        self
    }

    /// This classifier with `rule` asked first.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rule = Some(rule);
        self
    }

    /// Whether `result` classifies as [`Class::Success`] (`remaining` plays no part in that).
    ///
    /// A plain success (no rule, a status below 400 or gRPC OK: nearly every attempt) is
    /// answered here, inline, without building the classification's closures and match; the
    /// rest go to [`classify`](Self::classify).
    #[cfg(any(feature = "tower", test))]
    #[inline]
    pub(crate) fn is_success(&self, result: AttemptResult, idempotent: bool) -> bool {
        if self.rule.is_none() {
            match result {
                AttemptResult::Response { status, .. } if status < 400 => return true,
                AttemptResult::Grpc { code: 0, .. } => return true,
                _ => {}
            }
        }
        self.classify(result, idempotent, None) == Class::Success
    }

    /// Classifies one attempt's outcome.
    ///
    /// `idempotent` says whether the request may safely be repeated ([`is_idempotent`]);
    /// `remaining` is the time left before the deadline, when there is one, and bounds only how
    /// long a `Retry-After` may be. After the [`Rule`], if any:
    /// - status below 400 (gRPC `OK`): [`Class::Success`];
    /// - a failure that `retry_on` does not list: final ([`FinalReason::Status`] for an
    ///   answer, [`FinalReason::NotListed`] for the rest);
    /// - a listed answer the server declined to work on (408, 429, 503, other 4xx; gRPC
    ///   `RESOURCE_EXHAUSTED`, `ABORTED`, `UNAVAILABLE`): retryable for any method, after its
    ///   `Retry-After` or `grpc-retry-pushback-ms`; but [`FinalReason::RetryAfterTooLong`] when
    ///   the wait exceeds `remaining` or [`max_retry_after`](Self::max_retry_after);
    /// - another listed answer (502, 504, 500, other gRPC codes): retryable if idempotent,
    ///   else [`FinalReason::NotIdempotent`];
    /// - refused, connect timeout, refused stream, reset before written: retryable whatever
    ///   the method, when listed;
    /// - timeout or error after written: retryable if idempotent and listed.
    pub fn classify(
        &self,
        result: AttemptResult,
        idempotent: bool,
        remaining: Option<Duration>,
    ) -> Class {
        if let Some(class) = self
            .rule
            .as_ref()
            .and_then(|rule| (rule.0)(&result, idempotent))
        {
            return class;
        }
        let on = &self.retry_on;
        let retryable = |listed: bool, kind| {
            if listed {
                Class::Retryable {
                    kind,
                    not_before: None,
                }
            } else {
                Class::Final(FinalReason::NotListed(kind))
            }
        };
        let if_idempotent = |listed: bool, kind| match retryable(listed, kind) {
            Class::Retryable { .. } if !idempotent => {
                Class::Final(FinalReason::NotIdempotent(kind))
            }
            class => class,
        };
        match result {
            AttemptResult::ConnectRefused => retryable(on.connect_failure(), RetryKind::Refused),
            AttemptResult::ConnectTimeout => {
                retryable(on.connect_failure(), RetryKind::ConnectTimeout)
            }
            AttemptResult::ResetBeforeWritten => {
                retryable(on.reset_before_request(), RetryKind::Reset)
            }
            AttemptResult::RefusedStream => {
                retryable(on.refused_stream(), RetryKind::RefusedStream)
            }
            AttemptResult::TimeoutAfterWritten => if_idempotent(on.timeout(), RetryKind::Timeout),
            AttemptResult::ErrorAfterWritten => {
                if_idempotent(on.reset_after_request(), RetryKind::Error)
            }
            AttemptResult::Response {
                status,
                retry_after,
            } => {
                if status < 400 {
                    return Class::Success;
                }
                if !on.status(status) {
                    return Class::Final(FinalReason::Status(status));
                }
                self.answer(
                    RetryKind::Status(status),
                    idempotent,
                    retry_after,
                    remaining,
                )
            }
            AttemptResult::Grpc { code, pushback } => {
                if code == 0 {
                    return Class::Success;
                }
                if !on.grpc(code.into()) {
                    return Class::Final(FinalReason::NotListed(RetryKind::Grpc(code)));
                }
                self.answer(RetryKind::Grpc(code), idempotent, pushback, remaining)
            }
        }
    }

    /// A listed failed answer: declined ones for any method after the wait the server asked
    /// for (HTTP `Retry-After` is honoured on 429 and 503 only, as RFC 9110 defines it there);
    /// the rest when idempotent.
    fn answer(
        &self,
        kind: RetryKind,
        idempotent: bool,
        wait: Option<Duration>,
        remaining: Option<Duration>,
    ) -> Class {
        let honoured = match kind {
            RetryKind::Status(429 | 503) | RetryKind::Grpc(_) => wait,
            _ => None,
        };
        if !kind.declined() && !idempotent {
            return Class::Final(FinalReason::NotIdempotent(kind));
        }
        if let Some(wait) = honoured {
            let past_deadline = remaining.is_some_and(|remaining| wait > remaining);
            if past_deadline || wait > self.max_retry_after {
                return Class::Final(FinalReason::RetryAfterTooLong { retry_after: wait });
            }
        }
        Class::Retryable {
            kind,
            not_before: honoured,
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
    is_idempotent_method(method)
        || headers
            .get_all(IDEMPOTENCY_KEY)
            .iter()
            .any(is_idempotency_key)
}

/// Whether `value`, an [`IDEMPOTENCY_KEY`] header's, is a key: an empty one (or blanks) gives
/// the server nothing to deduplicate on, so the request is as if it had none (a review: an empty
/// key let a POST be retried).
///
/// ```rust
/// use stormguard::classify::is_idempotency_key;
///
/// assert!(is_idempotency_key(&http::HeaderValue::from_static("8e03978e")));
/// assert!(!is_idempotency_key(&http::HeaderValue::from_static("")));
/// assert!(!is_idempotency_key(&http::HeaderValue::from_static("\"\"")));
/// ```
pub fn is_idempotency_key(value: &http::HeaderValue) -> bool {
    let key = value.as_bytes().trim_ascii();
    // The draft's value is a structured-field string: `""` is an empty key too.
    !key.is_empty() && key != b"\"\""
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
mod tests;
