//! The effective settings as JSON, for `GET /config` and `stormguard proxy --validate`: every
//! default filled in, so that anyone can discover what a timeout really is without reading the
//! source, and each route's derived policy, so that nobody has to multiply attempts by
//! timeouts in their head.
//!
//! The keys are the file's keys with the same meanings; durations are written as the file
//! writes them (`"2s"`, `"250ms"`, by `stormguard::duration::format`), the backoff and hedge
//! delay in the policy core's text forms, and sizes both in bytes and in the file's form. Keys
//! are sorted (serde_json's map), so two dumps of the same settings are byte for byte equal
//! and a diff of two generations shows only what changed. The admin token is never shown.

use serde_json::{json, Value};
use stormguard::duration::format as duration;
use stormguard::policy::Limiter;
use stormguard_graph::model::{Idempotent, LimiterSpec};

use super::model::{Config, Listen, PemFile, Route, Upstream};
use super::policy::{per_try_timeout, route_policy, worst_case_total};
use super::size;

/// What `/config` shows instead of the admin token.
pub const REDACTED: &str = "[redacted]";

/// The effective settings of `config` as JSON.
///
/// ```
/// use stormguard_proxy::config;
///
/// let config = config::parse("p.toml", r#"
/// [upstreams.api]
/// instances = ["127.0.0.1:9001"]
/// [[routes]]
/// name = "api"
/// upstream = "api"
/// timeout = "2s"
/// "#).unwrap();
/// let json = config::to_json(&config);
/// assert_eq!(json["routes"][0]["timeout"], "2s");
/// assert_eq!(json["routes"][0]["policy"]["worst_case_total"], "2s");
/// assert_eq!(json["listen"]["max_request_body"]["human"], "8MiB");
/// ```
pub fn to_json(config: &Config) -> Value {
    json!({
        "listen": listen(&config.listen),
        "admin": {
            "address": config.admin.address.to_string(),
            "token": config.admin.token.as_ref().map(|_| REDACTED),
        },
        "upstreams": config
            .upstreams
            .iter()
            .map(|(name, upstream)| (name.clone(), self::upstream(upstream)))
            .collect::<serde_json::Map<_, _>>(),
        "routes": config
            .routes
            .iter()
            .map(|r| route(r, config.faults.enabled))
            .collect::<Vec<_>>(),
        "faults": { "enabled": config.faults.enabled },
        "dns": {
            "servers": config.dns.servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "refresh": duration(config.dns.refresh),
        },
    })
}

fn listen(listen: &Listen) -> Value {
    json!({
        "address": listen.address.to_string(),
        "header_read_timeout": duration(listen.header_read_timeout),
        "max_request_body": bytes(listen.max_request_body),
        "max_headers": listen.max_headers,
        "max_header_bytes": bytes(listen.max_header_bytes as u64),
        "shutdown_grace": duration(listen.shutdown_grace),
        "max_connections": listen.max_connections,
        "http2_max_concurrent_streams": listen.http2_max_concurrent_streams,
        "http2_keep_alive_interval": duration(listen.http2_keep_alive_interval),
        "http2_keep_alive_timeout": duration(listen.http2_keep_alive_timeout),
        "idle_timeout": duration(listen.idle_timeout),
        "first_byte_timeout": duration(listen.first_byte_timeout),
        "max_unfinished_header_bytes": bytes(listen.max_unfinished_header_bytes as u64),
        "stream_idle_timeout": duration(listen.stream_idle_timeout),
        "request_body_timeout": duration(listen.request_body_timeout),
        "access_log": listen.access_log,
        "tls": listen.tls.as_ref().map(|files| json!({
            "cert_file": path(&files.cert_file),
            "key_file": path(&files.key_file),
        })),
    })
}

fn upstream(upstream: &Upstream) -> Value {
    let tls = upstream.tls.as_ref();
    let client = tls.and_then(|tls| tls.client_cert.as_ref());
    json!({
        "instances": upstream.instances,
        "discovery": upstream.discovery.as_ref().map(|d| json!({
            "dns": format!("{}:{}", d.host, d.port),
            "refresh": duration(d.refresh),
        })),
        "max_in_flight": upstream.max_in_flight,
        "protocol": upstream.protocol.as_str(),
        "http1_client": upstream.http1_client.as_str(),
        "tls": tls.is_some(),
        "server_name": tls.and_then(|tls| tls.server_name.as_deref()),
        // The roots an instance's certificate is checked against.
        "ca_file": tls.map(|tls| tls.ca_file.as_ref().map_or(SYSTEM_ROOTS.into(), path)),
        "cert_file": client.map(|files| path(&files.cert_file)),
        "key_file": client.map(|files| path(&files.key_file)),
    })
}

/// What `/config` shows as an upstream's `ca_file` when it gives none.
const SYSTEM_ROOTS: &str = "[system roots]";

/// Where a PEM file is read from; its contents are never shown.
fn path(pem: &PemFile) -> Value {
    Value::String(pem.path.display().to_string())
}

fn bytes(bytes: u64) -> Value {
    json!({ "bytes": bytes, "human": size::format(bytes) })
}

fn route(route: &Route, faults_enabled: bool) -> Value {
    let call = &route.call;
    let (retry_budget, token_bucket) = match call.limiter {
        Some(LimiterSpec::Budget { ratio, min_per_sec }) => (
            json!({ "ratio": ratio, "min_per_sec": min_per_sec }),
            Value::Null,
        ),
        Some(LimiterSpec::TokenBucket {
            capacity,
            retry_cost,
            timeout_cost,
        }) => (
            Value::Null,
            json!({
                "capacity": capacity,
                "retry_cost": retry_cost,
                "timeout_cost": timeout_cost,
            }),
        ),
        None => (Value::Null, Value::Null),
    };
    json!({
        "name": route.name,
        "match": {
            "path_prefix": route.matcher.path_prefix,
            "host": route.matcher.host,
        },
        "upstream": route.upstream,
        "timeout": call.timeout.map(duration),
        "request_timeout": call.request_timeout.map(duration),
        "connect_timeout": call.connect_timeout.map(duration),
        "max_attempts": call.max_attempts,
        "backoff": call.backoff.to_string(),
        "retry_budget": retry_budget,
        "token_bucket": token_bucket,
        "retry_on": call.retry_on.conditions().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "hedge": call.hedge.map(|hedge| json!({
            "delay": hedge.delay.to_string(),
            "max_extra": hedge.max_extra,
        })),
        "adaptive_timeout": route.adaptive_timeout.map(|adaptive| json!({
            "false_timeout_rate": adaptive.false_timeout_rate,
            "min": duration(adaptive.min),
            "max": duration(adaptive.max),
        })),
        "propagate_deadline": call.propagate_deadline,
        "deadline_reserve": duration(route.deadline_reserve),
        "retry_body_limit": bytes(route.retry_body_limit),
        "latency_buckets": route.latency_buckets.iter().map(|b| duration(*b)).collect::<Vec<_>>(),
        "idempotent": match call.idempotent {
            Idempotent::Yes => json!(true),
            Idempotent::No => json!(false),
            Idempotent::ByMethod => json!("by-method"),
        },
        "fault": route.fault.map(|fault| json!({
            "delay": duration(fault.delay),
            "delay_percent": fault.delay_percent,
            "abort_status": fault.abort_status,
            "abort_percent": fault.abort_percent,
            "active": faults_enabled,
        })),
        "policy": derived(route),
    })
}

/// What the route's settings come to, as the policy core will run them.
fn derived(route: &Route) -> Value {
    let policy = match route_policy(route) {
        Ok(policy) => policy,
        Err(error) => return json!({ "error": error.to_string() }),
    };
    let limiter = match &policy.limiter {
        Limiter::Unlimited => json!({ "kind": "unlimited" }),
        Limiter::Budget(budget) => json!({
            "kind": "retry-budget",
            "ratio": budget.ratio(),
            "min_per_sec": budget.min_per_sec(),
            "window": duration(budget.ttl()),
        }),
        Limiter::Bucket(bucket) => {
            let config = bucket.config();
            json!({
                "kind": "token-bucket",
                "capacity": config.capacity,
                "retry_cost": config.retry_cost,
                "timeout_cost": config.timeout_retry_cost,
                "success_refund": config.success_refund,
            })
        }
    };
    let replay = match policy.idempotent {
        Some(false) => "never once the request was written; refused connections only".to_string(),
        Some(true) => format!(
            "every request, whatever its method, with bodies up to {}",
            size::format(route.retry_body_limit)
        ),
        None => format!(
            "after a failure that may have reached the upstream, only requests idempotent by \
             method or Idempotency-Key, with bodies up to {}; refused connections always",
            size::format(route.retry_body_limit)
        ),
    };
    json!({
        "per_try_timeout": duration(per_try_timeout(route)),
        "per_try_timeout_kind": if policy.adaptive_timeout.is_some() { "adaptive" } else { "fixed" },
        "retries": policy.max_attempts - 1,
        "worst_case_total": duration(worst_case_total(route)),
        "retry_limiter": limiter,
        "deadline_propagation": policy.propagate_deadline,
        "deadline_reserve": duration(policy.deadline.reserve),
        "max_retry_after": duration(policy.classifier.max_retry_after),
        "replay": replay,
    })
}
