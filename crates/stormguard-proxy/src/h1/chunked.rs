//! [`Chunked`]: a response body in chunked transfer coding (RFC 9112 section 7.1), decoded from
//! bytes as they arrive.
//!
//! ## Why a state machine over a buffer
//! The body is read in the request's own task, in whatever pieces the socket gives, so the
//! decoder must stop anywhere (in a size line, between a chunk's data and its CRLF) and go on
//! when more comes, without copying: a chunk's data is cut from the read buffer as it is. Every
//! count is bounded: a size of at most 16 hex digits (a `u64`), extensions and trailers of at
//! most [`MAX_EXTENSIONS`] and [`MAX_TRAILERS`] bytes, as hyper bounds them. Line ends are CRLF
//! and nothing else, as hyper reads them.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;

use super::response::{header_map, spans_of, Facts, HeadError, Names, MAX_HEADERS};

/// The most bytes of chunk extensions (`;name=value`) in one body, all chunks together. They
/// are read and dropped: HTTP gives them no meaning a proxy could use.
pub(crate) const MAX_EXTENSIONS: usize = 16 * 1024;

/// The most bytes of trailer fields after the last chunk.
pub(crate) const MAX_TRAILERS: usize = 16 * 1024;

/// What the decoder got from the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Some of the body's data.
    Data(Bytes),
    /// The trailer fields after the last chunk; the body has ended.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    More,
}

/// Why a chunked body could not be read: the upstream broke the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkedError {
    /// A size line that is not hex digits, optional whitespace, extensions and CRLF.
    #[error("invalid chunk size line")]
    Size,
    /// A size of more than 16 hex digits.
    #[error("chunk size too large")]
    TooLarge,
    /// A chunk's data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    /// More than [`MAX_EXTENSIONS`] bytes of chunk extensions.
    #[error("chunk extensions too long")]
    Extensions,
    /// Trailers longer than [`MAX_TRAILERS`], or not fields.
    #[error("invalid chunked trailers")]
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the size's hex digits.
    Size,
    /// Whitespace after the size.
    SizeSpace,
    /// An extension, up to the CR.
    Extension,
    /// The LF of a size line.
    SizeLf,
    /// This many bytes of the chunk's data left.
    Data(u64),
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// After the last chunk: trailer fields, or the empty line.
    Trailers,
    /// The body has ended.
    Done,
}

/// The decoder of one chunked body.
///
/// ```ignore
/// let mut buf = bytes::BytesMut::from(&b"2\r\nok\r\n0\r\n\r\n"[..]);
/// let mut chunked = Chunked::new();
/// assert_eq!(chunked.decode(&mut buf), Ok(Decoded::Data("ok".into())));
/// assert_eq!(chunked.decode(&mut buf), Ok(Decoded::End));
/// ```
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    extensions: usize,
    /// How much of the trailer block was searched for its end without finding it: the next
    /// read searches only what is new, so trailers sent a byte at a time cost linear work.
    searched: usize,
}

impl Chunked {
    /// A decoder at the start of a body.
    pub(crate) fn new() -> Self {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            extensions: 0,
            searched: 0,
        }
    }

    /// Decodes what it can of `buf`, taking what it decoded off its front.
    ///
    /// # Errors
    /// The framing is broken: the connection cannot be used again.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::Trailers => return self.trailers(buf),
                _ => {}
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::More);
            };
            buf.advance(1);
            self.state = self.step(byte)?;
        }
    }

    /// The state after one byte of a size line or of a chunk's end.
    fn step(&mut self, byte: u8) -> Result<State, ChunkedError> {
        Ok(match (self.state, byte) {
            (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
            (State::Size, b';') if self.digits > 0 => State::Extension,
            (State::Size, b' ' | b'\t') if self.digits > 0 => State::SizeSpace,
            (State::Size, _) => {
                let digit = (byte as char).to_digit(16).ok_or(ChunkedError::Size)?;
                if self.digits == 16 {
                    return Err(ChunkedError::TooLarge);
                }
                self.digits += 1;
                self.size = self.size << 4 | u64::from(digit);
                State::Size
            }
            (State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
            (State::SizeSpace, b';') => State::Extension,
            (State::SizeSpace, b'\r') => State::SizeLf,
            (State::SizeSpace, _) => return Err(ChunkedError::Size),
            (State::Extension, b'\r') => State::SizeLf,
            (State::Extension, b'\n') => return Err(ChunkedError::Size),
            (State::Extension, _) => {
                self.extensions += 1;
                if self.extensions > MAX_EXTENSIONS {
                    return Err(ChunkedError::Extensions);
                }
                State::Extension
            }
            (State::SizeLf, b'\n') => {
                let size = std::mem::take(&mut self.size);
                self.digits = 0;
                if size == 0 {
                    State::Trailers
                } else {
                    State::Data(size)
                }
            }
            (State::SizeLf, _) => return Err(ChunkedError::Size),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size,
            (State::DataCr | State::DataLf, _) => return Err(ChunkedError::DataEnd),
            (State::Data(_) | State::Trailers | State::Done, _) => {
                unreachable!("decode handles these states without a byte")
            }
        })
    }

    /// After the last chunk: the empty line, or trailer fields and the empty line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        if buf.len() < 2 {
            return Ok(Decoded::More);
        }
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Decoded::End);
        }
        // The last three bytes searched may begin the blank line: searched again.
        let from = self.searched.saturating_sub(3).min(buf.len());
        let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
            self.searched = buf.len();
            return if buf.len() > MAX_TRAILERS {
                Err(ChunkedError::Trailers)
            } else {
                Ok(Decoded::More)
            };
        };
        let length = from + end + 4;
        if length > MAX_TRAILERS {
            return Err(ChunkedError::Trailers);
        }
        let block = buf.split_to(length).freeze();
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let spans = match httparse::parse_headers(&block, &mut fields) {
            Ok(httparse::Status::Complete((_, parsed))) => {
                let mut spans = Vec::with_capacity(parsed.len());
                spans_of(block.as_ptr(), parsed, &mut spans);
                spans
            }
            _ => return Err(ChunkedError::Trailers),
        };
        let trailers = header_map(
            &block,
            &spans,
            &mut Names::default(),
            &mut Facts::default(),
            false,
        )
        .map_err(|_: HeadError| ChunkedError::Trailers)?;
        self.state = State::Done;
        Ok(Decoded::Trailers(trailers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `input` given in pieces of `piece` bytes: the data, trailers and whether it ended.
    fn decode_in_pieces(
        input: &[u8],
        piece: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, bool), ChunkedError> {
        let mut chunked = Chunked::new();
        let mut buf = BytesMut::new();
        let (mut data, mut trailers) = (Vec::new(), None);
        let mut pieces = input.chunks(piece.max(1));
        loop {
            match chunked.decode(&mut buf)? {
                Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                Decoded::Trailers(fields) => trailers = Some(fields),
                Decoded::End => return Ok((data, trailers, true)),
                Decoded::More => match pieces.next() {
                    Some(next) => buf.extend_from_slice(next),
                    None => return Ok((data, trailers, false)),
                },
            }
        }
    }

    #[test]
    fn chunks_extensions_and_trailers() {
        let body = b"5;name=value\r\nhello\r\n7 \r\n, world\r\n0\r\nx-checksum: 1\r\n\r\n";
        let (data, trailers, ended) = decode_in_pieces(body, body.len()).unwrap();
        assert_eq!(data, b"hello, world");
        assert_eq!(trailers.unwrap()["x-checksum"], "1");
        assert!(ended);
        let (data, trailers, ended) = decode_in_pieces(b"A\r\n0123456789\r\n0\r\n\r\n", 1).unwrap();
        assert_eq!((data.len(), trailers, ended), (10, None, true));
        // Trailers a byte at a time, every cut of the blank line among them: each read
        // searches only the new bytes, and the end is found wherever it was cut.
        let body = b"1\r\nx\r\n0\r\nx-a: 1\r\nx-b: 22\r\n\r\n";
        for piece in 1..=body.len() {
            let (data, trailers, ended) = decode_in_pieces(body, piece).unwrap();
            let trailers = trailers.unwrap();
            assert_eq!((&data[..], ended), (&b"x"[..], true), "{piece}");
            assert_eq!(
                (trailers["x-a"].as_bytes(), trailers["x-b"].as_bytes()),
                (&b"1"[..], &b"22"[..]),
                "{piece}"
            );
        }
    }

    #[test]
    fn broken_framing_is_refused() {
        for (body, error) in [
            (&b"x\r\n"[..], ChunkedError::Size),
            (b"\r\n", ChunkedError::Size),
            (b"5\nhello", ChunkedError::Size),
            (b"2\r\nokX", ChunkedError::DataEnd),
            (b"2\r\nok\r\r", ChunkedError::DataEnd),
            (b"11111111111111111\r\n", ChunkedError::TooLarge),
            (b"1;a\nb\r\n", ChunkedError::Size),
            (b"0\r\nnot a field\r\n\r\n", ChunkedError::Trailers),
        ] {
            assert_eq!(decode_in_pieces(body, 3), Err(error), "{body:?}");
        }
        let long_extension = [&b"1;"[..], &[b'a'; MAX_EXTENSIONS + 1], b"\r\n"].concat();
        assert_eq!(
            decode_in_pieces(&long_extension, 4096),
            Err(ChunkedError::Extensions)
        );
        let long_trailer = [&b"0\r\nx: "[..], &[b'a'; MAX_TRAILERS], b"\r\n\r\n"].concat();
        assert_eq!(
            decode_in_pieces(&long_trailer, 4096),
            Err(ChunkedError::Trailers)
        );
    }

    #[test]
    fn a_body_cut_short_asks_for_more() {
        let (data, _, ended) = decode_in_pieces(b"5\r\nhel", 2).unwrap();
        assert_eq!((data.as_slice(), ended), (&b"hel"[..], false));
    }

    proptest! {
        /// Any data, cut into any chunks and given in any pieces, decodes to itself.
        #[test]
        fn what_is_encoded_decodes_whatever_the_pieces(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(1usize..100, 1..20),
            piece in 1usize..50,
        ) {
            let mut encoded = Vec::new();
            let mut rest = data.as_slice();
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, after) = rest.split_at((*cut).min(rest.len()));
                encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                encoded.extend_from_slice(chunk);
                encoded.extend_from_slice(b"\r\n");
                rest = after;
            }
            encoded.extend_from_slice(b"0\r\n\r\n");
            let (decoded, trailers, ended) = decode_in_pieces(&encoded, piece).unwrap();
            prop_assert_eq!(decoded, data);
            prop_assert!(trailers.is_none() && ended);
        }

        /// Garbage never panics, and what it decodes is never more than it was given.
        #[test]
        fn garbage_is_refused_or_decoded_within_its_length(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            piece in 1usize..40,
        ) {
            if let Ok((data, _, _)) = decode_in_pieces(&input, piece) {
                prop_assert!(data.len() <= input.len());
            }
        }
    }
}
