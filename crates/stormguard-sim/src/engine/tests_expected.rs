//! The expected latency comes from the call's estimator, as the proxy's from its route's: a call
//! with less of its deadline left than the call's p50 is not started.

use super::tests::run;

/// Each `api` request queries `db` twice in sequence; `db` takes some 300 ms, and `web` gives
/// `api` 500 ms and propagates it: the second query can never finish in time.
const TWO_QUERIES: &str = r#"
    [entry]
    service = "web"
    timeout = "10s"
    rate = 100
    [services.web]
    concurrency = 1000
    [[services.web.calls]]
    to = "api"
    timeout = "500ms"
    propagate_deadline = true
    [services.api]
    concurrency = 1000
    [[services.api.calls]]
    to = "db"
    timeout = "1s"
    count = 2
    propagate_deadline = true
    [services.db]
    instances = 4
    concurrency = 1000
    latency = { p50 = "300ms", p99 = "330ms" }
"#;

#[test]
fn a_call_with_less_time_left_than_its_p50_is_not_started() {
    let outcome = run(TWO_QUERIES, None, 3);
    let users = outcome.users.requests;
    let db = &outcome.services["db"];
    // The first query of each request, and the second only until db's estimator holds the 100
    // samples a p50 needs: with the policy's expected latency (zero) every second query went,
    // to be cut by its deadline, doubling db's load for nothing.
    assert!(
        db.attempts < users + 150,
        "{} attempts at db for {users} requests",
        db.attempts
    );
    assert!(users > 5000, "{users} requests");
    assert_eq!(outcome.users.succeeded, 0);
}
