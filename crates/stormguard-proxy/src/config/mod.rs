//! The proxy's settings: what the file says, with every default filled in.
//!
//! A route's policy uses the same keys and meanings as a call in a graph file, so that what
//! `check` and `sim` say of a call is what the proxy does with the same settings: its
//! `max_attempts`, `backoff`, `retry_budget`, `token_bucket` and `hedge` are read by the graph
//! file's own code ([`stormguard_graph::parse::keys`]), and the route's policy is converted to
//! the core's `RetryPolicy` by the one conversion the simulator uses
//! (`stormguard_graph::policy::retry_policy`, see [`route_policy`]).
//!
//! ## The file
//! ```toml
//! [listen]
//! address = "127.0.0.1:8080"      # default; an IP address and port
//! header_read_timeout = "5s"      # default; a request head must arrive within it of its first byte
//! max_request_body = "8MiB"       # default; a size ("512B", "64KiB", "1GiB") or bytes
//! max_headers = 100               # default; more request headers get 431
//! max_header_bytes = "64KiB"      # default, at least "8KiB"; a larger head gets 431
//! shutdown_grace = "30s"          # default; how long SIGTERM waits for requests in flight
//! max_connections = 10000         # default; at the limit the proxy stops accepting until one ends
//! http2_max_concurrent_streams = 100   # default; streams an HTTP/2 client may have open at once
//! http2_keep_alive_interval = "30s"    # default; ping an HTTP/2 client silent this long
//! http2_keep_alive_timeout = "20s"     # default; an unanswered ping closes the connection
//! idle_timeout = "75s"            # default; close a connection with no request in flight this long
//! stream_idle_timeout = "60s"     # default; cut off a request whose bodies moved no byte this long
//! request_body_timeout = "30s"    # default; 408 when the body read before forwarding takes longer
//! access_log = true               # default; one line per request (target stormguard::access)
//!
//! [admin]
//! address = "127.0.0.1:9901"      # default; a non-loopback address needs a token
//! # token = "..."
//!
//! [dns]
//! # servers = ["10.96.0.10:53"]   # default: the system's (/etc/resolv.conf)
//! refresh = "5s"                  # default; how often upstream host names are resolved again
//!
//! [upstreams.api]
//! instances = ["127.0.0.1:9001"]  # required, "host:port" each; a host name's every address is one
//! # discovery = { dns = "api.default.svc.cluster.local:8080", refresh = "5s" }  # or this instead
//! max_in_flight = 1024            # default
//! protocol = "http1"              # default; "http2" for h2c services (gRPC always goes over HTTP/2)
//! http1_client = "direct"         # default: the request's own task writes and reads it; or "hyper"
//!
//! [[routes]]                      # at least one; the first that matches takes a request
//! name = "api"                    # required, unique
//! upstream = "api"                # required
//! # match = { path_prefix = "/", host = "api.internal" }, both optional
//! timeout = "2s"                  # required: each attempt, connecting included
//! # request_timeout, connect_timeout, max_attempts, backoff, retry_budget | token_bucket,
//! # retry_on, hedge, adaptive_timeout, propagate_deadline, deadline_reserve, retry_body_limit,
//! # latency_buckets, idempotent, fault, rtt (for check): see below
//!
//! [faults]
//! enabled = false                 # default
//! ```
//!
//! A route's policy keys are a graph call's, read by the same code with the same defaults
//! ([`stormguard_graph::parse::policy_keys`], listed in `docs/reference.md`): `timeout` is each
//! attempt, connecting included; `request_timeout` the whole request, retries and waits
//! included (none by default: only the caller's propagated deadline bounds it);
//! `connect_timeout` is within `timeout` (by default the timeout bounds connecting);
//! `max_attempts = 1`; backoff `full-jitter(base=25ms, cap=250ms)`; a retry budget of ratio
//! 0.2 with 10/s minimum (over 10 s), `retry_budget = "none"` for none; `retry_on` the default
//! list; `idempotent = "by-method"` (by method and `Idempotency-Key`; `true` replays every
//! request, `false` none once written, and takes no hedge); a `hedge` without `max_extra` gets
//! 5%; `propagate_deadline = true`. The proxy's own keys: `deadline_reserve = "5ms"`,
//! `retry_body_limit = "64KiB"` (the layers' `DEFAULT_BODY_LIMIT`), no `latency_buckets`
//! (up to 16 bounds the route's latency histograms add to their ladder), an `adaptive_timeout`
//! without bounds gets `min = "10ms"`, `max` = the route's timeout and
//! `false_timeout_rate = 0.001`.
//!
//! Where a proxy refuses what a graph file may describe: a route without `timeout` (it would
//! hold a client and an upstream slot for as long as the upstream hangs), and a route that
//! retries without `request_timeout` (until `request_timeout` existed, a route's `timeout` also
//! capped the whole request; an old file must say which it meant, never silently lose that
//! cap).
//!
//! ## Read as a service graph
//! [`to_graph`] turns the settings into the graph `stormguard check` and `stormguard sim` read:
//! the application beside the sidecar ([`APP`]) calling each route's upstream from an endpoint
//! per route, so that `check examples/proxy/stormguard.toml` judges the routes' policies with
//! the graph's rules (see its module for the defaults it assumes).
//!
//! ## What is refused
//! Everything the proxy could not run as written, each error at `file:line:column` of the
//! offending value (or of its table when a key is missing) with the dotted key and what would
//! be valid: unknown keys and wrong types; no route; a route without name or upstream, or with
//! a name used before, or an upstream the file does not define (the error lists the known
//! ones); backoffs, hedge delays, budgets and adaptive timeouts the policy core refuses, in its
//! own words; every duration, count, number and size outside its range
//! (`stormguard_graph::parse::ranges`, the table of `docs/reference.md`: timeouts and connection
//! timers 1 ms to 1 h, `max_request_body` at most 1 GiB, `max_connections` at most 100,000, and
//! so on), with the range and why; `connect_timeout` above `timeout`; an adaptive `max` above
//! `timeout`; both `retry_budget` and `token_bucket`; instances that are not `host:port`, or
//! listed twice; both `instances` and `discovery`, a `discovery` name that is an address, a
//! `[dns]` server that is not `ip:port` (or more than 3), a `refresh` outside 100 ms to 1 h; an
//! admin address that is not loopback without a token; listen and admin on the same address.
//!
//! A route's `fault` is accepted while `[faults] enabled = false`, and does nothing (`/config`
//! shows it with `"active": false`): `enabled` is the kill switch, and a kill switch that made
//! the file invalid would leave the faults running when a reload is refused.

mod convert;
mod graph;
mod json;
mod model;
mod policy;
mod raw;
mod route;
mod route_tables;
mod tls;
mod upstream;

use std::path::{Path, PathBuf};

pub use graph::{is_settings_file, to_graph, APP};
pub use json::{to_json, REDACTED};
pub use model::{
    AdaptiveTimeoutSpec, Admin, CertAndKey, Config, Discovery, Dns, FaultSpec, Faults, Http1Client,
    Listen, PemFile, Protocol, Route, RouteMatch, Upstream, UpstreamTls,
};
pub use policy::{hedge_policy, per_try_timeout, route_policy, worst_case_total, PolicyError};
pub use stormguard_graph::parse::{size, ParseError};

/// Parses the settings file `text`; `file` names it in errors.
///
/// Returns the first error found: serde's (syntax, unknown keys, types) before any of meaning,
/// then meaning in a fixed order (listen, admin, upstreams by name, routes in file order, then
/// what relates two tables), so the same file always gives the same error.
///
/// ```
/// use stormguard_proxy::config;
///
/// let config = config::parse("stormguard.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001", "127.0.0.1:9002"]
/// [[routes]]
/// name = "api"
/// upstream = "api"
/// timeout = "2s"
/// "#).unwrap();
/// assert_eq!(config.routes[0].call.max_attempts, 1);
///
/// let error = config::parse("stormguard.toml", "[[routes]]\nname = \"api\"\nupstream = \"apu\"\n")
///     .unwrap_err();
/// assert_eq!(error.to_string(), "stormguard.toml:3:12: `routes[0].upstream`: unknown upstream \
///     \"apu\": there is no [upstreams.apu]; the file defines no upstreams yet: add \
///     [upstreams.NAME] with instances = [\"host:port\", ...]");
/// ```
pub fn parse(file: &str, text: &str) -> Result<Config, ParseError> {
    let lines = stormguard_graph::parse::locate::Lines::new(text);
    let raw: raw::RawConfig = toml::from_str(text)
        .map_err(|error| stormguard_graph::parse::serde_error(file, text, &lines, &error))?;
    convert::Converter::new(file, &lines).config(raw)
}

/// A settings file that could not be loaded: unreadable, or refused by [`parse`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (missing, no permission, not UTF-8), or is not one the proxy
    /// reads: not a regular file, or larger than 4 MiB ([`stormguard_graph::input`]).
    #[error("{}: cannot read the settings file: {source}", path.display())]
    Read {
        /// The path, as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read and refused.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Reads and parses the settings file at `path`; errors name the path as given.
///
/// Blocking: call it from a blocking context (or `spawn_blocking`) in an async program.
///
/// ```
/// use stormguard_proxy::config::{self, LoadError};
///
/// let error = config::load("/nonexistent/stormguard.toml".as_ref()).unwrap_err();
/// assert!(matches!(error, LoadError::Read { .. }));
/// assert!(error.to_string().starts_with("/nonexistent/stormguard.toml: cannot read"));
/// ```
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = stormguard_graph::input::read_text(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&path.display().to_string(), &text)?)
}

#[cfg(test)]
mod tests;
