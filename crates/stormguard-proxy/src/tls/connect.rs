//! [`Connector`]: a connection to one instance, in plain text or TLS, within the connect
//! timeout.
//!
//! ## One timeout for TCP and TLS
//! `connect_timeout` (or the attempt's `timeout`) bounds the TCP connect and the TLS handshake
//! together: a handshake is a round trip or two more, and an instance that accepts and then
//! stalls in the handshake is as dead to a request as one that does not accept. Either way
//! the attempt fails as not sent, with a timeout ([`stormguard::classify::AttemptResult::ConnectTimeout`]).
//!
//! ## A failed handshake
//! is a [`TlsError`] under the pool's `NotSent`: the request never reached the application, so
//! the retry layer sends it to another instance whatever its method, and the balancer counts
//! it against the instance as a refused connection would be. The proxy counts it apart
//! (`stormguard_proxy_connect_failures_total{reason="tls"}`) and answers a request that found
//! no instance to talk to `502 tls`.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use stormguard::layer::BoxError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tower_service::Service;

use super::{Alpn, ALPN_H2};
use crate::metrics::ConnectFailures;

/// Connects to one instance: TCP with hyper-util's connector (its timeout, `TCP_NODELAY`,
/// keep-alive probes), then TLS when the upstream asks for it.
#[derive(Clone)]
pub(crate) struct Connector {
    tcp: HttpConnector,
    tls: Option<Tls>,
    /// The bound on TCP and TLS together, when there is one.
    timeout: Option<Duration>,
    /// Where connections that could not be made are counted, by why.
    failures: Arc<ConnectFailures>,
}

/// What a TLS connection to one instance takes.
#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    alpn: Alpn,
}

impl Connector {
    /// A plain-text connector over `tcp`, which holds its own connect timeout.
    pub(crate) fn plain(tcp: HttpConnector) -> Self {
        Connector {
            tcp,
            tls: None,
            timeout: None,
            failures: Arc::default(),
        }
    }

    /// The same connector, counting its failures in `failures`.
    pub(crate) fn counting(mut self, failures: Arc<ConnectFailures>) -> Self {
        self.failures = failures;
        self
    }

    /// A TLS connector over `tcp`: `config` verifies the instance as `server_name` and asks for
    /// `alpn`; `timeout` bounds the TCP connect and the handshake together.
    pub(crate) fn tls(
        tcp: HttpConnector,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
        alpn: Alpn,
        timeout: Option<Duration>,
    ) -> Self {
        Connector {
            tcp,
            tls: Some(Tls {
                connector: TlsConnector::from(config),
                server_name,
                alpn,
            }),
            timeout,
            failures: Arc::default(),
        }
    }

    /// A connection to `target` (`http://host:port/`), ready for HTTP; a failure is counted.
    pub(crate) async fn connect(&self, target: &Uri) -> Result<TokioIo<UpstreamIo>, BoxError> {
        let connected = self.connect_uncounted(target).await;
        if let Err(error) = &connected {
            let failures = &self.failures;
            let counter = if TlsError::is_beneath(&**error) {
                &failures.tls
            } else {
                match io_kind(&**error) {
                    Some(io::ErrorKind::TimedOut) => &failures.timeout,
                    Some(io::ErrorKind::ConnectionRefused) => &failures.refused,
                    _ => &failures.other,
                }
            };
            counter.inc();
            tracing::debug!(%error, "connecting to an upstream instance failed");
        }
        connected
    }

    async fn connect_uncounted(&self, target: &Uri) -> Result<TokioIo<UpstreamIo>, BoxError> {
        let tcp = self.tcp.clone().call(target.clone());
        let Some(tls) = &self.tls else {
            return Ok(TokioIo::new(UpstreamIo::Plain(tcp.await?.into_inner())));
        };
        let connected = async {
            let tcp = tcp.await?.into_inner();
            let stream = tls
                .connector
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|source| TlsError::new(&tls.server_name, source))?;
            let agreed = stream.get_ref().1.alpn_protocol();
            if tls.alpn == Alpn::H2 && agreed != Some(ALPN_H2) {
                // HTTP/2 over TLS is negotiated by ALPN (RFC 9113 section 3.2): an upstream
                // that did not agree would read the preface as a broken HTTP/1.1 request.
                let refused = io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the upstream did not agree to HTTP/2 by ALPN: set protocol = \"http1\" \
                     for an upstream that serves HTTP/1.1 only (gRPC needs HTTP/2)",
                );
                return Err(TlsError::new(&tls.server_name, refused).into());
            }
            Ok::<_, BoxError>(TokioIo::new(UpstreamIo::Tls(Box::new(TlsIo {
                stream,
                server_name: tls.server_name.to_str().into_owned(),
                failures: self.failures.clone(),
                answered: false,
            }))))
        };
        match self.timeout {
            None => connected.await,
            Some(timeout) => {
                tokio::time::timeout(timeout, connected)
                    .await
                    .map_err(|_| -> BoxError {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no TLS connection within the connect timeout ({}), TCP connect \
                             and handshake together",
                                stormguard::duration::format(timeout)
                            ),
                        )
                        .into()
                    })?
            }
        }
    }
}

/// The kind of the first I/O error beneath `error`.
fn io_kind(error: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

/// A TLS handshake with an instance that failed: a certificate that does not verify, a name
/// it does not carry, a client certificate the instance refused, or no protocol in common.
#[derive(Debug)]
pub(crate) struct TlsError {
    server_name: String,
    source: io::Error,
}

impl TlsError {
    fn new(server_name: &ServerName<'_>, source: io::Error) -> Self {
        TlsError {
            server_name: server_name.to_str().into_owned(),
            source,
        }
    }

    /// Whether a TLS handshake failed somewhere beneath `error`. An `io::Error`'s own error
    /// is looked into too: its `source` skips it.
    pub(crate) fn is_beneath(error: &(dyn StdError + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<TlsError>() {
                return true;
            }
            let inner = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
            if inner.is_some_and(|inner| Self::is_beneath(inner)) {
                return true;
            }
            next = e.source();
        }
        false
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS handshake with {} failed: {}",
            self.server_name, self.source
        )
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// A connection to an instance, plain or TLS: one type for the pools, whichever it is.
pub(crate) enum UpstreamIo {
    /// Plain text.
    Plain(TcpStream),
    /// TLS; boxed, as the session's state is some kilobytes.
    Tls(Box<TlsIo>),
}

/// A TLS connection to an instance, which tells a handshake refused late from a broken
/// exchange.
///
/// In TLS 1.3 the client's side of the handshake ends before the server has checked the
/// client's certificate: a server that refuses it (none given, or one it does not trust)
/// says so with an alert that the client reads only after it has written its request. The
/// server never handed that request to its application, so the alert, read before any byte of
/// the answer, is turned into a [`TlsError`] (counted as a TLS connect failure), which the
/// pools take as not sent: retried on another instance like a failed handshake.
pub(crate) struct TlsIo {
    stream: TlsStream<TcpStream>,
    server_name: String,
    failures: Arc<ConnectFailures>,
    /// A byte of the answer was read: an error from now on is the exchange's.
    answered: bool,
}

/// Whether `error` is an alert that only a handshake sends: the server refused the client's
/// certificate, or could not agree on the session.
fn is_handshake_alert(error: &io::Error) -> bool {
    use rustls::AlertDescription as A;
    let alert = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(
        alert,
        Some(rustls::Error::AlertReceived(
            A::CertificateRequired
                | A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::HandshakeFailure
                | A::DecryptError
        ))
    )
}

impl TlsIo {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.answered |= buf.filled().len() > before;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) if !self.answered && is_handshake_alert(&error) => {
                self.failures.tls.inc();
                let kind = error.kind();
                let refused = TlsError {
                    server_name: self.server_name.clone(),
                    source: error,
                };
                tracing::debug!(error = %refused, "the upstream refused the TLS session");
                Poll::Ready(Err(io::Error::new(kind, refused)))
            }
            other => other,
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_read(cx, buf),
            UpstreamIo::Tls(io) => io.poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_write(cx, buf),
            UpstreamIo::Tls(io) => Pin::new(&mut io.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(io) => Pin::new(&mut io.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(io) => io.is_write_vectored(),
            UpstreamIo::Tls(io) => io.stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_flush(cx),
            UpstreamIo::Tls(io) => Pin::new(&mut io.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            UpstreamIo::Tls(io) => Pin::new(&mut io.stream).poll_shutdown(cx),
        }
    }
}
