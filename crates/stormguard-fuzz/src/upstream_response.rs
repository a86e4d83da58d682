//! An upstream's HTTP/1.x answer as the proxy's direct client reads it
//! (`http1_client = "direct"`): the response head by `httparse` and the body by its framing
//! (length, chunked, to the connection's end), given in pieces as a socket gives them.
//!
//! The input's first byte picks the piece size (1 to 64 bytes) and whether the request was a
//! `HEAD`; the rest is what the upstream sent.
//!
//! Promises checked: nothing panics; the body decoded is never longer than what was sent; and
//! the outcome does not depend on how the bytes were cut (in one piece and in small pieces, the
//! same status, body, end and keep-alive, or a refusal both ways), since a socket may cut them
//! anywhere. And a connection's field names kept from its earlier heads change nothing: the
//! head parsed after the same head, or after a typical one (some names kept at their places,
//! others not), is the head parsed on a new connection.

use stormguard_proxy::{decode_head_after, decode_response};

/// A typical upstream's head, parsed before the input's on the same connection.
const TYPICAL: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 06 Dec 2026 22:00:00 GMT\r\n\
Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n";

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&first, answer)) = data.split_first() else {
        return;
    };
    let piece = usize::from(first & 63) + 1;
    let head_request = first & 64 != 0;
    let whole = decode_response(answer, answer.len().max(1), head_request);
    let cut = decode_response(answer, piece, head_request);
    if let Ok(decoded) = &whole {
        assert!(
            decoded.body.len() <= answer.len(),
            "a body of {} bytes from {} bytes",
            decoded.body.len(),
            answer.len()
        );
    }
    let fresh = decode_head_after(b"", answer, head_request);
    for before in [answer, TYPICAL] {
        let after = decode_head_after(before, answer, head_request);
        assert_eq!(fresh, after, "after {:?}", String::from_utf8_lossy(before));
    }
    match (&whole, &cut) {
        (Ok(whole), Ok(cut)) => assert_eq!(whole, cut, "cut in pieces of {piece}"),
        (Err(_), Err(_)) => {}
        _ => panic!("in one piece {whole:?}, in pieces of {piece} {cut:?}"),
    }
}
