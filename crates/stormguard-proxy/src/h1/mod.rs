//! The direct HTTP/1.1 client (`http1_client = "direct"`, the default): a request written and
//! its response read in the request's own task, on a kept-alive connection of the instance's
//! pool. hyper's client stays as the fallback (`http1_client = "hyper"`).
//!
//! ## Why
//! hyper's HTTP/1.1 client runs each connection in a task of its own: a request goes to it
//! through a channel, its response comes back through a oneshot, and each request costs three
//! more task polls and wake-ups. Profiled under load, that connection task was a quarter of the
//! proxy's instructions per request (9,961 of 39,564), the largest item left. Here the request's
//! future writes the head and body itself and parses the response head (`httparse`, as hyper
//! does); the response body reads from the connection as the server's task polls it, and the
//! connection goes back to the pool when the body ends.
//!
//! ## The same rules as hyper's
//! Framing by RFC 9112 ([`response`], [`request`], [`chunked`]), every bound hyper's client
//! had ([`response::MAX_HEAD`], [`response::MAX_HEADERS`], chunk extensions and trailers), and
//! the pool's promises kept:
//! - A kept-alive connection is checked before use (a read that would block: still open, and
//!   nothing unasked for on it). If its first write fails with nothing written, the request was
//!   never sent and goes out on a new connection, as hyper-util resends a request a reused
//!   connection closed before sending.
//! - A failure to connect is the library's `NotSent`; any failure after a byte was written is
//!   taken as sent, for the classifier to judge.
//! - A response that comes before the request's body was all written is answered, and its
//!   connection is not used again.
//! - A request dropped after it was sent (a per-try timeout, a hedge that lost) is an orphan:
//!   its response is read and discarded in a task of its own, within
//!   [`ORPHAN_WAIT`](crate::pool::ORPHAN_WAIT) and [`MAX_ORPHANS`](crate::pool::MAX_ORPHANS),
//!   so that its connection is kept rather than closed.
//! - A response body dropped before its end keeps its connection when the rest is already in
//!   the read buffer (a retried 503's short body), and closes it otherwise.
//!
//! ## Against a hostile upstream
//! - A head that does not come whole in one read is parsed again only once its blank line has
//!   come, so a head sent a byte at a time costs linear work; it is refused past 64 KiB.
//! - Every count is bounded as hyper bounds it; an endless body or stream of informational
//!   answers is bounded by the attempt's timeout (and an orphan's by its wait).
//! - The connection of a 101, of an answer that came before the request was sent, of a body
//!   delimited by the connection's end, of `Connection: close`, or one with bytes left over
//!   after its answer is never used again.
//! - `upstream_response` (`fuzz/`) fuzzes the head parser and body decoders, in pieces.

pub(crate) mod chunked;
pub(crate) mod request;
pub(crate) mod response;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use stormguard::layer::{BoxError, NotSent};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use crate::pool::InstancePool;
use crate::stack::UpstreamBody;
use crate::tls::connect::UpstreamIo;
use chunked::{Chunked, ChunkedError, Decoded};
use request::{BodyFraming, LengthMismatch};

use response::{Framing, HeadError};

/// How much the read buffer grows by at first when it is full: most answers fit, and an
/// allocation this small is cheap (the buffer is allocated anew for most responses, since the
/// last one's header values and body still share the old one).
const READ_CHUNK: usize = 4 * 1024;

/// The most the read buffer grows by at once: a read that fills the buffer doubles the next
/// growth, up to this, so that a large body is read in large pieces.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// The largest write buffer a connection keeps for its next request.
const KEPT_WRITE_BUFFER: usize = 16 * 1024;

/// The most request bytes gathered before they are written: a streamed body is written in
/// pieces of at most this, plus one frame.
const WRITE_CHUNK: usize = 64 * 1024;

/// A connection to an instance, with what was read from it and not yet used; always boxed
/// ([`Conn::new`]), so that a response body holding one stays small as it moves up the layers
/// (176 bytes with it inline, and every layer moved the response).
pub(crate) struct Conn {
    io: UpstreamIo,
    read: BytesMut,
    /// What the read buffer grows by next ([`READ_CHUNK`] to [`MAX_READ_CHUNK`]).
    grow: usize,
    /// The last request's write buffer, and what the last response head leaves for the next
    /// (its fields' spans and names), kept so that the next request allocates and parses less.
    write: Vec<u8>,
    kept: response::Kept,
}

impl Conn {
    /// A new connection.
    pub(crate) fn new(io: UpstreamIo) -> Box<Self> {
        Box::new(Conn {
            io,
            read: BytesMut::new(),
            grow: READ_CHUNK,
            write: Vec::new(),
            kept: response::Kept::default(),
        })
    }

    /// Reads what the connection has into the buffer: `Ok(0)` at its end.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 8 {
            self.read.reserve(self.grow);
        }
        let room = self.read.capacity() - self.read.len();
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read
        ))?;
        if read == room {
            self.grow = (self.grow * 2).min(MAX_READ_CHUNK);
        }
        Poll::Ready(Ok(read))
    }

    /// Whether a kept-alive connection can carry a request: its upstream has not closed it and
    /// sent nothing since its last response (a read would block).
    pub(crate) fn is_usable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.poll_read_more(&mut cx).is_pending()
    }
}

/// Why an exchange with an instance failed after its connection was made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The connection failed.
    #[error("upstream connection error")]
    Io(#[source] io::Error),
    /// The upstream closed the connection before its response head ended.
    #[error("upstream closed the connection before the response")]
    Closed,
    /// The response body ended early.
    #[error("upstream closed the connection before the response body ended")]
    IncompleteBody,
    /// The response head was not HTTP/1.x, or broke a bound.
    #[error("bad response head from upstream")]
    Head(#[from] HeadError),
    /// The chunked response body broke its framing.
    #[error("bad chunked response body from upstream")]
    Chunked(#[from] ChunkedError),
    /// The request's body failed while it was sent.
    #[error("request body error")]
    Body(#[source] BoxError),
    /// The request's body was not as long as its `Content-Length`.
    #[error("request body")]
    Length(#[from] LengthMismatch),
}

/// A request on its way to an instance: [`InstancePool::send_direct`]. Resolves to the
/// response head, with a body that reads the rest from the connection.
pub(crate) struct Exchange {
    pool: Arc<InstancePool>,
    active: Option<Box<Active>>,
    /// An orphan's own exchange, which must not orphan itself again when its time is up.
    orphan: bool,
}

/// The state of one exchange: boxed, so that the future moved through the layers stays small.
struct Active {
    /// The connection; `None` while one is made.
    conn: Option<Box<Conn>>,
    /// The connection being made for this request.
    connecting: Option<oneshot::Receiver<Result<Box<Conn>, BoxError>>>,
    /// Whether `conn` was kept alive from an earlier request.
    reused: bool,
    method: Method,
    /// The request body still to send; `None` once it has all gone.
    body: Option<UpstreamBody>,
    framing: BodyFraming,
    /// The trailer fields the head announced, which alone go out after a chunked body.
    announced: Option<Box<[HeaderName]>>,
    /// The body's trailers, once its trailers frame came: written with its last chunk.
    trailers: Option<HeaderMap>,
    /// Body bytes framed so far.
    sent: u64,
    /// Bytes to write, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// Whether any byte of this request reached the connection.
    wrote_any: bool,
    /// How much of the read buffer was searched for the end of a response head after a parse
    /// found it incomplete; `None` until then.
    searched: Option<usize>,
    /// Whether the written bytes still need a flush (TLS buffers them).
    unflushed: bool,
}

impl Exchange {
    /// Sends `req` (origin-form target, `Host` set) on `conn`, or on a new connection when
    /// `conn` is `None`.
    pub(crate) fn new(
        pool: Arc<InstancePool>,
        conn: Option<Box<Conn>>,
        req: Request<UpstreamBody>,
    ) -> Self {
        let mut conn = conn;
        let mut out = match conn.as_mut() {
            Some(conn) => std::mem::take(&mut conn.write),
            None => Vec::with_capacity(512),
        };
        let framing = request::encode_head(&req, &mut out);
        let (parts, body) = req.into_parts();
        let announced = match framing {
            BodyFraming::Chunked => request::announced_trailers(&parts.headers),
            BodyFraming::Length(_) => None,
        };
        // An empty body is done with at once, unless its head promised bytes: then it is polled
        // like any other and refused at its end.
        let mut out_end = out;
        let empty = http_body::Body::is_end_stream(&body)
            && request::encode_end(framing, 0, None, &mut out_end).is_ok();
        let reused = conn.is_some();
        let connecting = conn.is_none().then(|| pool.connect_direct());
        let active = Box::new(Active {
            conn,
            connecting,
            reused,
            method: parts.method,
            body: (!empty).then_some(body),
            framing,
            announced,
            trailers: None,
            sent: 0,
            out: out_end,
            written: 0,
            wrote_any: false,
            searched: None,
            unflushed: false,
        });
        Exchange {
            pool,
            active: Some(active),
            orphan: false,
        }
    }
}

impl Future for Exchange {
    type Output = Result<Response<DirectBody>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let active = this
            .active
            .as_mut()
            .expect("Exchange polled after it was done");
        let polled = active.poll_head(&this.pool, cx);
        let head = match ready!(polled) {
            Ok(head) => head,
            Err(error) => {
                this.active = None;
                return Poll::Ready(Err(error));
            }
        };
        let active = this.active.take().expect("polled above");
        let Active {
            conn,
            body,
            mut out,
            ..
        } = *active;
        let mut conn = conn.expect("a head was read from it");
        if out.capacity() <= KEPT_WRITE_BUFFER {
            out.clear();
            conn.write = out;
        }
        // A response before the request's body had all gone: the connection is not used
        // again, since the upstream may still be reading what was sent.
        let keep = head.keep_alive && body.is_none();
        let (parts, ()) = head.response.into_parts();
        let body = DirectBody::new(this.pool.clone(), conn, head.framing, keep);
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}

impl Active {
    /// Writes the request and reads until its response head.
    fn poll_head(
        &mut self,
        pool: &Arc<InstancePool>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<response::Head, BoxError>> {
        loop {
            if self.conn.is_none() {
                let connecting = self
                    .connecting
                    .as_mut()
                    .expect("a connection is being made");
                let connected = ready!(Pin::new(connecting).poll(cx));
                self.connecting = None;
                match connected {
                    Ok(Ok(conn)) => self.conn = Some(conn),
                    Ok(Err(error)) => return Poll::Ready(Err(error)),
                    Err(_) => {
                        return Poll::Ready(Err(NotSent::new(
                            "the connection attempt ended without an outcome",
                        )
                        .into()))
                    }
                }
            }
            match self.poll_write(cx) {
                Poll::Ready(Err(error)) if !self.wrote_any && self.reused => {
                    // A kept-alive connection closed before the request went out: it was never
                    // sent, and goes out on a new connection.
                    tracing::debug!(%error, "kept-alive upstream connection closed; reconnecting");
                    self.conn = None;
                    self.reused = false;
                    self.connecting = Some(pool.connect_direct());
                    continue;
                }
                // Nothing of it was written: the request was never sent.
                Poll::Ready(Err(error)) if !self.wrote_any => {
                    return Poll::Ready(Err(NotSent::new(error).into()))
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(sent_or_refused(error))),
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
            return self.poll_read_head(cx).map_err(sent_or_refused);
        }
    }

    /// Writes what there is to write: the head, and the body's frames as they come.
    /// `Ready(Ok)` once all is written, `Pending` while waiting for the socket or the body.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ExchangeError>> {
        let conn = self.conn.as_mut().expect("connected");
        loop {
            while self.written < self.out.len() {
                let wrote = Pin::new(&mut conn.io).poll_write(cx, &self.out[self.written..]);
                match ready!(wrote) {
                    Ok(0) => {
                        return Poll::Ready(Err(ExchangeError::Io(io::ErrorKind::WriteZero.into())))
                    }
                    Ok(n) => {
                        self.written += n;
                        self.wrote_any = true;
                        self.unflushed = true;
                    }
                    Err(error) => return Poll::Ready(Err(ExchangeError::Io(error))),
                }
            }
            self.out.clear();
            self.written = 0;
            if self.unflushed {
                ready!(Pin::new(&mut conn.io).poll_flush(cx)).map_err(ExchangeError::Io)?;
                self.unflushed = false;
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            // Gather the frames that are ready, up to a write's worth.
            while self.out.len() < WRITE_CHUNK {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            request::encode_data(
                                self.framing,
                                &mut self.sent,
                                &data,
                                &mut self.out,
                            )?;
                        }
                        // Kept only when the head announced trailers: others are dropped.
                        Err(frame) if self.announced.is_some() => {
                            if let Ok(trailers) = frame.into_trailers() {
                                match &mut self.trailers {
                                    Some(kept) => kept.extend(trailers),
                                    None => self.trailers = Some(trailers),
                                }
                            }
                        }
                        Err(_) => {}
                    },
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(ExchangeError::Body(error)))
                    }
                    Poll::Ready(None) => {
                        let trailers = self.trailers.as_ref().zip(self.announced.as_deref());
                        request::encode_end(self.framing, self.sent, trailers, &mut self.out)?;
                        self.body = None;
                        break;
                    }
                    Poll::Pending if self.out.is_empty() => return Poll::Pending,
                    Poll::Pending => break,
                }
            }
        }
    }

    /// Reads until the response head is complete.
    fn poll_read_head(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<response::Head, ExchangeError>> {
        let conn = self.conn.as_mut().expect("connected");
        loop {
            // A head that did not come whole is parsed again only once its blank line has
            // come: an upstream that sends its head a byte at a time would otherwise have it
            // parsed from the start on every read (quadratic in its length). Only the new
            // bytes are searched; a head that comes whole in its first read is parsed at once.
            let complete = match self.searched {
                None => !conn.read.is_empty(),
                Some(searched) => {
                    let from = searched.saturating_sub(2).min(conn.read.len());
                    response::has_end(&conn.read[from..])
                }
            };
            if complete {
                let before = conn.read.len();
                match response::parse(&mut conn.read, &self.method, &mut conn.kept) {
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    // An informational response was taken off: what follows is parsed anew.
                    Ok(None) if conn.read.len() < before => {
                        self.searched = None;
                        continue;
                    }
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(Err(ExchangeError::Head(error))),
                }
            }
            if !conn.read.is_empty() {
                self.searched = Some(conn.read.len());
            }
            if conn.read.len() >= response::MAX_HEAD {
                return Poll::Ready(Err(ExchangeError::Head(HeadError::TooLarge)));
            }
            match ready!(conn.poll_read_more(cx)) {
                Ok(0) => return Poll::Ready(Err(ExchangeError::Closed)),
                Ok(_) => {}
                Err(error) => return Poll::Ready(Err(ExchangeError::Io(error))),
            }
        }
    }

    /// Whether the whole request went out: then its response can be awaited without it.
    fn all_sent(&self) -> bool {
        self.conn.is_some() && self.body.is_none() && self.out.is_empty() && !self.unflushed
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        if self.orphan {
            return;
        }
        if active.conn.is_none() {
            // A connection made in the moment between its task's send and this drop.
            if let Some(Ok(Ok(conn))) = active.connecting.as_mut().map(|c| c.try_recv()) {
                self.pool.keep_direct(conn);
            }
            return;
        }
        if active.all_sent() {
            self.pool.clone().orphan_direct(Exchange {
                pool: self.pool.clone(),
                active: Some(active),
                orphan: true,
            });
        }
    }
}

/// A failure after the request went out: taken as sent, unless the upstream refused the TLS
/// session before answering (TLS 1.3 tells of a refused client certificate after the
/// handshake, at the first read), when the request never reached its application; as
/// [`crate::pool::sent_or_refused`] judges hyper's errors.
fn sent_or_refused(error: ExchangeError) -> BoxError {
    if crate::tls::connect::TlsError::is_beneath(&error) {
        return NotSent::new(error).into();
    }
    error.into()
}

/// Finishes an orphaned exchange: reads its response to the end and discards it, so that its
/// connection goes back to the pool (the caller bounds the time).
pub(crate) async fn finish_orphan(exchange: Exchange) {
    let Ok(response) = exchange.await else {
        return;
    };
    let mut body = response.into_body();
    while let Some(Ok(_)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {}
}

/// How much of a response body is left.
#[derive(Debug)]
enum Left {
    /// This many bytes.
    Length(u64),
    Chunked(Chunked),
    /// Up to the connection's end.
    Close,
    /// None: the body has ended.
    Done,
}

impl Left {
    /// What is left of a body framed as `framing`, before any of it is read.
    fn of(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Left::Done,
            Framing::Length(length) => Left::Length(length),
            Framing::Chunked => Left::Chunked(Chunked::new()),
            Framing::Close => Left::Close,
        }
    }

    /// The next piece of the body from what was read into `read`, and whether the body ended
    /// with it (then `self` is [`Left::Done`]). The one body decoder of the direct client:
    /// [`DirectBody`] and the fuzz target's [`decode_response`] both read through it.
    fn next(&mut self, read: &mut BytesMut) -> Result<(Next, bool), ExchangeError> {
        let (next, ended) = match self {
            Left::Done => (Next::End, true),
            Left::Length(_) | Left::Close if read.is_empty() => (Next::More, false),
            Left::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(read.len());
                *left -= take as u64;
                let data = read.split_to(take).freeze();
                (Next::Frame(Frame::data(data)), *left == 0)
            }
            Left::Close => (Next::Frame(Frame::data(read.split().freeze())), false),
            Left::Chunked(chunked) => match chunked.decode(read)? {
                Decoded::Data(data) => (Next::Frame(Frame::data(data)), false),
                Decoded::Trailers(trailers) => (Next::Frame(Frame::trailers(trailers)), true),
                Decoded::End => (Next::End, true),
                Decoded::More => (Next::More, false),
            },
        };
        if ended {
            *self = Left::Done;
        }
        Ok((next, ended))
    }
}

/// A response body read from its connection as it is polled; the connection goes back to the
/// pool at its end (see the module docs).
pub(crate) struct DirectBody {
    pool: Arc<InstancePool>,
    /// `None` once the body has ended or failed.
    conn: Option<Box<Conn>>,
    left: Left,
    /// Whether the connection may carry another request after this body.
    keep: bool,
    /// A failure found, reported at the next poll: see [`DirectBody::fail`].
    failed: Option<ExchangeError>,
}

impl DirectBody {
    fn new(pool: Arc<InstancePool>, conn: Box<Conn>, framing: Framing, keep: bool) -> Self {
        let left = Left::of(framing);
        let mut body = DirectBody {
            pool,
            conn: Some(conn),
            left,
            keep,
            failed: None,
        };
        if matches!(body.left, Left::Done) {
            body.finish();
        }
        body
    }

    /// The body has ended: the connection goes back to the pool if it can carry another
    /// request (nothing more was sent on it).
    fn finish(&mut self) {
        self.left = Left::Done;
        if let Some(conn) = self.conn.take() {
            if self.keep && conn.read.is_empty() {
                self.pool.keep_direct(conn);
            }
        }
    }

    /// The body broke: the connection is dropped, and the failure is reported at the next
    /// poll, after one `Pending` (the task woken at once). Why: the server writes the head and
    /// the frames before the failure only when a poll of the body leaves it time to, and a
    /// failure found in the same poll as the data (a body cut short, read with its head) had it
    /// drop the response unsent: the client got an empty reply, where hyper's client, which
    /// reports such a failure on a later read, let the head and the data through (a review).
    fn fail(
        &mut self,
        error: ExchangeError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        self.conn = None;
        self.failed = Some(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The next piece of the body from what was read.
    fn next(&mut self) -> Result<Next, ExchangeError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Next::End);
        };
        let (next, ended) = self.left.next(&mut conn.read)?;
        if ended {
            self.finish();
        }
        Ok(next)
    }
}

/// What [`DirectBody::next`] found.
enum Next {
    Frame(Frame<Bytes>),
    End,
    /// More must be read.
    More,
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        loop {
            match self.next() {
                Ok(Next::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(Next::End) => return Poll::Ready(None),
                Ok(Next::More) => {}
                Err(error) => return self.fail(error, cx),
            }
            let conn = self.conn.as_mut().expect("more is read from a connection");
            match ready!(conn.poll_read_more(cx)) {
                Ok(0) if matches!(self.left, Left::Close) => {
                    self.keep = false;
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return self.fail(ExchangeError::IncompleteBody, cx),
                Ok(_) => {}
                Err(error) => return self.fail(ExchangeError::Io(error), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Left::Done => SizeHint::with_exact(0),
            Left::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for DirectBody {
    fn drop(&mut self) {
        // The rest may already be in the buffer (a short error body): then the connection is
        // kept, with no read.
        while self.conn.is_some() {
            match self.next() {
                Ok(Next::Frame(_)) => {}
                Ok(Next::End | Next::More) | Err(_) => self.conn = None,
            }
        }
    }
}

/// Parses the response head at the front of `input` (the answer to a `HEAD` if
/// `head_request`) on a connection that parsed `before` first (its heads one after another,
/// as far as they parse), so that the field names kept from those heads are used: for the
/// fuzz target that checks that a name kept gives what a fresh parse gives. The head as text
/// (status, fields, framing, keep-alive); `None`: not complete; `Err`: refused, with why.
#[doc(hidden)]
pub fn decode_head_after(
    before: &[u8],
    input: &[u8],
    head_request: bool,
) -> Result<Option<String>, String> {
    let method = if head_request {
        Method::HEAD
    } else {
        Method::GET
    };
    let mut kept = response::Kept::default();
    let mut earlier = BytesMut::from(before);
    while let Ok(Some(_)) = response::parse(&mut earlier, &method, &mut kept) {}
    let head = response::parse(&mut BytesMut::from(input), &method, &mut kept)
        .map_err(|e| e.to_string())?;
    Ok(head.map(|head| {
        format!(
            "{} {:?} {:?} {}",
            head.response.status(),
            head.response.headers(),
            head.framing,
            head.keep_alive
        )
    }))
}

/// What [`decode_response`] read: for the fuzz target that checks the direct client's parsing.
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedResponse {
    /// The final response's status.
    pub status: u16,
    /// Its body's bytes, as far as they came.
    pub body: Vec<u8>,
    /// Whether the body ended by its framing (or, framed by the connection's end, at the input's).
    pub ended: bool,
    /// Whether the connection could carry another request.
    pub keep_alive: bool,
}

/// Reads `input` as an upstream's answer to a request (a `HEAD` if `head_request`), given to
/// the parser in pieces of `piece` bytes as a socket might: the direct client's head parser and
/// body decoders, without a socket. `Err`: the answer was refused, with why.
#[doc(hidden)]
pub fn decode_response(
    input: &[u8],
    piece: usize,
    head_request: bool,
) -> Result<DecodedResponse, String> {
    let method = if head_request {
        Method::HEAD
    } else {
        Method::GET
    };
    let mut pieces = input.chunks(piece.max(1));
    let mut buf = BytesMut::new();
    let head = loop {
        if let Some(head) = response::parse(&mut buf, &method, &mut response::Kept::default())
            .map_err(|e| e.to_string())?
        {
            break head;
        }
        match pieces.next() {
            Some(next) => buf.extend_from_slice(next),
            None => return Err("no complete head".into()),
        }
    };
    let mut decoded = DecodedResponse {
        status: head.response.status().as_u16(),
        body: Vec::new(),
        ended: false,
        keep_alive: head.keep_alive,
    };
    let mut left = Left::of(head.framing);
    loop {
        let (next, ended) = left.next(&mut buf).map_err(|e| e.to_string())?;
        match next {
            Next::Frame(frame) => {
                if let Ok(data) = frame.into_data() {
                    decoded.body.extend_from_slice(&data);
                }
            }
            Next::End => {}
            Next::More => match pieces.next() {
                Some(next) => buf.extend_from_slice(next),
                None => {
                    // A body delimited by the connection's end ends with the input.
                    decoded.ended = matches!(left, Left::Close);
                    return Ok(decoded);
                }
            },
        }
        if ended {
            decoded.ended = true;
            return Ok(decoded);
        }
    }
}
