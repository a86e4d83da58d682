//! What the client is answered: the upstream's response, or one the proxy made itself.
//!
//! ## Why every answer says who made it
//! A 503 from the proxy and a 503 from the service behind it call for different fixes, and a
//! client cannot tell them apart by status. So every response carries `stormguard-attempts: N`
//! (attempts sent upstream; 0 when none was), and every answer the proxy made itself carries
//! `stormguard-reason` and a one-line body saying the same. An upstream's own answer, 5xx
//! included, passes through unchanged but for the hop-by-hop headers and the proxy's own two:
//! `stormguard-attempts` is the proxy's count, and an upstream's `stormguard-reason` (its own,
//! or that of a proxy behind it) is removed, so that the header always means "this proxy
//! answered".
//!
//! ## Statuses
//! | reason | status | why |
//! |---|---|---|
//! | `connect-refused`, `connect-timeout`, `reset` | 502 | the upstream could not be reached or broke the exchange |
//! | `tls` | 502 | the TLS handshake with the upstream's instances failed: a certificate that does not verify, or none the upstream takes |
//! | `bad-upstream-response` | 502 | the upstream's response was not valid HTTP, or a 101 Switching Protocols, though the proxy asks for no upgrade |
//! | `timeout`, `deadline` | 504 | no answer in the time the route or the caller allowed |
//! | `retry-budget` | 503 | a retry was needed but the route's budget is spent: the upstream is failing broadly, back off |
//! | `token-bucket` | 503 | a retry was needed but the route's token bucket is empty: the same, for a route limited by a bucket |
//! | `overloaded` | 503 + `Retry-After: 1` | the upstream has `max_in_flight` requests in flight: shed at once |
//! | `no-instance` | 503 | no instance to send to |
//! | `no-route` | 404 | no route takes this host and path |
//! | `fault` | as injected | fault injection |
//! | `body-too-large` | 413 | the body passes `max_request_body` |
//! | `bad-body` | 400 | the client's body could not be read |
//! | `body-timeout` | 408 | the body read before forwarding took longer than `request_body_timeout`, or paused longer than `stream_idle_timeout` |
//! | `forbidden-target` | 403 | CONNECT, or an absolute-form target for a host no route names |
//! | `bad-host` | 400 | two `Host` headers, none in HTTP/1.1, or a user name in the host (RFC 9112 §3.2) |
//! | `transfer-coding` | 501 | a `Transfer-Encoding` other than `chunked`, which the proxy does not decode (RFC 9112 §6.1) |
//! | `too-many-headers` | 431 | an HTTP/2 request with more headers than `listen.max_headers` (HTTP/1.1's gets 431 from the HTTP layer) |

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::stack::UpstreamResponse;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full, LengthLimitError};
use stormguard::layer::{BoxError, Error, ErrorKind};

use crate::access_log::Access;
use crate::proxy::InFlight;
use crate::tls::connect::TlsError;

/// `stormguard-attempts`: attempts sent upstream for this request, a hedge's copy included.
pub const ATTEMPTS_HEADER: &str = "stormguard-attempts";
/// [`ATTEMPTS_HEADER`] as a name made once: a `&str` key is parsed again on every insert.
pub(crate) const ATTEMPTS_NAME: HeaderName = HeaderName::from_static(ATTEMPTS_HEADER);

/// The value of [`ATTEMPTS_HEADER`]: the counts nearly every response carries are static, so
/// they cost no allocation.
///
/// A `match`, not a table: a `const` array of values is made anew at each use, and its five
/// values copied and dropped, on every response.
pub(crate) fn attempts_value(attempts: u32) -> HeaderValue {
    match attempts {
        0 => HeaderValue::from_static("0"),
        1 => HeaderValue::from_static("1"),
        2 => HeaderValue::from_static("2"),
        3 => HeaderValue::from_static("3"),
        4 => HeaderValue::from_static("4"),
        _ => HeaderValue::from(attempts),
    }
}

/// `stormguard-reason`: why the proxy answered itself (absent when the upstream answered).
///
/// 502 `connect-refused`, `connect-timeout`, `tls`, `reset` (the upstream could not be reached,
/// could not be verified, or broke the exchange), `bad-upstream-response` (a head that is not HTTP, or a 101 the proxy did not ask for); 504 `timeout`,
/// `deadline` (no answer in the time the route or the caller allowed); 503 `retry-budget`,
/// `token-bucket`, `overloaded` (with `Retry-After: 1`), `no-instance`; 404 `no-route`; the injected status with
/// `fault`; and for requests refused before any attempt, 413 `body-too-large`, 400 `bad-body`,
/// 408 `body-timeout`, 403 `forbidden-target`, 400 `bad-host`, 501 `transfer-coding`, 431
/// `too-many-headers` (HTTP/2).
pub const REASON_HEADER: &str = "stormguard-reason";

/// [`REASON_HEADER`] as a name, made once.
pub(crate) const REASON_NAME: HeaderName = HeaderName::from_static(REASON_HEADER);

/// The body of every response the proxy sends: the upstream's, streamed, or a short text of the
/// proxy's own. It holds the request's place in its upstream's in-flight count until the last
/// byte is sent, so that shedding counts requests whose answers are still streaming, and the
/// request's access-log record, which it counts the bytes of and writes at its end (or when
/// dropped before it).
///
/// The record is boxed: hyper moves the body a dozen times a request on its way to the
/// connection, and inline it made the body 232 bytes, where boxed it is 88, with the access
/// log off too.
pub(crate) struct ResponseBody {
    inner: Either<UpstreamResponse, Full<Bytes>>,
    _in_flight: Option<InFlight>,
    access: Option<Box<Access>>,
}

impl ResponseBody {
    pub(crate) fn upstream(body: UpstreamResponse, in_flight: InFlight) -> Self {
        ResponseBody {
            inner: Either::Left(body),
            _in_flight: Some(in_flight),
            access: None,
        }
    }

    /// The body, carrying the request's access-log record to its end.
    pub(crate) fn logged(mut self, access: Option<Access>) -> Self {
        self.access = access.map(|mut access| {
            access.sending(self.inner.is_end_stream());
            Box::new(access)
        });
        self
    }

    fn text(text: &'static str) -> Self {
        ResponseBody {
            inner: Either::Right(Full::new(Bytes::from_static(text.as_bytes()))),
            _in_flight: None,
            access: None,
        }
    }
}

impl ResponseBody {
    /// The body reached its end: the request's line is written now.
    fn end(&mut self) {
        if let Some(mut access) = self.access.take() {
            access.complete();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Err(_))), Some(in_flight)) = (&polled, &self._in_flight) {
            // Only the upstream's body fails (the proxy's own text cannot): counted, where it
            // went down as a plain 2xx (a review).
            in_flight.broken();
        }
        if let Some(access) = &mut self.access {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        access.sent(data.len());
                    }
                    // hyper stops polling a body that says it has ended.
                    if self.inner.is_end_stream() {
                        self.end();
                    }
                }
                Poll::Ready(None) => self.end(),
                // A failed body is not complete: dropped with the line saying so.
                Poll::Ready(Some(Err(_))) => self.access = None,
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why the proxy answered itself: the `stormguard-reason` value, status and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reason {
    pub(crate) name: &'static str,
    pub(crate) status: StatusCode,
    body: &'static str,
}

macro_rules! reason {
    ($const:ident, $name:literal, $status:ident, $body:literal) => {
        pub(crate) const $const: Reason = Reason {
            name: $name,
            status: StatusCode::$status,
            body: concat!($name, ": ", $body, "\n"),
        };
    };
}

impl Reason {
    reason!(
        CONNECT_REFUSED,
        "connect-refused",
        BAD_GATEWAY,
        "the upstream's instances refused the connection"
    );
    reason!(
        CONNECT_TIMEOUT,
        "connect-timeout",
        BAD_GATEWAY,
        "no instance accepted a connection within the route's connect_timeout"
    );
    reason!(
        TLS,
        "tls",
        BAD_GATEWAY,
        "the TLS handshake with the upstream's instances failed (a certificate that does not verify or name the upstream, a client certificate refused, or no protocol in common); the proxy's log says which"
    );
    reason!(
        RESET,
        "reset",
        BAD_GATEWAY,
        "the connection to the upstream failed before a complete response head"
    );
    reason!(
        BAD_UPSTREAM_RESPONSE,
        "bad-upstream-response",
        BAD_GATEWAY,
        "the upstream's response was not valid HTTP (a malformed or oversized head), or a 101 Switching Protocols to a request that asked for no upgrade"
    );
    reason!(
        TIMEOUT,
        "timeout",
        GATEWAY_TIMEOUT,
        "the upstream did not answer within the route's timeout"
    );
    reason!(
        DEADLINE,
        "deadline",
        GATEWAY_TIMEOUT,
        "too little of the request's deadline was left to expect an answer"
    );
    reason!(
        RETRY_BUDGET,
        "retry-budget",
        SERVICE_UNAVAILABLE,
        "a retry was needed but the route's retry budget is spent"
    );
    reason!(
        TOKEN_BUCKET,
        "token-bucket",
        SERVICE_UNAVAILABLE,
        "a retry was needed but the route's token bucket is empty"
    );
    reason!(
        OVERLOADED,
        "overloaded",
        SERVICE_UNAVAILABLE,
        "the upstream has max_in_flight requests in flight; retry later"
    );
    reason!(
        NO_INSTANCE,
        "no-instance",
        SERVICE_UNAVAILABLE,
        "the upstream has no instance to send to"
    );
    reason!(
        NO_ROUTE,
        "no-route",
        NOT_FOUND,
        "no route takes this host and path"
    );
    reason!(
        BODY_TOO_LARGE,
        "body-too-large",
        PAYLOAD_TOO_LARGE,
        "the request body is larger than max_request_body"
    );
    reason!(
        BAD_BODY,
        "bad-body",
        BAD_REQUEST,
        "the request body could not be read"
    );
    reason!(
        BODY_TIMEOUT,
        "body-timeout",
        REQUEST_TIMEOUT,
        "the request body did not arrive within request_body_timeout, or paused longer than stream_idle_timeout"
    );
    reason!(FORBIDDEN_TARGET, "forbidden-target", FORBIDDEN, "this proxy forwards only to its routes, not to any host (no CONNECT, no absolute-form for other hosts)");
    reason!(
        BAD_HOST,
        "bad-host",
        BAD_REQUEST,
        "send one Host (HTTP/1.1: exactly one) naming a host and port, without user@"
    );
    reason!(
        TRANSFER_CODING,
        "transfer-coding",
        NOT_IMPLEMENTED,
        "the request's Transfer-Encoding names a coding other than chunked, which this proxy does not decode"
    );
    reason!(
        TOO_MANY_HEADERS,
        "too-many-headers",
        REQUEST_HEADER_FIELDS_TOO_LARGE,
        "the request has more headers than listen.max_headers"
    );
    reason!(
        FAULT,
        "fault",
        SERVICE_UNAVAILABLE,
        "answer injected by fault injection ([faults] enabled)"
    );

    /// Every reason, as the module docs and docs/reference.md list them.
    #[cfg(test)]
    const ALL: [Reason; 20] = [
        Reason::CONNECT_REFUSED,
        Reason::CONNECT_TIMEOUT,
        Reason::TLS,
        Reason::RESET,
        Reason::BAD_UPSTREAM_RESPONSE,
        Reason::TIMEOUT,
        Reason::DEADLINE,
        Reason::RETRY_BUDGET,
        Reason::TOKEN_BUCKET,
        Reason::OVERLOADED,
        Reason::NO_INSTANCE,
        Reason::NO_ROUTE,
        Reason::BODY_TOO_LARGE,
        Reason::BAD_BODY,
        Reason::BODY_TIMEOUT,
        Reason::FORBIDDEN_TARGET,
        Reason::BAD_HOST,
        Reason::TRANSFER_CODING,
        Reason::TOO_MANY_HEADERS,
        Reason::FAULT,
    ];

    /// The same reason with another status (an injected fault's).
    pub(crate) fn with_status(self, status: StatusCode) -> Reason {
        Reason { status, ..self }
    }

    /// Why a route's stack ended without a response, from the library's error.
    pub(crate) fn of_error(error: &BoxError) -> (Reason, u32) {
        let own = error.downcast_ref::<Error>();
        let attempts = own.map_or(0, Error::attempts);
        if is_body_limit(&**error) {
            return (Reason::BODY_TOO_LARGE, attempts);
        }
        let reason = match own.map(Error::kind) {
            // A handshake that failed is not sent, as a refused connection, with its own name.
            Some(ErrorKind::ConnectRefused) if TlsError::is_beneath(&**error) => Reason::TLS,
            Some(ErrorKind::ConnectRefused) => Reason::CONNECT_REFUSED,
            Some(ErrorKind::ConnectTimeout) => Reason::CONNECT_TIMEOUT,
            Some(ErrorKind::Timeout) => Reason::TIMEOUT,
            Some(ErrorKind::Deadline) => Reason::DEADLINE,
            Some(ErrorKind::RetryBudget) => Reason::RETRY_BUDGET,
            Some(ErrorKind::TokenBucket) => Reason::TOKEN_BUCKET,
            Some(ErrorKind::Overloaded) => Reason::OVERLOADED,
            Some(ErrorKind::NoInstance) => Reason::NO_INSTANCE,
            Some(ErrorKind::Body) => Reason::BAD_BODY,
            // An upstream that answered with something that is not HTTP is named so, not
            // as a network failure: whoever debugs it looks at the upstream, not the network.
            Some(ErrorKind::Reset) | None if is_bad_response(&**error) => {
                Reason::BAD_UPSTREAM_RESPONSE
            }
            Some(ErrorKind::Reset) | None => Reason::RESET,
        };
        (reason, attempts)
    }

    /// Why a client's body could not be read before forwarding: too large, or broken.
    pub(crate) fn of_body_error(error: &(dyn StdError + 'static)) -> Reason {
        if is_body_limit(error) {
            Reason::BODY_TOO_LARGE
        } else {
            Reason::BAD_BODY
        }
    }

    /// The answer: status, `stormguard-reason`, `stormguard-attempts`, and `Retry-After: 1`
    /// when shedding (the client should come back soon, not at once).
    pub(crate) fn answer(self, attempts: u32) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::text(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(REASON_NAME, HeaderValue::from_static(self.name));
        headers.insert(ATTEMPTS_NAME, attempts_value(attempts));
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self == Reason::OVERLOADED {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Whether the upstream's response head was not HTTP/1.x or broke a bound, somewhere below
/// this error: the proxy's HTTP/1 client's refusal of the head, or hyper's (HTTP/2, and the
/// hyper client) parse errors.
fn is_bad_response(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(crate::h1::ExchangeError::Head(_)) =
            e.downcast_ref::<crate::h1::ExchangeError>()
        {
            return true;
        }
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// Whether the client's body passed `max_request_body` somewhere below this error: read by the
/// proxy before forwarding, or by the upstream client while streaming it.
fn is_body_limit(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<LengthLimitError>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_body_names_its_reason() {
        for reason in [
            Reason::CONNECT_REFUSED,
            Reason::TIMEOUT,
            Reason::OVERLOADED,
            Reason::NO_ROUTE,
            Reason::FAULT,
            Reason::BODY_TIMEOUT,
        ] {
            assert!(reason.body.starts_with(reason.name));
            let response = reason.answer(2);
            assert_eq!(response.headers()[REASON_HEADER], reason.name);
            assert_eq!(response.headers()[ATTEMPTS_HEADER], "2");
        }
        for n in [0, 1, 4, 5, 12] {
            assert_eq!(attempts_value(n), n.to_string().as_str());
        }
        let shed = Reason::OVERLOADED.answer(0);
        assert_eq!(shed.status(), 503);
        assert_eq!(shed.headers()[RETRY_AFTER], "1");
    }

    /// docs/reference.md lists every reason, once, with its status; and the module docs' table
    /// names every reason.
    #[test]
    fn the_reference_and_the_module_docs_list_every_reason_with_its_status() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/reference.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let table = doc
            .split("\n| Reason | Status | When |\n")
            .nth(1)
            .expect("docs/reference.md: a `| Reason | Status | When |` table");
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .take_while(|line| line.starts_with('|'))
            .map(|line| line.split('|').map(str::trim).collect())
            .collect();
        let documented: Vec<&str> = rows.iter().map(|row| row[1].trim_matches('`')).collect();
        let names: Vec<&str> = Reason::ALL.iter().map(|reason| reason.name).collect();
        assert_eq!(
            documented, names,
            "docs/reference.md's reasons, in this order"
        );
        for (row, reason) in rows.iter().zip(Reason::ALL) {
            let status = reason.status.as_str();
            let want = if reason == Reason::FAULT {
                "as injected"
            } else {
                status
            };
            assert!(
                row[2].starts_with(want),
                "{}: {} in {row:?}",
                reason.name,
                want
            );
        }
        let module = include_str!("answer.rs");
        for name in names {
            assert!(
                module.contains(&format!("//! | `{name}`"))
                    || module.contains(&format!(", `{name}`")),
                "the module docs' table has no row for `{name}`"
            );
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_wherever_it_was_found() {
        use http_body_util::{BodyExt, Limited};
        let body = Limited::new(Full::new(Bytes::from_static(b"too long")), 3);
        let limit: BoxError = body.collect().await.unwrap_err();
        assert_eq!(Reason::of_error(&limit).0, Reason::BODY_TOO_LARGE);
        let plain: BoxError = "boom".into();
        assert_eq!(Reason::of_error(&plain), (Reason::RESET, 0));
    }
}
