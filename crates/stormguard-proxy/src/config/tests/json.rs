//! What `/config` shows: every default filled in, in the file's terms, with the derived policy.

use serde_json::json;

use super::*;

#[test]
fn the_issue_sample_as_json() {
    let json = to_json(&config(ISSUE_SAMPLE));
    assert_eq!(
        json["listen"],
        json!({
            "address": "127.0.0.1:8080",
            "header_read_timeout": "5s",
            "max_request_body": { "bytes": 8_388_608, "human": "8MiB" },
            "max_headers": 100,
            "max_header_bytes": { "bytes": 65_536, "human": "64KiB" },
            "shutdown_grace": "30s",
            "max_connections": 10_000,
            "http2_max_concurrent_streams": 100,
            "http2_keep_alive_interval": "30s",
            "http2_keep_alive_timeout": "20s",
            "idle_timeout": "75s",
            "first_byte_timeout": "10s",
            "max_unfinished_header_bytes": { "bytes": 33_554_432, "human": "32MiB" },
            "stream_idle_timeout": "1m",
            "request_body_timeout": "30s",
            "access_log": true,
            "tls": null,
        })
    );
    assert_eq!(
        json["admin"],
        json!({ "address": "127.0.0.1:9901", "token": null })
    );
    assert_eq!(
        json["upstreams"],
        json!({ "api": {
            "instances": ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"],
            "discovery": null,
            "max_in_flight": 1024,
            "protocol": "http1",
            "http1_client": "direct",
            "tls": false,
            "server_name": null,
            "ca_file": null,
            "cert_file": null,
            "key_file": null,
        }})
    );
    assert_eq!(json["faults"], json!({ "enabled": false }));
    assert_eq!(json["dns"], json!({ "servers": [], "refresh": "5s" }));
    let route = &json["routes"][0];
    assert_eq!(
        route,
        &json!({
            "name": "api",
            "match": { "path_prefix": "/", "host": "api.internal" },
            "upstream": "api",
            "timeout": "2s",
            "request_timeout": "3s",
            "connect_timeout": "100ms",
            "max_attempts": 2,
            "backoff": "full-jitter(base=25ms, cap=250ms)",
            "retry_budget": { "ratio": 0.2, "min_per_sec": 10 },
            "token_bucket": null,
            "retry_on": [
                "connect-failure", "refused-stream", "reset", "timeout", "gateway-error", "408",
                "429", "deadline-exceeded", "resource-exhausted", "unavailable"
            ],
            "hedge": { "delay": "p95", "max_extra": 0.05 },
            "adaptive_timeout": { "false_timeout_rate": 0.001, "min": "50ms", "max": "2s" },
            "propagate_deadline": true,
            "deadline_reserve": "5ms",
            "retry_body_limit": { "bytes": 65_536, "human": "64KiB" },
            "latency_buckets": [],
            "idempotent": "by-method",
            "fault": {
                "delay": "200ms",
                "delay_percent": 10.0,
                "abort_status": 503,
                "abort_percent": 5.0,
                "active": false,
            },
            "policy": {
                "per_try_timeout": "2s",
                "per_try_timeout_kind": "adaptive",
                "retries": 1,
                "worst_case_total": "3s",
                "retry_limiter": {
                    "kind": "retry-budget",
                    "ratio": 0.2,
                    "min_per_sec": 10,
                    "window": "10s",
                },
                "deadline_propagation": true,
                "deadline_reserve": "5ms",
                "max_retry_after": "5m",
                "replay": "after a failure that may have reached the upstream, only requests \
                           idempotent by method or Idempotency-Key, with bodies up to 64KiB; \
                           refused connections always",
            },
        })
    );
}

#[test]
fn defaults_are_shown_filled_in() {
    let json = to_json(&config(MINIMAL));
    let route = &json["routes"][0];
    assert_eq!(route["match"], json!({ "path_prefix": null, "host": null }));
    assert_eq!(route["timeout"], "1s");
    assert_eq!(route["request_timeout"], json!(null));
    assert_eq!(route["connect_timeout"], json!(null));
    assert_eq!(route["max_attempts"], 1);
    assert_eq!(route["idempotent"], "by-method");
    assert_eq!(
        route["retry_on"],
        json!([
            "connect-failure",
            "refused-stream",
            "reset",
            "timeout",
            "gateway-error",
            "408",
            "429",
            "deadline-exceeded",
            "resource-exhausted",
            "unavailable"
        ])
    );
    assert_eq!(route["backoff"], "full-jitter(base=25ms, cap=250ms)");
    assert_eq!(
        route["retry_budget"],
        json!({ "ratio": 0.2, "min_per_sec": 10 })
    );
    assert_eq!(route["hedge"], json!(null));
    assert_eq!(route["adaptive_timeout"], json!(null));
    assert_eq!(route["fault"], json!(null));
    assert_eq!(route["propagate_deadline"], true);
    assert_eq!(route["policy"]["per_try_timeout"], "1s");
    assert_eq!(route["policy"]["per_try_timeout_kind"], "fixed");
    assert_eq!(route["policy"]["worst_case_total"], "1s");
}

#[test]
fn token_buckets_tokens_and_active_faults_are_shown() {
    let json = to_json(&config(&format!(
        "[admin]\naddress = \"0.0.0.0:9901\"\ntoken = \"s3cret\"\n[faults]\nenabled = true\n\
         {MINIMAL}max_attempts = 1\ntoken_bucket = {{ capacity = 20 }}\nidempotent = false\n\
         fault = {{ delay = \"1s\" }}\n"
    )));
    assert_eq!(json["admin"]["token"], REDACTED);
    assert!(
        !json.to_string().contains("s3cret"),
        "the token must never be shown"
    );
    let route = &json["routes"][0];
    assert_eq!(route["retry_budget"], json!(null));
    assert_eq!(
        route["token_bucket"],
        json!({ "capacity": 20, "retry_cost": 5, "timeout_cost": 10 })
    );
    assert_eq!(
        route["policy"]["retry_limiter"],
        json!({
            "kind": "token-bucket",
            "capacity": 20,
            "retry_cost": 5,
            "timeout_cost": 10,
            "success_refund": 1,
        })
    );
    assert_eq!(route["policy"]["retries"], 0);
    assert_eq!(route["policy"]["worst_case_total"], "1s");
    assert_eq!(
        route["policy"]["replay"],
        "never once the request was written; refused connections only"
    );
    assert_eq!(route["fault"]["active"], true);
    assert_eq!(route["fault"]["delay_percent"], 100.0);
}

#[test]
fn the_same_settings_always_dump_to_the_same_text() {
    let a = to_json(&config(ISSUE_SAMPLE)).to_string();
    let b = to_json(&config(ISSUE_SAMPLE)).to_string();
    assert_eq!(a, b);
    // Sorted keys: a diff of two generations shows only what changed.
    let top: Vec<_> = to_json(&config(ISSUE_SAMPLE))
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        top,
        ["admin", "dns", "faults", "listen", "routes", "upstreams"]
    );
}
