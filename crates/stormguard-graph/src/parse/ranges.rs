//! The range of every value the project's files hold: one table, [`RANGES`], that the graph
//! file's and the proxy settings' parsers check each value against and that `docs/reference.md`
//! prints (`UPDATE_REFERENCE=1 cargo test -p stormguard-graph --test reference` rewrites it).
//!
//! ## Why every value has one
//! A value of the right type can still be one that no system means, and the parsers once took
//! them: `backoff = "constant(5000000000000000h)"` parsed, then panicked on the first clock it was
//! added to; `rate = 1e300` made `sim` allocate until the machine gave up; `max_request_body =
//! "99999TiB"` was no limit at all. So each value has a range chosen for what it means (a timeout
//! is 1 ms to 1 h: below, no network answers; above, the attempt is a job, not a call), stated
//! here once, checked where the value is read, with `file:line:column`, the key and the range in
//! the error, and printed in the reference beside the reason.
//!
//! ## Zero
//! One rule for every duration: a duration that bounds or spaces events (a timeout, a wait
//! between retries, a hedge's delay, a latency, a connection timer) is never zero, since "no
//! wait" has its own spelling (`backoff = "none"`, no `hedge`) and a zero bound fires before
//! anything happens; an amount added on top of the work (`contention`, a deadline reserve, a
//! shutdown grace, an injected delay) may be zero, and is by default. A count is from 1 where none
//! would mean nothing works (instances, attempts, headers), from 0 where none is a choice (a
//! queue, a retry's cost, a body).
//!
//! The backoff's and a hedge delay's own texts are checked by the policy core's parsers
//! (`stormguard::backoff::MIN_DELAY` and `MAX_DELAY`, `stormguard::hedge`'s), so that a text is
//! refused the same wherever it is read; their rows here say the same range.

use std::fmt;
use std::time::Duration;

use super::size;

/// Where a key is documented: the heading of its section of `docs/reference.md` (without `#`s
/// and backticks) and the key, as a file writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// The section's heading, e.g. `[[services.NAME.calls]]` or `A call's and a route's policy`.
    pub section: &'static str,
    /// The key.
    pub key: &'static str,
}

/// The heading of the section of a call's and a route's policy keys.
pub const POLICY: &str = "A call's and a route's policy";

const fn at(section: &'static str, key: &'static str) -> KeyRef {
    KeyRef { section, key }
}

/// The values a range admits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bounds {
    /// Durations from the first to the second, both included.
    Duration(Duration, Duration),
    /// Whole numbers from the first to the second, both included.
    Whole(i64, i64),
    /// Finite numbers between `min` and `max`, each included unless said.
    Number {
        /// The least.
        min: f64,
        /// Whether `min` itself is out.
        min_excluded: bool,
        /// The most.
        max: f64,
        /// Whether `max` itself is out.
        max_excluded: bool,
    },
    /// Sizes in bytes from the first to the second, both included.
    Size(u64, u64),
}

/// Numbers `min` to `max`, both included.
const fn number(min: f64, max: f64) -> Bounds {
    Bounds::Number {
        min,
        min_excluded: false,
        max,
        max_excluded: false,
    }
}

/// Numbers above `min`, at most `max`.
const fn above(min: f64, max: f64) -> Bounds {
    Bounds::Number {
        min,
        min_excluded: true,
        max,
        max_excluded: false,
    }
}

/// The range as the reference and the errors write it: `1ms to 1h`, `1 to 100`, `above 0, at
/// most 1000`, `above 0, below 1`, `0B to 1GiB`.
impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use stormguard::duration::format as duration;
        match *self {
            Bounds::Duration(min, max) => write!(f, "{} to {}", duration(min), duration(max)),
            Bounds::Whole(min, max) => write!(f, "{min} to {max}"),
            Bounds::Number {
                min,
                min_excluded,
                max,
                max_excluded,
            } => match (min_excluded, max_excluded) {
                (false, false) => write!(f, "{min} to {max}"),
                (true, false) => write!(f, "above {min}, at most {max}"),
                (false, true) => write!(f, "{min} or more, below {max}"),
                (true, true) => write!(f, "above {min}, below {max}"),
            },
            Bounds::Size(min, max) => write!(f, "{} to {}", size::format(min), size::format(max)),
        }
    }
}

/// One range: the values a kind of key takes, why no less and why no more, and the keys that
/// take it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueRange {
    /// What the values are, as the subject of a sentence: `a timeout`.
    pub subject: &'static str,
    /// The values it admits.
    pub bounds: Bounds,
    /// Why no less: what a value below would mean.
    pub below: &'static str,
    /// Why no more: what a value above would mean.
    pub above: &'static str,
    /// The keys that take it, where the reference documents them.
    pub keys: &'static [KeyRef],
}

impl ValueRange {
    /// The error for `shown`, a value out of range: below (`low`) or above.
    fn refusal(&self, shown: impl fmt::Display, low: bool) -> String {
        let why = if low { self.below } else { self.above };
        format!(
            "{shown} is out of range: {why}; {} is {}",
            self.subject, self.bounds
        )
    }

    /// `value`, or why it is out of range; the bounds must be [`Bounds::Duration`].
    pub fn duration(&self, value: Duration) -> Result<Duration, String> {
        let Bounds::Duration(min, max) = self.bounds else {
            unreachable!(
                "{}: a duration checked against {}",
                self.subject, self.bounds
            )
        };
        let shown = stormguard::duration::format(value);
        match value {
            v if v < min => Err(self.refusal(shown, true)),
            v if v > max => Err(self.refusal(shown, false)),
            v => Ok(v),
        }
    }

    /// `value`, or why it is out of range; the bounds must be [`Bounds::Whole`].
    pub fn whole(&self, value: i64) -> Result<i64, String> {
        let Bounds::Whole(min, max) = self.bounds else {
            unreachable!(
                "{}: a whole number checked against {}",
                self.subject, self.bounds
            )
        };
        match value {
            v if v < min => Err(self.refusal(v, true)),
            v if v > max => Err(self.refusal(v, false)),
            v => Ok(v),
        }
    }

    /// `value`, or why it is out of range (not a finite number included); the bounds must be
    /// [`Bounds::Number`].
    pub fn number(&self, value: f64) -> Result<f64, String> {
        let Bounds::Number {
            min,
            min_excluded,
            max,
            max_excluded,
        } = self.bounds
        else {
            unreachable!("{}: a number checked against {}", self.subject, self.bounds)
        };
        let low = if min_excluded {
            value <= min
        } else {
            value < min
        };
        let high = if max_excluded {
            value >= max
        } else {
            value > max
        };
        if value.is_nan() {
            return Err(self.refusal("NaN (not a number)", true));
        }
        match (low, high) {
            (true, _) => Err(self.refusal(shown_number(value), true)),
            (_, true) => Err(self.refusal(shown_number(value), false)),
            _ => Ok(value),
        }
    }

    /// `value` in bytes, or why it is out of range; the bounds must be [`Bounds::Size`].
    pub fn size(&self, value: u64) -> Result<u64, String> {
        let Bounds::Size(min, max) = self.bounds else {
            unreachable!("{}: a size checked against {}", self.subject, self.bounds)
        };
        let shown = size::format(value);
        match value {
            v if v < min => Err(self.refusal(shown, true)),
            v if v > max => Err(self.refusal(shown, false)),
            v => Ok(v),
        }
    }
}

/// A number as a person wrote it: `1e300`, not the 301 digits of its decimal expansion.
fn shown_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-6..1e15).contains(&magnitude) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const MS: Duration = Duration::from_millis(1);

/// Why an hour is the most any timer of a request may run.
const AN_HOUR: &str = "a request allowed over an hour is a job, not a call, and holds a worker \
                       and a connection all that time";

/// `timeout`, `request_timeout`, `connect_timeout`, `entry.timeout` and an adaptive timeout's
/// bounds.
pub const TIMEOUT: ValueRange = ValueRange {
    subject: "a timeout",
    bounds: Bounds::Duration(MS, HOUR),
    below: "a timeout under a millisecond fires before any network answers",
    above: AN_HOUR,
    keys: &[
        at(POLICY, "timeout"),
        at(POLICY, "request_timeout"),
        at(POLICY, "connect_timeout"),
        at("[entry]", "timeout"),
        at("[services.NAME]", "queue_timeout"),
        at("adaptive_timeout", "min"),
        at("adaptive_timeout", "max"),
    ],
};

/// CoDel's target and interval (`codel = { target, interval }`).
pub const CODEL_DELAY: ValueRange = ValueRange {
    subject: "a CoDel delay",
    bounds: Bounds::Duration(MS, Duration::from_secs(60)),
    below: "a queue wait under a millisecond is below what a worker's hand-over takes, so every \
            queued request would be dropped",
    above: "a queue allowed to stay non-empty for over a minute, or a request to wait that \
            long, controls no delay any caller notices",
    keys: &[at("codel", "target"), at("codel", "interval")],
};

/// A service's latency quantiles and a call's round trip.
pub const LATENCY: ValueRange = ValueRange {
    subject: "a latency or round trip",
    bounds: Bounds::Duration(Duration::from_micros(1), HOUR),
    below: "no service works, and no network answers, in under a microsecond",
    above: "a service that takes over an hour to answer serves jobs, not requests",
    keys: &[
        at("latency", "p50"),
        at("latency", "p99"),
        at("[[services.NAME.calls]]", "rtt"),
        at("[[routes]]", "rtt"),
        at("[[routes]]", "latency_buckets"),
    ],
};

/// Time added to a request or a shutdown, zero by default.
pub const ADDED: ValueRange = ValueRange {
    subject: "an added delay",
    bounds: Bounds::Duration(Duration::ZERO, HOUR),
    below: "a duration is never negative",
    above: "over an hour added to a request, or to a shutdown, outlives every caller and every \
            orchestrator's patience",
    keys: &[
        at("[services.NAME]", "contention"),
        at("[[routes]]", "deadline_reserve"),
        at("fault", "delay"),
        at("[listen]", "shutdown_grace"),
    ],
};

/// The proxy's timers on a client connection.
pub const CONNECTION_TIMER: ValueRange = ValueRange {
    subject: "a connection timer",
    bounds: Bounds::Duration(MS, HOUR),
    below: "a timer under a millisecond closes a connection before any client could send on it",
    above: "a connection kept over an hour by a timer is a leak: load balancers and NATs drop \
            idle connections within minutes",
    keys: &[
        at("[listen]", "header_read_timeout"),
        at("[listen]", "http2_keep_alive_interval"),
        at("[listen]", "http2_keep_alive_timeout"),
        at("[listen]", "idle_timeout"),
        at("[listen]", "first_byte_timeout"),
    ],
};

/// The proxy's timers on a request's bodies.
pub const BODY_TIMER: ValueRange = ValueRange {
    subject: "a body timer",
    bounds: Bounds::Duration(MS, HOUR),
    below: "no body arrives, or moves, within less than a millisecond, even on loopback",
    above: "a body allowed to stall for over an hour holds its upstream slot and connection as \
            long: the slow client it stops would have won",
    keys: &[
        at("[listen]", "stream_idle_timeout"),
        at("[listen]", "request_body_timeout"),
    ],
};

/// How often the proxy resolves an upstream's host names again.
pub const DNS_REFRESH: ValueRange = ValueRange {
    subject: "a DNS refresh",
    bounds: Bounds::Duration(Duration::from_millis(100), HOUR),
    below: "a name resolved more than ten times a second loads the DNS server for nothing: \
            no deployment moves instances that fast",
    above: "a set of instances an hour old sends requests to pods long gone and none to the \
            new ones",
    keys: &[at("[dns]", "refresh"), at("discovery", "refresh")],
};

/// The longest run of `sim`: a scenario's `duration`, and `--duration`.
pub const RUN_LENGTH: ValueRange = ValueRange {
    subject: "a simulated run",
    bounds: Bounds::Duration(Duration::from_secs(1), DAY),
    below: "the timeline counts whole seconds, so a run under one shows nothing",
    above: "a run's memory and time grow with its length, and a day is the most `sim` runs; \
            tell a longer story as several scenarios",
    keys: &[at("[scenarios.NAME]", "duration")],
};

/// When a fault or a load step starts and ends.
pub const SCENARIO_TIME: ValueRange = ValueRange {
    subject: "a time in a scenario",
    bounds: Bounds::Duration(Duration::ZERO, DAY),
    below: "a duration is never negative",
    above: "no scenario runs longer than 24h, so nothing happens after that",
    keys: &[
        at("[[scenarios.NAME.faults]]", "from"),
        at("[[scenarios.NAME.faults]]", "to"),
        at("[[scenarios.NAME.load]]", "from"),
        at("[[scenarios.NAME.load]]", "to"),
    ],
};

/// A backoff text's delays, checked by the policy core's parser.
pub const BACKOFF_DELAY: ValueRange = ValueRange {
    subject: "a backoff's delay",
    bounds: Bounds::Duration(
        stormguard::backoff::MIN_DELAY,
        stormguard::backoff::MAX_DELAY,
    ),
    below: "no wait is written \"none\", and a wait below a millisecond is none for a callee",
    above: "a retry an hour away has outlived every caller it was for",
    keys: &[at(POLICY, "backoff")],
};

/// A hedge's fixed delay, checked by the policy core's parser.
pub const HEDGE_DELAY: ValueRange = ValueRange {
    subject: "a fixed hedge delay",
    bounds: Bounds::Duration(stormguard::hedge::MIN_DELAY, stormguard::hedge::MAX_DELAY),
    below: "a hedge sooner than a millisecond copies every request before any could answer",
    above: "a hedge runs within its attempt's timeout, at most an hour",
    keys: &[at("hedge", "delay")],
};

/// `max_attempts`.
pub const ATTEMPTS: ValueRange = ValueRange {
    subject: "max_attempts",
    bounds: Bounds::Whole(1, super::policy_keys::MAX_ATTEMPTS as i64),
    below: "max_attempts counts the first attempt too; use 1 for no retries, 2 for one retry",
    above: "that many attempts is a retry storm by construction (stormguard recommends 2, one \
            retry)",
    keys: &[at(POLICY, "max_attempts")],
};

/// A call's `count`.
pub const COUNT: ValueRange = ValueRange {
    subject: "a call's count",
    bounds: Bounds::Whole(1, 1000),
    below: "a call made 0 times per request is no call; remove it",
    above: "a loop of over 1000 calls per request multiplies every retry below it by as much; \
            model the batch as one call",
    keys: &[at("[[services.NAME.calls]]", "count")],
};

/// A service's instances.
pub const INSTANCES: ValueRange = ValueRange {
    subject: "a service's instances",
    bounds: Bounds::Whole(1, 1000),
    below: "a service with no instance serves nothing",
    above: "the simulator keeps a balancer per calling instance over every instance called, a \
            million per call at a thousand each; model a larger fleet as fewer, larger instances",
    keys: &[
        at("[services.NAME]", "instances"),
        at("[[scenarios.NAME.faults]]", "instances"),
    ],
};

/// The requests one instance works on at once (`sim` keeps a count, not a worker, so a large
/// one costs nothing).
pub const CONCURRENCY: ValueRange = ValueRange {
    subject: "an instance's concurrency",
    bounds: Bounds::Whole(1, 100_000),
    below: "an instance that works on no request serves nothing",
    above: "no instance works on more requests at once; 100000 already says \"no limit\"",
    keys: &[at("[services.NAME]", "concurrency")],
};

/// The requests waiting per instance.
pub const QUEUE: ValueRange = ValueRange {
    subject: "a queue",
    bounds: Bounds::Whole(0, 1_000_000),
    below: "a queue is never negative",
    above: "over a million requests waiting on one instance is a backlog no caller waits for; \
            1000000 already says \"no limit\"",
    keys: &[at("[services.NAME]", "queue")],
};

/// A token bucket's capacity.
pub const BUCKET_CAPACITY: ValueRange = ValueRange {
    subject: "a token bucket's capacity",
    bounds: Bounds::Whole(1, 1_000_000),
    below: "a bucket that holds no token never allows a retry",
    above: "a bucket that big takes so long to drain that it limits no outage",
    keys: &[at("token_bucket", "capacity")],
};

/// A retry budget's floor of retries a second.
pub const MIN_PER_SEC: ValueRange = ValueRange {
    subject: "a budget's min_per_sec",
    bounds: Bounds::Whole(0, 10_000),
    below: "a rate is never negative",
    above: "a floor of over 10000 retries a second is no budget: the ratio would never bind",
    keys: &[at("retry_budget", "min_per_sec")],
};

/// A status a fault injects.
pub const ERROR_STATUS: ValueRange = ValueRange {
    subject: "an injected error's status",
    bounds: Bounds::Whole(400, 599),
    below: "a status below 400 is no error",
    above: "a status above 599 does not exist",
    keys: &[at("[[scenarios.NAME.faults]]", "error_status")],
};

/// A status a route's fault answers with.
pub const ABORT_STATUS: ValueRange = ValueRange {
    subject: "an abort's status",
    bounds: Bounds::Whole(200, 599),
    below: "1xx statuses are interim, never a response's last",
    above: "a status above 599 does not exist",
    keys: &[at("fault", "abort_status")],
};

/// Request headers per request.
pub const HEADERS: ValueRange = ValueRange {
    subject: "max_headers",
    bounds: Bounds::Whole(1, 10_000),
    below: "every HTTP/1.1 request carries a Host header",
    above: "a request with more headers than that is an attack, not a client",
    keys: &[at("[listen]", "max_headers")],
};

/// Client connections at once.
pub const CONNECTIONS: ValueRange = ValueRange {
    subject: "max_connections",
    bounds: Bounds::Whole(1, 100_000),
    below: "a listener that may have no connection open serves no one",
    above: "each connection holds tens of KiB of buffers, so more than 100000 is gigabytes",
    keys: &[at("[listen]", "max_connections")],
};

/// HTTP/2 streams per connection.
pub const STREAMS: ValueRange = ValueRange {
    subject: "http2_max_concurrent_streams",
    bounds: Bounds::Whole(1, 10_000),
    below: "an HTTP/2 client could send no request at all",
    above: "one client with more streams than that could hold every upstream slot",
    keys: &[at("[listen]", "http2_max_concurrent_streams")],
};

/// Requests in flight to one upstream.
pub const IN_FLIGHT: ValueRange = ValueRange {
    subject: "max_in_flight",
    bounds: Bounds::Whole(1, 100_000),
    below: "an upstream that may have no request in flight sheds every request",
    above: "over 100000 requests in flight to one upstream is no bound on memory",
    keys: &[at("[upstreams.NAME]", "max_in_flight")],
};

/// Users' requests a second.
pub const RATE: ValueRange = ValueRange {
    subject: "a rate",
    bounds: number(0.0, 1_000_000.0),
    below: "a rate is never negative (0: no users for a while)",
    above: "a million requests a second is beyond any one entry service, and `sim`'s work \
            grows with it",
    keys: &[
        at("[entry]", "rate"),
        at("[scenarios.NAME]", "rate"),
        at("[[scenarios.NAME.load]]", "rate"),
    ],
};

/// An endpoint's weight.
pub const WEIGHT: ValueRange = ValueRange {
    subject: "an endpoint's weight",
    bounds: above(0.0, 1_000_000.0),
    below: "an endpoint with no share of the requests takes none; remove it",
    above: "weights are relative: one a million times another's already takes every request",
    keys: &[at("[services.NAME.endpoints.EP]", "weight")],
};

/// A fault's factor on a service's work.
pub const SLOWDOWN: ValueRange = ValueRange {
    subject: "a slowdown",
    bounds: above(0.0, 1000.0),
    below: "a factor of 0 or less would make work take no time",
    above: "a service a thousand times slower has stopped answering: use `blackhole`",
    keys: &[at("[[scenarios.NAME.faults]]", "slowdown")],
};

/// A share of attempts or requests.
pub const SHARE: ValueRange = ValueRange {
    subject: "a share",
    bounds: number(0.0, 1.0),
    below: "a share is never negative",
    above: "a share is at most all of them, 1 (0.1 for 10%)",
    keys: &[at("[[scenarios.NAME.faults]]", "error_rate")],
};

/// A retry budget's retries per request, checked by the policy core too
/// (`stormguard::budget::MAX_RATIO`).
pub const RETRY_RATIO: ValueRange = ValueRange {
    subject: "a retry budget's ratio",
    bounds: number(0.0, stormguard::budget::MAX_RATIO),
    below: "a ratio is never negative (0: only min_per_sec retries)",
    above: "above 1, retries could outnumber requests and multiply the load of an outage, the \
            storm a budget exists to prevent; for no limit, write retry_budget = \"none\"",
    keys: &[at("retry_budget", "ratio")],
};

/// A hedge budget's extra requests per request.
pub const HEDGE_SHARE: ValueRange = ValueRange {
    subject: "a hedge's max_extra",
    bounds: number(0.0, 1.0),
    below: "a share is never negative (0: no hedge is ever sent)",
    above: "more than one hedge per request is more than the copy a hedge is (0.05 for at \
            most 5% extra)",
    keys: &[at("hedge", "max_extra")],
};

/// A share of requests in percent.
pub const PERCENT: ValueRange = ValueRange {
    subject: "a percentage",
    bounds: number(0.0, 100.0),
    below: "a percentage is never negative",
    above: "a percentage is at most 100",
    keys: &[at("fault", "delay_percent"), at("fault", "abort_percent")],
};

/// The share of good attempts `check`'s timeouts may cut.
pub const FALSE_TIMEOUT_RATE: ValueRange = ValueRange {
    subject: "check's false_timeout_rate",
    bounds: Bounds::Number {
        min: 0.0,
        min_excluded: true,
        max: 1.0,
        max_excluded: true,
    },
    below: "every timeout cuts some attempts that would succeed: a lognormal's tail is unbounded",
    above: "a timeout that cuts every attempt is no timeout (0.001 for the p99.9)",
    keys: &[at("[check]", "false_timeout_rate")],
};

/// The share of good attempts an adaptive timeout may cut.
pub const ADAPTIVE_RATE: ValueRange = ValueRange {
    subject: "an adaptive false_timeout_rate",
    bounds: above(0.0, 0.5),
    below: "every timeout cuts some attempts that would succeed: a latency's tail is unbounded",
    above: "a timeout below the median cuts most attempts that would succeed (0.001 for the \
            p99.9)",
    keys: &[at("adaptive_timeout", "false_timeout_rate")],
};

/// `check`'s most attempts per user request.
pub const AMPLIFICATION: ValueRange = ValueRange {
    subject: "max_amplification",
    bounds: number(1.0, 1_000_000.0),
    below: "every service receives at least the one attempt a user request makes",
    above: "a threshold of over a million attempts per request flags nothing",
    keys: &[at("[check]", "max_amplification")],
};

/// `check`'s longest connect timeout, in round trips.
pub const RTT_MULTIPLE: ValueRange = ValueRange {
    subject: "connect_timeout_rtt_multiple",
    bounds: number(1.0, 1000.0),
    below: "no connection is made in less than one round trip",
    above: "a connect timeout of over a thousand round trips bounds nothing",
    keys: &[at("[check]", "connect_timeout_rtt_multiple")],
};

/// Request bodies the proxy reads or keeps.
pub const BODY: ValueRange = ValueRange {
    subject: "a body limit",
    bounds: Bounds::Size(0, 1 << 30),
    below: "a size is never negative",
    above: "a body over 1GiB held by a proxy is no limit on its memory; stream it elsewhere",
    keys: &[
        at("[listen]", "max_request_body"),
        at("[[routes]]", "retry_body_limit"),
    ],
};

/// The largest request head.
pub const HEAD: ValueRange = ValueRange {
    subject: "max_header_bytes",
    bounds: Bounds::Size(8 * 1024, 1 << 20),
    below: "the HTTP server cannot read a request head into less than 8KiB",
    above: "a request head over 1MiB is an attack, not a client",
    keys: &[at("[listen]", "max_header_bytes")],
};

/// What unfinished request heads may hold, all connections together (and at least one whole
/// head of `max_header_bytes`, which the proxy's parser checks beside this range).
pub const HEAD_BUDGET: ValueRange = ValueRange {
    subject: "max_unfinished_header_bytes",
    bounds: Bounds::Size(8 * 1024, 1 << 30),
    below: "the HTTP server cannot read a request head into less than 8KiB",
    above: "over 1GiB of unfinished heads is no bound on a sidecar's memory",
    keys: &[at("[listen]", "max_unfinished_header_bytes")],
};

/// A token bucket's costs (each also at most the bucket's capacity).
pub const BUCKET_COST: ValueRange = ValueRange {
    subject: "a retry's cost",
    bounds: Bounds::Whole(0, 1_000_000),
    below: "a cost is never negative (0: the retry is free)",
    above: "no bucket holds more than 1000000 tokens, so such a retry could never be paid",
    keys: &[
        at("token_bucket", "retry_cost"),
        at("token_bucket", "timeout_cost"),
    ],
};

/// The bounds of the whole-number key named `key` in any table, for a message about a value
/// that is not even of the key's type (`max_attempts = -1`); `None` when no whole-number range
/// names it.
pub fn whole_bounds(key: &str) -> Option<(i64, i64)> {
    RANGES.iter().find_map(|range| match range.bounds {
        Bounds::Whole(min, max) if range.keys.iter().any(|k| k.key == key) => Some((min, max)),
        _ => None,
    })
}

/// Every range, in the order the reference lists them.
pub const RANGES: &[&ValueRange] = &[
    &TIMEOUT,
    &CODEL_DELAY,
    &LATENCY,
    &ADDED,
    &CONNECTION_TIMER,
    &BODY_TIMER,
    &DNS_REFRESH,
    &BACKOFF_DELAY,
    &HEDGE_DELAY,
    &RUN_LENGTH,
    &SCENARIO_TIME,
    &ATTEMPTS,
    &COUNT,
    &INSTANCES,
    &CONCURRENCY,
    &QUEUE,
    &BUCKET_CAPACITY,
    &BUCKET_COST,
    &MIN_PER_SEC,
    &ERROR_STATUS,
    &ABORT_STATUS,
    &HEADERS,
    &CONNECTIONS,
    &STREAMS,
    &IN_FLIGHT,
    &RATE,
    &WEIGHT,
    &SLOWDOWN,
    &SHARE,
    &RETRY_RATIO,
    &HEDGE_SHARE,
    &PERCENT,
    &FALSE_TIMEOUT_RATE,
    &ADAPTIVE_RATE,
    &AMPLIFICATION,
    &RTT_MULTIPLE,
    &BODY,
    &HEAD,
    &HEAD_BUDGET,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_the_reference_writes_them() {
        assert_eq!(TIMEOUT.bounds.to_string(), "1ms to 1h");
        assert_eq!(QUEUE.bounds.to_string(), "0 to 1000000");
        assert_eq!(SHARE.bounds.to_string(), "0 to 1");
        assert_eq!(SLOWDOWN.bounds.to_string(), "above 0, at most 1000");
        assert_eq!(FALSE_TIMEOUT_RATE.bounds.to_string(), "above 0, below 1");
        assert_eq!(HEAD.bounds.to_string(), "8KiB to 1MiB");
        assert_eq!(RATE.bounds.to_string(), "0 to 1000000");
    }

    #[test]
    fn a_value_out_of_range_says_why_and_the_range() {
        assert_eq!(
            TIMEOUT.duration(Duration::from_secs(7200)).unwrap_err(),
            format!("2h is out of range: {AN_HOUR}; a timeout is 1ms to 1h")
        );
        assert!(TIMEOUT
            .duration(Duration::ZERO)
            .unwrap_err()
            .starts_with("0s is out of range: a timeout under a millisecond fires"));
        assert_eq!(TIMEOUT.duration(HOUR), Ok(HOUR));
        assert_eq!(COUNT.whole(1000), Ok(1000));
        assert!(COUNT
            .whole(1001)
            .unwrap_err()
            .starts_with("1001 is out of range"));
        assert!(RATE
            .number(1e300)
            .unwrap_err()
            .starts_with("1e300 is out of range"));
        assert!(RATE
            .number(f64::NAN)
            .unwrap_err()
            .starts_with("NaN (not a number)"));
        assert!(RATE.number(f64::INFINITY).is_err());
        assert!(SLOWDOWN.number(0.0).is_err());
        assert_eq!(SLOWDOWN.number(1000.0), Ok(1000.0));
        assert!(FALSE_TIMEOUT_RATE.number(1.0).is_err());
        assert_eq!(
            BODY.size(99999 << 40).unwrap_err(),
            "99999TiB is out of range: a body over 1GiB held by a proxy is no limit on its \
             memory; stream it elsewhere; a body limit is 0B to 1GiB"
        );
    }

    #[test]
    fn every_key_has_one_range() {
        let mut seen = std::collections::BTreeSet::new();
        for range in RANGES {
            for key in range.keys {
                assert!(seen.insert((key.section, key.key)), "{key:?} twice");
            }
        }
    }
}
