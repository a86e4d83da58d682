//! What a proxy must not pass on, and where it must not go.
//!
//! ## Hop-by-hop headers
//! `Connection` and the headers it names, `Keep-Alive`, `Proxy-*`, `TE` (except `trailers`,
//! which gRPC needs), `Trailer`, `Transfer-Encoding` and `Upgrade` describe one connection, not
//! the request (RFC 9110 §7.6.1). Passed on, they make the next hop frame a body wrongly or
//! upgrade a connection the proxy cannot follow, so they are removed both ways; hyper frames each
//! side's body itself.
//!
//! ## Targets
//! The proxy is not a forward proxy: it sends only to its routes' upstreams, never to the host a
//! request names. `CONNECT` is refused (403), and so is an HTTP/1 absolute-form target
//! (`GET http://host/ HTTP/1.1`) whose host is neither one a route names nor the proxy's own
//! address, so that a client that believes it reached `host` is told it did not. An HTTP/2
//! `:authority` is the request's `Host` and is only routed on.

use std::net::{IpAddr, SocketAddr};

use http::header::{CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, Method, Request, Version};

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
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
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
    for name in [KEEP_ALIVE, TRAILER, TRANSFER_ENCODING, UPGRADE] {
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

/// Whether `name` is hop-by-hop by itself (not by being named in `Connection`); `TE` counts,
/// though `TE: trailers` stays.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == TRANSFER_ENCODING
        || *name == TE
        || *name == TRAILER
        || *name == UPGRADE
        || *name == KEEP_ALIVE
        || name.as_str().starts_with("proxy-")
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
        assert_eq!(left, ["content-type", "x-request-id"]);
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
