//! [`Rewind`]: the bytes read to tell a connection's protocol, given back to the server that
//! reads it next.
//!
//! ## Why read rather than peek
//! Peeking (`MSG_PEEK`) needs a socket, and waits on a partial preface by polling. Reading the
//! first bytes works on any byte stream (a TLS stream, an in-memory pipe that a fuzzer or a
//! test feeds) and wakes on each byte as it comes; the bytes read are then served first, so
//! the HTTP server sees the connection from its first byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::H2_PREFACE;

/// A byte stream with up to a preface's worth of bytes already read from it put back in front.
pub(super) struct Rewind<T> {
    io: T,
    prefix: [u8; H2_PREFACE.len()],
    /// `prefix[start..end]` is still to be read.
    start: usize,
    end: usize,
}

impl<T> Rewind<T> {
    /// `io`, with `prefix` (at most a preface long) read first.
    pub(super) fn new(io: T, prefix: &[u8]) -> Self {
        let mut kept = [0u8; H2_PREFACE.len()];
        let end = prefix.len().min(kept.len());
        kept[..end].copy_from_slice(&prefix[..end]);
        Rewind {
            io,
            prefix: kept,
            start: 0,
            end,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            let n = (this.end - this.start).min(buf.remaining());
            buf.put_slice(&this.prefix[this.start..this.start + n]);
            this.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

write_through!(Rewind);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut rewound = Rewind::new(server, b"hello");
        let mut small = [0u8; 3];
        rewound.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hel");
        let mut rest = String::new();
        rewound.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
    }
}
