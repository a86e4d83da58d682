//! [`HeaderClock`]: an HTTP/2 client must send each header block within `header_read_timeout`.
//!
//! ## Why at the byte level
//! An HTTP/1.1 head has its clock on the reads ([`super::h1_clock`]), but neither hyper's
//! HTTP/2 server nor h2 has an equivalent of one for a header block: a client may
//! open a HEADERS frame and send the rest a byte a second, or never send the CONTINUATION that
//! ends the block, and h2 keeps the connection and the partial block for as long as it lasts.
//! Nothing above h2 can see such a block (no request exists until it ends), so the clock reads
//! the frame headers as the bytes pass: it runs from the first byte of a header block (a
//! HEADERS frame and any CONTINUATION frames up to `END_HEADERS`, or of any frame header that
//! arrives in pieces) until the block is complete, and a block not complete in time ends the
//! connection with a read error. Frames are only measured, never changed or buffered; a
//! body's DATA frames may take as long as flow control and the deadline allow.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// A client's byte stream with the header-block clock on its reads.
pub(super) struct HeaderClock<T> {
    io: T,
    frames: Frames,
    limit: Duration,
    /// Made once per connection, reset for each header block that spans reads.
    deadline: Pin<Box<Sleep>>,
    running: bool,
}

impl<T> HeaderClock<T> {
    /// `io`, from the start of the connection (the client preface is skipped).
    pub(super) fn new(io: T, limit: Duration) -> Self {
        HeaderClock {
            io,
            frames: Frames::default(),
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            running: false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeaderClock<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.frames.read(&buf.filled()[before..]);
                match (this.frames.in_header_block(), this.running) {
                    (true, false) => {
                        let deadline = crate::timer::later(tokio::time::Instant::now(), this.limit);
                        this.deadline.as_mut().reset(deadline);
                        this.running = true;
                    }
                    (false, true) => this.running = false,
                    _ => {}
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.running => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "an HTTP/2 header block was not complete within header_read_timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

write_through!(HeaderClock);

/// Where the client's byte stream is, frame by frame: only lengths, types and flags are read.
#[derive(Default)]
struct Frames {
    preface_read: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_read: usize,
    payload_left: usize,
    /// The frame whose payload is arriving belongs to a header block.
    in_block_frame: bool,
    /// A header block has begun and its `END_HEADERS` has not come.
    block_open: bool,
}

impl Frames {
    fn read(&mut self, mut bytes: &[u8]) {
        let preface = (PREFACE_LEN - self.preface_read).min(bytes.len());
        self.preface_read += preface;
        bytes = &bytes[preface..];
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER_LEN - self.header_read).min(bytes.len());
            self.header[self.header_read..self.header_read + n].copy_from_slice(&bytes[..n]);
            self.header_read += n;
            bytes = &bytes[n..];
            if self.header_read == FRAME_HEADER_LEN {
                self.header_read = 0;
                let [a, b, c, kind, flags, ..] = self.header;
                self.payload_left = u32::from_be_bytes([0, a, b, c]) as usize;
                self.in_block_frame = kind == HEADERS || kind == CONTINUATION;
                if self.in_block_frame {
                    self.block_open = flags & END_HEADERS == 0;
                }
            }
        }
    }

    /// Whether a header block, or a frame header, has begun and not ended.
    fn in_header_block(&self) -> bool {
        self.header_read > 0 || self.block_open || (self.payload_left > 0 && self.in_block_frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        out.extend_from_slice(payload);
        out
    }

    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[test]
    fn a_header_block_is_open_from_its_first_byte_to_end_headers() {
        let mut frames = Frames::default();
        frames.read(PREFACE);
        frames.read(&frame(0x4, 0, &[])); // SETTINGS
        assert!(!frames.in_header_block());
        let headers = frame(HEADERS, 0, b"abc");
        frames.read(&headers[..1]);
        assert!(frames.in_header_block(), "part of a frame header");
        frames.read(&headers[1..10]);
        assert!(frames.in_header_block(), "part of the payload");
        frames.read(&headers[10..]);
        assert!(frames.in_header_block(), "no END_HEADERS yet");
        frames.read(&frame(CONTINUATION, END_HEADERS, b"de"));
        assert!(!frames.in_header_block());
        // DATA takes as long as it takes.
        let data = frame(0x0, 0, &[0; 100]);
        frames.read(&data[..50]);
        assert!(!frames.in_header_block());
        frames.read(&data[50..]);
        // A whole block in one read never starts the clock.
        frames.read(&frame(HEADERS, END_HEADERS, b"xyz"));
        assert!(!frames.in_header_block());
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_block_left_open_ends_the_connection_after_the_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1024);
        let mut clock = HeaderClock::new(server, Duration::from_secs(5));
        client.write_all(PREFACE).await.unwrap();
        client
            .write_all(&frame(HEADERS, END_HEADERS, b"whole"))
            .await
            .unwrap();
        client.write_all(&frame(HEADERS, 0, b"part")).await.unwrap();
        let start = tokio::time::Instant::now();
        let mut buf = [0u8; 1024];
        let mut error = None;
        while error.is_none() {
            if let Err(e) = clock.read(&mut buf).await {
                error = Some(e);
            }
        }
        assert_eq!(error.unwrap().kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
