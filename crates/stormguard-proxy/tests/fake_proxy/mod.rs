//! What the admin and reload tests share: a proxy that only keeps settings (so reloads and the
//! admin endpoint are tested without a data path), settings files in a temporary folder, and a
//! one-request HTTP/1.1 client for the admin endpoint over a real socket.
#![allow(dead_code)] // each test file uses its own part

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use stormguard_proxy::config::{self, Config};
use stormguard_proxy::reload::{ApplyError, ReloadMetrics, Reloadable, Reloader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keeps the settings it is given, counts generations like the real proxy, and fails loudly if
/// two applies overlap.
pub struct FakeProxy {
    running: Mutex<(u64, Arc<Config>)>,
    applying: AtomicBool,
    pub applies: AtomicUsize,
    /// When set, `apply` refuses (as the data path would refuse routes it cannot build).
    pub refuse: AtomicBool,
    /// How long each apply takes, so overlapping reloads would be caught.
    pub apply_time: Mutex<Duration>,
}

impl FakeProxy {
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(FakeProxy {
            running: Mutex::new((1, Arc::new(config))),
            applying: AtomicBool::new(false),
            applies: AtomicUsize::new(0),
            refuse: AtomicBool::new(false),
            apply_time: Mutex::new(Duration::ZERO),
        })
    }
}

impl Reloadable for FakeProxy {
    fn apply(&self, config: Config) -> Result<u64, ApplyError> {
        assert!(
            !self.applying.swap(true, Ordering::SeqCst),
            "two applies at once"
        );
        std::thread::sleep(*self.apply_time.lock().unwrap());
        self.applies.fetch_add(1, Ordering::SeqCst);
        let result = if self.refuse.load(Ordering::SeqCst) {
            Err("an instance is not host:port".into())
        } else {
            let mut running = self.running.lock().unwrap();
            *running = (running.0 + 1, Arc::new(config));
            Ok(running.0)
        };
        self.applying.store(false, Ordering::SeqCst);
        result
    }

    fn generation(&self) -> u64 {
        self.running.lock().unwrap().0
    }

    fn config(&self) -> Arc<Config> {
        self.running.lock().unwrap().1.clone()
    }
}

/// A settings file with one route to one instance; `extra` is added to the route.
pub fn settings(route_extra: &str) -> String {
    settings_with("", route_extra)
}

/// A settings file with `head` before the upstream and `route_extra` in the route, which has a
/// 2 s timeout unless `route_extra` gives one.
pub fn settings_with(head: &str, route_extra: &str) -> String {
    let timeout = if route_extra.lines().any(|l| l.starts_with("timeout =")) {
        ""
    } else {
        "timeout = \"2s\"\n"
    };
    format!(
        "{head}\n[upstreams.api]\ninstances = [\"127.0.0.1:9\"]\n\n[[routes]]\nname = \"api\"\nupstream = \"api\"\n{timeout}{route_extra}\n"
    )
}

/// A file of its own for one test, in the temporary folder.
pub fn file(test: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("stormguard-ops-{}-{test}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A fake proxy running `text`, its reloader and the registry holding the reload metrics.
pub fn start(test: &str, text: &str) -> (Arc<FakeProxy>, Arc<Reloader>, Registry, PathBuf) {
    let path = file(test, text);
    let config = config::load(&path).unwrap();
    let proxy = FakeProxy::new(config.clone());
    let mut registry = Registry::default();
    let metrics = ReloadMetrics::register(&mut registry);
    let reloader = Arc::new(Reloader::new(path.clone(), proxy.clone(), metrics, config));
    (proxy, reloader, registry, path)
}

/// Polls until the generation passes `from`; `None` if it did not within 5 s.
pub async fn generation_after(proxy: &FakeProxy, from: u64) -> Option<(u64, Duration)> {
    let started = tokio::time::Instant::now();
    for _ in 0..500 {
        let generation = proxy.generation();
        if generation > from {
            return Some((generation, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The metrics of `registry` once they show every one of `lines`, polled every 10 ms for at
/// most 5 s (the text as it then is, for the assertion that follows). A reload the watcher
/// applies publishes its metrics just after the swap that [`generation_after`] sees, so reading
/// them at once raced it (CI failed once on it: generation 4 running, `ok` still 2).
pub async fn metrics_showing(registry: &Registry, lines: &[&str]) -> String {
    let mut text = metrics_text(registry);
    for _ in 0..500 {
        if lines.iter().all(|line| text.contains(line)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = metrics_text(registry);
    }
    text
}

/// The metrics of `registry` as `/metrics` shows them.
pub fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// Sends one HTTP/1.1 request and reads the whole answer: (status, head, body).
pub async fn request(addr: std::net::SocketAddr, head: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the admin endpoint answers within 5 s")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_string(), body.to_string())
}
