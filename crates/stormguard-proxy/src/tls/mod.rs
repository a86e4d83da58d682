//! TLS with rustls: to upstreams ([`connect`]) and from clients ([`accept`]).
//!
//! ## Why rustls, with ring
//! No OpenSSL: a sidecar built from the workspace must not depend on the system's libssl (a
//! static or distroless image has none), and rustls is memory safe. Its `ring` provider rather
//! than `aws-lc-rs`, rustls's default, whose C build needs cmake. The provider is named in each
//! configuration ([`provider`]), never installed process-wide, so that nothing else linked into
//! the binary can change it.
//!
//! ## What is verified
//! An upstream's certificate must chain to the system's roots, or to `ca_file` when given,
//! and name the upstream's host (`server_name` when given, else the instance's host name).
//! Nothing turns verification off: a certificate that does not verify fails the connection
//! like a refused one ([`connect::TlsError`]), so the attempt is retried on another instance
//! and counted with reason `tls`, and the request never goes out in plain text or to a peer
//! that is not who it says.
//!
//! ## Where the files are read
//! Every PEM file is read and checked with the settings ([`crate::config`]), so that a missing
//! or malformed file is refused at `file:line:column` of its key, and a reload with a bad file
//! keeps the running settings. The configurations below are built from the bytes read then.

pub(crate) mod accept;
pub(crate) mod connect;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{CertAndKey, UpstreamTls};

/// ALPN's name of HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN's name of HTTP/1.1.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The cryptography every configuration uses: ring's, with rustls's safe defaults.
///
/// rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange, which only
/// aws-lc-rs offers; its C build is what this crate avoids (module docs). Classical X25519
/// and P-256 are what every HTTPS server offers; revisit when ring gains ML-KEM.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The certificates of a PEM file, in order; an error says what the file lacks.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not valid PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("holds no certificate (a PEM block `-----BEGIN CERTIFICATE-----`)".into());
    }
    Ok(certificates)
}

/// The private key of a PEM file: its first PKCS#8, PKCS#1 or SEC1 key.
pub(crate) fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => "holds no private key (a PEM block \
             `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"
            .to_string(),
        other => format!("is not valid PEM: {other}"),
    })
}

/// Which protocol a connection asks the upstream for by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Alpn {
    /// `http/1.1`: the HTTP/1.1 pool's connections.
    Http1,
    /// `h2`: the HTTP/2 connection's, which fails unless the upstream agrees.
    H2,
}

/// The client configuration of an upstream's connections speaking `alpn`.
///
/// # Errors
/// A CA file with no usable certificate, or a client certificate and key that rustls refuses
/// (not a key it can use, or not the certificate's), in words to follow "... file ".
pub(crate) fn client_config(tls: &UpstreamTls, alpn: Alpn) -> Result<Arc<ClientConfig>, String> {
    let roots = match &tls.ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(certificates(ca.contents())?);
            if added == 0 {
                return Err("holds no certificate usable as a CA".into());
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = certificates(files.cert_file.contents())?;
            let key = private_key(files.key_file.contents())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("does not go with cert_file: {e}"))?
        }
    };
    config.alpn_protocols = vec![match alpn {
        Alpn::Http1 => ALPN_HTTP1.to_vec(),
        Alpn::H2 => ALPN_H2.to_vec(),
    }];
    Ok(Arc::new(config))
}

/// The server configuration of the listener: the certificate of `files`, HTTP/2 and HTTP/1.1
/// by ALPN (the proxy tells them apart by the connection preface either way).
///
/// # Errors
/// A key rustls refuses or that is not the certificate's, in words to follow "key_file ".
pub(crate) fn server_config(files: &CertAndKey) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates(files.cert_file.contents())?;
    let key = private_key(files.key_file.contents())?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("does not go with cert_file: {e}"))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// The system's root certificates, loaded once (rustls-native-certs: the platform's store,
/// or `SSL_CERT_FILE`/`SSL_CERT_DIR`). A store that cannot be read is logged; an upstream
/// verified against an empty one fails every handshake with reason `tls`, which says where
/// to look.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "reading the system's root certificates");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no system root certificate found: an upstream with TLS and no ca_file \
                     cannot be verified (install ca-certificates, or set ca_file)"
                );
            }
            tracing::debug!(added, ignored, "system root certificates loaded");
            Arc::new(roots)
        })
        .clone()
}
