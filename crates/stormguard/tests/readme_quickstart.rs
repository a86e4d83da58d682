//! The README's library quick start, kept compiling: if this breaks, fix the README too.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use stormguard::layer::{Balance, ReplayBody, RetryLayer, SetAuthority};
use stormguard::policy::RetryPolicy;
use tower::ServiceBuilder;

#[test]
fn the_quick_start_builds_a_service() {
    let policy = RetryPolicy::recommended()
        .with_per_try_timeout(Duration::from_secs(1))
        .with_overall_timeout(Duration::from_secs(2));

    let client: hyper_util::client::legacy::Client<_, ReplayBody<Full<Bytes>>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let instances = ["10.0.0.1:8080", "10.0.0.2:8080"]
        .map(|addr| SetAuthority::new(client.clone(), addr.parse().unwrap()));

    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy).target("api"))
        .service(Balance::new(instances.to_vec()));

    fn is_http_service<S>(_: &S)
    where
        S: tower::Service<http::Request<Full<Bytes>>> + Clone + Send + 'static,
    {
    }
    is_http_service(&service);
}
