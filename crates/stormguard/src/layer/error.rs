//! What the layers return when a request ends without a response, and how a transport error is
//! classified (was the request sent or not?).

use std::error::Error as StdError;
use std::fmt;

use crate::classify::AttemptResult;
use crate::policy::{Denied, GiveUp};

/// A boxed error, as tower and hyper use.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a request ended without a response. Each kind has a stable [`ErrorKind::reason`], which
/// the proxy returns in `stormguard-reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The connection was not established in time.
    ConnectTimeout,
    /// The connection was refused.
    ConnectRefused,
    /// The attempt timed out after the request was sent.
    Timeout,
    /// The connection was reset or failed while sending or receiving.
    Reset,
    /// A retry was called for but the retry budget refused it.
    RetryBudget,
    /// A retry was called for but the token bucket was empty: the budget's kind for a route
    /// limited by a bucket, named apart so that whoever reads the answer looks at the right
    /// setting.
    TokenBucket,
    /// Too little of the deadline was left to start (another) attempt.
    Deadline,
    /// The instance or balancer refused the request to shed load.
    Overloaded,
    /// No instance to send to.
    NoInstance,
    /// The request body could not be read.
    Body,
}

impl ErrorKind {
    /// A short, stable name: `connect-timeout`, `connect-refused`, `timeout`, `reset`,
    /// `retry-budget`, `token-bucket`, `deadline`, `overloaded`, `no-instance`, `body`.
    pub fn reason(&self) -> &'static str {
        match self {
            ErrorKind::ConnectTimeout => "connect-timeout",
            ErrorKind::ConnectRefused => "connect-refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::RetryBudget => Denied::Budget.name(),
            ErrorKind::TokenBucket => Denied::TokenBucket.name(),
            ErrorKind::Deadline => "deadline",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NoInstance => "no-instance",
            ErrorKind::Body => "body",
        }
    }
}

/// A request that ended without a response: why, after how many attempts, and the last
/// underlying error.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    attempts: u32,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, attempts: u32, source: Option<BoxError>) -> Self {
        Error {
            kind,
            attempts,
            source,
        }
    }

    /// The error of a request that stopped after `attempts` attempts for `give_up`, the last of
    /// which came to `last` with error `source`.
    pub(crate) fn gave_up(
        give_up: GiveUp,
        last: AttemptResult,
        attempts: u32,
        source: Option<BoxError>,
    ) -> Self {
        let kind = match give_up {
            GiveUp::Deadline => ErrorKind::Deadline,
            GiveUp::Denied(Denied::Budget, _) => ErrorKind::RetryBudget,
            GiveUp::Denied(Denied::TokenBucket, _) => ErrorKind::TokenBucket,
            GiveUp::Final(_) | GiveUp::AttemptsExhausted(_) => kind_of(last, source.as_deref()),
        };
        Error::new(kind, attempts, source)
    }

    /// Why the request ended.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Attempts sent before it ended (0 when none was started).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

fn kind_of(
    last: AttemptResult,
    source: Option<&(dyn StdError + Send + Sync + 'static)>,
) -> ErrorKind {
    if let Some(own) = source.and_then(|s| find::<Error>(s)) {
        return own.kind;
    }
    match last {
        AttemptResult::ConnectRefused => ErrorKind::ConnectRefused,
        AttemptResult::ConnectTimeout => ErrorKind::ConnectTimeout,
        AttemptResult::TimeoutAfterWritten => ErrorKind::Timeout,
        AttemptResult::ResetBeforeWritten
        | AttemptResult::RefusedStream
        | AttemptResult::ErrorAfterWritten => ErrorKind::Reset,
        AttemptResult::Response { .. } | AttemptResult::Grpc { .. } => ErrorKind::Reset,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::ConnectTimeout => "connect timeout",
            ErrorKind::ConnectRefused => "connection refused",
            ErrorKind::Timeout => "request timed out",
            ErrorKind::Reset => "connection failed",
            ErrorKind::RetryBudget => "retry refused by the retry budget",
            ErrorKind::TokenBucket => "retry refused by the token bucket",
            ErrorKind::Deadline => "too little of the deadline left",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NoInstance => "no instance available",
            ErrorKind::Body => "request body could not be read",
        };
        write!(f, "{what} after {} attempt(s)", self.attempts)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Wraps an error of a request that was certainly not sent (a connector that failed to connect,
/// a load shedder that refused it), so that the retry layer knows a retry is safe for any method.
///
/// ```
/// use stormguard::classify::AttemptResult;
/// use stormguard::layer::{classify_error, NotSent};
///
/// let refused = std::io::Error::new(std::io::ErrorKind::Other, "no route");
/// let err: stormguard::layer::BoxError = Box::new(NotSent::new(refused));
/// assert_eq!(classify_error(&*err), AttemptResult::ConnectRefused);
/// ```
#[derive(Debug)]
pub struct NotSent(BoxError);

impl NotSent {
    /// Marks `source` as the error of a request that was never sent.
    pub fn new(source: impl Into<BoxError>) -> Self {
        NotSent(source.into())
    }
}

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request not sent: {}", self.0)
    }
}

impl StdError for NotSent {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

fn io_kind(err: &(dyn StdError + 'static)) -> Option<std::io::ErrorKind> {
    find::<std::io::Error>(err).map(|e| e.kind())
}

/// Classifies a transport error: was the request sent, and did it time out?
///
/// Only what is known not to have reached the server is classified as such: a refused
/// connection, a connect error from hyper-util's client (`is_connect`), or an error wrapped in
/// [`NotSent`]. With the `h2` feature, an HTTP/2 stream the server refused is
/// [`AttemptResult::RefusedStream`]: reset with `REFUSED_STREAM`, or refused by the
/// server's `GOAWAY` (a stream above its last stream id, or one opened after it). RFC 9113
/// (sections 8.7 and 6.8) guarantees that neither was processed, so either may be sent again
/// for any method; a server shedding streams or shutting down gracefully costs no failed
/// request. Everything else is taken as an error after the request was written, so a
/// non-idempotent request is not sent twice on a guess.
pub fn classify_error(err: &(dyn StdError + Send + Sync + 'static)) -> AttemptResult {
    let err: &(dyn StdError + 'static) = err;
    if let Some(own) = find::<Error>(err) {
        match own.kind {
            ErrorKind::ConnectRefused | ErrorKind::NoInstance | ErrorKind::Overloaded => {
                return AttemptResult::ConnectRefused
            }
            ErrorKind::ConnectTimeout => return AttemptResult::ConnectTimeout,
            ErrorKind::Timeout | ErrorKind::Deadline => return AttemptResult::TimeoutAfterWritten,
            _ => {}
        }
    }
    let timed_out = io_kind(err) == Some(std::io::ErrorKind::TimedOut);
    let not_sent = find::<NotSent>(err).is_some() || is_hyper_util_connect(err);
    if not_sent {
        return if timed_out {
            AttemptResult::ConnectTimeout
        } else {
            AttemptResult::ConnectRefused
        };
    }
    if is_refused_stream(err) {
        return AttemptResult::RefusedStream;
    }
    match io_kind(err) {
        Some(std::io::ErrorKind::ConnectionRefused) => AttemptResult::ConnectRefused,
        _ => AttemptResult::ErrorAfterWritten,
    }
}

/// Whether an HTTP/2 server refused the stream: the server itself (`is_remote`) reset it with
/// `REFUSED_STREAM`, which RFC 9113 (8.7) defines as "not processed".
///
/// A `GOAWAY` error is not taken as a refusal, though a stream above the frame's last stream
/// id was not processed either: the error carries no stream id, and hyper's client can hand a
/// request the connection's `GOAWAY` error after its HEADERS (with END_STREAM, for a request
/// without a body) were already queued below that last id (`poll_pending_open` reports the
/// connection's error). Taking that as "not sent" could run a POST twice; taking it as sent
/// costs a retry only where the method or an `Idempotency-Key` allows one anyway.
#[cfg(feature = "h2")]
fn is_refused_stream(err: &(dyn StdError + 'static)) -> bool {
    find::<h2::Error>(err).is_some_and(|e| {
        e.is_remote() && e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)
    })
}

#[cfg(not(feature = "h2"))]
fn is_refused_stream(_err: &(dyn StdError + 'static)) -> bool {
    false
}

#[cfg(feature = "hyper-util")]
fn is_hyper_util_connect(err: &(dyn StdError + 'static)) -> bool {
    find::<hyper_util::client::legacy::Error>(err).is_some_and(|e| e.is_connect())
}

#[cfg(not(feature = "hyper-util"))]
fn is_hyper_util_connect(_err: &(dyn StdError + 'static)) -> bool {
    false
}

#[cfg(all(test, feature = "h2"))]
mod refused_stream_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::RetryKind;

    #[test]
    fn refused_connections_are_not_sent() {
        let err: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify_error(&*err), AttemptResult::ConnectRefused);
    }

    #[test]
    fn a_plain_timeout_is_taken_as_sent() {
        let err: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(classify_error(&*err), AttemptResult::ErrorAfterWritten);
        let not_sent: BoxError = Box::new(NotSent::new(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        )));
        assert_eq!(classify_error(&*not_sent), AttemptResult::ConnectTimeout);
    }

    #[test]
    fn unknown_errors_are_taken_as_sent() {
        let err: BoxError = "connection reset mid-response".into();
        assert_eq!(classify_error(&*err), AttemptResult::ErrorAfterWritten);
    }

    /// A refused retry names the limiter that refused it, as the metrics' label does.
    #[test]
    fn a_refused_retry_names_its_limiter() {
        for (by, kind) in [
            (Denied::Budget, ErrorKind::RetryBudget),
            (Denied::TokenBucket, ErrorKind::TokenBucket),
        ] {
            let e = Error::gave_up(
                GiveUp::Denied(by, RetryKind::Refused),
                AttemptResult::ConnectRefused,
                1,
                None,
            );
            assert_eq!(e.kind(), kind);
            assert_eq!(e.kind().reason(), by.name());
        }
        assert_eq!(
            Error::new(ErrorKind::TokenBucket, 2, None).to_string(),
            "retry refused by the token bucket after 2 attempt(s)"
        );
    }

    #[test]
    fn reasons_are_stable() {
        assert_eq!(ErrorKind::RetryBudget.reason(), "retry-budget");
        assert_eq!(ErrorKind::TokenBucket.reason(), "token-bucket");
        let e = Error::new(ErrorKind::Deadline, 1, None);
        assert_eq!(
            e.to_string(),
            "too little of the deadline left after 1 attempt(s)"
        );
    }
}
