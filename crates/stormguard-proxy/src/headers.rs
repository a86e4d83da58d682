//! What a proxy must not pass on, and where it must not go.
//!
//! ## Hop-by-hop headers
//! `Connection` and the headers it names, `Keep-Alive`, `Proxy-*`, `TE` (except `trailers`,
//! which gRPC needs), `Transfer-Encoding` and `Upgrade` describe one connection, not the request
//! (RFC 9110 §7.6.1). Passed on, they make the next hop frame a body wrongly or upgrade a
//! connection the proxy cannot follow, so they are removed both ways; the proxy frames each
//! side's body itself.
//!
//! `Trailer` stays: it announces the trailer fields that follow the body, end to end (RFC 9110
//! §6.6.2; RFC 2616 had listed it among the hop-by-hop fields), and an HTTP/1.1 sender, hyper's
//! server and both of the proxy's clients, sends over a chunked body only the trailers announced
//! there. Removed, every trailer of an HTTP/1.1 request or response was dropped on the way.
//!
//! `Connection` cannot remove what the message needs end to end (RFC 9110 §7.6.1 forbids
//! sending such a field as a connection option, and it is ignored here): `Host`,
//! `Content-Length`, `Content-Type` (the body's framing and type, and the gRPC choice), `TE`
//! (RFC 9110 §10.1.4 asks for `Connection: TE` beside it; only `TE: trailers` stays anyway),
//! the fields the proxy's decisions read (`Idempotency-Key`, `Retry-After`, the deadline's
//! `x-envoy-expected-rq-timeout-ms`), and every `grpc-*` (gRPC's own, `grpc-timeout` and
//! `grpc-status` among them) and `stormguard-*` field (the proxy's own, `stormguard-budget-ms`
//! among them). Without this, `Connection: host` sent a request upstream without its `Host`.
//!
//! ## Hosts
//! A request names one host, or the proxy cannot know which it is for: RFC 9112 §3.2 has a
//! server answer 400 to a request with more than one `Host`, to an HTTP/1.1 request with none,
//! and to a `Host` that is not a host and port. A user name (`user@host`) in the target's
//! authority or in `Host` is refused too (RFC 9110 §4.2.4: userinfo is an error in an `http`
//! URI): the upstream would have got it as its `Host`. An HTTP/1.0 request may come without
//! `Host`, and an HTTP/2 request without `:authority` follows the same rules for its `Host`.
//! Where a target has an authority (absolute-form, `:authority`) it is what the request is
//! routed by and the `Host` the upstream gets, whatever `Host` said.
//!
//! ## Targets
//! The proxy is not a forward proxy: it sends only to its routes' upstreams, never to the host a
//! request names. `CONNECT` is refused (403), and so is an HTTP/1 absolute-form target
//! (`GET http://host/ HTTP/1.1`) whose host is neither one a route names nor the proxy's own
//! address, so that a client that believes it reached `host` is told it did not. An HTTP/2
//! `:authority` is the request's `Host` and is only routed on.

use std::net::{IpAddr, SocketAddr};

use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER, TE, TRANSFER_ENCODING, UPGRADE,
};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version};
use stormguard::classify::IDEMPOTENCY_KEY;
use stormguard::deadline::ENVOY_EXPECTED_TIMEOUT_HEADER;

use crate::proxy::{strip_port, Generation};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Removes the hop-by-hop headers of `headers` (see the module docs).
///
/// Every request and response passes through here, and most carry no hop-by-hop header but
/// `Connection: keep-alive`: one look at each name finds what there is to remove, so that the
/// headers that are absent cost no hash lookup each.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut connection = false;
    let mut other = false;
    for name in headers.keys() {
        if *name == CONNECTION {
            connection = true;
        } else if is_hop_by_hop(name) {
            other = true;
        }
    }
    if connection {
        // The headers `Connection` names, but for `keep-alive`, which goes below anyway: the
        // one option nearly every HTTP/1.1 peer sends costs no allocation.
        let mut named: Vec<HeaderName> = Vec::new();
        for token in headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
        {
            if token.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            match HeaderName::from_bytes(token.as_bytes()) {
                Ok(name) if !is_end_to_end(&name) => named.push(name),
                _ => {}
            }
        }
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    if !other {
        return;
    }
    // A message with both a `Transfer-Encoding` and a `Content-Length` is framed by the
    // former, and "an intermediary that chooses to forward the message MUST first remove the
    // received Content-Length field" (RFC 9112 §6.3): kept, it told the client to wait for a
    // length the body, sent in the proxy's own framing, did not have (a review: an empty reply,
    // or a truncated body, logged as a complete 200).
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
    }
    for name in [KEEP_ALIVE, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    if headers
        .get(TE)
        .is_some_and(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(TE);
    }
    let proxied = |name: &HeaderName| name.as_str().starts_with("proxy-");
    if headers.keys().any(proxied) {
        let names: Vec<HeaderName> = headers.keys().filter(|n| proxied(n)).cloned().collect();
        for name in names {
            headers.remove(name);
        }
    }
}

/// Whether `name` is a field that `Connection` cannot remove (see the module docs).
fn is_end_to_end(name: &HeaderName) -> bool {
    *name == HOST
        || *name == CONTENT_LENGTH
        || *name == CONTENT_TYPE
        || *name == TE
        || *name == IDEMPOTENCY_KEY
        || *name == RETRY_AFTER
        || name.as_str() == ENVOY_EXPECTED_TIMEOUT_HEADER
        || name.as_str().starts_with("grpc-")
        || name.as_str().starts_with("stormguard-")
}

/// Whether `name` is hop-by-hop by itself (not by being named in `Connection`); `TE` counts,
/// though `TE: trailers` stays.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == TRANSFER_ENCODING
        || *name == TE
        || *name == UPGRADE
        || *name == KEEP_ALIVE
        || name.as_str().starts_with("proxy-")
}

/// Whether the request's body comes in no transfer coding but `chunked`, which the server
/// decodes: a body in any other (`Transfer-Encoding: gzip, chunked`) would reach the upstream
/// still coded with the coding's name dropped (the header is hop-by-hop), to be read as plain
/// bytes. RFC 9112 §6.1: a server answers 501 to a transfer coding it does not understand.
pub(crate) fn transfer_coding_is_supported<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(TRANSFER_ENCODING)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|codings| {
                codings
                    .split(',')
                    .map(str::trim)
                    .filter(|coding| !coding.is_empty())
                    .all(|coding| coding.eq_ignore_ascii_case("chunked"))
            })
        })
}

/// Whether the request names its host as the module docs require: at most one `Host` (exactly
/// one in HTTP/1.1), a host and port in it, and no user name there or in the target.
pub(crate) fn host_is_valid<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return false;
    }
    if req.uri().authority().is_some_and(has_user) {
        return false;
    }
    match host {
        None => req.version() != Version::HTTP_11,
        Some(host) => is_host_and_port(host),
    }
}

fn has_user(authority: &Authority) -> bool {
    authority.as_str().contains('@')
}

/// `uri-host [":" port]`, or empty (RFC 9112 §3.2: the `Host` of a target without authority).
fn is_host_and_port(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    bytes.is_empty() || is_plain_host_and_port(bytes) || is_authority_host_and_port(bytes)
}

/// [`is_host_and_port`] by `http`'s `Authority` parser, for what is not a plain name and port.
fn is_authority_host_and_port(bytes: &[u8]) -> bool {
    let Ok(authority) = Authority::try_from(bytes) else {
        return false;
    };
    // `Authority` takes any text after the last `:` and reads no port from it.
    let text = authority.as_str();
    let after_host = match text.strip_prefix('[') {
        Some(literal) => literal.find(']').map_or("", |end| &literal[end + 1..]),
        None => text.rfind(':').map_or("", |colon| &text[colon..]),
    };
    let port_ok = after_host.is_empty()
        || after_host.strip_prefix(':').is_some_and(|port| {
            port.bytes().all(|b| b.is_ascii_digit())
                && (port.is_empty() || port.parse::<u16>().is_ok())
        });
    !has_user(&authority) && port_ok
}

/// Whether `bytes` is a name of letters, digits, dots and hyphens, then at most a `:` and a port
/// of at most 65535: the `Host` nearly every request carries, which `Authority` would accept
/// too, told apart in one pass. Parsing it as an `Authority` copied it into a new buffer on every
/// request; anything else still goes that way.
fn is_plain_host_and_port(bytes: &[u8]) -> bool {
    let (name, port) = match bytes.iter().position(|&b| b == b':') {
        Some(colon) => (&bytes[..colon], Some(&bytes[colon + 1..])),
        None => (bytes, None),
    };
    let name_ok = !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|port| {
        port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= u32::from(u16::MAX)
    });
    name_ok && port_ok
}

/// The host a request is for: its target's authority (absolute-form, HTTP/2), else `Host`.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri().host().or_else(|| {
        req.headers()
            .get(HOST)
            .and_then(|value| value.to_str().ok())
            .map(strip_port)
    })
}

/// Whether the proxy may take this request at all (see the module docs). `local` is the
/// address the client connected to.
pub(crate) fn target_allowed<B>(req: &Request<B>, routes: &Generation, local: SocketAddr) -> bool {
    if req.method() == Method::CONNECT {
        return false;
    }
    if req.version() >= Version::HTTP_2 {
        return true;
    }
    let Some(authority) = req.uri().authority() else {
        return true;
    };
    let host = authority.host();
    if routes.serves_host(host) {
        return true;
    }
    let port = authority.port_u16().unwrap_or(80);
    port == local.port() && is_local_host(host, local.ip())
}

fn is_local_host(host: &str, local: IpAddr) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return local.is_loopback();
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    literal.parse::<IpAddr>().is_ok_and(|ip| ip == local)
}

#[cfg(test)]
mod tests {

    /// The one-pass check accepts only what the `Authority` parser accepts, over printable
    /// ASCII strings of up to four characters from a set that reaches every branch of both.
    #[test]
    fn a_plain_host_is_one_the_authority_parser_accepts_too() {
        let alphabet = b"a.-9:0[]@%_ 6";
        let mut accepted = 0;
        let mut input = Vec::new();
        let mut stack = vec![Vec::new()];
        while let Some(prefix) = stack.pop() {
            if prefix.len() < 4 {
                for &c in alphabet {
                    input.clone_from(&prefix);
                    input.push(c);
                    stack.push(input.clone());
                }
            }
            if super::is_plain_host_and_port(&prefix) {
                accepted += 1;
                assert!(
                    super::is_authority_host_and_port(&prefix),
                    "{:?}",
                    String::from_utf8_lossy(&prefix)
                );
            }
        }
        assert!(accepted > 1000, "{accepted}");
        for port in ["0", "80", "65535", "00080"] {
            assert!(super::is_plain_host_and_port(
                format!("api:{port}").as_bytes()
            ));
        }
        for bad in ["api:65536", "api:-1", ":80", "a b", "a@b"] {
            assert!(!super::is_plain_host_and_port(bad.as_bytes()), "{bad}");
        }
    }
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "text/plain"),
            ("x-request-id", "42"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-type", "trailer", "x-request-id"]);
    }

    #[test]
    fn headers_without_hop_by_hop_ones_are_left_alone() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert("x-close", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type", "x-close"]);
        let mut named = HeaderMap::new();
        named.insert("connection", HeaderValue::from_static("close, X-Close"));
        named.insert("close", HeaderValue::from_static("1"));
        named.insert("x-close", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut named);
        assert!(named.is_empty(), "{named:?}");
    }

    #[test]
    fn connection_cannot_remove_what_the_message_needs_end_to_end() {
        let mut headers = HeaderMap::new();
        let kept = [
            "host",
            "content-length",
            "content-type",
            "te",
            "idempotency-key",
            "retry-after",
            "x-envoy-expected-rq-timeout-ms",
            "grpc-timeout",
            "grpc-status",
            "stormguard-budget-ms",
            "stormguard-reason",
        ];
        for name in kept {
            let value = if name == "te" { "trailers" } else { "1" };
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers.insert("x-hop", HeaderValue::from_static("1"));
        let named = kept.join(", ").to_uppercase() + ", x-hop";
        headers.insert(CONNECTION, HeaderValue::from_str(&named).unwrap());
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        let mut want = kept.to_vec();
        want.sort_unstable();
        assert_eq!(left, want);
    }

    fn request(version: Version, target: &str, hosts: &[&'static str]) -> Request<()> {
        let mut req = Request::get(target).version(version);
        for host in hosts {
            req = req.header(HOST, *host);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn a_request_names_one_host_without_a_user() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        for (version, target, hosts) in [
            (HTTP_11, "/", &["api"][..]),
            (HTTP_11, "/", &["api.internal:8080"]),
            (HTTP_11, "/", &["[::1]:80"]),
            (HTTP_11, "/", &[""]),
            (HTTP_11, "http://api/", &["other"]),
            (HTTP_10, "/", &[]),
            (HTTP_2, "http://api/", &[]),
            (HTTP_2, "/", &[]),
            (HTTP_2, "/", &["api"]),
        ] {
            let req = request(version, target, hosts);
            assert!(host_is_valid(&req), "{version:?} {target} {hosts:?}");
        }
        for (version, target, hosts) in [
            (HTTP_11, "/", &["api", "other"][..]),
            (HTTP_11, "/", &["api", "api"]),
            (HTTP_11, "/", &[]),
            (HTTP_11, "http://api/", &[]),
            (HTTP_11, "/", &["user@api"]),
            (HTTP_11, "/", &["user:pw@api:80"]),
            (HTTP_11, "/", &["api:port"]),
            (HTTP_11, "/", &["api:99999"]),
            (HTTP_11, "/", &["[::1]:x"]),
            (HTTP_11, "/", &["api/x"]),
            (HTTP_11, "http://user@api/", &["api"]),
            (HTTP_10, "/", &["a", "b"]),
            (HTTP_2, "/", &["a", "b"]),
            (HTTP_2, "http://api/", &["a", "b"]),
            (HTTP_2, "http://user@api/", &[]),
        ] {
            let req = request(version, target, hosts);
            assert!(!host_is_valid(&req), "{version:?} {target} {hosts:?}");
        }
    }

    #[test]
    fn te_trailers_is_kept_for_grpc() {
        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers[TE], "trailers");
    }

    #[test]
    fn the_proxy_itself_is_a_local_host() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(is_local_host("127.0.0.1", local));
        assert!(is_local_host("LocalHost", local));
        assert!(!is_local_host("example.com", local));
        assert!(!is_local_host("10.0.0.1", local));
        assert!(is_local_host("[::1]", "::1".parse().unwrap()));
    }
}
