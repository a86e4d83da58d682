//! The data path's metrics, beside the library observer's.
//!
//! ## Why these
//! The library's [`PrometheusMetrics`] counts every policy decision (attempts, retries and why,
//! retries denied by the budget, hedges, timeouts split connect/request) by route. What only the
//! proxy sees is added here: what each client was answered (route, status class and
//! `stormguard-reason`), how long upstream attempts take against the route's timeout, how many
//! requests are in flight per upstream, and how many were shed. Every help text says what to do
//! about the number.
//!
//! The latency histogram's buckets differ per route (a fixed ladder plus that route's timeout, so
//! that the share of attempts under the timeout is read straight off a bucket, as Mux reads an
//! Apdex), which one `Family` cannot express; a small [`Collector`] encodes them instead.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use stormguard::metrics::PrometheusMetrics;

/// Seconds: from 1 ms to 10 s, the span of most request latencies; each route adds its timeout.
const LADDER: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A timeout above this is "none" (the graph's `NO_TIMEOUT` is a year): no bucket for it.
const LONGEST_BUCKET: Duration = Duration::from_secs(3600);

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
    connect_failures: Family<ConnectFailureLabels, Counter>,
    latency: Arc<LatencyHistograms>,
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

impl ProxyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let closed = Family::<ClosedLabels, Counter>::default();
        let metrics = ProxyMetrics {
            observer: PrometheusMetrics::register(registry),
            requests: Family::default(),
            in_flight: Family::default(),
            shed: Family::default(),
            connect_failures: Family::default(),
            latency: Arc::default(),
            unrouted: Arc::from(""),
            connections: Gauge::default(),
            connections_limited: Counter::default(),
            connections_closed: ConnectionsClosed::new(&closed),
            dns: Family::default(),
        };
        registry.register(
            "stormguard_proxy_requests",
            "Requests answered, by route, status class and stormguard-reason (empty when the upstream answered). A rising reason says where to look: connect-refused/connect-timeout at dead instances, timeout/deadline at slow upstreams or short caller budgets, retry-budget/overloaded at capacity, no-route at the routes",
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
            "Client connections the proxy closed to protect the others, by reason: first-byte-timeout (a connection sent nothing within listen.first_byte_timeout), silent-at-limit (one that had sent nothing was closed to admit a new one at listen.max_connections), stream-resets (an HTTP/2 client reset most streams it opened before their answer and was sent GOAWAY), header-budget (an unfinished request head would have taken all of them past listen.max_unfinished_header_bytes), tls-handshake (with listen.tls, a client's handshake failed or took longer than listen.header_read_timeout: a client that does not trust the certificate, or speaks plain text to the TLS port). A steady rate of any is a client that misbehaves or an attack: find the clients in the logs; header-budget under normal traffic means the budget is too small for the clients' heads",
            closed,
        );
        registry.register(
            "stormguard_proxy_dns_resolutions",
            "Resolutions of upstream host names (discovery, names in instances), by upstream and result: ok, or failed (no answer, no address, more than 256 addresses), when the proxy keeps the instances of the last good answer. A steady failed rate means the instances no longer follow DNS: check [dns] servers and the name",
            metrics.dns.clone(),
        );
        registry.register_collector(Box::new(metrics.latency.clone()));
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

    /// The latency histogram of `route`, with a bucket at `timeout`: the running one when its
    /// buckets are the same (a reload does not reset it), else a new one. Nothing is exported
    /// until [`ProxyMetrics::publish_latency`], so a generation that fails to build changes
    /// nothing.
    pub(crate) fn latency(&self, route: &str, timeout: Duration) -> LatencyHistogram {
        self.latency.for_route(route, timeout)
    }

    /// Exports exactly `routes`' histograms: those of the generation now running.
    pub(crate) fn publish_latency<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a str, &'a LatencyHistogram)>,
    ) {
        let map = routes
            .into_iter()
            .map(|(name, histogram)| (name.to_string(), histogram.clone()))
            .collect();
        *self.latency.write() = map;
    }
}

/// A route's latency histogram with its bucket bounds.
pub(crate) type LatencyHistogram = (Vec<f64>, Histogram);

/// The bucket bounds of a route with `timeout`: the ladder plus the timeout.
fn buckets(timeout: Duration) -> Vec<f64> {
    let mut bounds = LADDER.to_vec();
    if timeout <= LONGEST_BUCKET {
        let t = timeout.as_secs_f64();
        if !bounds.iter().any(|b| (b - t).abs() < 1e-9) {
            bounds.push(t);
            bounds.sort_by(f64::total_cmp);
        }
    }
    bounds
}

/// Upstream attempt latency per route, each route with its own buckets.
#[derive(Debug, Default)]
struct LatencyHistograms {
    routes: RwLock<BTreeMap<String, LatencyHistogram>>,
}

impl LatencyHistograms {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, LatencyHistogram>> {
        self.routes.write().unwrap_or_else(|e| e.into_inner())
    }

    fn for_route(&self, route: &str, timeout: Duration) -> LatencyHistogram {
        let bounds = buckets(timeout);
        let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
        match map.get(route) {
            Some((existing, histogram)) if *existing == bounds => (bounds, histogram.clone()),
            _ => {
                let histogram = Histogram::new(bounds.iter().copied());
                (bounds, histogram)
            }
        }
    }
}

impl Collector for LatencyHistograms {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut family = encoder.encode_descriptor(
            "stormguard_proxy_upstream_latency",
            "Time from sending an attempt upstream to its response head, by route; attempts cut off by a timeout count at the time they were abandoned. One bucket is the route's timeout: the share below it is the share that timeout lets through. Many attempts near the timeout: the timeout is below the upstream's tail (run stormguard recommend).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (route, (_, histogram)) in map.iter() {
            let labels = [("route", route.as_str())];
            histogram.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn each_route_has_a_bucket_at_its_timeout() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let api = metrics.latency("api", Duration::from_millis(300));
        let web = metrics.latency("web", Duration::from_secs(1));
        api.1.observe(0.2);
        web.1.observe(2.0);
        assert!(
            !text(&registry).contains("route=\"api\""),
            "published only when running"
        );
        metrics.publish_latency([("api", &api), ("web", &web)]);
        let text = text(&registry);
        assert!(
            text.contains(
                "stormguard_proxy_upstream_latency_seconds_bucket{le=\"0.3\",route=\"api\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "stormguard_proxy_upstream_latency_seconds_bucket{le=\"1.0\",route=\"web\"} 0"
        ));
        assert!(text.contains("# HELP stormguard_proxy_upstream_latency_seconds"));
        // prometheus-client ends a registered metric's help with a period of its own.
        for help in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(help.ends_with('.') && !help.ends_with(".."), "{help}");
        }
    }

    #[test]
    fn a_reload_with_the_same_timeout_keeps_the_histogram() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::register(&mut registry);
        let first = metrics.latency("api", Duration::from_millis(300));
        first.1.observe(0.1);
        metrics.publish_latency([("api", &first)]);
        let again = metrics.latency("api", Duration::from_millis(300));
        again.1.observe(0.1);
        let count = |n: u32| {
            format!("stormguard_proxy_upstream_latency_seconds_count{{route=\"api\"}} {n}")
        };
        assert!(text(&registry).contains(&count(2)));
        let changed = metrics.latency("api", Duration::from_millis(400));
        assert!(
            text(&registry).contains(&count(2)),
            "not replaced before publishing"
        );
        metrics.publish_latency([("api", &changed)]);
        assert!(text(&registry).contains(&count(0)));
        metrics.publish_latency([]);
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

    #[test]
    fn no_bucket_for_no_timeout() {
        assert_eq!(
            buckets(Duration::from_secs(365 * 24 * 3600)),
            LADDER.to_vec()
        );
        assert_eq!(buckets(Duration::from_secs(1)), LADDER.to_vec());
        assert_eq!(buckets(Duration::from_millis(300)).len(), LADDER.len() + 1);
    }
}
