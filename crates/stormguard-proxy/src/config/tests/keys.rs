//! Every key of the file reaches its field, with the value the file gave.

use std::net::SocketAddr;
use std::time::Duration;

use stormguard::backoff::Backoff;
use stormguard::hedge::HedgeDelay;
use stormguard_graph::model::{HedgeSpec, Idempotent, LimiterSpec, Span};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_issue_sample_loads_with_every_value_it_gives() {
    let config = config(ISSUE_SAMPLE);
    assert_eq!(
        config.listen.address,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.listen.header_read_timeout, Duration::from_secs(5));
    assert_eq!(config.listen.max_request_body, 8 << 20);
    assert_eq!(
        config.admin,
        Admin {
            address: "127.0.0.1:9901".parse().unwrap(),
            token: None
        }
    );
    assert_eq!(
        config.upstreams["api"],
        Upstream {
            instances: vec![
                "127.0.0.1:9001".into(),
                "127.0.0.1:9002".into(),
                "127.0.0.1:9003".into()
            ],
            discovery: None,
            max_in_flight: 1024,
            protocol: Protocol::Http1,
            http1_client: Default::default(),
            tls: None,
        }
    );
    assert_eq!(config.routes.len(), 1);
    let route = &config.routes[0];
    assert_eq!(route.name, "api");
    assert_eq!(
        route.matcher,
        RouteMatch {
            path_prefix: Some("/".into()),
            host: Some("api.internal".into()),
        }
    );
    assert_eq!(route.upstream, "api");
    let call = &route.call;
    assert_eq!(call.to, "api");
    assert_eq!(call.timeout, Some(Duration::from_secs(2)));
    assert_eq!(call.connect_timeout, Some(ms(100)));
    assert_eq!(call.max_attempts, 2);
    assert_eq!(
        call.backoff,
        Backoff::FullJitter {
            base: ms(25),
            cap: ms(250)
        }
    );
    assert_eq!(
        call.limiter,
        Some(LimiterSpec::Budget {
            ratio: 0.2,
            min_per_sec: 10
        })
    );
    assert_eq!(
        call.hedge,
        Some(HedgeSpec {
            delay: HedgeDelay::Quantile(0.95),
            max_extra: 0.05
        })
    );
    assert!(call.propagate_deadline);
    assert_eq!(call.idempotent, Idempotent::ByMethod);
    assert_eq!(
        call.span,
        Span {
            line: 14,
            column: 1
        }
    );
    assert_eq!(
        route.adaptive_timeout,
        Some(AdaptiveTimeoutSpec {
            false_timeout_rate: 0.001,
            min: ms(50),
            max: Duration::from_secs(2)
        })
    );
    assert_eq!(route.deadline_reserve, ms(5));
    assert_eq!(route.retry_body_limit, 64 * 1024);
    assert_eq!(
        route.fault,
        Some(FaultSpec {
            delay: ms(200),
            delay_percent: 10.0,
            abort_status: 503,
            abort_percent: 5.0
        })
    );
    assert!(!config.faults.enabled);
}

#[test]
fn every_listen_and_admin_key_is_read() {
    let config = config(&format!(
        "[listen]\naddress = \"[::1]:18080\"\nheader_read_timeout = \"750ms\"\n\
         max_request_body = 1048576\nmax_headers = 32\nmax_header_bytes = \"16KiB\"\n\
         shutdown_grace = \"0s\"\nmax_connections = 64\nhttp2_max_concurrent_streams = 8\n\
         http2_keep_alive_interval = \"5s\"\nhttp2_keep_alive_timeout = \"2s\"\n\
         idle_timeout = \"200ms\"\nfirst_byte_timeout = \"150ms\"\n\
         max_unfinished_header_bytes = \"1MiB\"\nstream_idle_timeout = \"1500ms\"\n\
         request_body_timeout = \"2s\"\n[admin]\naddress = \"0.0.0.0:19901\"\ntoken = \"s3cret\"\n\
         [faults]\nenabled = true\n{MINIMAL}"
    ));
    let listen = &config.listen;
    assert_eq!(listen.address, "[::1]:18080".parse::<SocketAddr>().unwrap());
    assert_eq!(listen.header_read_timeout, ms(750));
    assert_eq!(listen.max_request_body, 1 << 20);
    assert_eq!(listen.max_headers, 32);
    assert_eq!(listen.max_header_bytes, 16 * 1024);
    // Zero grace is valid: exit as soon as SIGTERM comes.
    assert_eq!(listen.shutdown_grace, Duration::ZERO);
    assert_eq!(listen.max_connections, 64);
    assert_eq!(listen.http2_max_concurrent_streams, 8);
    assert_eq!(listen.http2_keep_alive_interval, Duration::from_secs(5));
    assert_eq!(listen.http2_keep_alive_timeout, Duration::from_secs(2));
    assert_eq!(listen.idle_timeout, ms(200));
    assert_eq!(listen.first_byte_timeout, ms(150));
    assert_eq!(listen.max_unfinished_header_bytes, 1 << 20);
    assert_eq!(listen.stream_idle_timeout, ms(1500));
    assert_eq!(listen.request_body_timeout, Duration::from_secs(2));
    assert_eq!(
        config.admin.address,
        "0.0.0.0:19901".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.admin.token.as_deref(), Some("s3cret"));
    assert!(config.faults.enabled);
}

#[test]
fn every_route_key_is_read() {
    let config = config(&format!(
        "{UNTIMED}match = {{ path_prefix = \"/v1/\", host = \"API.Internal\" }}\n\
         timeout = \"3s\"\nrequest_timeout = \"7s\"\nconnect_timeout = \"3s\"\nmax_attempts = 3\n\
         retry_on = [\"connect-failure\", \"409\", \"resource-exhausted\"]\n\
         backoff = \"constant(40ms)\"\ntoken_bucket = {{ capacity = 50, retry_cost = 2, \
         timeout_cost = 4 }}\nhedge = {{ delay = \"30ms\" }}\nidempotent = true\n\
         propagate_deadline = false\ndeadline_reserve = \"0s\"\nretry_body_limit = 0\n\
         fault = {{ abort_status = 429 }}\n"
    ));
    let route = &config.routes[0];
    // Hosts are compared without case, so they are kept in lower case.
    assert_eq!(route.matcher.host.as_deref(), Some("api.internal"));
    assert_eq!(route.matcher.path_prefix.as_deref(), Some("/v1/"));
    let call = &route.call;
    assert_eq!(call.timeout, Some(Duration::from_secs(3)));
    assert_eq!(call.request_timeout, Some(Duration::from_secs(7)));
    assert_eq!(call.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(call.max_attempts, 3);
    assert_eq!(
        call.retry_on.to_string(),
        "connect-failure, 409, resource-exhausted"
    );
    assert_eq!(call.backoff, Backoff::Constant(ms(40)));
    assert_eq!(
        call.limiter,
        Some(LimiterSpec::TokenBucket {
            capacity: 50,
            retry_cost: 2,
            timeout_cost: 4
        })
    );
    // A hedge without max_extra gets the library's 5%, never an unbounded hedge.
    assert_eq!(
        call.hedge,
        Some(HedgeSpec {
            delay: HedgeDelay::Fixed(ms(30)),
            max_extra: 0.05
        })
    );
    assert_eq!(call.idempotent, Idempotent::Yes);
    assert!(!call.propagate_deadline);
    assert_eq!(route.deadline_reserve, Duration::ZERO);
    assert_eq!(route.retry_body_limit, 0);
    // An abort with no share aborts every request; no delay is injected.
    assert_eq!(
        route.fault,
        Some(FaultSpec {
            delay: Duration::ZERO,
            delay_percent: 0.0,
            abort_status: 429,
            abort_percent: 100.0
        })
    );
}

#[test]
fn routes_keep_file_order_and_their_own_spans() {
    let config = config(&format!(
        "{MINIMAL}\n[[routes]]\nname = \"all\"\nupstream = \"api\"\ntimeout = \"1s\"\nidempotent = false\n\
         fault = {{ delay = \"1s\", abort_percent = 2.5 }}\n"
    ));
    let names: Vec<_> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api", "all"]);
    assert_eq!(config.routes[1].call.span, Span { line: 8, column: 1 });
    assert_eq!(config.routes[1].call.idempotent, Idempotent::No);
    assert_eq!(
        config.routes[1].fault,
        Some(FaultSpec {
            delay: Duration::from_secs(1),
            delay_percent: 100.0,
            abort_status: 503,
            abort_percent: 2.5
        })
    );
}

#[test]
fn upstreams_are_sorted_by_name_and_keep_instance_order() {
    let config = config(&format!(
        "[upstreams.zeta]\ninstances = [\"b.internal:80\", \"a.internal:80\"]\n\
         max_in_flight = 7\n{MINIMAL}"
    ));
    let names: Vec<_> = config.upstreams.keys().map(String::as_str).collect();
    assert_eq!(names, ["api", "zeta"]);
    assert_eq!(
        config.upstreams["zeta"].instances,
        ["b.internal:80", "a.internal:80"]
    );
    assert_eq!(config.upstreams["zeta"].max_in_flight, 7);
}

#[test]
fn adaptive_bounds_default_to_10ms_and_the_route_timeout() {
    let route = &config(&format!(
        "{UNTIMED}timeout = \"800ms\"\nadaptive_timeout = {{}}\n"
    ))
    .routes[0];
    assert_eq!(
        route.adaptive_timeout,
        Some(AdaptiveTimeoutSpec {
            false_timeout_rate: 0.001,
            min: ms(10),
            max: ms(800)
        })
    );
    // Below 10 ms the minimum follows the maximum down rather than refusing the file.
    let route = &config(&format!(
        "{UNTIMED}timeout = \"4ms\"\nadaptive_timeout = {{ false_timeout_rate = 0.01 }}\n"
    ))
    .routes[0];
    let adaptive = route.adaptive_timeout.unwrap();
    assert_eq!((adaptive.min, adaptive.max), (ms(4), ms(4)));
}

/// `check` on a settings file tells a route without a connect timeout to set one from the
/// route's round trip, "set the call's rtt if yours is longer": a route takes `rtt` as a graph's
/// call does (the settings refused it as an unknown key), and the fix follows it.
#[test]
fn a_route_s_rtt_is_the_round_trip_check_reads() {
    let config = config(&format!(
        "{MINIMAL}rtt = \"20ms\"\nmax_attempts = 2\nrequest_timeout = \"10s\"\n"
    ));
    assert_eq!(config.routes[0].call.rtt, Duration::from_millis(20));
    let report = stormguard_graph::check::check(&crate::config::to_graph(&config));
    let fix = &report
        .findings
        .iter()
        .find(|f| f.rule == "missing-connect-timeout")
        .expect("the route has no connect timeout")
        .fix;
    assert!(
        fix.contains("from the call's round trip (rtt) of 20ms"),
        "{fix}"
    );
    // Unset, the graph's default: 1 ms, which the finding says is assumed.
    assert_eq!(
        super::config(MINIMAL).routes[0].call.rtt,
        Duration::from_millis(1)
    );
}
