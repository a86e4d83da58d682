//! A real Prometheus server for the tests of the commands that ask one (`recommend
//! --prometheus`, `import --prometheus`) and of the proxy's dashboard and alerts
//! (`stormguard-proxy/tests/observability.rs` includes this file): Debian's `prometheus`, started on 127.0.0.1 at a free
//! port with a generated config and a temporary storage dir, killed when the test ends; and the
//! pieces around it (pages served over HTTP, bounded polling, instant queries).
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

/// Said past the test harness's capture, so that a skip is seen in `cargo test`'s output.
pub fn say(test: &str, text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{test}: {text}");
}

/// A directory of this test's own, removed at the end.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("stormguard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed when the test ends however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves HTTP/1.1 on 127.0.0.1 with `answer` until the test ends.
pub async fn serve<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            let service = hyper::service::service_fn(move |req| {
                let answer = answer.clone();
                async move { Ok::<_, Infallible>(answer(req).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `url` within 10 s: its status and body, `None` when it fails or takes longer.
pub async fn get(client: &HttpClient, url: &str) -> Option<(u16, String)> {
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(url.parse().unwrap()))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `promql` as a URL's query value: every byte but letters and digits percent-encoded.
pub fn encode(promql: &str) -> String {
    promql
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of an instant query answering one sample (0 when it answers none).
pub async fn query(client: &HttpClient, prometheus: &str, promql: &str) -> f64 {
    let url = format!("{prometheus}/api/v1/query?query={}", encode(promql));
    let Some((_, body)) = get(client, &url).await else {
        return 0.0;
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `ready` every 200 ms for up to `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut ready: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let rounds = limit.as_millis() / 200;
    for _ in 0..rounds {
        if ready().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Finds `prometheus`: on the PATH, or where Debian puts it.
pub fn prometheus_binary() -> Option<PathBuf> {
    binary("prometheus")
}

/// Finds `name` (`prometheus`, `promtool`): on the PATH, or where Debian puts it.
pub fn binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
}

/// A free port on 127.0.0.1 for Prometheus to listen on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `binary` scraping each `(job, host:port)` every second: the child and its URL.
pub fn start_prometheus(
    binary: &Path,
    dir: &Path,
    targets: &[(&str, &str)],
) -> Result<(Running, String), String> {
    let jobs: String = targets
        .iter()
        .map(|(job, target)| {
            format!("  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n")
        })
        .collect();
    start_prometheus_with(
        binary,
        dir,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n{jobs}"
        ),
    )
}

/// Starts `binary` with `config` (prometheus.yml's text), listening on a free port, its data
/// and log in `dir`: the child and its URL.
pub fn start_prometheus_with(
    binary: &Path,
    dir: &Path,
    config: &str,
) -> Result<(Running, String), String> {
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{} would not start: {e}", binary.display()))?;
    Ok((Running(child), format!("http://127.0.0.1:{port}")))
}

/// Waits up to 30 s for the server at `url` to say it is ready; `Err` with its log's end.
pub async fn ready(client: &HttpClient, url: &str, dir: &Path) -> Result<(), String> {
    let ready = wait_until(Duration::from_secs(30), || async {
        get(client, &format!("{url}/-/ready"))
            .await
            .is_some_and(|(status, _)| status == 200)
    })
    .await;
    if ready {
        Ok(())
    } else {
        Err(format!(
            "prometheus did not become ready within 30 s; its log ends:\n{}",
            log_tail(dir)
        ))
    }
}

/// The last lines of the server's log, for a failure message.
pub fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
