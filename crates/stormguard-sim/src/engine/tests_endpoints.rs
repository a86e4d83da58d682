//! Endpoints in the engine: each request to a service with endpoints takes one, drawn by weight
//! from a seeded stream of its own, and a call that names an endpoint goes there only.

use super::tests::run;

/// A gateway whose browse endpoint (weight 9) calls the catalog and whose checkout endpoint
/// (weight 1) calls orders; `{caller}` is added at the end.
fn gateway(extra: &str) -> String {
    format!(
        r#"
        [entry]
        service = "gateway"
        rate = 500
        [services.gateway]
        instances = 2
        [services.gateway.endpoints.browse]
        weight = 9
        [[services.gateway.endpoints.browse.calls]]
        to = "catalog"
        timeout = "1s"
        [services.gateway.endpoints.checkout]
        weight = 1
        [[services.gateway.endpoints.checkout.calls]]
        to = "orders"
        timeout = "1s"
        [services.catalog]
        instances = 2
        [services.orders]
        instances = 2
        {extra}
        "#
    )
}

#[test]
fn requests_take_each_endpoint_in_its_share() {
    let outcome = run(&gateway(""), None, 11);
    let catalog = outcome.services["catalog"].attempts as f64;
    let orders = outcome.services["orders"].attempts as f64;
    let share = catalog / (catalog + orders);
    assert!(catalog + orders > 29_000.0, "{catalog} + {orders}");
    assert!(
        (share - 0.9).abs() <= 0.02,
        "catalog took {share:.4} of the requests"
    );
    let gateway = &outcome.services["gateway"];
    assert_eq!(
        gateway.endpoints.keys().collect::<Vec<_>>(),
        ["browse", "checkout"]
    );
    assert_eq!(gateway.endpoints["browse"], catalog as u64);
    assert_eq!(gateway.endpoints["checkout"], orders as u64);
    assert_eq!(
        gateway.endpoints.values().sum::<u64>(),
        gateway.attempts,
        "every request takes one endpoint"
    );
    let edges: Vec<(&str, &str)> = outcome
        .calls
        .iter()
        .map(|c| (c.from.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("gateway/browse", "catalog"),
            ("gateway/checkout", "orders")
        ]
    );
    assert!(outcome.services["catalog"].endpoints.is_empty());
}

#[test]
fn the_same_seed_draws_the_same_endpoints() {
    let a = run(&gateway(""), None, 3);
    let b = run(&gateway(""), None, 3);
    assert_eq!(a, b);
    let c = run(&gateway(""), None, 4);
    assert_ne!(
        a.services["gateway"].endpoints,
        c.services["gateway"].endpoints
    );
}

#[test]
fn a_call_naming_an_endpoint_goes_there_only() {
    let graph = gateway(
        r#"
        [services.web]
        [[services.web.calls]]
        to = "gateway"
        endpoint = "checkout"
        timeout = "2s"
        "#,
    )
    .replace("service = \"gateway\"", "service = \"web\"");
    let outcome = run(&graph, None, 5);
    assert_eq!(outcome.services["catalog"].attempts, 0);
    let orders = outcome.services["orders"].attempts;
    assert_eq!(orders, outcome.users.requests);
    assert_eq!(outcome.services["gateway"].endpoints["checkout"], orders);
    assert_eq!(outcome.services["gateway"].endpoints["browse"], 0);
}
