//! The settings file end to end: every key read, every default applied, every refusal located,
//! and the JSON `/config` shows.

mod defaults;
mod discovery;
mod errors;
mod errors_routes;
mod json;
mod keys;
mod tls;

use super::*;

/// The issue's sample, verbatim: the file the proxy is documented with must load.
pub(super) const ISSUE_SAMPLE: &str = r#"[listen]
address = "127.0.0.1:8080"         # HTTP/1.1 and HTTP/2 (prior knowledge)
header_read_timeout = "5s"         # slow clients are cut off
max_request_body = "8MiB"

[admin]
address = "127.0.0.1:9901"         # GET /metrics, /config, /healthz; POST /reload
# token = "..."                    # required when the address is not loopback

[upstreams.api]
instances = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
max_in_flight = 1024               # per upstream; beyond it the proxy sheds load at once

[[routes]]                         # first match wins
name = "api"
match = { path_prefix = "/", host = "api.internal" }   # both optional
upstream = "api"
timeout = "2s"                     # each attempt, connecting included
request_timeout = "3s"             # the whole request, retries and waits included
connect_timeout = "100ms"
max_attempts = 2
backoff = "full-jitter(base=25ms, cap=250ms)"
retry_budget = { ratio = 0.2, min_per_sec = 10 }
hedge = { delay = "p95", max_extra = 0.05 }       # optional; a duration or a latency quantile
adaptive_timeout = { false_timeout_rate = 0.001, min = "50ms", max = "2s" }   # optional
propagate_deadline = true
deadline_reserve = "5ms"
retry_body_limit = "64KiB"         # larger bodies are sent once, never replayed
fault = { delay = "200ms", delay_percent = 10.0, abort_status = 503, abort_percent = 5.0 }  # only with [faults] enabled = true

[faults]
enabled = false                    # also enables the headers stormguard-fault-delay-ms and stormguard-fault-abort
"#;

/// The smallest valid file: lines 1-5; what a test appends starts on line 6, inside
/// `routes[0]`.
pub(super) const MINIMAL: &str = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n\
                                  [[routes]]\nname = \"api\"\nupstream = \"api\"\n\
                                  timeout = \"1s\"\n";

/// [`MINIMAL`] without its `timeout`, for tests that give their own (or none).
pub(super) const UNTIMED: &str = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n\
                                  [[routes]]\nname = \"api\"\nupstream = \"api\"\n";

/// Parses `text`, which must be valid.
#[track_caller]
pub(super) fn config(text: &str) -> Config {
    parse("p.toml", text).unwrap_or_else(|error| panic!("{error}"))
}

/// Asserts where the error for `text` is, its key, and that its message holds each of `says`.
#[track_caller]
pub(super) fn assert_error(text: &str, line: usize, column: usize, key: &str, says: &[&str]) {
    let error = parse("p.toml", text).expect_err("the file should be refused");
    let message = &error.message;
    assert_eq!(
        (error.line, error.column, error.key.as_deref().unwrap_or("")),
        (line, column, key),
        "message: {message}"
    );
    assert_eq!(error.file, "p.toml");
    for part in says {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }
}
