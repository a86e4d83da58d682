//! TLS on 127.0.0.1 with a test CA made here (rcgen; no key is checked in): an HTTPS upstream
//! is proxied over HTTP/1.1 and HTTP/2 (ALPN), a certificate from another CA is refused,
//! counted and retried on another instance, mutual TLS works with `cert_file`/`key_file` and
//! fails without, and the listener serves TLS with a certificate that is reloaded when its
//! files change (a bad one is kept out).

mod support;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use stormguard_proxy::config;
use stormguard_proxy::reload::{ReloadMetrics, Reloader};
use support::{client, get, send, start};
use tokio::net::{TcpListener, TcpStream};

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, in PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `name`.
    fn server(&self, name: &str) -> Leaf {
        self.leaf(name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (mutual TLS).
    fn client(&self, name: &str) -> Leaf {
        self.leaf(name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[allow(deprecated)] // ring, as the proxy: see src/tls/mod.rs
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A folder for one test's settings and PEM files.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stormguard-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `dir/name` whole: to a temporary file, then renamed over it, as a
/// certificate manager (or Kubernetes' secret volume) replaces a file.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

/// An HTTPS instance: what it answered, and its address.
struct TlsInstance {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
}

/// Serves HTTPS with `leaf`, offering `alpn`; with `client_ca`, only to clients whose
/// certificate it signed. Answers 200 with the HTTP version the request came in.
async fn https_upstream(leaf: &Leaf, alpn: &[&[u8]], client_ca: Option<&Ca>) -> TlsInstance {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain(&leaf.cert), key(&leaf.key))
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, hits) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let version = format!("{:?}", req.version());
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(version)))) }
                });
                let io = TokioIo::new(stream);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    TlsInstance { addr, hits }
}

/// Settings with the route `api` (two attempts) to the upstream `api`, whose keys are
/// `upstream` (instances included), and `listen` keys under `[listen]`.
fn settings(upstream: &str, listen: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n{listen}\n\
         [upstreams.api]\n{upstream}\n\
         [[routes]]\nname = \"api\"\nupstream = \"api\"\ntimeout = \"2s\"\n\
         request_timeout = \"4s\"\nmax_attempts = 2\n"
    )
}

/// The settings file `text`, written in `dir`, loaded as the proxy loads it.
fn load(dir: &Path, text: &str) -> config::Config {
    let path = write(dir, "stormguard.toml", text);
    config::load(&path).unwrap()
}

fn instances(addrs: &[std::net::SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("instances = [{}]", list.join(", "))
}

fn counted(metrics: &str, reason: &str) -> u64 {
    let line =
        format!("stormguard_proxy_connect_failures_total{{upstream=\"api\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn an_https_upstream_with_a_test_ca_is_proxied_over_http1_and_http2() {
    let ca = Ca::new("stormguard test CA");
    let instance = https_upstream(&ca.server("api.test"), &[b"h2", b"http/1.1"], None).await;
    let dir = folder("proxied");
    write(&dir, "ca.pem", &ca.pem());
    for (protocol, version) in [("http1", "HTTP/1.1"), ("http2", "HTTP/2.0")] {
        let upstream = format!(
            "{}\ntls = true\nserver_name = \"api.test\"\nca_file = \"ca.pem\"\n\
             protocol = \"{protocol}\"",
            instances(&[instance.addr])
        );
        let config = load(&dir, &settings(&upstream, ""));
        let proxy = start(config).await;
        let reply = get(&client(), &proxy.url("/")).await;
        assert_eq!(reply.status, 200, "{protocol}: {reply:?}");
        assert_eq!(
            reply.body, version,
            "{protocol}: the upstream saw {:?}",
            reply.body
        );
        assert_eq!(reply.header("stormguard-attempts"), Some("1"));
        proxy.shutdown().await.unwrap();
    }
    assert_eq!(instance.hits.load(Ordering::SeqCst), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_counted_and_retried_elsewhere() {
    let ca = Ca::new("stormguard test CA");
    let stranger = Ca::new("some other CA");
    let wrong = https_upstream(&stranger.server("api.test"), &[b"http/1.1"], None).await;
    let right = https_upstream(&ca.server("api.test"), &[b"http/1.1"], None).await;
    let dir = folder("wrong-ca");
    write(&dir, "ca.pem", &ca.pem());
    let tls = "tls = true\nserver_name = \"api.test\"\nca_file = \"ca.pem\"";
    let both = format!("{}\n{tls}", instances(&[wrong.addr, right.addr]));
    let proxy = start(load(&dir, &settings(&both, ""))).await;
    let client = client();
    // A POST too: a refused handshake sent nothing, so any method goes to another instance.
    // The balancer's first pick is random (seeded from the process), so six requests missed
    // the wrong instance one run in 64: requests go on, a POST at least, until one met it
    // (bounded: 64 in a row miss it once in 2^64).
    let mut sent = 0;
    for i in 0..64 {
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let req = Request::builder()
            .method(method)
            .uri(proxy.url("/"))
            .body(Full::default())
            .unwrap();
        let reply = send(&client, req).await.unwrap();
        assert_eq!(reply.status, 200, "{method}: {reply:?}");
        sent += 1;
        if i >= 5 && counted(&proxy.metrics(), "tls") >= 1 {
            break;
        }
    }
    let metrics = proxy.metrics();
    assert!(counted(&metrics, "tls") >= 1, "{metrics}");
    assert_eq!(counted(&metrics, "refused"), 0, "{metrics}");
    assert_eq!(
        wrong.hits.load(Ordering::SeqCst),
        0,
        "never sent in plain text or unverified"
    );
    assert_eq!(right.hits.load(Ordering::SeqCst), sent);
    proxy.shutdown().await.unwrap();

    // With no other instance, a clear 502 that names TLS.
    let alone = format!("{}\n{tls}", instances(&[wrong.addr]));
    let proxy = start(load(&dir, &settings(&alone, ""))).await;
    let reply = get(&client, &proxy.url("/")).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(reply.header("stormguard-reason"), Some("tls"), "{reply:?}");
    assert!(counted(&proxy.metrics(), "tls") >= 1);
    assert_eq!(wrong.hits.load(Ordering::SeqCst), 0);
    proxy.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let ca = Ca::new("stormguard test CA");
    let instance = https_upstream(&ca.server("other.test"), &[b"http/1.1"], None).await;
    let dir = folder("wrong-name");
    write(&dir, "ca.pem", &ca.pem());
    let upstream = format!(
        "{}\ntls = true\nserver_name = \"api.test\"\nca_file = \"ca.pem\"",
        instances(&[instance.addr])
    );
    let proxy = start(load(&dir, &settings(&upstream, ""))).await;
    let reply = get(&client(), &proxy.url("/")).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(reply.header("stormguard-reason"), Some("tls"));
    assert_eq!(instance.hits.load(Ordering::SeqCst), 0);
    proxy.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn mutual_tls_works_with_a_client_certificate_and_fails_without() {
    let ca = Ca::new("stormguard test CA");
    let instance = https_upstream(&ca.server("api.test"), &[b"http/1.1"], Some(&ca)).await;
    let dir = folder("mtls");
    write(&dir, "ca.pem", &ca.pem());
    let proxy_cert = ca.client("stormguard-proxy");
    write(&dir, "client.crt", &proxy_cert.cert);
    write(&dir, "client.key", &proxy_cert.key);
    let tls = format!(
        "{}\ntls = true\nserver_name = \"api.test\"\nca_file = \"ca.pem\"",
        instances(&[instance.addr])
    );
    let with = format!("{tls}\ncert_file = \"client.crt\"\nkey_file = \"client.key\"");
    let proxy = start(load(&dir, &settings(&with, ""))).await;
    let reply = get(&client(), &proxy.url("/")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(instance.hits.load(Ordering::SeqCst), 1);
    proxy.shutdown().await.unwrap();

    let proxy = start(load(&dir, &settings(&tls, ""))).await;
    let reply = get(&client(), &proxy.url("/")).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    // TLS 1.3 tells the client of a refused certificate after its handshake: still `tls`,
    // and the request never reached the upstream's application.
    assert_eq!(reply.header("stormguard-reason"), Some("tls"), "{reply:?}");
    assert!(counted(&proxy.metrics(), "tls") >= 1);
    assert_eq!(instance.hits.load(Ordering::SeqCst), 1);
    proxy.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A TLS client of the proxy trusting `ca`: the certificate the proxy showed, and the
/// answer to `GET /` over HTTP/1.1.
async fn https_get(addr: std::net::SocketAddr, ca: &Ca) -> (CertificateDer<'static>, u16) {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("proxy.test").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let shown = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let req = Request::get("/")
        .header("host", "proxy.test")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    (shown, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_serves_tls_and_reloads_its_certificate_when_the_files_change() {
    let ca = Ca::new("stormguard test CA");
    let upstream = support::ok_upstream().await;
    let dir = folder("listener");
    let first = ca.server("proxy.test");
    write(&dir, "proxy.crt", &first.cert);
    write(&dir, "proxy.key", &first.key);
    let text = settings(
        &instances(&[upstream.addr]),
        "tls = { cert_file = \"proxy.crt\", key_file = \"proxy.key\" }",
    );
    let settings_path = write(&dir, "stormguard.toml", &text);
    let config = config::load(&settings_path).unwrap();
    let proxy = start(config.clone()).await;
    let (shown, status) = https_get(proxy.addr, &ca).await;
    assert_eq!(status, 200);
    assert_eq!(shown, chain(&first.cert)[0]);

    // A plain-text client is not served in plain text.
    let plain = support::raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nhost: proxy.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(!plain.contains("200"), "{plain}");

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ReloadMetrics::register(&mut registry);
    let reloader = Reloader::new(
        settings_path.clone(),
        Arc::new(proxy.proxy.clone()),
        metrics,
        config,
    );
    // Two looks take the files' fingerprint; nothing changed.
    for _ in 0..2 {
        assert_eq!(reloader.reload_if_changed().await.unwrap(), None);
    }
    // A renewed certificate, the settings file untouched: applied at the second look.
    let renewed = ca.server("proxy.test");
    write(&dir, "proxy.crt", &renewed.cert);
    write(&dir, "proxy.key", &renewed.key);
    assert_eq!(
        reloader.reload_if_changed().await.unwrap(),
        None,
        "seen once"
    );
    assert_eq!(reloader.reload_if_changed().await.unwrap(), Some(2));
    let (shown, status) = https_get(proxy.addr, &ca).await;
    assert_eq!(status, 200);
    assert_eq!(
        shown,
        chain(&renewed.cert)[0],
        "new connections get the renewed certificate"
    );

    // A key that is not the certificate's is refused, counted, and the running one kept.
    let stranger = ca.server("proxy.test");
    write(&dir, "proxy.key", &stranger.key);
    assert_eq!(
        reloader.reload_if_changed().await.unwrap(),
        None,
        "seen once"
    );
    let error = reloader.reload_if_changed().await.unwrap_err();
    let message = error.to_string();
    let at = format!("{}:", settings_path.display());
    assert!(message.starts_with(&at), "{message}");
    assert!(message.contains("`listen.tls.key_file`"), "{message}");
    assert!(message.contains("does not go with cert_file"), "{message}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("stormguard_config_reloads_total{result=\"failed\"} 1"),
        "{text}"
    );
    assert_eq!(proxy.proxy.generation(), 2);
    let (shown, status) = https_get(proxy.addr, &ca).await;
    assert_eq!(status, 200);
    assert_eq!(
        shown,
        chain(&renewed.cert)[0],
        "the running certificate stays"
    );
    proxy.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn connect_timeout_bounds_the_tcp_connect_and_the_handshake_together() {
    // An instance that accepts the connection and never answers the ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let dir = folder("handshake-timeout");
    let upstream = format!(
        "{}\ntls = true\nserver_name = \"api.test\"",
        instances(&[addr])
    );
    let text = settings(&upstream, "").replace(
        "timeout = \"2s\"\n",
        "timeout = \"2s\"\nconnect_timeout = \"200ms\"\n",
    );
    let proxy = start(load(&dir, &text)).await;
    let started = tokio::time::Instant::now();
    let reply = get(&client(), &proxy.url("/")).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(reply.header("stormguard-reason"), Some("connect-timeout"));
    // Two attempts of 200 ms and a backoff of at most 250 ms, far below the 2 s timeout.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(counted(&proxy.metrics(), "timeout") >= 1);
    proxy.shutdown().await.unwrap();
    holding.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn http2_over_tls_needs_the_upstream_to_agree_by_alpn() {
    let ca = Ca::new("stormguard test CA");
    let instance = https_upstream(&ca.server("api.test"), &[b"http/1.1"], None).await;
    let dir = folder("no-h2");
    write(&dir, "ca.pem", &ca.pem());
    let upstream = format!(
        "{}\ntls = true\nserver_name = \"api.test\"\nca_file = \"ca.pem\"\nprotocol = \"http2\"",
        instances(&[instance.addr])
    );
    let proxy = start(load(&dir, &settings(&upstream, ""))).await;
    let reply = get(&client(), &proxy.url("/")).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(
        reply.header("stormguard-reason"),
        Some("tls"),
        "never downgraded"
    );
    assert_eq!(instance.hits.load(Ordering::SeqCst), 0);
    proxy.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
