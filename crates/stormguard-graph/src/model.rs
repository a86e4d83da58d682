//! The graph as data: services, the calls they make, and the settings of each call.
//!
//! Every field has its default already applied by [`crate::parse()`]; `Option` marks what the file
//! may leave out *and* what a rule needs to know was left out (a call without a timeout).

use std::collections::BTreeMap;
use std::time::Duration;

use stormguard::backoff::Backoff;
use stormguard::classify::RetryOn;
use stormguard::hedge::HedgeDelay;

/// Where something is defined in the graph file, for error messages and SARIF locations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// A whole graph file.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// Where users come in.
    pub entry: Entry,
    /// Services by name (sorted, so every output is in a stable order).
    pub services: BTreeMap<String, Service>,
    /// Thresholds of the checks.
    pub check: CheckConfig,
    /// Fault scenarios for the simulator, by name.
    pub scenarios: BTreeMap<String, Scenario>,
    /// The inputs the file left to their defaults that `check`'s figures and fixes rest on.
    pub assumed: Assumed,
}

impl Graph {
    /// Every call of the graph with where it is: the calling service, its endpoint (`None`
    /// for a service without named endpoints), the call's index among that endpoint's calls,
    /// and the call; services in name order, endpoints and calls in file order.
    ///
    /// Why: the places of calls are what a fixed file's notes and an export's edits are
    /// keyed by ([`crate::fix::CallPlace`]), and each walk of services, endpoints and calls
    /// wrote the same three loops.
    ///
    /// ```
    /// let graph = stormguard_graph::parse(
    ///     "g.toml",
    ///     "[entry]\nservice = \"a\"\n[services.a]\n[[services.a.calls]]\nto = \"b\"\n\
    ///      [[services.a.calls]]\nto = \"c\"\n[services.b]\n[services.c]\n",
    /// )
    /// .unwrap();
    /// let places: Vec<_> = graph.each_call().map(|(from, ep, i, call)| (from, ep, i, call.to.as_str())).collect();
    /// assert_eq!(places, [("a", None, 0, "b"), ("a", None, 1, "c")]);
    /// ```
    pub fn each_call(&self) -> impl Iterator<Item = (&str, Option<&str>, usize, &Call)> + '_ {
        self.services.iter().flat_map(|(name, service)| {
            service.each_endpoint().flat_map(move |endpoint| {
                endpoint
                    .calls
                    .iter()
                    .enumerate()
                    .map(move |(index, call)| (name.as_str(), endpoint.name, index, call))
            })
        })
    }
}

/// What a graph file did not say, and the defaults that stood in: services without `latency`
/// (p50 1 ms, p99 10 ms) or `instances` (1), calls without `rtt` (1 ms).
///
/// Why: a timeout cut to cover a latency nobody measured, or a connect timeout of three round
/// trips of 1 ms, is a guess, and an imported mesh says none of these: `check --fix` and
/// `export` say which of the values they write rest on them, so that no one applies them to
/// production as if measured.
///
/// ```
/// let graph = stormguard_graph::parse(
///     "g.toml",
///     "[entry]\nservice = \"a\"\n[services.a]\nlatency = { p50 = \"5ms\", p99 = \"50ms\" }\n\
///      [[services.a.calls]]\nto = \"b\"\n[services.b]\ninstances = 3\n",
/// )
/// .unwrap();
/// assert_eq!(graph.assumed.latency, ["b"]);
/// assert_eq!(graph.assumed.instances, ["a"]);
/// assert_eq!(graph.assumed.rtt, ["a -> b"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assumed {
    /// Services whose `latency` no file gave.
    pub latency: Vec<String>,
    /// Services whose `instances` no file gave.
    pub instances: Vec<String>,
    /// Calls (`from -> to`) whose `rtt` no file gave.
    pub rtt: Vec<String>,
}

impl Assumed {
    /// Whether the file gave every one of them.
    pub fn is_empty(&self) -> bool {
        self.latency.is_empty() && self.instances.is_empty() && self.rtt.is_empty()
    }

    /// The default that a change of `key` rests on, if one does: on the call `from -> to`, or
    /// on service `from`'s own table when `to` is empty, written by the fixes of `rules`. A
    /// connect timeout rests on the call's round trip (the connect rules); a timeout on its
    /// callee's latency (`missing-timeout`, `timeout-below-latency`); an attempt taken off by
    /// `single-instance-retry` on the callee's instances; a capacity or queue fix on the
    /// service's latency. Only when every rule of the change rests on that default: a timeout
    /// cut to fit the entry's budget, or an attempt taken off by `retry-amplification` as well,
    /// stands on the graph's own figures. The one answer `check --fix` and `export` give.
    ///
    /// ```
    /// use stormguard_graph::model::{Assumed, RestsOn};
    ///
    /// let assumed = Assumed { rtt: vec!["a -> b".into()], ..Assumed::default() };
    /// assert_eq!(assumed.behind("a", "b", "connect_timeout", &[]), Some(RestsOn::Rtt));
    /// assert_eq!(assumed.behind("a", "b", "max_attempts", &["retry-amplification"]), None);
    /// let assumed = Assumed { latency: vec!["b".into()], ..Assumed::default() };
    /// assert!(assumed.behind("a", "b", "timeout", &["missing-timeout"]).is_some());
    /// assert_eq!(assumed.behind("a", "b", "timeout", &["entry-budget"]), None);
    /// ```
    pub fn behind(&self, from: &str, to: &str, key: &str, rules: &[&str]) -> Option<RestsOn> {
        // Every rule of the change among `set`: no rules said (a caller that has none) counts
        // as all.
        let only = |set: &[&str]| rules.iter().all(|rule| set.contains(rule));
        let latency_of = |service: &str| self.latency.iter().any(|s| s == service);
        const CONNECT: [&str; 3] = [
            "missing-connect-timeout",
            "connect-timeout-too-long",
            "connect-timeout-below-rtt",
        ];
        if key == "connect_timeout"
            && only(&CONNECT)
            && self.rtt.iter().any(|c| *c == format!("{from} -> {to}"))
        {
            return Some(RestsOn::Rtt);
        }
        if ["timeout", "request_timeout", "hedge", "queue_timeout"].contains(&key)
            && only(&["missing-timeout", "timeout-below-latency"])
            && latency_of(to)
        {
            return Some(RestsOn::Latency(to.to_string()));
        }
        if !rules.is_empty()
            && only(&["single-instance-retry"])
            && self.instances.iter().any(|s| s == to)
        {
            return Some(RestsOn::Instances(to.to_string()));
        }
        let service = if to.is_empty() { from } else { to };
        let capacity = !rules.is_empty()
            && only(&[
                "retries-over-capacity",
                "over-capacity",
                "queue-outlives-caller",
            ]);
        (capacity && latency_of(service)).then(|| RestsOn::Latency(service.to_string()))
    }
}

/// The default a change rests on ([`Assumed::behind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestsOn {
    /// The call's round trip, 1 ms.
    Rtt,
    /// The service's latency, p50 1 ms and p99 10 ms.
    Latency(String),
    /// The service's instances, 1.
    Instances(String),
}

/// Where users come in, and how long they wait.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The service users call.
    pub service: String,
    /// How long a user waits (default 10 s).
    pub timeout: Duration,
    /// User requests per second (for the simulator; default 100).
    pub rate: f64,
    /// Where `[entry]` is.
    pub span: Span,
}

/// One service: its instances, capacity, own latency, and the calls it makes for each request.
///
/// A service either makes the same `calls` on every request, or serves several kinds of request
/// (`endpoints`), each with its own calls and share of the requests: a gateway that sends
/// browsing to one service and checkout to another makes one or the other per request, never
/// both, and a model that charged it both would overstate its worst case and its load.
/// [`Service::each_endpoint`] walks both kinds alike.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Its name (the key under `[services]`).
    pub name: String,
    /// Instances (default 1).
    pub instances: u32,
    /// Requests one instance works on at once (default 16).
    pub concurrency: u32,
    /// Requests waiting per instance before it rejects (default 64).
    pub queue: u32,
    /// Its own work, without its calls.
    pub latency: Latency,
    /// Extra work per other request in flight on the instance (simulator; default 0).
    pub contention: Duration,
    /// Which queued request a free worker takes next, and when a queued one is too old to
    /// take (default [`QueueDiscipline::Fifo`]).
    pub queue_discipline: QueueDiscipline,
    /// The longest a request may wait in the queue: one that waited longer is answered 503
    /// when a worker would take it, whatever the discipline. `None` (the default): no bound.
    pub queue_timeout: Option<Duration>,
    /// The calls it makes for each request, in order, when it has no named endpoints (its one
    /// implicit endpoint); empty when it has (the parser refuses both).
    pub calls: Vec<Call>,
    /// Its named endpoints (`[services.NAME.endpoints.EP]`), in file order; empty when every
    /// request makes `calls`.
    pub endpoints: Vec<Endpoint>,
    /// Where `[services.NAME]` is.
    pub span: Span,
}

impl Service {
    /// Every kind of request the service serves, with its calls and share of the requests: its
    /// named endpoints in file order, or, without any, one implicit endpoint of its `calls` and
    /// the whole share. The one way to walk a service's calls that is right for both.
    ///
    /// ```
    /// let graph = stormguard_graph::parse("g.toml", r#"
    /// [entry]
    /// service = "gateway"
    /// [services.gateway.endpoints.browse]
    /// weight = 9
    /// [[services.gateway.endpoints.browse.calls]]
    /// to = "catalog"
    /// [services.gateway.endpoints.checkout]
    /// [[services.gateway.endpoints.checkout.calls]]
    /// to = "orders"
    /// [services.catalog]
    /// [services.orders]
    /// "#).unwrap();
    /// let shares: Vec<(Option<&str>, f64)> = graph.services["gateway"]
    ///     .each_endpoint()
    ///     .map(|e| (e.name, e.share))
    ///     .collect();
    /// assert_eq!(shares, [(Some("browse"), 0.9), (Some("checkout"), 0.1)]);
    /// assert_eq!(graph.services["catalog"].each_endpoint().next().unwrap().name, None);
    /// ```
    pub fn each_endpoint(&self) -> impl Iterator<Item = EndpointRef<'_>> + '_ {
        let total: f64 = self.endpoints.iter().map(|e| e.weight).sum();
        let implicit = self.endpoints.is_empty().then(|| EndpointRef {
            name: None,
            share: 1.0,
            calls: &self.calls,
            span: self.span,
        });
        let named = self.endpoints.iter().map(move |e| EndpointRef {
            name: Some(&e.name),
            share: e.weight / total,
            calls: &e.calls,
            span: e.span,
        });
        implicit.into_iter().chain(named)
    }

    /// The named endpoint `name`, if the service has it.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

/// One kind of request a service serves (`[services.NAME.endpoints.EP]`): its share of the
/// service's requests and the calls each such request makes.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// Its name (the key under `endpoints`).
    pub name: String,
    /// Its share of the service's requests, relative to the other endpoints' (default 1; above
    /// 0): `weight = 9` beside `weight = 1` is 90% of the requests.
    pub weight: f64,
    /// The calls each of its requests makes, in order.
    pub calls: Vec<Call>,
    /// Where `[services.NAME.endpoints.EP]` is.
    pub span: Span,
}

/// An endpoint as [`Service::each_endpoint`] yields it: a named one, or the implicit one of a
/// service without endpoints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EndpointRef<'a> {
    /// Its name; `None` for the implicit endpoint.
    pub name: Option<&'a str>,
    /// Its share of the service's requests, from 0 to 1 (the shares of a service sum to 1).
    pub share: f64,
    /// The calls each of its requests makes.
    pub calls: &'a [Call],
    /// Where it is defined (the service's table for the implicit endpoint).
    pub span: Span,
}

/// How an instance's free worker picks the next queued request (`queue_discipline`).
///
/// First in, first out is what most servers do and what a queue is usually taken to mean, but
/// under sustained overload it is the worst order: the oldest request is the one whose caller
/// has most likely given up, so the instance works only on requests nobody waits for any more
/// and goodput collapses while every worker is busy (Cockcroft: processing the oldest first "is
/// often a bad policy, as you may never get to do work that someone is still actually waiting
/// for").
///
/// ```
/// use stormguard_graph::model::{Codel, QueueDiscipline};
/// let graph = stormguard_graph::parse("g.toml", r#"
/// [entry]
/// service = "api"
/// [services.api]
/// queue_discipline = "codel"
/// codel = { target = "10ms" }
/// "#).unwrap();
/// let codel = Codel { target: std::time::Duration::from_millis(10), ..Codel::default() };
/// assert_eq!(graph.services["api"].queue_discipline, QueueDiscipline::Codel(codel));
/// assert_eq!(QueueDiscipline::default(), QueueDiscipline::Fifo);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueDiscipline {
    /// `"fifo"` (the default): the oldest queued request first.
    #[default]
    Fifo,
    /// `"lifo"`: the newest queued request first, whose caller is the likeliest still to wait;
    /// the oldest wait until the queue empties (bound them with `queue_timeout`).
    Lifo,
    /// `"codel"`: Facebook's controlled delay with adaptive LIFO (Maurer, "Fail at Scale", ACM
    /// Queue 2015); see [`Codel`] for the rule.
    Codel(Codel),
}

impl QueueDiscipline {
    /// Its name as a file writes it: `fifo`, `lifo` or `codel`.
    pub fn name(&self) -> &'static str {
        match self {
            QueueDiscipline::Fifo => "fifo",
            QueueDiscipline::Lifo => "lifo",
            QueueDiscipline::Codel(_) => "codel",
        }
    }
}

/// CoDel's two settings (`codel = { target, interval }`), as Facebook runs it in front of its
/// servers' request queues (Maurer, "Fail at Scale", ACM Queue 2015, with `M = target` and
/// `N = interval`).
///
/// The rule, per instance: the queue is *overloaded* when it has not been empty at any moment
/// of the last `interval`. Then a free worker takes the newest request (adaptive LIFO) and drops,
/// with a fast 503, every request it would take that has waited longer than `target`; when the
/// queue has been empty within the last `interval`, it takes the oldest (FIFO) and drops those
/// that waited longer than `interval`. The paper fixes a request's limit when it is queued;
/// here it is read when a worker would take it, from the same two settings, which differs only
/// for requests queued in the `interval` before the overload is declared (they get `target`
/// instead of `interval`). When an arrival finds the queue full, requests past the limit at its
/// old end are dropped first to make room: stale work is discarded before fresh work is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codel {
    /// The longest a request may wait while the queue is overloaded (default 5 ms, the
    /// paper's `M`).
    pub target: Duration,
    /// How long the queue must stay non-empty to count as overloaded, and the longest a
    /// request may wait while it is not (default 100 ms, the paper's `N`).
    pub interval: Duration,
}

impl Default for Codel {
    fn default() -> Self {
        Codel {
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
        }
    }
}

/// A service's own latency, as two quantiles a lognormal is fitted to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// Median (default 1 ms).
    pub p50: Duration,
    /// 99th percentile (default 10 ms).
    pub p99: Duration,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            p50: Duration::from_millis(1),
            p99: Duration::from_millis(10),
        }
    }
}

/// One call from a service to another, with its policy.
///
/// The policy keys (`timeout` to `propagate_deadline`) are the ones a proxy route has, with the
/// same meaning and the same defaults: both files read them with
/// [`crate::parse::policy_keys`], and `docs/reference.md` lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The service called.
    pub to: String,
    /// The endpoint of `to` called (`endpoint = "EP"`); `None`: any of its endpoints, in their
    /// shares (or its only, implicit one). A graph key only: a proxy route has none.
    pub endpoint: Option<String>,
    /// Each attempt, from its start (connecting included) to its answer. `None`: the file gave
    /// none (a finding; a proxy route refuses it).
    pub timeout: Option<Duration>,
    /// The whole call: every attempt and every wait between them (Envoy's route timeout, gRPC's
    /// deadline, Gateway API's `timeouts.request`). `None`: only the caller's deadline bounds
    /// it.
    pub request_timeout: Option<Duration>,
    /// Connecting, within the attempt's `timeout`. `None`: the file gave none, and only the
    /// attempt's `timeout` bounds connecting (a finding).
    pub connect_timeout: Option<Duration>,
    /// Network round trip (default 1 ms).
    pub rtt: Duration,
    /// Attempts, the first included (default 1).
    pub max_attempts: u32,
    /// Wait between attempts (default: the policy core's recommended full jitter, 25 ms base,
    /// 250 ms cap; `"none"` for no wait).
    pub backoff: Backoff,
    /// Retry budget or token bucket (default: the recommended 20% budget with 10 retries a
    /// second); `None` only when the file says `retry_budget = "none"`.
    pub limiter: Option<LimiterSpec>,
    /// Whether a request may be applied twice (default [`Idempotent::ByMethod`]).
    pub idempotent: Idempotent,
    /// The HTTP method of the call's requests (default GET), which `idempotent = "by-method"`
    /// reads.
    pub method: String,
    /// The failures that may be retried (default: [`RetryOn::default`]).
    pub retry_on: RetryOn,
    /// Sequential calls per request, e.g. a loop over items (default 1).
    pub count: u32,
    /// Whether it runs at once with the calls next to it that are also parallel (default false).
    pub parallel: bool,
    /// Whether the caller fails when this call fails (default true; false: an expediting call).
    pub required: bool,
    /// Hedging, if any.
    pub hedge: Option<HedgeSpec>,
    /// Whether the remaining budget is passed downstream (default true).
    pub propagate_deadline: bool,
    /// Where this `[[services.NAME.calls]]` (or `[[services.NAME.endpoints.EP.calls]]`) is; a
    /// proxy route's `[[routes]]`.
    pub span: Span,
}

impl Call {
    /// Whether this call's requests may be applied twice: `idempotent`, with "by-method" read
    /// from `method` as RFC 9110 defines it (GET, HEAD, OPTIONS, PUT, DELETE, TRACE).
    pub fn is_idempotent(&self) -> bool {
        match self.idempotent {
            Idempotent::Yes => true,
            Idempotent::No => false,
            Idempotent::ByMethod => http_method_is_idempotent(&self.method),
        }
    }

    /// The failures this call retries: its `retry_on` for an idempotent call; for one that is
    /// not, only the part the policy core retries for any method
    /// ([`RetryOn::for_any_method`]: failures before the request was sent, and answers that say
    /// the work was not done). The proxy and the simulator classify attempts with that core,
    /// so a `timeout` listed on a POST is never retried by either, and `check` counts what
    /// they do.
    pub fn retried_on(&self) -> RetryOn {
        if self.is_idempotent() {
            self.retry_on
        } else {
            self.retry_on.for_any_method()
        }
    }
}

/// Whether `method` is idempotent by RFC 9110 (the policy core's list, by name).
pub fn http_method_is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// `idempotent = true | false | "by-method"`: whether a request that reached the server may be
/// sent again.
///
/// ```
/// use stormguard_graph::model::Idempotent;
/// assert_eq!(Idempotent::default(), Idempotent::ByMethod);
/// assert_eq!(Idempotent::ByMethod.to_string(), "\"by-method\"");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Idempotent {
    /// `true`: every request may be applied twice, whatever its method.
    Yes,
    /// `false`: no request is sent again once it may have reached the server.
    No,
    /// `"by-method"` (the default): by the request's method, and in the proxy also by an
    /// `Idempotency-Key` header.
    #[default]
    ByMethod,
}

impl std::fmt::Display for Idempotent {
    /// As a file writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Idempotent::Yes => "true",
            Idempotent::No => "false",
            Idempotent::ByMethod => "\"by-method\"",
        })
    }
}

/// A call's retry limiter, as the file gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LimiterSpec {
    /// `retry_budget = { ratio, min_per_sec }`.
    Budget {
        /// Share of requests that may be retried.
        ratio: f64,
        /// Retries a second always allowed.
        min_per_sec: u32,
    },
    /// `token_bucket = { capacity, retry_cost, timeout_cost }`.
    TokenBucket {
        /// Tokens when full.
        capacity: u32,
        /// Cost of a retry.
        retry_cost: u32,
        /// Cost of a retry after a timeout.
        timeout_cost: u32,
    },
}

/// A call's hedging, as the file gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HedgeSpec {
    /// When to send the hedge.
    pub delay: HedgeDelay,
    /// Largest share of extra requests (default 0.05, see
    /// [`crate::parse::policy_keys::HEDGE_MAX_EXTRA`]).
    pub max_extra: f64,
}

/// Thresholds of the checks (`[check]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckConfig {
    /// Worst-case attempts at a service per user request above which `retry-amplification`
    /// fires (default 10).
    pub max_amplification: f64,
    /// Connect timeout above this multiple of the round trip: `connect-timeout-too-long`
    /// (default 10).
    pub connect_timeout_rtt_multiple: f64,
    /// The false-timeout rate a timeout should keep to (default 0.001, the p99.9).
    pub false_timeout_rate: f64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            max_amplification: 10.0,
            connect_timeout_rtt_multiple: 10.0,
            false_timeout_rate: 0.001,
        }
    }
}

/// A fault scenario for the simulator (`[scenarios.NAME]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// How long it runs.
    pub duration: Duration,
    /// User rate, instead of `entry.rate`.
    pub rate: Option<f64>,
    /// Faults injected.
    pub faults: Vec<Fault>,
    /// Load steps (spikes).
    pub load: Vec<LoadStep>,
    /// Where it is defined.
    pub span: Span,
}

/// A fault on one service for a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// The service.
    pub service: String,
    /// Start.
    pub from: Duration,
    /// End.
    pub to: Duration,
    /// Own work multiplied by this (default 1).
    pub slowdown: f64,
    /// Share of attempts failing fast with 503 (default 0).
    pub error_rate: f64,
    /// The status those attempts get (default 503; 400 to 599), e.g. 409 for a service that
    /// loses optimistic-lock races, which a call retries only with `retry_on = ["409"]`.
    pub error_status: u16,
    /// Connections refused (default false).
    pub down: bool,
    /// Connections never answered (default false).
    pub blackhole: bool,
    /// How many instances (default all).
    pub instances: Option<u32>,
}

/// A step in user load.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadStep {
    /// Start.
    pub from: Duration,
    /// End.
    pub to: Duration,
    /// User requests per second meanwhile.
    pub rate: f64,
}
