//! The admin endpoint over real sockets on 127.0.0.1: what operators read (`/healthz`,
//! `/config`, `/metrics`), how they reload (`POST /reload`) and who may (the bearer token).

mod fake_proxy;

use std::net::SocketAddr;
use std::sync::Arc;

use fake_proxy::{metrics_text, request, settings, settings_with, start};
use prometheus_client::registry::Registry;
use stormguard_proxy::admin::{AdminServer, Health, METRICS_CONTENT_TYPE};
use stormguard_proxy::reload::{Reloadable, Reloader};
use tokio::net::TcpListener;

/// Serves the admin endpoint on an ephemeral port; returns its address.
async fn serve(reloader: Arc<Reloader>, registry: Registry, health: Arc<Health>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = AdminServer::new(reloader, Arc::new(registry), health);
    tokio::spawn(admin.serve(listener, std::future::pending()));
    addr
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
}

fn post(path: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn healthz_is_ok_until_the_drain_starts() {
    let (_proxy, reloader, registry, _path) = start("healthz", &settings(""));
    let health = Arc::new(Health::default());
    let addr = serve(reloader, registry, health.clone()).await;
    assert_eq!(request(addr, &get("/healthz", "")).await.2, "ok\n");
    health.drain();
    let (status, _, body) = request(addr, &get("/healthz", "")).await;
    assert_eq!((status, body.as_str()), (503, "draining\n"));
}

#[tokio::test]
async fn config_shows_every_default_with_the_generation_and_the_file() {
    let (_proxy, reloader, registry, path) = start("config", &settings("timeout = \"2s\""));
    let addr = serve(reloader, registry, Arc::default()).await;
    let (status, head, body) = request(addr, &get("/config", "")).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["generation"], 1);
    assert_eq!(json["file"], path.display().to_string());
    let route = &json["routes"][0];
    assert_eq!(route["timeout"], "2s");
    // Left out of the file, filled in: a graph call's defaults.
    assert_eq!(route["connect_timeout"], serde_json::Value::Null);
    assert_eq!(route["max_attempts"], 1);
    assert_eq!(route["backoff"], "full-jitter(base=25ms, cap=250ms)");
    assert_eq!(json["listen"]["shutdown_grace"], "30s");
}

#[tokio::test]
async fn with_a_token_every_request_needs_it() {
    let text = settings_with("[admin]\ntoken = \"s3cret\"\n", "");
    let (_proxy, reloader, registry, _path) = start("token", &text);
    let addr = serve(reloader, registry, Arc::default()).await;
    for path in ["/healthz", "/config", "/metrics"] {
        let (status, head, _) = request(addr, &get(path, "")).await;
        assert_eq!(status, 401, "{path}");
        assert!(head.contains("www-authenticate: Bearer"), "{head}");
        let wrong = request(addr, &get(path, "Authorization: Bearer s3cre\r\n")).await;
        assert_eq!(wrong.0, 401, "{path}");
        let right = request(addr, &get(path, "Authorization: Bearer s3cret\r\n")).await;
        assert_eq!(right.0, 200, "{path}");
    }
    assert_eq!(request(addr, &post("/reload", "")).await.0, 401);
    let (status, _, body) =
        request(addr, &get("/config", "Authorization: Bearer s3cret\r\n")).await;
    assert_eq!(status, 200);
    assert!(!body.contains("s3cret"), "the token is never shown: {body}");
}

#[tokio::test]
async fn metrics_show_the_reloads_in_openmetrics_text() {
    let (_proxy, reloader, registry, _path) = start("metrics", &settings(""));
    let addr = serve(reloader, registry, Arc::default()).await;
    let (status, head, body) = request(addr, &get("/metrics", "")).await;
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("content-type: {METRICS_CONTENT_TYPE}")),
        "{head}"
    );
    assert!(
        body.contains("stormguard_config_reloads_total{result=\"ok\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("stormguard_config_reloads_total{result=\"failed\"} 0"),
        "{body}"
    );
    assert!(body.contains("stormguard_config_generation 1"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
}

#[tokio::test]
async fn post_reload_applies_a_good_file_and_refuses_a_broken_one_at_its_place() {
    let (proxy, reloader, registry, path) = start("post-reload", &settings(""));
    let metrics = Arc::new(registry);
    let admin = AdminServer::new(reloader, metrics.clone(), Arc::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(admin.serve(listener, std::future::pending()));

    std::fs::write(&path, settings("timeout = \"3s\"")).unwrap();
    let (status, _, body) = request(addr, &post("/reload", "")).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["generation"], 2);
    let (_, _, shown) = request(addr, &get("/config", "")).await;
    assert!(shown.contains("\"timeout\": \"3s\""), "{shown}");

    std::fs::write(&path, settings("timeout = \"3 seconds\"")).unwrap();
    let (status, _, body) = request(addr, &post("/reload", "")).await;
    assert_eq!(status, 422, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["generation"], 2, "the running settings stay");
    let error = json["error"].as_str().unwrap();
    let place = format!("{}:8:11: `routes[0].timeout`", path.display());
    assert!(error.starts_with(&place), "{error}");
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(std::time::Duration::from_secs(3))
    );
    let text = metrics_text(&metrics);
    assert!(
        text.contains("stormguard_config_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("stormguard_config_reloads_total{result=\"failed\"} 1"),
        "{text}"
    );
    assert!(text.contains("stormguard_config_generation 2"), "{text}");
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn wrong_methods_and_paths_are_told_what_exists() {
    let (_proxy, reloader, registry, _path) = start("methods", &settings(""));
    let addr = serve(reloader, registry, Arc::default()).await;
    let (status, head, _) = request(addr, &get("/reload", "")).await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: POST"), "{head}");
    let (status, head, _) = request(addr, &post("/config", "")).await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: GET, HEAD"), "{head}");
    let (status, _, body) = request(addr, &get("/stats", "")).await;
    assert_eq!(status, 404);
    assert!(body.contains("GET /metrics"), "{body}");
}

#[tokio::test]
async fn over_the_real_proxy_one_registry_shows_every_metric_and_a_reload_takes() {
    use stormguard_proxy::config;
    use stormguard_proxy::reload::ReloadMetrics;
    use stormguard_proxy::Proxy;

    let path = fake_proxy::file("real-proxy", &settings(""));
    let config = config::load(&path).unwrap();
    let mut registry = Registry::default();
    let proxy = Proxy::new(config.clone(), &mut registry).unwrap();
    let metrics = ReloadMetrics::register(&mut registry);
    let reloader = Arc::new(Reloader::new(
        path.clone(),
        Arc::new(proxy.clone()),
        metrics,
        config,
    ));
    let addr = serve(reloader, registry, Arc::default()).await;

    std::fs::write(&path, settings("timeout = \"3s\"")).unwrap();
    let (status, _, body) = request(addr, &post("/reload", "")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.generation(), 2);
    assert_eq!(
        proxy.config().routes[0].call.timeout,
        Some(std::time::Duration::from_secs(3))
    );
    let (_, _, shown) = request(addr, &get("/config", "")).await;
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        (json["generation"].as_u64(), &json["routes"][0]["timeout"]),
        (Some(2), &serde_json::json!("3s"))
    );
    let (_, _, text) = request(addr, &get("/metrics", "")).await;
    assert!(
        text.contains("stormguard_proxy_in_flight{upstream=\"api\"} 0"),
        "{text}"
    );
    assert!(text.contains("stormguard_config_generation 2"), "{text}");
    let (status, _, shown) = request(addr, &get("/instances", "")).await;
    assert_eq!(status, 200, "{shown}");
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let address = proxy.config().upstreams["api"].instances[0].clone();
    assert_eq!(
        json["routes"]["api"],
        serde_json::json!([{ "address": address, "host": null, "ejected": false, "in_flight": 0 }])
    );
    std::fs::remove_file(&path).unwrap();
}

/// A request for `path` naming `host`, as a page reached by DNS rebinding would send it.
fn for_host(method: &str, path: &str, host: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn without_a_token_only_requests_for_a_loopback_host_are_answered() {
    let (proxy, reloader, registry, path) = start("rebinding", &settings(""));
    let addr = serve(reloader, registry, Arc::default()).await;
    std::fs::write(&path, settings("timeout = \"3s\"")).unwrap();
    for host in ["rebind.example", "rebind.example:9901", "10.0.0.1:9901"] {
        for (method, path) in [("GET", "/config"), ("GET", "/healthz"), ("POST", "/reload")] {
            let (status, _, body) = request(addr, &for_host(method, path, host, "")).await;
            assert_eq!(status, 403, "{method} {path} for {host}: {body}");
            assert!(body.contains("admin.token"), "{body}");
        }
    }
    assert_eq!(proxy.generation(), 1, "no reload was taken");
    let port = addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
    ] {
        let (status, _, body) = request(addr, &for_host("GET", "/healthz", &host, "")).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{host}");
    }
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn with_a_token_any_host_is_answered() {
    let text = settings_with("[admin]\ntoken = \"s3cret\"\n", "");
    let (_proxy, reloader, registry, path) = start("token-any-host", &text);
    let addr = serve(reloader, registry, Arc::default()).await;
    let auth = "Authorization: Bearer s3cret\r\n";
    let (status, _, _) = request(addr, &for_host("GET", "/healthz", "proxy.internal", auth)).await;
    assert_eq!(status, 200);
    let (status, _, _) = request(addr, &for_host("GET", "/healthz", "proxy.internal", "")).await;
    assert_eq!(status, 401);
    std::fs::remove_file(&path).unwrap();
}
