//! An upstream's HTTP/1.x response head: parsed by `httparse`, framed by RFC 9112 section 6.3.
//!
//! ## The rules, as hyper's client applies them
//! - Informational responses (1xx) other than 101 are read and dropped; a 101 is returned for
//!   the caller to refuse (the proxy never asks for an upgrade), and its connection is not used
//!   again.
//! - No body: the answer to a `HEAD`, a 204 or a 304, whatever their `Content-Length` says.
//! - `Transfer-Encoding` whose last coding is `chunked`: chunked. Any other: the body runs to
//!   the connection's end. Either way a `Content-Length` beside it is ignored and the connection
//!   is not used again (RFC 9112 6.3: a message with both may be an attempt at smuggling).
//! - `Content-Length`: that many bytes; values that disagree or are not digits are an error.
//! - Neither: the body runs to the connection's end.
//! - Kept alive: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection:
//!   keep-alive`.
//!
//! ## Bounds
//! At most [`MAX_HEADERS`] fields (hyper's default) in at most [`MAX_HEAD`] bytes, and no
//! obsolete line folding. The head's bytes become one shared buffer that every header value is
//! a slice of: no copy per value.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Response, StatusCode, Version};

/// The most header fields in a response head, as hyper's default.
pub(crate) const MAX_HEADERS: usize = 100;

/// The most bytes in a response head (with its informational responses): the proxy's read
/// buffer, as hyper's client was given (`max_buf_size`).
pub(crate) const MAX_HEAD: usize = crate::server::BODY_BUFFER;

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Up to the connection's end.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    /// The response, without its body.
    pub(crate) response: Response<()>,
    /// How its body is delimited.
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub(crate) keep_alive: bool,
}

/// Why a response head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x, or a field that is not a field.
    #[error("invalid response head: {0}")]
    Parse(httparse::Error),
    /// More than [`MAX_HEAD`] bytes with no end in sight.
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// A status below 100 or above 999.
    #[error("invalid status code")]
    Status,
    /// A field name or value the `http` crate refuses.
    #[error("invalid header field")]
    Field,
    /// `Content-Length` values that disagree, or are not a number.
    #[error("invalid content-length")]
    ContentLength,
}

/// Parses the response head at the front of `buf`, taking it (and any informational responses
/// before it) off. `None`: the head is not complete yet.
///
/// # Errors
/// A head that is not HTTP/1.x or breaks a bound: the connection cannot be used again.
pub(crate) fn parse(
    buf: &mut BytesMut,
    request: &Method,
    kept: &mut Kept,
) -> Result<Option<Head>, HeadError> {
    loop {
        // Where each field lies in the head, so that the head can be cut off the buffer (which
        // the parser's fields borrow) and its values sliced from it. The parser's slots are
        // left uninitialised (zeroing 100 of them cost more than the parse), and the spans go
        // in the caller's vector (the connection keeps one, in `kept`).
        let (length, code, version) = {
            let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let config = httparse::ParserConfig::default();
            let length =
                match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut fields) {
                    // A whole head past the bound, read in one go with its end, is as large
                    // as one that has no end in sight (a review: 100 KB heads passed).
                    Ok(httparse::Status::Complete(length)) if length > MAX_HEAD => {
                        return Err(HeadError::TooLarge)
                    }
                    Ok(httparse::Status::Complete(length)) => length,
                    Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                        return Err(HeadError::TooLarge)
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(error) => return Err(HeadError::Parse(error)),
                };
            spans_of(buf.as_ptr(), parsed.headers, &mut kept.spans);
            (length, parsed.code.unwrap_or_default(), parsed.version)
        };
        let status = StatusCode::from_u16(code).map_err(|_| HeadError::Status)?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // 100 Continue, 103 Early Hints: the final response follows.
            drop(buf.split_to(length));
            continue;
        }
        let version = if version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let head = buf.split_to(length).freeze();
        let mut facts = Facts::default();
        let mut headers = header_map(&head, &kept.spans, &mut kept.names, &mut facts, true)?;
        let (framing, framed_cleanly) = framing(request, status, &facts)?;
        if facts.chunked.is_some() && (facts.length.is_some() || facts.bad_length) {
            // Framed by its Transfer-Encoding (dropped from the map above), so its
            // Content-Length is the upstream's error and must not reach the client (RFC 9112
            // §6.3: an intermediary removes it): the client waited for that length.
            headers.remove(CONTENT_LENGTH);
        }
        // After a 101 the connection speaks another protocol: never used again.
        let keep_alive = framed_cleanly
            && status != StatusCode::SWITCHING_PROTOCOLS
            && framing != Framing::Close
            && match version {
                Version::HTTP_10 => facts.keep_alive,
                _ => !facts.close,
            };
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some(Head {
            response,
            framing,
            keep_alive,
        }));
    }
}

/// Whether `bytes` hold the blank line that ends a head (`\n\n` or `\n\r\n`, as the parser
/// takes line ends), so that a head is parsed once it is complete: see [`parse`]'s callers.
pub(crate) fn has_end(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        w[0] == b'\n' && (w[1] == b'\n' || (w[1] == b'\r' && bytes.get(i + 2) == Some(&b'\n')))
    })
}

/// What a connection keeps from one response head to the next, so that the next allocates and
/// parses less: where the fields lie, and the names they had.
#[derive(Default)]
pub(crate) struct Kept {
    spans: Vec<Span>,
    names: Names,
}

/// The field names of the last heads parsed, by position, each with the bytes it was parsed
/// from. An upstream sends the same names in the same order in every response (a server's
/// headers come from one piece of code), and a name compared byte for byte costs a tenth of its
/// parse into a [`HeaderName`] (folding its case, matching it against the standard names, and
/// for any other allocating its copy). The result is the same: the same bytes give the same
/// name.
///
/// Bounded: the first [`NAMES_KEPT`] positions, names of at most [`NAME_KEPT`] bytes.
#[derive(Default)]
pub(crate) struct Names {
    seen: Vec<(Vec<u8>, HeaderName)>,
}

/// Positions of [`Names`] kept: more than a response usually has.
const NAMES_KEPT: usize = 32;

/// The longest name [`Names`] keeps, in bytes.
const NAME_KEPT: usize = 64;

impl Names {
    /// The name at position `at` of a head, whose bytes are `raw`.
    fn name(&mut self, at: usize, raw: &[u8]) -> Result<HeaderName, HeadError> {
        if let Some((bytes, name)) = self.seen.get(at) {
            if bytes.as_slice() == raw {
                return Ok(name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw).map_err(|_| HeadError::Field)?;
        if at < NAMES_KEPT && raw.len() <= NAME_KEPT {
            if let Some((bytes, kept)) = self.seen.get_mut(at) {
                bytes.clear();
                bytes.extend_from_slice(raw);
                *kept = name.clone();
            } else if at == self.seen.len() {
                // Positions fill in order: a name just past the end is the next one.
                self.seen.push((raw.to_vec(), name.clone()));
            }
        }
        Ok(name)
    }
}

/// Where a field's name and value lie in the block of bytes it was parsed from.
#[derive(Clone, Copy)]
pub(crate) struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// Puts in `spans` where each of `fields` (parsed from the bytes at `base`) lies.
pub(crate) fn spans_of(base: *const u8, fields: &[httparse::Header<'_>], spans: &mut Vec<Span>) {
    let offset = |slice: &[u8]| slice.as_ptr() as usize - base as usize;
    spans.clear();
    spans.extend(fields.iter().map(|field| {
        let name = offset(field.name.as_bytes());
        let value = offset(field.value);
        Span {
            name: (name, name + field.name.len()),
            value: (value, value + field.value.len()),
        }
    }));
}

/// What the framing fields of a head say, noted as the map is built (no lookup after).
#[derive(Default)]
pub(crate) struct Facts {
    /// Whether the last `Transfer-Encoding` field's last coding is `chunked`; `None`: no such
    /// field.
    chunked: Option<bool>,
    /// The `Content-Length`, if every value given is the same number.
    length: Option<u64>,
    /// A `Content-Length` value that is not a number or disagrees with another.
    bad_length: bool,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
}

impl Facts {
    /// Notes what a field says of the framing; returns whether it is hop-by-hop and names no
    /// other field (`Transfer-Encoding`, `Keep-Alive`, a `Connection` of `keep-alive` alone),
    /// which a response's map leaves out: the proxy removes such fields before answering, and
    /// inserting them only to remove them cost two hash lookups and a removal a response.
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> bool {
        if name == TRANSFER_ENCODING {
            let last = value.to_str().ok().and_then(|v| v.rsplit(',').next());
            self.chunked =
                Some(last.is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked")));
            true
        } else if name == CONTENT_LENGTH {
            self.note_length(value);
            false
        } else if name == CONNECTION {
            // A `Connection` that names a field stays, for the proxy's hop-by-hop pass to
            // remove the fields it names.
            let Ok(value) = value.to_str() else {
                return false;
            };
            let mut names_fields = false;
            for token in value.split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("keep-alive") {
                    self.keep_alive = true;
                } else {
                    self.close |= token.eq_ignore_ascii_case("close");
                    names_fields = true;
                }
            }
            !names_fields
        } else {
            name.as_str() == "keep-alive"
        }
    }

    fn note_length(&mut self, value: &HeaderValue) {
        let Ok(value) = value.to_str() else {
            self.bad_length = true;
            return;
        };
        for part in value.split(',') {
            let part = part.trim();
            let parsed =
                (!part.is_empty() && part.len() <= 19 && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse::<u64>().ok())
                    .flatten();
            match parsed {
                Some(parsed) if self.length.is_none_or(|length| length == parsed) => {
                    self.length = Some(parsed)
                }
                _ => self.bad_length = true,
            }
        }
    }
}

/// The fields at `spans` of `block` (their names looked up in `names` first), as a map whose
/// values are slices of it (no copy); what its framing fields say is noted in `facts`. A
/// response head (`hop_by_hop_dropped`) leaves out the hop-by-hop fields that name no other
/// ([`Facts::note`]).
pub(crate) fn header_map(
    block: &Bytes,
    spans: &[Span],
    names: &mut Names,
    facts: &mut Facts,
    hop_by_hop_dropped: bool,
) -> Result<HeaderMap, HeadError> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (at, span) in spans.iter().enumerate() {
        let name = names.name(at, &block[span.name.0..span.name.1])?;
        let value = block.slice(span.value.0..span.value.1);
        // SAFETY: `httparse` accepted these bytes as a field value, and it accepts HTAB, SP,
        // VCHAR and obs-text only (RFC 9110 5.5; no CR, LF, NUL or DEL, and no line folding,
        // which the parser refuses): exactly the bytes a `HeaderValue` may hold, which `http`
        // asserts again in debug builds. Checking each byte twice cost about 80 instructions a
        // field; hyper's own client takes the same step.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(value) };
        if !(facts.note(&name, &value) && hop_by_hop_dropped) {
            headers.append(name, value);
        }
    }
    Ok(headers)
}

/// How the body is delimited, and whether it is delimited cleanly enough to keep the
/// connection (not both `Transfer-Encoding` and `Content-Length`).
fn framing(
    request: &Method,
    status: StatusCode,
    facts: &Facts,
) -> Result<(Framing, bool), HeadError> {
    let no_body = *request == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    if no_body {
        return Ok((Framing::Empty, true));
    }
    if let Some(chunked) = facts.chunked {
        let clean = facts.length.is_none() && !facts.bad_length;
        return Ok((
            if chunked {
                Framing::Chunked
            } else {
                Framing::Close
            },
            clean,
        ));
    }
    if facts.bad_length {
        return Err(HeadError::ContentLength);
    }
    Ok(match facts.length {
        Some(0) => (Framing::Empty, true),
        Some(length) => (Framing::Length(length), true),
        None => (Framing::Close, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, HeadError> {
        parse(
            &mut BytesMut::from(text),
            &Method::GET,
            &mut Kept::default(),
        )
    }

    #[test]
    fn a_head_is_parsed_and_taken_off_the_buffer() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok");
        let head = parse(&mut buf, &Method::GET, &mut Kept::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.response.status(), 200);
        assert_eq!(head.response.headers()["x-a"], "b");
        assert_eq!((head.framing, head.keep_alive), (Framing::Length(2), true));
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn names_kept_from_the_last_head_give_the_same_map_as_a_fresh_parse() {
        let long = format!("X-{}", "n".repeat(NAME_KEPT));
        let heads = [
            format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n{long}: 1\r\n\r\nok"),
            // The same names: every one taken from what was kept but the long one.
            format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: c\r\n{long}: 2\r\n\r\nok"),
            // Other names at the same places, in another case, and one more.
            "HTTP/1.1 200 OK\r\nX-A: d\r\ncontent-length: 2\r\nX-B: e\r\nX-C: f\r\n\r\nok"
                .to_string(),
            "HTTP/1.1 200 OK\r\nX-Bad Name: d\r\n\r\n".to_string(),
        ];
        let mut kept = Kept::default();
        for text in &heads {
            let kept_parse = parse(&mut BytesMut::from(text.as_str()), &Method::GET, &mut kept);
            let fresh = parse(
                &mut BytesMut::from(text.as_str()),
                &Method::GET,
                &mut Kept::default(),
            );
            match (kept_parse, fresh) {
                (Ok(Some(a)), Ok(Some(b))) => {
                    assert_eq!(a.response.headers(), b.response.headers(), "{text}");
                    assert_eq!((a.framing, a.keep_alive), (b.framing, b.keep_alive));
                }
                (a, b) => assert_eq!(a.err(), b.err(), "{text}"),
            }
        }
        let names: Vec<&str> = kept.names.seen.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["x-a", "content-length", "x-b", "x-c"]);
    }

    #[test]
    fn a_head_in_pieces_waits_for_the_rest() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert!(head("").unwrap().is_none());
    }

    #[test]
    fn informational_responses_are_dropped_but_101() {
        let got = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nlink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(got.unwrap().unwrap().response.status(), 204);
        let got = head("HTTP/1.1 101 Switching\r\nupgrade: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(got.response.status(), 101);
        assert!(!got.keep_alive, "a switched connection is never used again");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |text: &str, method: Method| {
            let head = parse(&mut BytesMut::from(text), &method, &mut Kept::default())
                .unwrap()
                .unwrap();
            (head.framing, head.keep_alive)
        };
        let get = || Method::GET;
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::HEAD),
            (Framing::Empty, true)
        );
        for status in ["204 No Content", "304 Not Modified"] {
            let text = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
            assert_eq!(framing(&text, get()), (Framing::Empty, true));
        }
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                get()
            ),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                get()
            ),
            (Framing::Chunked, false),
            "both: chunked, and the connection is not kept"
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", get()),
            (Framing::Close, false)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n", get()),
            (Framing::Length(3), true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", get()),
            (Framing::Close, false)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                get()
            ),
            (Framing::Empty, false)
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", get()),
            (Framing::Length(1), false)
        );
        assert_eq!(
            framing(
                "HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n",
                get()
            ),
            (Framing::Length(1), true)
        );
    }

    #[test]
    fn hop_by_hop_fields_that_name_nothing_are_left_out() {
        let head = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nkeep-alive: timeout=5\r\n\
             connection: keep-alive\r\nx-a: b\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        let names: Vec<&str> = head.response.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-a"]);
        assert_eq!((head.framing, head.keep_alive), (Framing::Chunked, true));
        // A `Connection` that names a field stays for the proxy's hop-by-hop pass.
        let head = head_of(
            "HTTP/1.1 200 OK\r\nconnection: close, x-a\r\nx-a: b\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(head.response.headers()["connection"], "close, x-a");
        assert!(!head.keep_alive);
    }

    fn head_of(text: &str) -> Head {
        parse(
            &mut BytesMut::from(text),
            &Method::GET,
            &mut Kept::default(),
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn the_end_of_a_head_is_a_blank_line_with_either_line_end() {
        assert!(has_end(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(has_end(b"HTTP/1.1 200 OK\n\n"));
        assert!(has_end(b"\n\r\n"));
        assert!(!has_end(b"HTTP/1.1 200 OK\r\nx: y\r\n"));
        assert!(!has_end(b"\n\r"));
        assert!(!has_end(b""));
    }

    #[test]
    fn bad_heads_are_refused() {
        for (text, error) in [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "HTTP/1.1 99 Low\r\n\r\n",
                HeadError::Parse(httparse::Error::Status),
            ),
        ] {
            assert_eq!(head(text).unwrap_err(), error, "{text:?}");
        }
        assert!(matches!(
            head("HTTP/2 200 OK\r\n\r\n"),
            Err(HeadError::Parse(_))
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n"),
            Err(HeadError::Parse(_))
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let text = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            head(&text).unwrap_err(),
            HeadError::Parse(httparse::Error::TooManyHeaders)
        );
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(head(&huge).unwrap_err(), HeadError::TooLarge);
        // Whole, with its end in the same read: as large (it was taken).
        let whole = format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(MAX_HEAD + 10)
        );
        assert_eq!(head(&whole).unwrap_err(), HeadError::TooLarge);
        let within = format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(MAX_HEAD - 100)
        );
        assert!(head(&within).unwrap().is_some());
    }
}
