//! The admin endpoint: where operators read what the proxy runs and how it does, and ask for a
//! reload.
//!
//! ## Why these five
//! - `GET /metrics`: the data path's and the reloads' metrics, in the Prometheus text format
//!   prometheus-client writes (OpenMetrics), from the one registry they all share.
//! - `GET /config`: the running settings as JSON with every default filled in
//!   ([`config::to_json`](crate::config::to_json)), plus `"generation"` and `"file"`, so that
//!   anyone can discover what a timeout really is and which edit is live.
//! - `GET /healthz`: `200 ok` while serving, `503 draining` once SIGTERM started the drain, so a
//!   load balancer stops sending before the listener closes.
//! - `GET /instances`: each route's instances as its balancer has them now, by address (`ip:port`
//!   and the host name it was resolved from), with whether each is ejected and its requests in
//!   flight: what DNS discovery found, and which instances outlier detection left out.
//! - `POST /reload`: reload the file now; `200 {"generation": N}`, or `422` with the error
//!   (`file:line:column: key: message`) and the generation that stays.
//!
//! ## Access
//! When the running settings have an `admin.token`, every request must carry
//! `Authorization: Bearer TOKEN` (401 otherwise; compared in constant time). The settings refuse
//! a non-loopback admin address without a token, so the endpoint is never open beyond the host.
//! The token is read from the running settings at each request: a reload that changes it takes
//! effect at once, like the rest of the file.
//!
//! Without a token, loopback is the only guard, and a web page the operator opens can get past
//! it: DNS rebinding points the page's own host name at 127.0.0.1, and the browser then sends
//! the page's requests, `POST /reload` included, to the admin endpoint with `Host: that.name`.
//! So without a token a request is answered only when it names a loopback host (in its `Host`,
//! or its absolute-form target): `localhost` or a loopback address (`127.0.0.1`, `[::1]`), with
//! any port; 403 otherwise. A browser always sends the page's host, and no DNS name but
//! `localhost` is taken. With a token, any host is answered: the token is the guard.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::reload::{ReloadError, Reloader, Trigger};

/// What `/metrics` answers with: the OpenMetrics text prometheus-client encodes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long an admin client may take to send its request head: the endpoint is small and
/// local, and a stuck client must not hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Whether the proxy is serving or draining, as `/healthz` reports it.
///
/// Shared between the code that starts the drain and the admin endpoint:
///
/// ```
/// use stormguard_proxy::admin::Health;
///
/// let health = Health::default();
/// assert!(!health.is_draining());
/// health.drain();
/// assert!(health.is_draining());
/// ```
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
}

impl Health {
    /// Marks the proxy as draining: `/healthz` answers 503 from now on. There is no way back;
    /// a drain ends with the process.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`Health::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The admin endpoint's state: the reloader (and through it the running settings), the metrics
/// registry and the health. Cheap to clone.
///
/// ```no_run
/// # async fn run(reloader: std::sync::Arc<stormguard_proxy::reload::Reloader>,
/// #     registry: prometheus_client::registry::Registry) -> std::io::Result<()> {
/// use std::sync::Arc;
/// use stormguard_proxy::admin::{AdminServer, Health};
///
/// let health = Arc::new(Health::default());
/// let admin = AdminServer::new(reloader, Arc::new(registry), health.clone());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9901").await?;
/// tokio::spawn(admin.serve(listener, std::future::pending()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AdminServer {
    reloader: Arc<Reloader>,
    registry: Arc<Registry>,
    health: Arc<Health>,
}

impl AdminServer {
    /// The endpoint over `reloader`'s proxy, showing `registry` at `/metrics` and `health` at
    /// `/healthz`.
    pub fn new(reloader: Arc<Reloader>, registry: Arc<Registry>, health: Arc<Health>) -> Self {
        AdminServer {
            reloader,
            registry,
            health,
        }
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves; then accepts no more
    /// connections (those open finish on their own).
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "admin: accept failed");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                },
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(request).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = served.await {
                    tracing::debug!(%error, "admin: connection ended with an error");
                }
            });
        }
    }

    /// Answers one admin request (the body, if any, is not read).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        let running = self.reloader.target().config();
        if running.admin.token.is_none() && !names_loopback(&request) {
            return text(
                StatusCode::FORBIDDEN,
                "forbidden: without admin.token, the admin endpoint answers only requests for \
                 localhost or a loopback address (Host: 127.0.0.1:PORT), so that no web page can \
                 reach it by DNS rebinding; set admin.token to be reached by other names\n",
            );
        }
        if let Some(token) = running.admin.token.as_deref() {
            if !authorized(request.headers(), token) {
                let mut answer = text(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: send Authorization: Bearer <admin.token>\n",
                );
                answer.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"stormguard-admin\""),
                );
                return answer;
            }
        }
        let method = request.method();
        let read = method == Method::GET || method == Method::HEAD;
        match request.uri().path() {
            "/metrics" if read => self.metrics(),
            "/config" if read => self.config(),
            "/healthz" if read => self.healthz(),
            "/instances" if read => self.instances(),
            "/reload" if method == Method::POST => self.reload().await,
            "/metrics" | "/config" | "/healthz" | "/instances" => not_allowed("GET, HEAD"),
            "/reload" => not_allowed("POST"),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: the admin endpoint has GET /metrics, GET /config, GET /healthz, GET /instances and POST /reload\n",
            ),
        }
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let mut body = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut body, &self.registry) {
            tracing::error!(%error, "admin: encoding the metrics failed");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding the metrics failed\n",
            );
        }
        answer(StatusCode::OK, METRICS_CONTENT_TYPE, body)
    }

    fn config(&self) -> Response<Full<Bytes>> {
        let target = self.reloader.target();
        // The generation is read first: if a reload lands in between, the settings shown are
        // at least as new as the number says, never older.
        let generation = target.generation();
        let json = config_json(&target.config(), generation, self.reloader.path());
        json_answer(StatusCode::OK, &json)
    }

    fn instances(&self) -> Response<Full<Bytes>> {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .reloader
            .target()
            .instances()
            .into_iter()
            .map(|(route, instances)| {
                let instances = instances
                    .into_iter()
                    .map(|i| {
                        json!({
                            "address": i.address,
                            "host": i.host,
                            "ejected": i.ejected,
                            "in_flight": i.in_flight,
                        })
                    })
                    .collect();
                (route, serde_json::Value::Array(instances))
            })
            .collect();
        json_answer(StatusCode::OK, &json!({ "routes": routes }))
    }

    fn healthz(&self) -> Response<Full<Bytes>> {
        if self.health.is_draining() {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        } else {
            text(StatusCode::OK, "ok\n")
        }
    }

    async fn reload(&self) -> Response<Full<Bytes>> {
        match self.reloader.reload(Trigger::Admin).await {
            Ok(generation) => json_answer(StatusCode::OK, &json!({ "generation": generation })),
            Err(error) => {
                let status = match error {
                    ReloadError::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
                    ReloadError::Load(_)
                    | ReloadError::Apply { .. }
                    | ReloadError::AdminWithoutToken { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let generation = self.reloader.target().generation();
                json_answer(
                    status,
                    &json!({ "error": error.to_string(), "generation": generation }),
                )
            }
        }
    }
}

/// Whether `request` is for a loopback host (see the module docs): the authority of its target,
/// or else its one `Host`, names `localhost` or a loopback address, without a user name.
fn names_loopback<B>(request: &Request<B>) -> bool {
    let authority = match request.uri().authority() {
        Some(authority) => authority.clone(),
        None => {
            let mut hosts = request.headers().get_all(header::HOST).iter();
            let (Some(host), None) = (hosts.next(), hosts.next()) else {
                return false;
            };
            match http::uri::Authority::try_from(host.as_bytes()) {
                Ok(authority) => authority,
                Err(_) => return false,
            }
        }
    };
    if authority.as_str().contains('@') {
        return false;
    }
    let host = authority.host();
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || literal.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `headers` carry `Authorization: Bearer <token>` (the scheme in any case, RFC 9110
/// §11.1), compared without an early exit so that the time taken says nothing of the token.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
    else {
        return false;
    };
    let Some((scheme, given)) = value.split_first_chunk::<7>() else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let want = token.as_bytes();
    let differ = given.len() != want.len();
    let diff = given
        .iter()
        .zip(want.iter().cycle())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    !differ && diff == 0 && !want.is_empty()
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // What the admin endpoint shows is live; a cache in between would show old settings.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    answer(status, "text/plain; charset=utf-8", body.to_string())
}

/// What `GET /config` shows for `config`, read from `file` as its `generation`-th load: the
/// settings as [`config::to_json`](crate::config::to_json) writes them, with `"generation"` and
/// `"file"` added. Public so that a copy of it elsewhere (the README's excerpt, which a test
/// checks) can be compared with what the endpoint serves without starting a proxy.
pub fn config_json(config: &Config, generation: u64, file: &Path) -> serde_json::Value {
    let mut json = crate::config::to_json(config);
    if let Some(object) = json.as_object_mut() {
        object.insert("generation".to_string(), json!(generation));
        object.insert("file".to_string(), json!(file.display().to_string()));
    }
    json
}

fn json_answer(status: StatusCode, json: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_string_pretty(json).unwrap_or_else(|_| "{}".to_string());
    body.push('\n');
    answer(status, "application/json", body)
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(authorized(&headers("Bearer s3cret"), "s3cret"));
        assert!(authorized(&headers("bearer s3cret"), "s3cret"));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3crett",
            "Bearer S3cret",
            "Basic s3cret",
            "Bearer",
            "s3cret",
            "Bearer  s3cret",
        ] {
            assert!(!authorized(&headers(wrong), "s3cret"), "{wrong}");
        }
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn only_a_loopback_host_is_named_loopback() {
        let named = |target: &str, hosts: &[&str]| {
            let mut request = Request::get(target);
            for host in hosts {
                request = request.header(header::HOST, *host);
            }
            names_loopback(&request.body(()).unwrap())
        };
        for host in [
            "localhost",
            "LocalHost:9901",
            "127.0.0.1",
            "127.0.0.1:9901",
            "127.0.0.2:80",
            "[::1]",
            "[::1]:9901",
        ] {
            assert!(named("/config", &[host]), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9901",
            "localhost.evil.example",
            "10.0.0.1:9901",
            "[::ffff:10.0.0.1]",
            "user@localhost",
            "",
            "local host",
        ] {
            assert!(!named("/config", &[host]), "{host}");
        }
        assert!(!named("/config", &[]), "no Host");
        assert!(!named("/config", &["localhost", "evil.example"]), "two");
        assert!(named("http://localhost:9901/config", &["evil.example"]));
        assert!(!named("http://evil.example/config", &["localhost"]));
    }

    #[test]
    fn an_empty_token_authorizes_nobody() {
        assert!(!authorized(&headers("Bearer "), ""));
    }
}
