//! `[upstreams.NAME]`: the instances a route may send to, and how much at once.
//!
//! Instances are checked for shape only (`host:port`, each once); host names are resolved by
//! the proxy as it runs, every `[dns] refresh`, so that a reload does not depend on DNS being
//! up. `discovery = { dns = "host:port", refresh }` names the instances by one host name
//! instead of a list; the two are exclusive, so a file says one thing about where requests go.

use std::time::Duration;
use stormguard_graph::parse::locate::KeyPath;

use stormguard_graph::parse::ranges::{DNS_REFRESH, IN_FLIGHT};
use stormguard_graph::parse::ParseError;
use toml::Spanned;

use super::convert::Converter;
use super::model::{Discovery, Http1Client, Protocol, Upstream};
use super::raw::{RawDiscovery, RawUpstream};

impl Converter<'_> {
    pub(super) fn upstream(
        &self,
        raw: Spanned<RawUpstream>,
        path: &KeyPath,
        default_refresh: Duration,
    ) -> Result<Upstream, ParseError> {
        let offset = raw.span().start;
        let mut raw = raw.into_inner();
        let discovery = match raw.discovery.take() {
            Some(discovery) => {
                if let Some(instances) = &raw.instances {
                    return Err(self.error(
                        instances.span().start,
                        &path.key("instances"),
                        "an upstream takes either instances or discovery, not both: discovery \
                         finds every instance by DNS; list none, or drop discovery",
                    ));
                }
                Some(self.discovery(discovery, &path.key("discovery"), default_refresh)?)
            }
            None => None,
        };
        let max_in_flight = self.whole_or(
            raw.max_in_flight.as_ref(),
            path,
            "max_in_flight",
            &IN_FLIGHT,
            1024,
        )?;
        let protocol = match &raw.protocol {
            Some(protocol) => self.protocol(protocol, path)?,
            None => Protocol::default(),
        };
        let http1_client = match &raw.http1_client {
            Some(client) => self.http1_client(client, path)?,
            None => Http1Client::default(),
        };
        if let Some(discovery) = discovery {
            // With TLS, discovered instances' certificates are checked against the name they
            // were found by (a host name, as the parser checked), or `server_name`.
            return Ok(Upstream {
                tls: self.upstream_tls(&raw, &[], path)?,
                instances: Vec::new(),
                discovery: Some(discovery),
                max_in_flight,
                protocol,
                http1_client,
            });
        }
        let Some(instances) = raw.instances.take() else {
            return Err(self.error(
                offset,
                &path.key("instances"),
                "missing: list the upstream's instances as \"host:port\" strings, e.g. \
                 instances = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"], or find them by DNS \
                 with discovery = { dns = \"api.internal:8080\" }",
            ));
        };
        let instances_offset = instances.span().start;
        let instances = instances.into_inner();
        if instances.is_empty() {
            return Err(self.error(
                instances_offset,
                &path.key("instances"),
                "an upstream with no instance can serve nothing: list at least one \
                 \"host:port\", e.g. [\"127.0.0.1:9001\"]",
            ));
        }
        let mut seen = Vec::with_capacity(instances.len());
        let mut normals: Vec<String> = Vec::with_capacity(instances.len());
        let mut schemes = Vec::with_capacity(instances.len());
        for (i, instance) in instances.iter().enumerate() {
            let key = path.key("instances").index(i);
            let https = super::tls::strip_https(instance.get_ref());
            let address = https.clone().unwrap_or_else(|| instance.get_ref().clone());
            if let Err(problem) = check_instance(&address) {
                return Err(self.error(
                    instance.span().start,
                    &key,
                    format!(
                        "{:?} is not a valid instance: {problem}; use \"host:port\", e.g. \
                         \"127.0.0.1:9001\", \"api-1.internal:80\" or \"[::1]:9001\" (or \
                         \"https://host:port\" for TLS)",
                        instance.get_ref()
                    ),
                ));
            }
            // The same address written two ways (`127.0.0.1:041001`, `[::1]` in full, a host
            // in capitals) is the same instance: a review's got two shares of the traffic.
            let normal = same_instance_form(&address);
            if let Some(first) = normals.iter().position(|s| *s == normal) {
                return Err(self.error(
                    instance.span().start,
                    &key,
                    format!(
                        "{:?} is listed twice (also at index {first}): it would get twice the \
                         share of requests and a retry could go back to it; list it once",
                        instance.get_ref()
                    ),
                ));
            }
            let host = address.rsplit_once(':').map_or("", |(host, _)| host);
            schemes.push(super::tls::InstanceScheme {
                offset: instance.span().start,
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                https: https.is_some(),
            });
            seen.push(address);
            normals.push(normal);
        }
        Ok(Upstream {
            tls: self.upstream_tls(&raw, &schemes, path)?,
            instances: seen,
            discovery: None,
            max_in_flight,
            protocol,
            http1_client,
        })
    }

    /// `discovery = { dns = "host:port", refresh = "5s" }`.
    fn discovery(
        &self,
        raw: Spanned<RawDiscovery>,
        path: &KeyPath,
        default_refresh: Duration,
    ) -> Result<Discovery, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let Some(dns) = raw.dns else {
            return Err(self.error(
                offset,
                &path.key("dns"),
                "missing: name the host and port to resolve, e.g. discovery = { dns = \
                 \"api.default.svc.cluster.local:8080\" }",
            ));
        };
        let problem = check_instance(dns.get_ref()).err().or_else(|| {
            let (host, _) = dns.get_ref().rsplit_once(':')?;
            let literal = host.parse::<std::net::Ipv4Addr>().is_ok() || host.starts_with('[');
            literal.then_some("it is an address, not a name: list it in instances instead")
        });
        if let Some(problem) = problem {
            return Err(self.error(
                dns.span().start,
                &path.key("dns"),
                format!(
                    "{:?} is not a host name and port: {problem}; use \"host:port\", e.g. \
                     \"api.default.svc.cluster.local:8080\"",
                    dns.get_ref()
                ),
            ));
        }
        let (host, port) = dns.get_ref().rsplit_once(':').expect("checked: host:port");
        Ok(Discovery {
            host: host.to_string(),
            port: port.parse().expect("checked: a port"),
            refresh: self.duration_or(
                raw.refresh.as_ref(),
                path,
                "refresh",
                &DNS_REFRESH,
                default_refresh,
            )?,
        })
    }

    fn protocol(&self, value: &Spanned<String>, path: &KeyPath) -> Result<Protocol, ParseError> {
        match value.get_ref().as_str() {
            "http1" => Ok(Protocol::Http1),
            "http2" => Ok(Protocol::Http2),
            other => Err(self.error(
                value.span().start,
                &path.key("protocol"),
                format!(
                    "{other:?} is not a protocol: use \"http1\" (HTTP/1.1, the default) or \
                     \"http2\" (HTTP/2 with prior knowledge, for h2c services); gRPC requests \
                     go over HTTP/2 either way"
                ),
            )),
        }
    }
}

impl Converter<'_> {
    fn http1_client(
        &self,
        value: &Spanned<String>,
        path: &KeyPath,
    ) -> Result<Http1Client, ParseError> {
        match value.get_ref().as_str() {
            "hyper" => Ok(Http1Client::Hyper),
            "direct" => Ok(Http1Client::Direct),
            other => Err(self.error(
                value.span().start,
                &path.key("http1_client"),
                format!(
                    "{other:?} is not an HTTP/1.1 client: use \"direct\" (the default: the \
                     request's own task writes it and reads the response) or \"hyper\" \
                     (hyper's client, a task per connection)"
                ),
            )),
        }
    }
}

/// Why `instance` is not `host:port`, if it is not. The host is not resolved here: names are
/// resolved when connecting, so that a reload does not depend on DNS being up.
fn check_instance(instance: &str) -> Result<(), &'static str> {
    if instance.contains("://") {
        return Err(
            "it has a scheme: write only the host and port, without \"http://\" \
                    (\"https://\" is the one scheme taken: it means TLS)",
        );
    }
    let Some((host, port)) = instance.rsplit_once(':') else {
        return Err("it has no port");
    };
    match port.parse::<u16>() {
        Ok(0) => return Err("port 0 cannot be connected to"),
        Ok(_) => {}
        Err(_) if port.is_empty() => return Err("it has no port"),
        Err(_) => return Err("the port is not a number from 1 to 65535"),
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| "the part in brackets is not an IPv6 address");
    }
    if host.is_empty() {
        return Err("it has no host");
    }
    if host.contains(':') {
        return Err("an IPv6 address must be in brackets");
    }
    let valid = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    if !valid {
        return Err("the host may hold only letters, digits, '.', '-' and '_' (no scheme or path)");
    }
    Ok(())
}

/// `address` (`host:port`, checked) in one form per instance: a socket address as Rust writes
/// it (`127.0.0.1:41001` for `127.0.0.1:041001`, `[::1]:9001` for `[0:0:0:0:0:0:0:1]:9001`), a
/// name in lower case with its port as a number.
fn same_instance_form(address: &str) -> String {
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        return socket.to_string();
    }
    match address.rsplit_once(':') {
        Some((host, port)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            // An address with a port in leading zeros, which `SocketAddr` does not take.
            if let (Ok(ip), Ok(port)) = (host.parse::<std::net::IpAddr>(), port.parse::<u16>()) {
                return std::net::SocketAddr::new(ip, port).to_string();
            }
            match port.parse::<u16>() {
                Ok(port) => format!("{}:{port}", host.to_ascii_lowercase()),
                Err(_) => address.to_ascii_lowercase(),
            }
        }
        None => address.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::check_instance;

    #[test]
    fn instances_are_host_and_port() {
        for good in [
            "127.0.0.1:9001",
            "api-1.internal:80",
            "[::1]:9001",
            "localhost:65535",
            "my_host:1",
        ] {
            assert_eq!(check_instance(good), Ok(()), "{good}");
        }
        for (bad, problem) in [
            ("127.0.0.1", "no port"),
            ("host:", "no port"),
            (":80", "no host"),
            ("host:0", "port 0"),
            ("host:65536", "1 to 65535"),
            ("host:http", "1 to 65535"),
            ("::1:80", "brackets"),
            ("[zz]:80", "not an IPv6"),
            ("http://host:80", "without \"http://\""),
            ("user@host:80", "no scheme"),
            ("host/path:80", "no scheme"),
            ("ho st:80", "no scheme"),
        ] {
            let error = check_instance(bad).expect_err(bad);
            assert!(error.contains(problem), "{bad}: {error}");
        }
    }
}
