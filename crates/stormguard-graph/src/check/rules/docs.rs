//! What each rule is, in words: the one table that `stormguard explain`, `check --rules` and the
//! SARIF log's rule declarations read, kept beside the rules so that a rule and its explanation
//! change in the same place. A test (`check/tests/docs.rs`) holds it to the rules: every id the
//! rules can emit has an entry here, and every entry is an id they emit.
//!
//! A finding says what is wrong with one call in numbers; an entry says what the rule computes
//! for every call, which thresholds it reads, why that matters and what the fix is, for a reader
//! who meets the rule for the first time.

use crate::model::CheckConfig;
use crate::report::Severity;

/// A rule of `check`, explained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RuleDoc {
    /// The id its findings carry (`error[retry-amplification]`); part of the interface.
    pub id: &'static str,
    /// The severity of its findings (only `timeout-inversion` has another, `info`, when the
    /// call propagates its deadline, and `retries-over-capacity` another, `error`, when the
    /// retries a budget does not cap hold the service over capacity; `computes` says so).
    pub severity: Severity,
    /// What it catches, in one sentence: the list's line and SARIF's short description.
    pub summary: &'static str,
    /// What it computes and when it fires, in words, with the thresholds it compares against.
    pub computes: &'static str,
    /// The `[check]` thresholds it reads, in the firing condition or in the fix's value.
    pub thresholds: &'static [Threshold],
    /// Why it matters: what goes wrong in production when it fires.
    pub why: &'static str,
    /// How to fix it, and what `check --fix` writes.
    pub fix: &'static str,
}

/// A threshold of the `[check]` table of a graph file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// `max_amplification`.
    MaxAmplification,
    /// `connect_timeout_rtt_multiple`.
    ConnectTimeoutRttMultiple,
    /// `false_timeout_rate`.
    FalseTimeoutRate,
}

impl Threshold {
    /// Its key in `[check]`.
    pub fn key(self) -> &'static str {
        match self {
            Threshold::MaxAmplification => "max_amplification",
            Threshold::ConnectTimeoutRttMultiple => "connect_timeout_rtt_multiple",
            Threshold::FalseTimeoutRate => "false_timeout_rate",
        }
    }

    /// Its value in `config`; [`CheckConfig::default`] gives the default a file can change.
    pub fn value(self, config: &CheckConfig) -> f64 {
        match self {
            Threshold::MaxAmplification => config.max_amplification,
            Threshold::ConnectTimeoutRttMultiple => config.connect_timeout_rtt_multiple,
            Threshold::FalseTimeoutRate => config.false_timeout_rate,
        }
    }

    /// What it bounds, in a few words.
    pub fn meaning(self) -> &'static str {
        match self {
            Threshold::MaxAmplification => {
                "the most attempts a service may receive per user request when calls below the \
                 entry fail"
            }
            Threshold::ConnectTimeoutRttMultiple => {
                "the longest connect timeout, in round trips of the call"
            }
            Threshold::FalseTimeoutRate => {
                "the share of attempts that would succeed that a timeout may cut (0.001: a \
                 timeout at the callee's p99.9)"
            }
        }
    }
}

/// The entry of rule `id`, if there is such a rule.
///
/// ```
/// use stormguard_graph::check::rule_doc;
///
/// assert_eq!(rule_doc("call-cycle").unwrap().id, "call-cycle");
/// assert!(rule_doc("no-such-rule").is_none());
/// ```
pub fn rule_doc(id: &str) -> Option<&'static RuleDoc> {
    RULES.iter().find(|rule| rule.id == id)
}

/// How the model sizes the longest a service may keep working on one request, which several
/// rules weigh: said once here and spliced into their texts.
macro_rules! worst_case {
    () => {
        "The worst case, the longest a service may keep working on one request, is its own \
         latency at p99.9 (of a lognormal fitted to its p50 and p99) plus, for each of its calls \
         in order, count x min(request_timeout, max_attempts x timeout + the backoff's longest \
         waits between the attempts), a run of parallel calls counting as its slowest. A timeout \
         covers its attempt from the start, connecting included; a call without a timeout waits \
         the round trip plus its callee's worst case, or its connect timeout when longer."
    };
}

/// How the capacity rules size the time a request holds a worker: said once here and spliced
/// into both texts.
macro_rules! hold {
    () => {
        "A request holds a worker, as in the simulator, from the start of its own work until it \
         answers, its calls included: the mean of its own latency (the lognormal fitted to its \
         p50 and p99; the mean, above the median), plus contention x (concurrency - 1) when \
         every worker is busy, plus, for its calls in order, count x min(timeout, rtt + the \
         callee's mean hold), a run of parallel calls counting as its slowest. A service with \
         endpoints is judged on their mix in the shares of its load."
    };
}

/// What `check --fix` writes for a connect timeout, shared by the three connect rules' docs (a
/// macro, since `concat!` takes only literals): when a short one is safe, and what instead.
macro_rules! connect_timeout_rule {
    () => {
        "A short connect timeout is safe only where a connect that times out is tried again: \
         Linux resends a lost SYN only after 1s (its initial RTO, RFC 6298), so on a call \
         that does not retry connect-failure (one attempt, or a retry_on without it) a \
         timeout of a few round trips turns one lost packet into a failed request. \
         check --fix therefore writes, on a call with max_attempts above 1 and \
         connect-failure in retry_on, three round trips of its rtt (default 1ms, which the \
         fix names), or the longest connect_timeout_rtt_multiple allows when that is less; \
         on any other call 1100ms (above the first SYN retransmission), capped by the \
         attempt's timeout; it never adds a retry to make a short one safe."
    };
}

/// Every rule of `check`, in the order of issue 3's table (which is also SARIF's rule index).
pub const RULES: &[RuleDoc] = &[
    RuleDoc {
        id: "missing-timeout",
        severity: Severity::Error,
        summary: "A call has no timeout: a hung callee holds the caller forever.",
        computes: concat!(
            "Fires on every call without a timeout. The caller then waits as long as the callee \
             works: the model counts each attempt as the round trip plus the callee's worst case, \
             which the finding quotes, and a callee that hangs is waited for forever (or, where the \
             call has a request_timeout, for all of it, with no time left for a retry). ",
            worst_case!()
        ),
        thresholds: &[Threshold::FalseTimeoutRate],
        why: "One stuck dependency holds every request of its callers, with their connections, \
              threads and memory, until they run out: a slow database becomes an outage of \
              everything above it. A timeout bounds what a failure below can cost.",
        fix: "Set timeout on the call. check --fix writes the longer of the callee's worst case \
              and its latency at the quantile false_timeout_rate leaves (the p99.9 by default) \
              plus the round trip, rounded up to a whole ms, so that the new value fires neither \
              timeout-inversion nor timeout-below-latency.",
    },
    RuleDoc {
        id: "missing-connect-timeout",
        severity: Severity::Warning,
        summary: "A call has no connect timeout: an unreachable host costs the whole request timeout.",
        computes: "Fires on every call without a connect_timeout. Connecting is then bounded \
                   only by the attempt's timeout, which covers it.",
        thresholds: &[Threshold::ConnectTimeoutRttMultiple],
        why: "Connecting to a host that is down or blackholed then takes the whole request \
              timeout (or the operating system's, often minutes) instead of a few round trips, \
              and the attempt on a live instance starts that much later.",
        fix: concat!("Set connect_timeout. ", connect_timeout_rule!()),
    },
    RuleDoc {
        id: "timeout-inversion",
        severity: Severity::Error,
        summary: "The callee may keep working longer than the caller waits for it: the edge gives up while the back end still retries.",
        computes: concat!(
            "For each call with a timeout, compares the callee's worst case with the call's \
             timeout (its request_timeout when that is shorter: it ends the attempt first), and \
             fires when the worst case is longer: an error, or only an info when the \
             call has propagate_deadline = true, since the callee can then stop when the caller \
             gives up, if it honours the deadline. A call that closes a cycle is left to \
             call-cycle. ",
            worst_case!()
        ),
        thresholds: &[Threshold::FalseTimeoutRate],
        why: "The caller gives up while the callee, and any retries below it, keep working on an \
              answer no one will read: capacity spent for nothing exactly when the system is \
              slow, as in Cockcroft's edge that gives up at 2 s while the back end retries for \
              6 s.",
        fix: "Make the timeouts telescope from the top down: cut the timeouts of the callee's own \
              calls until its worst case fits in this call's timeout, never below a callee's \
              latency at the quantile false_timeout_rate leaves plus the round trip (what check \
              --fix writes, when it can); or raise this call's timeout to cover the callee's worst case; or \
              set propagate_deadline = true, so that the callee can stop when the caller gives \
              up.",
    },
    RuleDoc {
        id: "entry-budget",
        severity: Severity::Error,
        summary: "The entry service's worst case exceeds how long a user waits.",
        computes: concat!(
            "Compares the entry service's worst case with entry.timeout, how long a user waits, \
             and fires when it is longer. ",
            worst_case!()
        ),
        thresholds: &[],
        why: "Users give up, and often retry, while the graph still works for them: the work is \
              wasted, and the retries add load when the graph is already slow.",
        fix: "Cut timeouts below the entry. check --fix writes, for the costliest call (or run of \
              parallel calls) that can absorb the whole excess alone, the timeout each of its \
              calls needs for the worst case to fit, rounded down to a whole ms. When no one \
              call can, the finding says how much to cut in total and where the time goes; \
              raising entry.timeout is the owner's choice, which check --fix does not make.",
    },
    RuleDoc {
        id: "retry-amplification",
        severity: Severity::Error,
        summary: "Worst-case attempts at a service per user request exceed the limit: retries multiply down the stack.",
        computes: "For every service the entry reaches, the attempts it receives per user \
                   request when calls below the entry fail: the product of max_attempts x \
                   count along each path from the entry, summed over the paths (by dynamic \
                   programming over the graph, never path by path): each call retried to its \
                   last attempt and each repetition and sequential call still made (when all \
                   fail at once, a service stops at its first failed call, so sim then shows \
                   fewer). Fires when that exceeds max_amplification. The sustained figure, with retry budgets and token buckets \
                   holding, is quoted beside it (a budget lets ratio of a call's requests and \
                   min_per_sec a second be retried, so 1 + ratio + min_per_sec / the call's \
                   requests a second at entry.rate; a drained bucket none, unless a retry costs \
                   0 tokens), but a budget does not lower this worst case: it caps retries once \
                   it has drained, not the burst before.",
        thresholds: &[Threshold::MaxAmplification],
        why: "Retries multiply at every layer: three attempts at each of five layers is 3^5 = 243 \
              attempts at the bottom for one user request, so a struggling service gets a \
              multiple of its load exactly when it can least take it (Brooker).",
        fix: "Retry at one layer: max_attempts = 1 on every retrying call below another retrying \
              layer and at most 2 on the topmost, which check --fix writes when the model shows \
              it is enough; else one attempt on every call. When no call on the paths retries, \
              the figure is fan-out (count, and paths that meet): batch the calls, or raise \
              max_amplification if the fan-out is meant.",
    },
    RuleDoc {
        id: "layered-retries",
        severity: Severity::Warning,
        summary: "More than one layer on a path retries: retry at one point in the stack.",
        computes: "Fires on a call that retries (max_attempts above 1) from a service that a \
                   path from the entry reaches through another retrying call: the most retrying \
                   calls on any path to the caller, by dynamic programming, is at least one. \
                   Services the entry does not reach are not judged.",
        thresholds: &[],
        why: "A failure at the bottom is retried at every layer, and the attempts multiply \
              (retry-amplification counts them). One retrying layer rides out a one-off failure \
              as well as several do.",
        fix: "max_attempts = 1 on this call, leaving the retries to the layer above; check --fix \
              writes it.",
    },
    RuleDoc {
        id: "too-many-attempts",
        severity: Severity::Warning,
        summary: "More than two attempts on a call: zero or one retry is enough.",
        computes: "Fires on a call with max_attempts above 2 that retries anything (a call that is \
                   not idempotent retries only some failures: non-idempotent-retry).",
        thresholds: &[],
        why: "One retry rides out a one-off failure. When the retry fails too, the callee is most \
              likely down or overloaded, and each further attempt adds load exactly then.",
        fix: "max_attempts = 2; check --fix writes it.",
    },
    RuleDoc {
        id: "retry-without-backoff",
        severity: Severity::Warning,
        summary: "Retries without backoff hit a struggling service at once.",
        computes: "Fires on a call that retries (max_attempts above 1) with a backoff that never \
                   waits: none, or one built in code whose every delay is zero (a file's \
                   backoff text writes no wait as none).",
        thresholds: &[],
        why: "Each retry arrives at once, while the callee is still failing, adding load when it \
              can least take it.",
        fix: "A jittered backoff: check --fix writes the library's default, \
              full-jitter(base=25ms, cap=250ms).",
    },
    RuleDoc {
        id: "backoff-without-jitter",
        severity: Severity::Warning,
        summary: "Constant or exponential backoff without jitter: clients that fail together retry together.",
        computes: "Fires on a call that retries with a constant or exponential backoff that \
                   waits: every client waits the same delays.",
        thresholds: &[],
        why: "Clients that failed together wait the same delays, come back together, in \
              lockstep, and fail together again (Brooker, \"Exponential Backoff And Jitter\").",
        fix: "A full jitter with the same largest delays, which never waits longer: \
              full-jitter(base=d, cap=d) for constant(d), full-jitter(base=b, cap=c) for \
              exponential(base=b, cap=c); check --fix writes it.",
    },
    RuleDoc {
        id: "retry-without-budget",
        severity: Severity::Warning,
        summary: "Retries with neither a retry budget nor a token bucket: an outage multiplies the load.",
        computes: "Fires on a call that retries (max_attempts above 1) with neither retry_budget \
                   nor token_bucket.",
        thresholds: &[],
        why: "When the callee fails for everyone, every request is retried, and it gets \
              max_attempts times its load exactly when it is struggling. A budget lets retries \
              through while failures are rare and stops them when they are not.",
        fix: "retry_budget = { ratio = 0.1, min_per_sec = 10 }: at most one retry per ten \
              requests, with a floor so that a quiet service can still retry; check --fix writes \
              it.",
    },
    RuleDoc {
        id: "non-idempotent-retry",
        severity: Severity::Warning,
        summary: "A call that is not idempotent lists retries or a hedge that are never made for it.",
        computes: "Fires on a call that is not idempotent (idempotent = false, or a method such \
                   as POST under the default \"by-method\") that has a hedge, or max_attempts \
                   above 1 and nothing it could retry, or a retry_on that lists what such a call \
                   is never retried on: timeout, a \
                   reset after the request was written, 5xx and gateway-error beyond 503, a \
                   status such as 500 or 502, a gRPC status other than resource-exhausted, \
                   aborted and unavailable. The default retry_on is not judged, nor the default \
                   part of a list that extends it.",
        thresholds: &[],
        why: "An attempt that timed out or failed after the request was written may still have \
              been applied, so sending it again could apply the request twice: a double charge, \
              a duplicate order. stormguard (the library, the proxy and sim alike) therefore \
              retries such a call only where the request was never sent (a refused or timed-out \
              connection, a refused stream) or was declined (408, 429, 503), and never hedges \
              it; a file that lists more misleads its reader. Retrying a refused connection, on \
              another instance, is safe for any call.",
        fix: "retry_on = the conditions that are retried (max_attempts = 1 when none is) and no \
              hedge, which say what happens and which check --fix writes; or make the call \
              idempotent (an idempotency key the callee honours) and set idempotent = true.",
    },
    RuleDoc {
        id: "same-timeout-everywhere",
        severity: Severity::Warning,
        summary: "Calls at different depths share one timeout: timeouts do not telescope.",
        computes: "Groups the calls of the services the entry reaches by timeout, and fires once \
                   per value that three or more calls share from two or more depths (a call's \
                   depth is its caller's: the most calls on a path from the entry to it), on the \
                   first of them by service name, then call order. Calls at one depth that share \
                   a value are siblings, not layers, and are fine.",
        thresholds: &[],
        why: "Timeouts that do not shrink with depth cannot telescope: a caller gives up exactly \
              when its callee does, with no time left for the callee's retries or its answer.",
        fix: "Timeouts that halve with each depth below the shallowest, each under its caller's; \
              check --fix writes them.",
    },
    RuleDoc {
        id: "connect-timeout-below-rtt",
        severity: Severity::Error,
        summary: "The connect timeout is at or below the round trip: every connection fails.",
        computes: "Fires on a call whose connect_timeout is at or below its round trip (rtt).",
        thresholds: &[Threshold::ConnectTimeoutRttMultiple],
        why: "A handshake takes at least one round trip, so every connection fails, and every \
              attempt with it.",
        fix: concat!(
            "Raise connect_timeout (to two round trips when connect_timeout_rtt_multiple leaves \
             no room above one). ",
            connect_timeout_rule!()
        ),
    },
    RuleDoc {
        id: "connect-timeout-too-long",
        severity: Severity::Warning,
        summary: "The connect timeout is far above the round trip: an unreachable host is detected late.",
        computes: "Fires on a call whose connect_timeout is above connect_timeout_rtt_multiple \
                   times its round trip (rtt), and above 1ms, the shortest timeout a file may \
                   hold; on a call that does not retry connect-failure, only above 1100ms (or \
                   its attempt's timeout when less), which one lost SYN may need.",
        thresholds: &[Threshold::ConnectTimeoutRttMultiple],
        why: "A connection not made within a few round trips is to a host that is down or \
              unreachable; waiting longer only delays the attempt on a live one.",
        fix: concat!("Lower connect_timeout. ", connect_timeout_rule!()),
    },
    RuleDoc {
        id: "timeout-below-latency",
        severity: Severity::Warning,
        summary: "The per-attempt timeout is below the callee's tail latency: healthy requests time out.",
        computes: "For a call with a timeout, the share of attempts that would succeed but time \
                   out: the chance that the callee answers later than the timeout less the round \
                   trip (its request_timeout when that is shorter: it cuts the first attempt as \
                   surely). The callee's answer takes its own work (a lognormal fitted to its \
                   latency p50 and p99) and its required calls' (each down the graph, as far as \
                   eight calls deep, a call ending by its own timeout adding nothing past it, a \
                   hedged one, which answers with its faster copy, left out); a \
                   sum is slower than each of its parts, so the share is taken as the largest \
                   of theirs: a lower bound, never a false alarm, which catches a callee whose own \
                   work is fast but whose database is not. Fires when that share is above \
                   false_timeout_rate: a warning, an error when it is half or more (most healthy \
                   requests fail with no fault at all, as over a service's capacity). A call \
                   that closes a cycle is left to call-cycle.",
        thresholds: &[Threshold::FalseTimeoutRate],
        why: "Requests that would have succeeded time out, and are retried or failed for \
              nothing; under load, those retries add to the load that slows the callee.",
        fix: "timeout (or the shorter request_timeout) = the least whole ms whose share is \
              within false_timeout_rate: the callee's latency at the quantile it leaves (the \
              p99.9 by default) plus the round trip, or more where the callee waits on its \
              calls; check --fix writes it, and cuts no other timeout below it.",
    },
    RuleDoc {
        id: "single-instance-retry",
        severity: Severity::Warning,
        summary: "Retries to a service with one instance hit the instance that just failed.",
        computes: "Fires on a call that retries (max_attempts above 1) to a service with one \
                   instance.",
        thresholds: &[],
        why: "The retry goes to the instance that just failed: it helps only against a one-off \
              error, and adds load to the one instance there is.",
        fix: "max_attempts = 1, which check --fix writes; or run two or more instances of the \
              callee (instances = 2), which is the deployment's choice.",
    },
    RuleDoc {
        id: "hedge-without-budget",
        severity: Severity::Warning,
        summary: "A hedge budget of half the requests or more can nearly double the load when the \
                  callee slows down.",
        computes: "Fires on an idempotent call whose hedge has max_extra of 0.5 or more (a \
                   hedge without max_extra gets 0.05; a call that is not idempotent is never \
                   hedged: non-idempotent-retry).",
        thresholds: &[],
        why: "When the callee slows down for everyone, every request passes the hedge delay and \
              is sent twice, doubling its load exactly when it is slow.",
        fix: "hedge = { delay = ..., max_extra = 0.05 }: at most 5% more requests; check --fix \
              writes it with the hedge's delay.",
    },
    RuleDoc {
        id: "call-cycle",
        severity: Severity::Error,
        summary: "The calls form a cycle: a request can call itself until every timeout runs out.",
        computes: "A depth-first search from the entry (then from the other services, by name) \
                   finds each call that closes a cycle, and the finding is on that call. Removing \
                   those calls leaves no cycle; every figure (worst cases, amplification) leaves \
                   them out.",
        thresholds: &[],
        why: "One request can circle until every timeout on the way expires, its retries \
              multiplying on each lap.",
        fix: "Remove the call, or break the cycle elsewhere. Which call to remove is a question \
              of design, so check --fix writes nothing for it.",
    },
    RuleDoc {
        id: "attempts-cannot-fit",
        severity: Severity::Warning,
        summary: "More attempts than the request timeout leaves room for: the later attempts never run.",
        computes: "For a call with a request_timeout, a shorter timeout (one as long as the \
                   request_timeout means each attempt takes what is left, and promises no retry \
                   after a timeout) and max_attempts above 1 that retries anything (see \
                   non-idempotent-retry), when \
                   each attempt starts if every attempt before it runs its whole timeout and \
                   each wait between them is the backoff's shortest (none for full jitter, half \
                   the ceiling for equal jitter, the base for decorrelated jitter, the delay \
                   itself for constant and exponential). Fires when an attempt would start at or \
                   after the request_timeout: when attempts time out, it and every later one \
                   never run, so the call makes k attempts, not max_attempts.",
        thresholds: &[],
        why: "The setting promises retries that cannot happen when they are most wanted, when \
              the callee is slow: a reader, or an Istio route with attempts 3 and a 4 s per-try \
              timeout under a 10 s route timeout, believes in four attempts where three start. \
              Imported mesh settings often have this shape, since the per-try and the route \
              timeouts are set in different places.",
        fix: "max_attempts = k, the attempts that can start, which check --fix writes; or a \
              timeout short enough for every attempt to run whole (the request_timeout less \
              the backoff's longest waits, divided by max_attempts, so that no jitter cuts the last \
              attempt short), which the finding names.",
    },
    RuleDoc {
        id: "over-capacity",
        severity: Severity::Error,
        summary: "A service's normal load is above what its workers can carry: requests queue and are rejected with no fault at all.",
        computes: concat!(
            "For every service the entry reaches, the requests a second it must carry with \
             nothing failing: entry.rate x the attempts it receives per user request with one \
             attempt on every call (its endpoints' shares and the calls' counts, no retry). \
             Against what it can carry by Little's law: instances x concurrency / the mean time \
             a request holds a worker. ",
            hold!(),
            " Fires when the load is above that."
        ),
        thresholds: &[],
        why: "Work arrives faster than it is done: the queues fill, and from then on the excess \
              is rejected, or waits past every timeout above, with no fault at all. The graph \
              loses requests on a good day, and has nothing left for a retry on a bad one.",
        fix: "instances = N, or concurrency = N where an instance can work on that many \
              requests at once, that carries the load at 70% utilisation (the headroom a queue \
              needs; its wait grows without bound as utilisation nears 1); the finding names \
              both. Contention caps what concurrency can give, and the finding says when no \
              concurrency would do. How many instances to run is the deployment's choice, so \
              check --fix writes nothing.",
    },
    RuleDoc {
        id: "retries-over-capacity",
        severity: Severity::Warning,
        summary: "Retries can carry a service over capacity; an error when the retries its callers \
                  keep making with their budgets holding do, which keeps it down after a failure \
                  ends.",
        computes: concat!(
            "For a service that carries its normal load (else over-capacity fires instead), the \
             load with retries against its capacity, computed as over-capacity computes them. \
             An error when the sustained amplification (retry budgets and token buckets \
             holding) x entry.rate is above capacity: once a failure makes its callers retry, \
             the retries alone hold it over capacity after the failure ends (a metastable \
             failure, as examples/graphs/retry-storm.toml shows in sim). A warning when only \
             the worst-case amplification (every attempt) x entry.rate is: the burst before \
             the budgets drain queues and is rejected, and the service recovers. ",
            hold!()
        ),
        thresholds: &[],
        why: "An overloaded service answers slowly or not at all, so its callers retry, which \
              adds load: without a budget that caps them, retries keep it overloaded long after \
              whatever slowed it has gone: a metastable failure (Bronson et al., HotOS'21); \
              Huang et al. (OSDI'22) found retries sustaining more than half of those they \
              studied.",
        fix: "A retry budget on the retrying calls above it (retry_budget = { ratio = 0.1, \
              min_per_sec = 10 }), or fewer attempts; or instances = N or concurrency = N that \
              carry the retried load at 70% utilisation, which the finding names. check --fix \
              writes nothing for it: retry-without-budget and too-many-attempts write the \
              calls' part.",
    },
    RuleDoc {
        id: "queue-outlives-caller",
        severity: Severity::Warning,
        summary: "A FIFO queue can hold a request longer than its callers wait: under overload the service works only for callers that gave up.",
        computes: concat!(
            "For every service with queue_discipline = \"fifo\" (the default) and no \
             queue_timeout, the longest a request can wait in a full queue: queue x the mean \
             time a request holds a worker / concurrency. ",
            hold!(),
            " Against the shortest per-attempt timeout of the calls into the service (and \
             entry.timeout for the entry service). Fires when the wait is longer."
        ),
        thresholds: &[],
        why: "Under sustained overload a FIFO queue fills and stays full, and a free worker takes \
              the request that has waited longest. Past the callers' timeout that is always a \
              request nobody waits for: every worker is busy and goodput collapses (sim \
              measures 9% on examples/graphs/queue-overload.toml). Cockcroft: processing the \
              oldest first \"is often a bad policy, as you may never get to do work that someone \
              is still actually waiting for\".",
        fix: "queue_discipline = \"codel\": Facebook's adaptive LIFO with CoDel (Maurer, \"Fail \
              at Scale\"), which serves the newest first and answers 503 to what waited over 5 ms \
              once the queue has not emptied for 100 ms; or queue_timeout = half of what the \
              callers' timeout leaves after the work, which keeps FIFO and answers 503 to what \
              waited longer; or queue_discipline = \"lifo\". check --fix writes \
              queue_discipline = \"codel\", which needs no figure of the callers.",
    },
];
