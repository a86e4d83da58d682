//! A request as it goes on the wire: its head written into one buffer, its body framed by
//! `Content-Length` or chunked transfer coding, as hyper's client frames it.
//!
//! ## Framing
//! - A `Content-Length` the request carries is kept and held to: a body of another length is an
//!   error, not a request the upstream would read differently from the client.
//! - A body known to be empty gets `Content-Length: 0` only for `POST`, `PUT` and `PATCH`,
//!   whose upstreams expect a body; other methods get no framing field.
//! - A body of known length gets its `Content-Length`, any other is chunked.
//! - A `Transfer-Encoding` the request carries is not written (the proxy removes it with the
//!   other hop-by-hop fields before; this module frames the body itself).
//! - Trailers go out after a chunked body's last chunk when the head announced them in its
//!   `Trailer` field, as hyper's client sends them: only the fields named there, and never one
//!   that must not be a trailer (framing, routing, authentication; RFC 9110 section 6.5.1).
//!   Unannounced trailers, and any on a body framed by its length, are dropped.

use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    HOST, MAX_FORWARDS, SET_COOKIE, TE, TRAILER, TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderName, Method, Request};
use http_body::Body;

/// How a request's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// This many bytes (none: no body).
    Length(u64),
    /// Chunked: each frame a chunk, then the last chunk.
    Chunked,
}

/// Why a request's body could not be framed as its head said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body's length differs from its content-length")]
pub(crate) struct LengthMismatch;

/// Writes `req`'s head (origin-form target, HTTP/1.1) into `out`; returns how its body is
/// framed.
pub(crate) fn encode_head<B: Body>(req: &Request<B>, out: &mut Vec<u8>) -> BodyFraming {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut length = None;
    for (name, value) in req.headers() {
        if name == TRANSFER_ENCODING {
            continue;
        }
        if name == CONTENT_LENGTH {
            match value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(parsed) if length.is_none_or(|l| l == parsed) => length = Some(parsed),
                // A length that is not one number: framed below by the body itself.
                _ => continue,
            }
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body = req.body();
    let framing = match length {
        Some(length) => BodyFraming::Length(length),
        None if body.is_end_stream() => {
            if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            BodyFraming::Length(0)
        }
        None => match body.size_hint().exact() {
            Some(exact) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(exact.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                BodyFraming::Length(exact)
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                BodyFraming::Chunked
            }
        },
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// Appends one frame's `data` to `out` as `framing` says, `sent` bytes having gone before.
///
/// # Errors
/// More bytes than the `Content-Length`.
pub(crate) fn encode_data(
    framing: BodyFraming,
    sent: &mut u64,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LengthMismatch> {
    if data.is_empty() {
        return Ok(());
    }
    *sent += data.len() as u64;
    match framing {
        BodyFraming::Length(length) if *sent > length => return Err(LengthMismatch),
        BodyFraming::Length(_) => out.extend_from_slice(data),
        BodyFraming::Chunked => {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(())
}

/// The trailer fields a chunked request announced in its `Trailer` field (names separated by
/// commas, in any number of fields), which alone [`encode_end`] writes; `None` when it announced
/// none. Read only for a chunked body: a body framed by its length has no trailers.
pub(crate) fn announced_trailers(headers: &HeaderMap) -> Option<Box<[HeaderName]>> {
    let names: Vec<HeaderName> = headers
        .get_all(TRAILER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(may_be_trailer)
        .collect();
    (!names.is_empty()).then(|| names.into_boxed_slice())
}

/// Whether a field may be sent as a trailer: not one that frames, routes or authenticates the
/// message, which a recipient must have before the body (hyper's client leaves out the same).
fn may_be_trailer(name: &HeaderName) -> bool {
    !matches!(
        *name,
        AUTHORIZATION
            | CACHE_CONTROL
            | CONTENT_ENCODING
            | CONTENT_LENGTH
            | CONTENT_RANGE
            | CONTENT_TYPE
            | HOST
            | MAX_FORWARDS
            | SET_COOKIE
            | TRAILER
            | TRANSFER_ENCODING
            | TE
    )
}

/// Appends the body's end to `out`: the last chunk, with the `trailers` among those `announced`
/// ([`announced_trailers`]), or nothing.
///
/// # Errors
/// Fewer bytes than the `Content-Length`.
pub(crate) fn encode_end(
    framing: BodyFraming,
    sent: u64,
    trailers: Option<(&HeaderMap, &[HeaderName])>,
    out: &mut Vec<u8>,
) -> Result<(), LengthMismatch> {
    match framing {
        BodyFraming::Length(length) if sent != length => Err(LengthMismatch),
        BodyFraming::Length(_) => Ok(()),
        BodyFraming::Chunked => {
            out.extend_from_slice(b"0\r\n");
            if let Some((trailers, announced)) = trailers {
                for (name, value) in trailers {
                    if announced.contains(name) {
                        out.extend_from_slice(name.as_str().as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(value.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
            out.extend_from_slice(b"\r\n");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    fn head<B: Body>(req: Request<B>) -> (String, BodyFraming) {
        let mut out = Vec::new();
        let framing = encode_head(&req, &mut out);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn a_get_has_no_framing_field() {
        let req = Request::get("/a?b=c")
            .header("host", "api")
            .header("transfer-encoding", "chunked")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(
            head(req),
            (
                "GET /a?b=c HTTP/1.1\r\nhost: api\r\n\r\n".into(),
                BodyFraming::Length(0)
            )
        );
    }

    #[test]
    fn an_empty_post_says_so_and_a_full_one_gives_its_length() {
        let req = Request::post("/").body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(head(req).0, "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        let req = Request::put("/")
            .body(Full::new(Bytes::from("abc")))
            .unwrap();
        assert_eq!(
            head(req),
            (
                "PUT / HTTP/1.1\r\ncontent-length: 3\r\n\r\n".into(),
                BodyFraming::Length(3)
            )
        );
    }

    #[test]
    fn a_content_length_given_is_kept_and_a_body_of_unknown_length_is_chunked() {
        let req = Request::post("/")
            .header("content-length", "5")
            .body(Unknown)
            .unwrap();
        assert_eq!(head(req).1, BodyFraming::Length(5));
        let req = Request::post("/").body(Unknown).unwrap();
        assert_eq!(
            head(req),
            (
                "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".into(),
                BodyFraming::Chunked
            )
        );
    }

    /// A body of unknown length.
    struct Unknown;

    impl Body for Unknown {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(None)
        }
    }

    #[test]
    fn data_is_framed_and_held_to_its_length() {
        let mut out = Vec::new();
        let mut sent = 0;
        encode_data(BodyFraming::Chunked, &mut sent, b"hello", &mut out).unwrap();
        encode_data(BodyFraming::Chunked, &mut sent, b"", &mut out).unwrap();
        encode_end(BodyFraming::Chunked, sent, None, &mut out).unwrap();
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
        let (mut out, mut sent) = (Vec::new(), 0);
        let framing = BodyFraming::Length(3);
        assert_eq!(
            encode_data(framing, &mut sent, b"abcd", &mut out),
            Err(LengthMismatch)
        );
        let mut sent = 0;
        encode_data(framing, &mut sent, b"ab", &mut out).unwrap();
        assert_eq!(
            encode_end(framing, sent, None, &mut out),
            Err(LengthMismatch)
        );
    }

    #[test]
    fn trailers_go_out_only_when_announced_and_allowed() {
        let mut head = HeaderMap::new();
        assert_eq!(announced_trailers(&head), None);
        head.append(TRAILER, "x-checksum, Content-Length".parse().unwrap());
        head.append(TRAILER, " x-sig ,".parse().unwrap());
        let announced = announced_trailers(&head).unwrap();
        // Content-Length may never be a trailer; names are read without case or spaces.
        assert_eq!(
            &announced[..],
            ["x-checksum", "x-sig"].map(HeaderName::from_static)
        );
        let mut trailers = HeaderMap::new();
        trailers.append("x-checksum", "1".parse().unwrap());
        trailers.append("x-checksum", "2".parse().unwrap());
        trailers.append("x-unannounced", "3".parse().unwrap());
        trailers.append(CONTENT_LENGTH, "4".parse().unwrap());
        let mut out = Vec::new();
        let sent = 0;
        encode_end(
            BodyFraming::Chunked,
            sent,
            Some((&trailers, &announced)),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0\r\nx-checksum: 1\r\nx-checksum: 2\r\n\r\n"
        );
        // A body framed by its length ends with its last byte, trailers or not.
        let mut out = Vec::new();
        let framing = BodyFraming::Length(0);
        encode_end(framing, 0, Some((&trailers, &announced)), &mut out).unwrap();
        assert!(out.is_empty());
    }
}
