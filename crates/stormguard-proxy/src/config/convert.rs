//! From the raw file to [`Config`]: every default applied, every value checked for meaning,
//! every refusal located.
//!
//! The defaults live here (and, for a route, in `route.rs`, `route_tables.rs` and
//! `upstream.rs`) and nowhere else, so the file format has one definition. Unlike the graph file, whose unwise values are findings of
//! `check`, everything refused here is refused because the proxy could not run it as written,
//! or would silently run something else: a file that loads is a file the proxy obeys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::time::Duration;

use stormguard_graph::parse::locate::{KeyPath, Lines};
use stormguard_graph::parse::ranges::{
    ValueRange, ADDED, BODY, BODY_TIMER, CONNECTIONS, CONNECTION_TIMER, DNS_REFRESH, HEAD, HEADERS,
    HEAD_BUDGET, STREAMS,
};
use stormguard_graph::parse::values::ValueReader;
use stormguard_graph::parse::ParseError;
use toml::Spanned;

use super::model::{Admin, Config, Dns, Faults, Listen};
use super::raw::{RawAdmin, RawConfig, RawDns, RawListen, Scalar};
use super::size;

/// Where the proxy listens when the file does not say: loopback, so that a proxy started
/// without thinking is not open to the network.
pub(super) const LISTEN_ADDRESS: &str = "127.0.0.1:8080";
/// Where the admin server listens when the file does not say (Envoy's admin port).
pub(super) const ADMIN_ADDRESS: &str = "127.0.0.1:9901";
/// How often a host name is resolved again: Envoy's `dns_refresh_rate`. A Kubernetes pod that
/// goes away is out of the balance within 5 s, and a DNS server sees one query per name per
/// 5 s per proxy.
const DNS_REFRESH_DEFAULT: Duration = Duration::from_secs(5);
/// Name servers in `[dns] servers`: resolv.conf's `MAXNS`.
const MAX_DNS_SERVERS: usize = 3;
/// Client connections at once. A sidecar serves one service's callers, rarely more than a few
/// hundred connections; 10,000 leaves room for any of them while bounding memory (a connection
/// holds some tens of KiB of buffers) to a few hundred MiB, where an unbounded listener is
/// bounded only by the file descriptor limit.
const MAX_CONNECTIONS: u32 = 10_000;
/// RFC 9113 recommends advertising no fewer than 100 concurrent streams; HAProxy's default.
const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// hyper's default ping timeout.
const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// nginx's `keepalive_timeout`: client pools keep idle connections long (Go's 90 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// HAProxy's usual `timeout http-request`: long enough for any client that opened a
/// connection to use it, short enough that a bare connect holds a place for seconds, not
/// `idle_timeout`.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// 512 unfinished heads of the default 64 KiB: room for many slow clients, and a bound on what
/// they hold that does not grow with `max_connections`.
const MAX_UNFINISHED_HEADER_BYTES: u64 = 32 << 20;
/// nginx's `send_timeout`, `client_body_timeout` and `proxy_read_timeout`: a body that has not
/// moved for a minute belongs to a client or an upstream that is gone or stalling on purpose.
/// Envoy's 5 minutes suits long quiet streams; a file that carries them raises this.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The body read before forwarding is at most `retry_body_limit` (64 KiB by default): in 30 s
/// it arrives at 17 kbit/s, slower than any link a service's caller uses.
const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Walks the raw file, knowing where each value is.
///
/// Reads values through the graph file's [`ValueReader`], so that a duration, a count or a
/// policy key is read and refused as it is in a graph file; what it adds is the upstreams.
pub(super) struct Converter<'a> {
    values: ValueReader<'a>,
    /// The settings file as named in errors: the folder of relative paths in it.
    pub(super) file: &'a str,
    /// The upstreams' names, sorted, for `routes[i].upstream` and its error.
    pub(super) upstreams: Vec<String>,
}

impl<'a> Deref for Converter<'a> {
    type Target = ValueReader<'a>;

    fn deref(&self) -> &ValueReader<'a> {
        &self.values
    }
}

impl<'a> Converter<'a> {
    pub(super) fn new(file: &'a str, lines: &'a Lines<'a>) -> Self {
        Converter {
            values: ValueReader::new(file, lines),
            file,
            upstreams: Vec::new(),
        }
    }

    /// The whole file, in a fixed order (listen, admin, upstreams by name, routes in file
    /// order, faults, then what relates two tables), so the same file always gives the same
    /// error.
    pub(super) fn config(mut self, raw: RawConfig) -> Result<Config, ParseError> {
        self.upstreams = raw.upstreams.keys().cloned().collect();
        let root = KeyPath::default();
        let (listen, listen_offset) = self.listen(raw.listen)?;
        let admin_offset = raw.admin.as_ref().map(|admin| {
            admin
                .get_ref()
                .address
                .as_ref()
                .map_or(admin.span().start, |address| address.span().start)
        });
        let admin = self.admin(raw.admin)?;
        let dns = self.dns(raw.dns)?;
        let upstreams = raw
            .upstreams
            .into_iter()
            .map(|(name, upstream)| {
                let path = root.key("upstreams").key(&name);
                Ok((name, self.upstream(upstream, &path, dns.refresh)?))
            })
            .collect::<Result<BTreeMap<_, _>, ParseError>>()?;
        if raw.routes.is_empty() {
            return Err(self.error(
                0,
                &root.key("routes"),
                "no routes: add at least one [[routes]] table with name and upstream (and \
                 optionally match = { path_prefix, host }); a proxy without routes could only \
                 answer 404",
            ));
        }
        let mut routes = Vec::with_capacity(raw.routes.len());
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, route) in raw.routes.into_iter().enumerate() {
            let path = root.key("routes").index(i);
            let name_offset = route.get_ref().name.as_ref().map(|n| n.span().start);
            let route = self.route(route, &path)?;
            if let Some(first) = names.insert(route.name.clone(), i) {
                return Err(self.error(
                    name_offset.unwrap_or(0),
                    &path.key("name"),
                    format!(
                        "route name {:?} is already used by routes[{first}]: names label \
                         metrics and logs, so each route needs its own; rename one",
                        route.name
                    ),
                ));
            }
            routes.push(route);
        }
        let faults = Faults {
            enabled: raw
                .faults
                .and_then(|faults| faults.into_inner().enabled)
                .unwrap_or(false),
        };
        if same_socket(listen.address, admin.address) {
            let (offset, key) = match admin_offset {
                Some(offset) => (offset, "admin"),
                None => (listen_offset, "listen"),
            };
            // A port of its own: the default admin port, unless that is the one in conflict.
            let default: SocketAddr = parse_default(ADMIN_ADDRESS);
            let free = if listen.address.port() == default.port() {
                SocketAddr::new(default.ip(), default.port() + 1).to_string()
            } else {
                default.to_string()
            };
            let both = if listen.address == admin.address {
                format!("are both {}", listen.address)
            } else {
                format!(
                    "({} and {}) share port {}, and an address of all interfaces takes the \
                     port on every one",
                    listen.address,
                    admin.address,
                    listen.address.port()
                )
            };
            return Err(self.error(
                offset,
                &root.key(key).key("address"),
                format!(
                    "listen.address and admin.address {both}: one socket cannot serve both; give \
                     the admin server its own port, e.g. {free}"
                ),
            ));
        }
        Ok(Config {
            listen,
            admin,
            upstreams,
            routes,
            faults,
            dns,
        })
    }

    /// `[dns]`: the name servers (each an `ip:port`, at most [`MAX_DNS_SERVERS`]) and the
    /// refresh of host names in `instances`.
    fn dns(&self, raw: Option<Spanned<RawDns>>) -> Result<Dns, ParseError> {
        let path = &KeyPath::default().key("dns");
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let mut servers = Vec::new();
        if let Some(list) = raw.servers {
            if list.get_ref().len() > MAX_DNS_SERVERS {
                return Err(self.error(
                    list.span().start,
                    &path.key("servers"),
                    format!(
                        "{} name servers: at most {MAX_DNS_SERVERS}, as resolv.conf allows; \
                         a resolver asks them in turn, and more only slows a failure",
                        list.get_ref().len()
                    ),
                ));
            }
            for (i, server) in list.into_inner().into_iter().enumerate() {
                let address = server.get_ref().parse::<SocketAddr>().map_err(|_| {
                    self.error(
                        server.span().start,
                        &path.key("servers").index(i),
                        format!(
                            "{:?} is not a name server address: write an IP address and \
                             port, e.g. \"10.96.0.10:53\" or \"[::1]:53\"",
                            server.get_ref()
                        ),
                    )
                })?;
                servers.push(address);
            }
        }
        Ok(Dns {
            servers,
            refresh: self.duration_or(
                raw.refresh.as_ref(),
                path,
                "refresh",
                &DNS_REFRESH,
                DNS_REFRESH_DEFAULT,
            )?,
        })
    }

    /// `[listen]`, and the offset of its address (or of the table, or the file's start), for
    /// an error that relates it to the admin address.
    fn listen(&self, raw: Option<Spanned<RawListen>>) -> Result<(Listen, usize), ParseError> {
        let path = &KeyPath::default().key("listen");
        // A missing table is an empty one, so that each default is written once.
        let (offset, mut raw) = match raw {
            Some(raw) => (raw.span().start, raw.into_inner()),
            None => (0, RawListen::default()),
        };
        let address_offset = raw.address.as_ref().map_or(offset, |a| a.span().start);
        let max_header_bytes = self.size_or(
            raw.max_header_bytes.as_ref(),
            path,
            "max_header_bytes",
            &HEAD,
            64 * 1024,
        )?;
        let listen = Listen {
            address: match &raw.address {
                Some(address) => self.socket_address(address, path)?,
                None => parse_default(LISTEN_ADDRESS),
            },
            header_read_timeout: self.duration_or(
                raw.header_read_timeout.as_ref(),
                path,
                "header_read_timeout",
                &CONNECTION_TIMER,
                Duration::from_secs(5),
            )?,
            max_request_body: self.size_or(
                raw.max_request_body.as_ref(),
                path,
                "max_request_body",
                &BODY,
                8 << 20,
            )?,
            max_headers: self.whole_or(
                raw.max_headers.as_ref(),
                path,
                "max_headers",
                &HEADERS,
                100,
            )? as usize,
            max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
            shutdown_grace: self.duration_or(
                raw.shutdown_grace.as_ref(),
                path,
                "shutdown_grace",
                &ADDED,
                Duration::from_secs(30),
            )?,
            max_connections: self.whole_or(
                raw.max_connections.as_ref(),
                path,
                "max_connections",
                &CONNECTIONS,
                MAX_CONNECTIONS,
            )?,
            http2_max_concurrent_streams: self.whole_or(
                raw.http2_max_concurrent_streams.as_ref(),
                path,
                "http2_max_concurrent_streams",
                &STREAMS,
                HTTP2_MAX_CONCURRENT_STREAMS,
            )?,
            http2_keep_alive_interval: self.duration_or(
                raw.http2_keep_alive_interval.as_ref(),
                path,
                "http2_keep_alive_interval",
                &CONNECTION_TIMER,
                HTTP2_KEEP_ALIVE_INTERVAL,
            )?,
            http2_keep_alive_timeout: self.duration_or(
                raw.http2_keep_alive_timeout.as_ref(),
                path,
                "http2_keep_alive_timeout",
                &CONNECTION_TIMER,
                HTTP2_KEEP_ALIVE_TIMEOUT,
            )?,
            idle_timeout: self.duration_or(
                raw.idle_timeout.as_ref(),
                path,
                "idle_timeout",
                &CONNECTION_TIMER,
                IDLE_TIMEOUT,
            )?,
            first_byte_timeout: self.duration_or(
                raw.first_byte_timeout.as_ref(),
                path,
                "first_byte_timeout",
                &CONNECTION_TIMER,
                FIRST_BYTE_TIMEOUT,
            )?,
            max_unfinished_header_bytes: self.unfinished_header_bytes(
                raw.max_unfinished_header_bytes.as_ref(),
                path,
                max_header_bytes,
            )?,
            stream_idle_timeout: self.duration_or(
                raw.stream_idle_timeout.as_ref(),
                path,
                "stream_idle_timeout",
                &BODY_TIMER,
                STREAM_IDLE_TIMEOUT,
            )?,
            request_body_timeout: self.duration_or(
                raw.request_body_timeout.as_ref(),
                path,
                "request_body_timeout",
                &BODY_TIMER,
                REQUEST_BODY_TIMEOUT,
            )?,
            access_log: raw.access_log.unwrap_or(true),
            tls: self.listen_tls(raw.tls.take(), path)?,
        };
        Ok((listen, address_offset))
    }

    /// `max_unfinished_header_bytes`: at least one whole head of `max_header_bytes` (the
    /// default holds 32 of the largest heads a file may allow).
    fn unfinished_header_bytes(
        &self,
        value: Option<&Spanned<Scalar>>,
        path: &KeyPath,
        max_header_bytes: u64,
    ) -> Result<usize, ParseError> {
        let key = "max_unfinished_header_bytes";
        let default = MAX_UNFINISHED_HEADER_BYTES;
        let budget = self.size_or(value, path, key, &HEAD_BUDGET, default)?;
        if let Some(value) = value {
            if budget < max_header_bytes {
                return Err(self.error(
                    value.span().start,
                    &path.key(key),
                    format!(
                        "{} is below max_header_bytes ({}): one slow client with a large \
                         head could not be served; use at least max_header_bytes, e.g. \
                         \"32MiB\"",
                        size::format(budget),
                        size::format(max_header_bytes)
                    ),
                ));
            }
        }
        Ok(usize::try_from(budget).unwrap_or(usize::MAX))
    }

    fn admin(&self, raw: Option<Spanned<RawAdmin>>) -> Result<Admin, ParseError> {
        let path = &KeyPath::default().key("admin");
        let (offset, raw) = match raw {
            Some(raw) => (raw.span().start, raw.into_inner()),
            None => (0, RawAdmin::default()),
        };
        let address = match &raw.address {
            Some(address) => self.socket_address(address, path)?,
            None => parse_default(ADMIN_ADDRESS),
        };
        if let Some(token) = &raw.token {
            if token.get_ref().trim().is_empty() {
                return Err(self.error(
                    token.span().start,
                    &path.key("token"),
                    "an empty token would let anyone in: use a long random string, e.g. the \
                     output of `openssl rand -hex 32`, or remove the key on a loopback address",
                ));
            }
        }
        if raw.token.is_none() && !address.ip().is_loopback() {
            return Err(self.error(
                raw.address.as_ref().map_or(offset, |a| a.span().start),
                &path.key("address"),
                format!(
                    "{address} is not a loopback address and there is no token: anyone who \
                     can reach it could reload the settings; set admin.token or bind the admin \
                     address to 127.0.0.1"
                ),
            ));
        }
        Ok(Admin {
            address,
            token: raw.token.map(Spanned::into_inner),
        })
    }

    fn socket_address(
        &self,
        value: &Spanned<String>,
        parent: &KeyPath,
    ) -> Result<SocketAddr, ParseError> {
        value.get_ref().trim().parse().map_err(|_| {
            self.error(
                value.span().start,
                &parent.key("address"),
                format!(
                    "{:?} is not an IP address and port: a listener binds an address, not a \
                     name; use e.g. \"127.0.0.1:8080\", \"0.0.0.0:8080\" or \"[::1]:8080\"",
                    value.get_ref()
                ),
            )
        })
    }

    /// A size in `range`: text with a binary unit, or a whole number of bytes.
    pub(super) fn size_or(
        &self,
        value: Option<&Spanned<Scalar>>,
        parent: &KeyPath,
        key: &str,
        range: &ValueRange,
        default: u64,
    ) -> Result<u64, ParseError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let error = |message: String| self.error(value.span().start, &parent.key(key), message);
        let bytes = match value.get_ref() {
            Scalar::Text(text) => size::parse(text).map_err(|e| error(e.to_string()))?,
            Scalar::Integer(n) => u64::try_from(*n).map_err(|_| {
                error(format!(
                    "{n} is not a size: use a whole number of bytes from 0, or a string with a \
                     unit, e.g. \"64KiB\""
                ))
            })?,
            Scalar::Float(n) => {
                return Err(error(format!(
                    "{n} is not a whole number of bytes: use e.g. 65536 or \"64KiB\""
                )))
            }
        };
        self.size(value.span().start, parent, key, range, bytes)
    }
}

/// Whether two listening addresses take the same socket: one port (not 0, which the system
/// picks apart for each) on the same address, or on any address when either is an address of
/// all interfaces (`0.0.0.0`, `[::]`), which takes the port on every one: the second bind fails
/// with "address in use", and `--validate` said the file was fine.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A default address, which is valid by construction.
fn parse_default(address: &str) -> SocketAddr {
    address
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}
