//! The data path's metrics, beside the library observer's.
//!
//! ## Why these
//! The library's [`PrometheusMetrics`] counts every policy decision (attempts, retries and why,
//! retries denied by the budget, hedges, timeouts split connect/request) by route. What only the
//! proxy sees is added here: what each client was answered (route, status class and
//! `stormguard-reason`) and how long it waited for it, how long upstream attempts take against
//! the route's timeout, what each instance's attempts came to and whether it is ejected, how
//! many requests are in flight per upstream, and how many were shed. Every help text says what
//! to do about the number.
//!
//! Two latency histograms, because they answer two questions: the caller's
//! (`stormguard_proxy_request_duration_seconds`, arrival to response head, retries, backoff and
//! hedges included) is what a service level objective is about; the attempt's
//! (`stormguard_proxy_upstream_latency_seconds`) is what the upstream does, and what a timeout
//! should be set from. Each route's buckets are a fixed ladder plus that route's timeouts
//! ([`histograms`]), so that an objective at a timeout is read exactly.

mod histograms;
mod instances;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use stormguard::metrics::PrometheusMetrics;

use self::histograms::{RouteHistogram, RouteHistograms};
pub(crate) use self::instances::InstanceMetrics;
use self::instances::{InstanceKey, InstanceObserver, InstanceSeries};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    class: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectFailureLabels {
    upstream: String,
    reason: &'static str,
}

/// Connections to an upstream's instances that could not be made, by why: one counter per
/// reason, made with the upstream's routes so that each shows from the start (at 0).
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectFailures {
    /// The instance refused the TCP connection.
    pub(crate) refused: Counter,
    /// No connection (TCP and, with TLS, the handshake) within the connect timeout.
    pub(crate) timeout: Counter,
    /// The TLS handshake failed: a certificate that does not verify, a client certificate
    /// refused, no protocol in common.
    pub(crate) tls: Counter,
    /// Anything else: a name that does not resolve, no route to the host.
    pub(crate) other: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    reason: &'static str,
}

/// Client connections the proxy closed to protect the others, by why: one counter per reason,
/// made when the metrics are registered so that each shows from the start (at 0).
#[derive(Clone, Debug)]
pub(crate) struct ConnectionsClosed {
    /// A new connection sent no byte within `first_byte_timeout`.
    pub(crate) first_byte_timeout: Counter,
    /// A connection that had sent no byte was closed to admit a new one at `max_connections`.
    pub(crate) silent_at_limit: Counter,
    /// An HTTP/2 client reset most of the streams it opened before their answer (GOAWAY).
    pub(crate) stream_resets: Counter,
    /// An unfinished request head would have taken all of them past
    /// `max_unfinished_header_bytes`.
    pub(crate) header_budget: Counter,
    /// A client's TLS handshake failed or took longer than `header_read_timeout`.
    pub(crate) tls_handshake: Counter,
    /// A request head or header block took longer than `header_read_timeout` (slowloris).
    pub(crate) header_timeout: Counter,
    /// A request head that is not HTTP or breaks a bound (`max_headers`, `max_header_bytes`),
    /// answered 400 or 431 by the HTTP layer before it was a request: no route, no access-log
    /// line, counted only here.
    pub(crate) bad_request: Counter,
    /// A request or response body did not move for `stream_idle_timeout` (a client that does
    /// not read, an upload or upstream body that stalls): an HTTP/1.1 connection closed, an
    /// HTTP/2 stream reset (its connection kept). Counted nowhere before: such a response went
    /// down as a plain 2xx (a review).
    pub(crate) stream_idle: Counter,
    /// The client broke HTTP/2's rules or its bounds (a frame where none may be, a flood of
    /// resets, CONTINUATION frames or header table updates): the connection library's own
    /// guards sent GOAWAY and closed it, counted nowhere before (a review).
    pub(crate) http2_protocol: Counter,
}

impl ConnectionsClosed {
    fn new(family: &Family<ClosedLabels, Counter>) -> Self {
        let counter = |reason| family.get_or_create_owned(&ClosedLabels { reason });
        ConnectionsClosed {
            first_byte_timeout: counter("first-byte-timeout"),
            silent_at_limit: counter("silent-at-limit"),
            stream_resets: counter("stream-resets"),
            header_budget: counter("header-budget"),
            tls_handshake: counter("tls-handshake"),
            header_timeout: counter("header-timeout"),
            bad_request: counter("bad-request"),
            stream_idle: counter("stream-idle"),
            http2_protocol: counter("http2-protocol"),
        }
    }
}

/// Every metric the data path writes; registered once, shared by every generation of routes.
#[derive(Clone, Debug)]
pub(crate) struct ProxyMetrics {
    /// The library's policy counters, `target` = route name.
    pub(crate) observer: PrometheusMetrics,
    requests: Family<RequestLabels, Counter>,
    in_flight: Family<UpstreamLabels, Gauge>,
    shed: Family<UpstreamLabels, Counter>,
    broken_bodies: Family<UpstreamLabels, Counter>,
    connect_failures: Family<ConnectFailureLabels, Counter>,
    /// Per attempt, by route.
    latency: Arc<RouteHistograms>,
    /// Per request as the caller saw it, by route.
    duration: Arc<RouteHistograms>,
    instances: Arc<InstanceSeries>,
    /// The `route` label of requests no route took.
    unrouted: Arc<str>,
    /// Client connections open.
    pub(crate) connections: Gauge,
    /// Times the listener stopped accepting at `max_connections`.
    pub(crate) connections_limited: Counter,
    /// Client connections closed to protect the others.
    pub(crate) connections_closed: ConnectionsClosed,
    /// DNS resolutions of upstream host names, by upstream and result.
    dns: Family<DnsLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabels {
    upstream: String,
    result: &'static str,
}

/// A route's own series: its two histograms and its instances' counters, made with its stack and
/// kept with it (a reload that keeps the stack keeps them).
#[derive(Clone, Debug)]
pub(crate) struct RouteMetrics {
    upstream: String,
    /// Each attempt, from sending to the response head.
    pub(crate) attempt_latency: RouteHistogram,
    /// Each request, from arrival to the response head the client gets.
    pub(crate) request_duration: RouteHistogram,
    route: String,
    /// Where each instance's series are found by address.
    series: Arc<InstanceSeries>,
}

impl RouteMetrics {
    /// The balancer's observer: the library's counters, and each ejection on its instance's
    /// series.
    pub(crate) fn balancer_observer(&self, metrics: &ProxyMetrics) -> InstanceObserver {
        InstanceObserver {
            inner: metrics.observer.clone(),
            series: self.series.clone(),
            route: self.route.clone(),
            upstream: self.upstream.clone(),
        }
    }

    /// The series of the instance at `addr` on this route: exported while the stack that
    /// sends to it (or a request in flight there) holds them.
    pub(crate) fn instance(&self, addr: &str) -> InstanceMetrics {
        self.series.get(&key(&self.route, &self.upstream, addr))
    }
}

/// The durations a route's histograms have a bucket at, beside the ladder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteTimeouts<'a> {
    /// The per-attempt `timeout`.
    pub(crate) attempt: Duration,
    /// `request_timeout`: the whole request, retries included.
    pub(crate) request: Duration,
    /// `latency_buckets`: the route's latency objectives, in both histograms.
    pub(crate) objectives: &'a [Duration],
}

impl ProxyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let closed = Family::<ClosedLabels, Counter>::default();
        let metrics = ProxyMetrics {
            observer: PrometheusMetrics::register(registry),
            requests: Family::default(),
            in_flight: Family::default(),
            shed: Family::default(),
            broken_bodies: Family::default(),
            connect_failures: Family::default(),
            latency: Arc::new(RouteHistograms::new(
                "stormguard_proxy_upstream_latency",
                "Time from sending an attempt upstream to its response head, by route; attempts cut off by the route's timeout count at the time they were abandoned, and attempts dropped earlier (a hedge's losing copy, a shorter deadline) not at all: their latency is unknown. One bucket is the route's timeout: the share below it is the share that timeout lets through. Many attempts near the timeout: the timeout is below the upstream's tail (run stormguard recommend).",
            )),
            duration: Arc::new(RouteHistograms::new(
                "stormguard_proxy_request_duration",
                "Time from a request's arrival to the response head its client got, by route: what the caller waited, retries, backoff and hedges included, answers the proxy made itself too. Buckets include the route's timeout and request_timeout, so the share of requests within them reads exactly. A p99 far above stormguard_proxy_upstream_latency's: retries and backoff are what callers wait for; find the failures they hide.",
            )),
            instances: Arc::default(),
            unrouted: Arc::from(""),
            connections: Gauge::default(),
            connections_limited: Counter::default(),
            connections_closed: ConnectionsClosed::new(&closed),
            dns: Family::default(),
        };
        registry.register(
            "stormguard_proxy_requests",
            "Requests answered, by route, status class and stormguard-reason (empty when the upstream answered). A rising reason says where to look: connect-refused/connect-timeout at dead instances, timeout/deadline at slow upstreams or short caller budgets, retry-budget/token-bucket/overloaded at capacity, no-route at the routes",
            metrics.requests.clone(),
        );
        registry.register(
            "stormguard_proxy_in_flight",
            "Requests in flight to each upstream, until their response body ends. Near the upstream's max_in_flight the proxy is about to shed: add instances or find what makes responses slow",
            metrics.in_flight.clone(),
        );
        registry.register(
            "stormguard_proxy_shed",
            "Requests answered 503 overloaded at once because their upstream had max_in_flight requests in flight. Any rate is a capacity problem: add instances; raise max_in_flight only if the upstream has headroom",
            metrics.shed.clone(),
        );
        registry.register(
            "stormguard_proxy_upstream_bodies_broken",
            "Response bodies an upstream broke off after its head was passed on (a connection closed or reset mid-body, a chunk that is not HTTP, fewer bytes than its Content-Length), by upstream: the client got the status and part of the body, and the request counts under that status. Too late to retry; any steady rate is an upstream that fails while streaming, or a connection cut between the proxy and it",
            metrics.broken_bodies.clone(),
        );
        registry.register(
            "stormguard_proxy_connect_failures",
            "Connections to an upstream's instances that could not be made, by upstream and reason: refused, timeout (TCP connect and TLS handshake within the connect timeout), tls (the handshake failed: the instance's certificate does not verify against ca_file or the system's roots, does not carry the upstream's name, refused the proxy's client certificate, or agreed to no protocol; the proxy's log says which), other (a name that does not resolve). Each failed attempt is retried on another instance. Any tls rate is a configuration or certificate problem, not load: check the certificates' names and expiry",
            metrics.connect_failures.clone(),
        );
        registry.register(
            "stormguard_proxy_connections",
            "Client connections open. At listen.max_connections the proxy stops accepting and new clients wait in the kernel's accept queue: raise the limit (and the file descriptor limit) if clients are many, or find what holds connections open",
            metrics.connections.clone(),
        );
        registry.register(
            "stormguard_proxy_connections_limited",
            "Times the listener stopped accepting because listen.max_connections connections were open (clients then wait in the accept queue). Any rate means clients wait for a connection: raise max_connections if memory allows, or look for idle or stuck clients",
            metrics.connections_limited.clone(),
        );
        registry.register(
            "stormguard_proxy_connections_closed",
            "Client connections the proxy closed to protect the others, by reason: first-byte-timeout (a connection sent nothing within listen.first_byte_timeout), silent-at-limit (one that had sent nothing was closed to admit a new one at listen.max_connections), stream-resets (an HTTP/2 client reset most streams it opened before their answer and was sent GOAWAY), header-budget (an unfinished request head would have taken all of them past listen.max_unfinished_header_bytes), tls-handshake (with listen.tls, a client's handshake failed or took longer than listen.header_read_timeout: a client that does not trust the certificate, or speaks plain text to the TLS port), header-timeout (a request head or HTTP/2 header block took longer than listen.header_read_timeout: slowloris), bad-request (a request head that is not HTTP or has too many or too large headers, answered 400 or 431 before it was a request, so with no access-log line), stream-idle (a body did not move for listen.stream_idle_timeout: an HTTP/1.1 connection closed, or an HTTP/2 stream reset with its connection kept; the response had its status counted already, its body cut), http2-protocol (an HTTP/2 client broke the protocol or flooded it, with resets, CONTINUATION frames or header table updates, and the HTTP/2 layer closed the connection with GOAWAY). A steady rate of any is a client that misbehaves or an attack: find the clients in the logs (at debug); header-budget under normal traffic means the budget is too small for the clients' heads",
            closed,
        );
        registry.register(
            "stormguard_proxy_dns_resolutions",
            "Resolutions of upstream host names (discovery, names in instances), by upstream and result: ok, or failed (no answer, no address, more than 256 addresses), when the proxy keeps the instances of the last good answer. A steady failed rate means the instances no longer follow DNS: check [dns] servers and the name",
            metrics.dns.clone(),
        );
        registry.register_collector(Box::new(metrics.latency.clone()));
        registry.register_collector(Box::new(metrics.duration.clone()));
        registry.register_collector(Box::new(metrics.instances.clone()));
        metrics
    }

    /// The counter of `upstream`'s DNS resolutions with `result` (`ok`, `failed`).
    pub(crate) fn dns_resolutions(&self, upstream: &str, result: &'static str) -> Counter {
        self.dns.get_or_create_owned(&DnsLabels {
            upstream: upstream.to_string(),
            result,
        })
    }

    /// Counts one answer to a client.
    pub(crate) fn answered(&self, route: &Arc<str>, status: u16, reason: &'static str) {
        self.answers(route, status, reason).inc();
    }

    /// The counter of answers of `status`'s class with `reason` on `route`, for a route to keep
    /// the one nearly every request takes (a 2xx from the upstream) without a lookup.
    pub(crate) fn answers(&self, route: &Arc<str>, status: u16, reason: &'static str) -> Counter {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.get_or_create_owned(&RequestLabels {
            route: route.clone(),
            class,
            reason,
        })
    }

    /// Counts one answer to a request that no route took (`route=""`).
    pub(crate) fn answered_unrouted(&self, status: u16, reason: &'static str) {
        self.answered(&self.unrouted, status, reason);
    }

    /// The in-flight gauge of `upstream`: the same gauge in every generation, so requests that
    /// started under old settings still count against the new limit.
    pub(crate) fn in_flight(&self, upstream: &str) -> Gauge {
        self.in_flight.get_or_create_owned(&UpstreamLabels {
            upstream: upstream.to_string(),
        })
    }

    /// The counter of `upstream`'s response bodies broken off mid-way.
    pub(crate) fn broken_bodies(&self, upstream: &str) -> Counter {
        self.broken_bodies.get_or_create_owned(&UpstreamLabels {
            upstream: upstream.to_string(),
        })
    }

    /// The shed counter of `upstream`.
    pub(crate) fn shed(&self, upstream: &str) -> Counter {
        self.shed.get_or_create_owned(&UpstreamLabels {
            upstream: upstream.to_string(),
        })
    }

    /// The connect failure counters of `upstream`, each shown from now on.
    pub(crate) fn connect_failures(&self, upstream: &str) -> Arc<ConnectFailures> {
        let counter = |reason| {
            self.connect_failures
                .get_or_create_owned(&ConnectFailureLabels {
                    upstream: upstream.to_string(),
                    reason,
                })
        };
        Arc::new(ConnectFailures {
            refused: counter("refused"),
            timeout: counter("timeout"),
            tls: counter("tls"),
            other: counter("other"),
        })
    }

    /// The series of `route` to `upstream`, with buckets at `timeouts`: the running ones where
    /// nothing they depend on changed (a reload resets no counter it need not), else new ones.
    /// The histograms are not exported until [`ProxyMetrics::publish`], so a generation that
    /// fails to build changes nothing; an instance's series show while a stack holds them
    /// ([`RouteMetrics::instance`]).
    pub(crate) fn route(
        &self,
        route: &str,
        upstream: &str,
        timeouts: RouteTimeouts,
    ) -> RouteMetrics {
        let mut attempt = vec![timeouts.attempt];
        attempt.extend_from_slice(timeouts.objectives);
        let mut request = attempt.clone();
        request.push(timeouts.request);
        RouteMetrics {
            route: route.to_string(),
            upstream: upstream.to_string(),
            attempt_latency: self.latency.for_route(route, &attempt),
            request_duration: self.duration.for_route(route, &request),
            series: self.instances.clone(),
        }
    }

    /// Exports exactly `routes`' histograms: those of the generation now running.
    pub(crate) fn publish<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a str, &'a RouteMetrics)>,
    ) {
        let routes: Vec<_> = routes.into_iter().collect();
        self.latency
            .publish(routes.iter().map(|(name, m)| (*name, &m.attempt_latency)));
        self.duration
            .publish(routes.iter().map(|(name, m)| (*name, &m.request_duration)));
    }
}

fn key(route: &str, upstream: &str, addr: &str) -> InstanceKey {
    InstanceKey {
        route: route.to_string(),
        upstream: upstream.to_string(),
        addr: addr.to_string(),
    }
}

/// A route's retry and hedge observer: the library's counters of the route, and, for the
/// access log, a retry its limiter refused ([`crate::access_log::retry_refused`]): counted
/// alone, a refusal left the line of the request it happened to as that of an upstream's 503
/// that no retry was wanted for.
#[derive(Clone, Debug)]
pub(crate) struct RouteObserver(pub(crate) stormguard::metrics::TargetMetrics);

impl stormguard::metrics::Observer for RouteObserver {
    fn observe(&self, target: &str, event: stormguard::metrics::Event) {
        if let stormguard::metrics::Event::RetryDenied(by) = event {
            crate::access_log::retry_refused(by.name());
        }
        self.0.observe(target, event);
    }

    fn instance_ejected(&self, target: &str, instance: &str, duration: Duration) {
        self.0.instance_ejected(target, instance, duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stormguard::metrics::{Event, Observer};

    fn text(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    fn timeouts(attempt_ms: u64, request_ms: u64) -> RouteTimeouts<'static> {
        RouteTimeouts {
            attempt: Duration::from_millis(attempt_ms),
            request: Duration::from_millis(request_ms),
            objectives: &[],
        }
    }

    #[test]
    fn each_route_has_a_bucket_at_its_timeouts() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let api = metrics.route("api", "api", timeouts(300, 1200));
        let web = metrics.route("web", "web", timeouts(1000, 1000));
        api.attempt_latency.observe(Duration::from_millis(200));
        api.request_duration.observe(Duration::from_millis(1100));
        web.attempt_latency.observe(Duration::from_secs(2));
        assert!(
            !text(&registry).contains("route=\"api\""),
            "published only when running"
        );
        metrics.publish([("api", &api), ("web", &web)]);
        let text = text(&registry);
        for line in [
            "stormguard_proxy_upstream_latency_seconds_bucket{le=\"0.3\",route=\"api\"} 1",
            "stormguard_proxy_upstream_latency_seconds_bucket{le=\"1.0\",route=\"web\"} 0",
            // The caller's histogram has both timeouts: 1.1 s is above the attempt timeout and
            // within the request timeout.
            "stormguard_proxy_request_duration_seconds_bucket{le=\"0.3\",route=\"api\"} 0",
            "stormguard_proxy_request_duration_seconds_bucket{le=\"1.2\",route=\"api\"} 1",
            "stormguard_proxy_request_duration_seconds_count{route=\"web\"} 0",
            "# HELP stormguard_proxy_upstream_latency_seconds",
            "# HELP stormguard_proxy_request_duration_seconds",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // prometheus-client ends a registered metric's help with a period of its own.
        for help in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(help.ends_with('.') && !help.ends_with(".."), "{help}");
        }
    }

    #[test]
    fn a_latency_objective_is_a_bucket_of_both_histograms() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let objectives = [Duration::from_millis(300), Duration::from_millis(700)];
        let timeouts = RouteTimeouts {
            objectives: &objectives,
            ..timeouts(2000, 4500)
        };
        let api = metrics.route("api", "api", timeouts);
        metrics.publish([("api", &api)]);
        let text = text(&registry);
        for histogram in ["upstream_latency", "request_duration"] {
            for le in ["0.3", "0.7", "2.0"] {
                let bucket = format!(
                    "stormguard_proxy_{histogram}_seconds_bucket{{le=\"{le}\",route=\"api\"}} 0"
                );
                assert!(text.contains(&bucket), "missing {bucket} in\n{text}");
            }
        }
        assert!(!text.contains("upstream_latency_seconds_bucket{le=\"4.5\""));
        assert!(text.contains("request_duration_seconds_bucket{le=\"4.5\""));
    }

    #[test]
    fn a_reload_with_the_same_timeout_keeps_the_histogram() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let route = |attempt_ms| metrics.route("api", "api", timeouts(attempt_ms, 5000));
        let first = route(300);
        first.attempt_latency.observe(Duration::from_millis(100));
        metrics.publish([("api", &first)]);
        let again = route(300);
        again.attempt_latency.observe(Duration::from_millis(100));
        let count = |n: u32| {
            format!("stormguard_proxy_upstream_latency_seconds_count{{route=\"api\"}} {n}")
        };
        assert!(text(&registry).contains(&count(2)));
        let changed = route(400);
        assert!(
            text(&registry).contains(&count(2)),
            "not replaced before publishing"
        );
        metrics.publish([("api", &changed)]);
        assert!(text(&registry).contains(&count(0)));
        metrics.publish([]);
        assert!(!text(&registry).contains("route=\"api\""));
    }

    #[test]
    fn answers_are_counted_by_class_and_reason() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let route: Arc<str> = Arc::from("api");
        metrics.answered(&route, 200, "");
        metrics.answered(&route, 503, "overloaded");
        let text = text(&registry);
        assert!(text.contains(
            "stormguard_proxy_requests_total{route=\"api\",class=\"2xx\",reason=\"\"} 1"
        ));
        assert!(text.contains(
            "stormguard_proxy_requests_total{route=\"api\",class=\"5xx\",reason=\"overloaded\"} 1"
        ));
    }

    fn series(route: &str, addr: &str) -> String {
        format!("route=\"{route}\",upstream=\"pool\",instance_addr=\"{addr}\"")
    }

    #[tokio::test(start_paused = true)]
    async fn each_instance_has_its_outcomes_and_ejection() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let api = metrics.route("api", "pool", timeouts(300, 900));
        metrics.publish([("api", &api)]);
        let (a1, b2) = (api.instance("a:1"), api.instance("b:2"));
        a1.answered(200);
        a1.answered(404);
        a1.answered(503);
        b2.abandoned();
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        b2.failed(&refused);
        let observer = api.balancer_observer(&metrics);
        let ejected = Event::Ejected {
            instance: 1,
            duration: Duration::from_secs(1),
        };
        observer.observe("api", ejected);
        observer.instance_ejected("api", "b:2", Duration::from_secs(1));
        let (a, b) = (series("api", "a:1"), series("api", "b:2"));
        let text_now = text(&registry);
        for line in [
            format!("stormguard_proxy_instance_attempts_total{{{a},outcome=\"ok\"}} 2"),
            format!("stormguard_proxy_instance_attempts_total{{{a},outcome=\"5xx\"}} 1"),
            format!("stormguard_proxy_instance_attempts_total{{{a},outcome=\"abandoned\"}} 0"),
            format!("stormguard_proxy_instance_attempts_total{{{b},outcome=\"abandoned\"}} 1"),
            format!(
                "stormguard_proxy_instance_attempts_total{{{b},outcome=\"connect-failure\"}} 1"
            ),
            format!("stormguard_proxy_instance_ejections_total{{{b}}} 1"),
            format!("stormguard_proxy_instance_ejected{{{a}}} 0"),
            format!("stormguard_proxy_instance_ejected{{{b}}} 1"),
            // The library's counter by route, as before.
            "stormguard_ejections_total{target=\"api\"} 1".to_string(),
        ] {
            assert!(text_now.contains(&line), "missing {line} in\n{text_now}");
        }
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(text(&registry).contains(&format!("stormguard_proxy_instance_ejected{{{b}}} 0")));
        drop((a1, b2));
    }

    #[test]
    fn an_instance_that_leaves_takes_its_series_and_one_that_stays_keeps_its_counts() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let first = metrics.route("api", "pool", timeouts(300, 900));
        let (a1, b2) = (first.instance("a:1"), first.instance("b:2"));
        a1.answered(200);
        // A reload that drops b and adds c, with another timeout (a new stack).
        let second = metrics.route("api", "pool", timeouts(400, 900));
        let (a1_again, c3) = (second.instance("a:1"), second.instance("c:3"));
        assert!(
            text(&registry).contains(&series("api", "b:2")),
            "b still held"
        );
        // The old stack goes, and with it the last hold on b (its last request ended).
        drop((a1, b2, first));
        let text_now = text(&registry);
        assert!(!text_now.contains(&series("api", "b:2")), "{text_now}");
        assert!(text_now.contains(&format!(
            "stormguard_proxy_instance_attempts_total{{{},outcome=\"ok\"}} 1",
            series("api", "a:1")
        )));
        assert!(text_now.contains(&series("api", "c:3")));
        // Discovery: d joins, a leaves, without a reload.
        let d4 = second.instance("d:4");
        d4.answered(200);
        drop(a1_again);
        let text_now = text(&registry);
        assert!(!text_now.contains(&series("api", "a:1")), "{text_now}");
        assert!(text_now.contains(&format!(
            "stormguard_proxy_instance_attempts_total{{{},outcome=\"ok\"}} 1",
            series("api", "d:4")
        )));
        drop((c3, d4));
        assert!(!text(&registry).contains("instance_addr"));
    }
}
