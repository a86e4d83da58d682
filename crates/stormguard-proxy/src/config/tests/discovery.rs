//! `discovery` and `[dns]`: read with their defaults, refused where they cannot run.

use std::time::Duration;

use super::*;

const ROUTE: &str = "[[routes]]\nname = \"api\"\nupstream = \"api\"\ntimeout = \"1s\"\n";

#[test]
fn discovery_and_dns_are_read_with_their_defaults() {
    let config = config(&format!(
        "[upstreams.api]\ndiscovery = {{ dns = \"api.default.svc.cluster.local:8080\" }}\n{ROUTE}"
    ));
    let upstream = &config.upstreams["api"];
    assert!(upstream.instances.is_empty());
    assert_eq!(
        upstream.discovery,
        Some(Discovery {
            host: "api.default.svc.cluster.local".into(),
            port: 8080,
            refresh: Duration::from_secs(5),
        })
    );
    assert_eq!(
        config.dns,
        Dns {
            servers: vec![],
            refresh: Duration::from_secs(5)
        }
    );
    let config = self::config(&format!(
        "[dns]\nservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\nrefresh = \"2s\"\n\
         [upstreams.api]\ndiscovery = {{ dns = \"api:80\" }}\n{ROUTE}"
    ));
    assert_eq!(config.dns.servers.len(), 2);
    let discovery = config.upstreams["api"].discovery.as_ref().unwrap();
    assert_eq!(discovery.refresh, Duration::from_secs(2), "[dns] refresh");
    let config = self::config(&format!(
        "[upstreams.api]\ndiscovery = {{ dns = \"api:80\", refresh = \"100ms\" }}\n{ROUTE}"
    ));
    let discovery = config.upstreams["api"].discovery.as_ref().unwrap();
    assert_eq!(discovery.refresh, Duration::from_millis(100));
}

#[test]
fn discovery_is_refused_where_it_cannot_run() {
    assert_error(
        &format!(
            "[upstreams.api]\ninstances = [\"127.0.0.1:1\"]\ndiscovery = {{ dns = \"a:1\" }}\n{ROUTE}"
        ),
        2,
        13,
        "upstreams.api.instances",
        &["either instances or discovery, not both"],
    );
    assert_error(
        &format!("[upstreams.api]\ndiscovery = {{ refresh = \"1s\" }}\n{ROUTE}"),
        2,
        13,
        "upstreams.api.discovery.dns",
        &["missing: name the host and port"],
    );
    for (dns, says) in [
        ("api", "no port"),
        ("127.0.0.1:80", "an address, not a name"),
        ("[::1]:80", "an address, not a name"),
        ("http://api:80", "scheme"),
    ] {
        assert_error(
            &format!("[upstreams.api]\ndiscovery = {{ dns = \"{dns}\" }}\n{ROUTE}"),
            2,
            21,
            "upstreams.api.discovery.dns",
            &[says],
        );
    }
    assert_error(
        &format!("[upstreams.api]\ndiscovery = {{ dns = \"a:1\", refresh = \"50ms\" }}\n{ROUTE}"),
        2,
        38,
        "upstreams.api.discovery.refresh",
        &["100ms to 1h"],
    );
    assert_error(
        &format!("[dns]\nrefresh = \"2h\"\n{MINIMAL_UPSTREAM}{ROUTE}"),
        2,
        11,
        "dns.refresh",
        &["100ms to 1h"],
    );
    assert_error(
        &format!("[dns]\nservers = [\"ns.local:53\"]\n{MINIMAL_UPSTREAM}{ROUTE}"),
        2,
        12,
        "dns.servers[0]",
        &["not a name server address", "10.96.0.10:53"],
    );
    assert_error(
        &format!(
            "[dns]\nservers = [\"1.1.1.1:53\", \"1.1.1.2:53\", \"1.1.1.3:53\", \"1.1.1.4:53\"]\n\
             {MINIMAL_UPSTREAM}{ROUTE}"
        ),
        2,
        11,
        "dns.servers",
        &["at most 3"],
    );
    assert_error(
        &format!("[upstreams.api]\ndiscovery = {{ dns = \"a:1\", every = \"1s\" }}\n{ROUTE}"),
        2,
        28,
        "upstreams.api.discovery.every",
        &["unknown"],
    );
}

const MINIMAL_UPSTREAM: &str = "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n";
