//! One request through the proxy: checks that cost nothing first, then the route's stack.
//!
//! The order is chosen so that refusing is cheap and bounded: a request that does not name one
//! host, a target the proxy must not reach, a request no route takes and a body announced too
//! large are answered before any body is read or any state is kept. Then the body the retry
//! layer would keep is read (see [`crate::request_body`]), before the request takes a place
//! under its upstream's `max_in_flight`, so that a slow body holds no place; an upstream
//! already at `max_in_flight` is answered at once. Only then are faults injected and the
//! request handed to the route's stack, which takes every retry, hedge, backoff and deadline
//! decision.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_LENGTH, COOKIE, HOST};
use http::{request, response, Request, Response, StatusCode, Version};
use http_body_util::Limited;
use hyper::body::Incoming;
use stormguard::deadline::{budget_of, Deadline};
use stormguard::layer::Attempts;

use crate::access_log::{self, Access};
use crate::answer::{attempts_value, Reason, ResponseBody, ATTEMPTS_NAME, REASON_NAME};
use crate::fault;
use crate::headers::{
    host_is_valid, request_host, strip_hop_by_hop, target_allowed, transfer_coding_is_supported,
};
use crate::proxy::{Generation, Proxy, RouteEntry};
use crate::request_body::{read_first, streams_at_once, ReadFailed, RequestBody};
use crate::server::BodyWatch;

/// Answers one request. Never fails: every outcome is a response, counted by route, status
/// class and reason, and (when `listen.access_log` is on) written as one line of the access
/// log when its body ends or the client goes away. `local` is the address the client connected
/// to; `watch` is the request's stream's, which its bodies tell when they move
/// (`stream_idle_timeout`).
pub(crate) async fn handle(
    proxy: Proxy,
    local: SocketAddr,
    req: Request<Incoming>,
    watch: Arc<BodyWatch>,
) -> Response<ResponseBody> {
    let generation = proxy.current();
    if !(generation.config.listen.access_log && access_log::enabled()) {
        return answer(&proxy, &generation, local, req, watch).await;
    }
    let access = Access::start(&req, &watch);
    let answering = answer(&proxy, &generation, local, req, watch);
    // Boxed: the recording future holds the answer's twice over (4 KB more), and inline it made
    // every request's future that size, with the access log off too, and moved it whole into
    // hyper's slot for the request (a copy of 6.9 KB a request; 2.3 KB without it).
    let (response, access) = Box::pin(access_log::recording(access, answering)).await;
    response.map(|body| body.logged(access))
}

async fn answer(
    proxy: &Proxy,
    generation: &Generation,
    local: SocketAddr,
    req: Request<Incoming>,
    watch: Arc<BodyWatch>,
) -> Response<ResponseBody> {
    let metrics = proxy.metrics();
    // HTTP/1.1's head is bounded by the HTTP layer (`max_headers`); HTTP/2 has only a bound on
    // the header block's bytes, so a request's count is checked here (a review: 110 headers went
    // upstream past a bound of 50).
    // The cookies are counted only past the bound: no lookup on the path nearly every request
    // takes.
    let max_headers = generation.config.listen.max_headers;
    let refused = if req.headers().len() > max_headers && header_count(&req) > max_headers {
        Reason::TOO_MANY_HEADERS
    } else if !host_is_valid(&req) {
        Reason::BAD_HOST
    } else if !transfer_coding_is_supported(&req) {
        Reason::TRANSFER_CODING
    } else if !target_allowed(&req, generation, local) {
        Reason::FORBIDDEN_TARGET
    } else {
        let path = req.uri().path();
        match generation.route(|| request_host(&req), path) {
            Some(route) => {
                access_log::routed(&route.name);
                let arrival = tokio::time::Instant::now();
                let (response, reason, attempts) =
                    forward(proxy, &generation.config, route, req, watch).await;
                let waited = arrival.elapsed();
                let status = response.status().as_u16();
                route.answered(metrics, status, reason, waited);
                access_log::answered(status, attempts, reason);
                return response;
            }
            None => Reason::NO_ROUTE,
        }
    };
    let status = refused.status.as_u16();
    metrics.answered_unrouted(status, refused.name);
    access_log::answered(status, 0, refused.name);
    refused.answer(0)
}

/// Sends `req` through `route`; returns the answer, its `stormguard-reason` ("" when the
/// upstream answered) and the attempts sent.
async fn forward(
    proxy: &Proxy,
    config: &crate::config::Config,
    route: &RouteEntry,
    req: Request<Incoming>,
    watch: Arc<BodyWatch>,
) -> (Response<ResponseBody>, &'static str, u32) {
    let limit = config.listen.max_request_body;
    if announced_length(&req).is_some_and(|length| length > limit) {
        return own(Reason::BODY_TOO_LARGE, 0);
    }
    let (mut parts, body) = req.into_parts();
    let body = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let body = if http_body::Body::is_end_stream(&body) || streams_at_once(&parts.headers) {
        RequestBody::streaming(body, watch)
    } else {
        let arrival = tokio::time::Instant::now();
        let listen = &config.listen;
        let timeouts = (listen.request_body_timeout, listen.stream_idle_timeout);
        match read_first(body, route.body_limit, timeouts.0, timeouts.1).await {
            Ok(body) => {
                // The caller's budget was running while its body arrived.
                keep_arrival_deadline(&mut parts, arrival);
                body.watched_by(watch)
            }
            Err(ReadFailed::Timeout(read)) => {
                watch.received_more(usize::try_from(read).unwrap_or(usize::MAX));
                return own(Reason::BODY_TIMEOUT, 0);
            }
            Err(ReadFailed::Body(error)) => {
                if client_went_away(&*error) {
                    access_log::client_left();
                }
                return own(Reason::of_body_error(&*error), 0);
            }
        }
    };
    let Some(in_flight) = route.upstream.try_acquire() else {
        return own(Reason::OVERLOADED, 0);
    };
    if config.faults.enabled {
        let injected = fault::decide(route.fault.as_ref(), &mut parts.headers, || {
            proxy.fault_rng()
        });
        if let Some(delay) = injected.delay {
            // The delay is spent from the request's deadline, the caller's budget and the
            // route's `request_timeout` alike, as a slow network would spend it; one longer
            // than what is left ends at the deadline, with the 504 the deadline layer gives.
            // (A 5 s delay on a route of 3 s answered 200 after 5 s, and a caller that gave
            // 800 ms waited the 5 s for its 504.)
            let start = tokio::time::Instant::now();
            keep_arrival_deadline(&mut parts, start);
            let caller = parts.extensions.get::<Deadline>().copied();
            let own_timeout = route
                .request_timeout
                .map(|timeout| Deadline::after(start.into_std(), timeout));
            let deadline = match (caller, own_timeout) {
                (Some(a), Some(b)) => Some(if a.instant() <= b.instant() { a } else { b }),
                (a, b) => a.or(b),
            };
            let ends = start + delay;
            if let Some(deadline) = deadline {
                parts.extensions.insert(deadline);
                let at = tokio::time::Instant::from_std(deadline.instant());
                if at <= ends {
                    tokio::time::sleep_until(at).await;
                    return own(Reason::DEADLINE, 0);
                }
            }
            tokio::time::sleep_until(ends).await;
        }
        if let Some(status) = injected.abort {
            return own(Reason::FAULT.with_status(status), 0);
        }
    }
    prepare_head(&mut parts);
    match route.service.call(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let attempts = Attempts::of(&response);
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                // The proxy removes `Upgrade` (hop-by-hop) and carries no upgraded connection:
                // a 101 answers a question it never asked, and the client's connection would
                // be left switched to nothing.
                return own(Reason::BAD_UPSTREAM_RESPONSE, attempts);
            }
            let (mut parts, body) = response.into_parts();
            prepare_response_head(&mut parts, attempts);
            let body = ResponseBody::upstream(body, in_flight);
            (Response::from_parts(parts, body), "", attempts)
        }
        Err(error) => {
            let (reason, attempts) = Reason::of_error(&error);
            tracing::debug!(route = %route.name, %error, reason = reason.name, "answered by the proxy");
            own(reason, attempts)
        }
    }
}

/// Whether a client body's error is the client's connection ending before the body did (the
/// client left), as opposed to a body that broke its framing.
fn client_went_away(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            if e.is_incomplete_message() || e.is_canceled() {
                return true;
            }
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// A request's headers as `max_headers` counts them: HTTP/2's cookie crumbs (RFC 9113 §8.2.3:
/// each cookie a field of its own) as the one `Cookie` they are, as over HTTP/1.1 (a review:
/// 60 cookies made a request of 5 headers 431).
fn header_count<B>(req: &Request<B>) -> usize {
    let cookies = req.headers().get_all(COOKIE).iter().count();
    req.headers().len() - cookies.saturating_sub(1)
}

fn own(reason: Reason, attempts: u32) -> (Response<ResponseBody>, &'static str, u32) {
    (reason.answer(attempts), reason.name, attempts)
}

/// The body length the client announced, if it did.
fn announced_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The request head as the upstream gets it: no hop-by-hop headers, HTTP/1.1 (the HTTP/1.1
/// pool speaks it whatever the client spoke; the HTTP/2 connection sets its own), and the
/// client's host kept in `Host` (the balancer rewrites the target to the instance's address).
///
/// A target with an authority (absolute-form, or HTTP/2's `:authority`) names the host the
/// request was routed by, and RFC 9112 section 3.2.2 has it replace any `Host` sent beside
/// it: otherwise a request routed as `api.internal` would reach the virtual host its `Host`
/// names, one no route admits.
fn prepare_head(parts: &mut request::Parts) {
    strip_hop_by_hop(&mut parts.headers);
    // An HTTP/2 client may send each cookie as a field of its own; sent on over HTTP/1.1 they
    // "MUST be concatenated into a single octet string using the two-octet delimiter of 0x3b,
    // 0x20" (RFC 9113 §8.2.3): they went as that many Cookie lines.
    if parts.version == Version::HTTP_2 && parts.headers.get_all(COOKIE).iter().nth(1).is_some() {
        let mut joined = Vec::new();
        for crumb in parts.headers.get_all(COOKIE) {
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(crumb.as_bytes());
        }
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            parts.headers.insert(COOKIE, value);
        }
    }
    let host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        parts.headers.insert(HOST, host);
    }
    parts.version = Version::HTTP_11;
}

/// The upstream's response head as the client gets it: no hop-by-hop headers, no
/// `stormguard-reason` of the upstream's (the header says this proxy answered), this proxy's
/// `stormguard-attempts`, and HTTP/1.1 whatever the upstream spoke.
///
/// The version is that of the client's connection, not the upstream's: an HTTP/1.0 upstream's
/// answer, passed on as HTTP/1.0, made hyper answer an HTTP/1.1 client in HTTP/1.0 and close
/// its connection. hyper writes HTTP/1.0 itself to an HTTP/1.0 client, and HTTP/2 has no
/// version in its head.
fn prepare_response_head(parts: &mut response::Parts, attempts: u32) {
    strip_hop_by_hop(&mut parts.headers);
    // Looked for before it is removed: the scan compares each name by its kind first (a
    // standard name is never this one), where `remove` parsed and hashed this name on every
    // response, and nearly no upstream sends it.
    if parts.headers.keys().any(|name| *name == REASON_NAME) {
        parts.headers.remove(REASON_NAME);
    }
    parts
        .headers
        .insert(ATTEMPTS_NAME, attempts_value(attempts));
    parts.version = Version::HTTP_11;
}

/// Fixes the request's deadline at its `arrival`, from its budget headers, so that time spent
/// before the stack (reading the body, an injected delay) is spent from the caller's budget.
/// A deadline fixed before is kept.
fn keep_arrival_deadline(parts: &mut request::Parts, arrival: tokio::time::Instant) {
    if parts.extensions.get::<Deadline>().is_some() {
        return;
    }
    let now = arrival.into_std();
    let budget = parts
        .headers
        .iter()
        .filter_map(|(name, value)| budget_of(name, value)?.ok())
        .min();
    if let Some(budget) = budget {
        parts.extensions.insert(Deadline::after(now, budget));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::REASON_HEADER;

    #[test]
    fn the_upstream_gets_http_1_1_and_the_clients_host() {
        let req = Request::get("http://api.internal:8080/x")
            .version(Version::HTTP_2)
            .header("connection", "close")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        prepare_head(&mut parts);
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.headers[HOST], "api.internal:8080");
        assert!(!parts.headers.contains_key("connection"));
    }

    #[test]
    fn an_absolute_target_replaces_the_host_header() {
        let req = Request::get("http://api.internal/x")
            .header(HOST, "admin.internal")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        prepare_head(&mut parts);
        assert_eq!(parts.headers[HOST], "api.internal");
        assert_eq!(parts.headers.get_all(HOST).iter().count(), 1);
    }

    #[test]
    fn the_client_gets_http_1_1_and_the_proxys_own_headers_only() {
        let response = Response::builder()
            .version(Version::HTTP_10)
            .header(REASON_HEADER, "no-route")
            .header(ATTEMPTS_NAME, "9")
            .header(ATTEMPTS_NAME, "8")
            .header("connection", "close")
            .body(())
            .unwrap();
        let (mut parts, ()) = response.into_parts();
        prepare_response_head(&mut parts, 2);
        assert_eq!(parts.version, Version::HTTP_11);
        assert!(!parts.headers.contains_key(REASON_HEADER));
        let attempts: Vec<_> = parts.headers.get_all(ATTEMPTS_NAME).iter().collect();
        assert_eq!(attempts, ["2"]);
        assert!(!parts.headers.contains_key("connection"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_injected_delay_is_spent_from_the_budget() {
        let req = Request::get("/")
            .header("stormguard-budget-ms", "300")
            .header("grpc-timeout", "200m")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        let start = tokio::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        keep_arrival_deadline(&mut parts, start);
        let start = start.into_std();
        let deadline = parts.extensions.get::<Deadline>().unwrap();
        assert_eq!(
            deadline.remaining(start),
            std::time::Duration::from_millis(200)
        );
    }

    #[test]
    fn an_announced_length_is_read() {
        let req = Request::post("/")
            .header(CONTENT_LENGTH, "12")
            .body(())
            .unwrap();
        assert_eq!(announced_length(&req), Some(12));
        assert_eq!(announced_length(&Request::new(())), None);
    }
}
