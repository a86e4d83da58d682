//! The listener's side: a client connection's TLS handshake, bounded in time.
//!
//! The certificate comes with the listener settings of the generation running when the
//! connection was accepted, so a certificate renewed on disk (and reloaded) is served to
//! every connection accepted after the reload; connections already open keep the session
//! they made.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The TLS side of a listener: its certificate and how long a client's handshake may take.
#[derive(Clone)]
pub(crate) struct Acceptor {
    acceptor: TlsAcceptor,
    /// The client's handshake must end within this: `header_read_timeout`, since the
    /// handshake is the first thing a client sends, and as much a slowloris target as a head.
    timeout: Duration,
}

impl Acceptor {
    /// An acceptor serving `config`, each handshake within `timeout`.
    pub(crate) fn new(config: Arc<rustls::ServerConfig>, timeout: Duration) -> Self {
        Acceptor {
            acceptor: TlsAcceptor::from(config),
            timeout,
        }
    }

    /// The client's TLS session over `stream`, or why there is none.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        tokio::time::timeout(self.timeout, self.acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake too slow"))?
    }
}
