//! Every key a file leaves out gets the documented default, and a route's policy defaults are
//! the library's recommended policy, read from the library.

use std::net::SocketAddr;
use std::time::Duration;

use stormguard::backoff::Backoff;
use stormguard::policy::RetryPolicy;
use stormguard_graph::model::{Idempotent, LimiterSpec};

use super::*;

#[test]
fn listen_admin_and_faults_defaults() {
    let config = config(MINIMAL);
    assert_eq!(
        config.listen,
        Listen {
            address: "127.0.0.1:8080".parse().unwrap(),
            header_read_timeout: Duration::from_secs(5),
            max_request_body: 8 * 1024 * 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
            max_connections: 10_000,
            http2_max_concurrent_streams: 100,
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(75),
            first_byte_timeout: Duration::from_secs(10),
            max_unfinished_header_bytes: 32 << 20,
            stream_idle_timeout: Duration::from_secs(60),
            request_body_timeout: Duration::from_secs(30),
            access_log: true,
            tls: None,
        }
    );
    assert_eq!(
        config.admin,
        Admin {
            address: "127.0.0.1:9901".parse().unwrap(),
            token: None,
        }
    );
    assert_eq!(config.faults, Faults { enabled: false });
    assert_eq!(config.upstreams["api"].max_in_flight, 1024);
}

#[test]
fn the_unfinished_header_budget_holds_many_of_the_largest_heads() {
    // The default budget is 32 of the largest heads a file may allow (1MiB), so no setting of
    // max_header_bytes leaves it unable to hold one.
    let listen = config(&format!("[listen]\nmax_header_bytes = \"1MiB\"\n{MINIMAL}")).listen;
    assert_eq!(listen.max_unfinished_header_bytes, 32 << 20);
}

#[test]
fn empty_tables_take_the_same_defaults_as_missing_ones() {
    let with_tables = config(&format!("[listen]\n[admin]\n[faults]\n{MINIMAL}"));
    let without = config(MINIMAL);
    assert_eq!(with_tables.listen, without.listen);
    assert_eq!(with_tables.admin, without.admin);
    assert_eq!(with_tables.faults, without.faults);
}

#[test]
fn a_route_gets_the_graph_calls_defaults() {
    let route = &config(MINIMAL).routes[0];
    let recommended = RetryPolicy::recommended();
    let call = &route.call;
    // One set of defaults for a route and a graph call: the same parse of the same keys.
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"a\"\n[services.a]\n[[services.a.calls]]\nto = \"api\"\n\
         timeout = \"1s\"\n[services.api]\n",
    )
    .unwrap();
    let graph_call = &graph.services["a"].calls[0];
    assert_eq!(
        (
            call.timeout,
            call.request_timeout,
            call.connect_timeout,
            call.max_attempts,
            call.backoff,
            call.limiter,
            call.retry_on,
            call.idempotent,
            call.hedge,
            call.propagate_deadline,
        ),
        (
            graph_call.timeout,
            graph_call.request_timeout,
            graph_call.connect_timeout,
            graph_call.max_attempts,
            graph_call.backoff,
            graph_call.limiter,
            graph_call.retry_on,
            graph_call.idempotent,
            graph_call.hedge,
            graph_call.propagate_deadline,
        )
    );
    // No retry unless the route asks; how to retry is the library's recommendation.
    assert_eq!(call.max_attempts, 1);
    assert_eq!(call.backoff, recommended.backoff);
    assert_eq!(
        call.backoff,
        Backoff::FullJitter {
            base: Duration::from_millis(25),
            cap: Duration::from_millis(250)
        }
    );
    assert_eq!(
        call.limiter,
        Some(LimiterSpec::Budget {
            ratio: 0.2,
            min_per_sec: 10
        })
    );
    assert_eq!(call.timeout, Some(Duration::from_secs(1)));
    assert_eq!(call.request_timeout, None);
    assert_eq!(call.connect_timeout, None);
    assert_eq!(call.retry_on, stormguard::classify::RetryOn::default());
    assert!(call.propagate_deadline);
    assert_eq!(call.idempotent, Idempotent::ByMethod);
    assert_eq!(call.hedge, None);
    assert_eq!((call.count, call.parallel, call.required), (1, false, true));
    assert_eq!(route.matcher, RouteMatch::default());
    assert_eq!(route.adaptive_timeout, None);
    assert_eq!(route.deadline_reserve, recommended.deadline.reserve);
    assert_eq!(route.deadline_reserve, Duration::from_millis(5));
    assert_eq!(route.retry_body_limit, 64 * 1024);
    assert_eq!(route.fault, None);
}

#[test]
fn a_route_without_timeout_is_refused_at_its_table() {
    let error = parse("p.toml", UNTIMED).unwrap_err();
    assert_eq!((error.line, error.column), (3, 1));
    assert_eq!(error.key.as_deref(), Some("routes[0].timeout"));
    assert!(
        error
            .message
            .starts_with("missing: every route needs a timeout"),
        "{error}"
    );
}

#[test]
fn a_route_that_resends_without_request_timeout_is_refused_with_both_choices() {
    // `timeout` used to cap the whole request too: an old file that retries must say which it
    // meant, never silently lose the cap.
    let error = parse(
        "p.toml",
        &format!("{MINIMAL}max_attempts = 3\nbackoff = \"constant(100ms)\"\n"),
    )
    .unwrap_err();
    assert_eq!(error.key.as_deref(), Some("routes[0].request_timeout"));
    assert_eq!((error.line, error.column), (6, 11), "{error}");
    assert!(
        error
            .message
            .contains("add request_timeout = \"1s\" to keep that cap")
            && error
                .message
                .contains("request_timeout = \"3200ms\" to let every attempt"),
        "{error}"
    );
    // A hedge runs within its attempt's timeout: it needs no request_timeout.
    let hedged = config(&format!("{MINIMAL}hedge = {{ delay = \"p95\" }}\n"));
    assert_eq!(hedged.routes[0].call.request_timeout, None);
    let fine = config(&format!(
        "{MINIMAL}max_attempts = 3\nrequest_timeout = \"2s\"\n"
    ));
    assert_eq!(
        fine.routes[0].call.request_timeout,
        Some(Duration::from_secs(2))
    );
}

#[test]
fn without_a_connect_timeout_the_attempts_timeout_bounds_connecting() {
    let route = &config(&format!("{UNTIMED}timeout = \"300ms\"\n")).routes[0];
    assert_eq!(route.call.connect_timeout, None);
    assert_eq!(
        crate::config::per_try_timeout(route),
        Duration::from_millis(300)
    );
}

#[test]
fn partial_limiter_tables_take_the_rest_from_the_library() {
    let route = &config(&format!("{MINIMAL}retry_budget = {{ ratio = 0.1 }}\n")).routes[0];
    assert_eq!(
        route.call.limiter,
        Some(LimiterSpec::Budget {
            ratio: 0.1,
            min_per_sec: 10
        })
    );
    let route = &config(&format!("{MINIMAL}retry_budget = {{ min_per_sec = 0 }}\n")).routes[0];
    assert_eq!(
        route.call.limiter,
        Some(LimiterSpec::Budget {
            ratio: 0.2,
            min_per_sec: 0
        })
    );
    // The AWS SDKs' standard mode, as stormguard::budget::TokenBucketConfig::default().
    let route = &config(&format!("{MINIMAL}token_bucket = {{}}\n")).routes[0];
    assert_eq!(
        route.call.limiter,
        Some(LimiterSpec::TokenBucket {
            capacity: 500,
            retry_cost: 5,
            timeout_cost: 10
        })
    );
}

#[test]
fn listen_on_port_zero_is_valid_for_both_listeners() {
    // Port 0 lets the OS choose, as tests do; two port-0 addresses never collide.
    let config = config(&format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n{MINIMAL}"
    ));
    assert_eq!(config.listen.address, SocketAddr::from(([127, 0, 0, 1], 0)));
    assert_eq!(config.admin.address, config.listen.address);
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("stormguard-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, MINIMAL).unwrap();
    assert_eq!(load(&good).unwrap(), config(MINIMAL));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, format!("{UNTIMED}timeout = \"2\"\n")).unwrap();
    let error = load(&bad).unwrap_err();
    let LoadError::Parse(parse_error) = &error else {
        panic!("expected a parse error, got {error}");
    };
    assert_eq!(parse_error.file, bad.display().to_string());
    assert!(
        error.to_string().starts_with(&format!(
            "{}:6:11: `routes[0].timeout`: invalid duration",
            bad.display()
        )),
        "{error}"
    );
    let missing = dir.join("missing.toml");
    let error = load(&missing).unwrap_err();
    assert!(matches!(error, LoadError::Read { .. }));
    assert!(
        error.to_string().starts_with(&format!(
            "{}: cannot read the settings file: ",
            missing.display()
        )),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
