//! Refusals of shape and of the tables around routes (listen, admin, upstreams, the file as a
//! whole): each at its exact `line:column`, with its dotted key and what would be valid.

use super::*;

#[test]
fn unknown_keys_list_the_valid_keys_of_their_table() {
    assert_error(
        &format!("[lisen]\n{MINIMAL}"),
        1,
        2,
        "lisen",
        &[
            "unknown key `lisen`; did you mean `listen`? valid keys here: `listen`, `admin`, `upstreams`, `routes`, \
           `faults`",
        ],
    );
    assert_error(
        &format!("{MINIMAL}timout = \"1s\"\n"),
        7,
        1,
        "routes[0].timout",
        &[
            "unknown key `timout`; did you mean `timeout`? valid keys here: `name`, `match`, `upstream`, `timeout`, \
           `request_timeout`, `connect_timeout`, `rtt`, `max_attempts`, `backoff`, `retry_budget`, \
           `token_bucket`, `retry_on`, `hedge`, `adaptive_timeout`, `propagate_deadline`, \
           `deadline_reserve`, `retry_body_limit`, `latency_buckets`, `idempotent`, `fault`",
        ],
    );
    assert_error(
        &format!("{MINIMAL}match = {{ prefix = \"/\" }}\n"),
        7,
        11,
        "routes[0].match.prefix",
        &["valid keys here: `path_prefix`, `host`"],
    );
    assert_error(
        &format!("[listen]\nmax_body = 1\n{MINIMAL}"),
        2,
        1,
        "listen.max_body",
        &["`max_request_body`", "`shutdown_grace`"],
    );
}

#[test]
fn wrong_types_say_what_the_key_takes() {
    assert_error(
        &format!("[listen]\nmax_headers = \"100\"\n{MINIMAL}"),
        2,
        15,
        "listen.max_headers",
        &["expected a whole number"],
    );
    assert_error(
        &format!("[listen]\nmax_headers = -5\n{MINIMAL}"),
        2,
        15,
        "listen.max_headers",
        &["expected a whole number from 1 to 10000"],
    );
    assert_error(
        &format!("{UNTIMED}timeout = 2\n"),
        6,
        11,
        "routes[0].timeout",
        &["the bare number 2 is not a duration", "\"2s\" or \"2ms\""],
    );
    assert_error(
        &format!("{UNTIMED}timeout = 1979-05-27\n"),
        6,
        11,
        "routes[0].timeout",
        &[
            "the unquoted 1979-05-27 is a TOML date or time, not a duration or a size",
            "\"64KiB\" for a size",
        ],
    );
    assert_error(
        &format!("{UNTIMED}timeout = true\n"),
        6,
        11,
        "routes[0].timeout",
        &["expected a string with a unit, e.g. \"250ms\""],
    );
    assert_error(
        &format!("{UNTIMED}timeout = \"2\"\n"),
        6,
        11,
        "routes[0].timeout",
        &["invalid duration \"2\": missing unit", "e.g. \"250ms\""],
    );
    assert_error(
        "[upstreams.api]\ninstances = \"127.0.0.1:9001\"\n",
        2,
        13,
        "upstreams.api.instances",
        &["expected an array"],
    );
}

#[test]
fn a_syntax_error_has_a_position() {
    let error = parse("p.toml", &format!("{UNTIMED}timeout = \"2s\n")).unwrap_err();
    assert_eq!((error.file.as_str(), error.line), ("p.toml", 6));
}

#[test]
fn a_file_needs_a_route() {
    assert_error(
        "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n",
        1,
        1,
        "routes",
        &["no routes: add at least one [[routes]] table with name and upstream"],
    );
    assert_error("", 1, 1, "routes", &["no routes"]);
}

#[test]
fn listen_values_are_checked() {
    assert_error(
        &format!("[listen]\naddress = \"localhost:8080\"\n{MINIMAL}"),
        2,
        11,
        "listen.address",
        &[
            "\"localhost:8080\" is not an IP address and port",
            "\"127.0.0.1:8080\"",
        ],
    );
    assert_error(
        &format!("[listen]\nheader_read_timeout = \"0s\"\n{MINIMAL}"),
        2,
        23,
        "listen.header_read_timeout",
        &["0s is out of range", "a connection timer is 1ms to 1h"],
    );
    assert_error(
        &format!("[listen]\nmax_request_body = \"8MB\"\n{MINIMAL}"),
        2,
        20,
        "listen.max_request_body",
        &["invalid size \"8MB\": unknown unit \"MB\": use MiB"],
    );
    assert_error(
        &format!("[listen]\nmax_request_body = -1\n{MINIMAL}"),
        2,
        20,
        "listen.max_request_body",
        &["-1 is not a size"],
    );
    assert_error(
        &format!("[listen]\nmax_request_body = 1.5\n{MINIMAL}"),
        2,
        20,
        "listen.max_request_body",
        &["1.5 is not a whole number of bytes"],
    );
    assert_error(
        &format!("[listen]\nmax_headers = 0\n{MINIMAL}"),
        2,
        15,
        "listen.max_headers",
        &[
            "0 is out of range",
            "Host header",
            "max_headers is 1 to 10000",
        ],
    );
    assert_error(
        &format!("[listen]\nmax_header_bytes = \"4KiB\"\n{MINIMAL}"),
        2,
        20,
        "listen.max_header_bytes",
        &[
            "4KiB is out of range",
            "less than 8KiB",
            "max_header_bytes is 8KiB to 1MiB",
        ],
    );
    assert_error(
        &format!("[listen]\nmax_connections = 0\n{MINIMAL}"),
        2,
        19,
        "listen.max_connections",
        &["0 is out of range", "serves no one"],
    );
    assert_error(
        &format!("[listen]\nmax_connections = -1\n{MINIMAL}"),
        2,
        19,
        "listen.max_connections",
        &["whole number from 1 to"],
    );
    assert_error(
        &format!("[listen]\nhttp2_max_concurrent_streams = 0\n{MINIMAL}"),
        2,
        32,
        "listen.http2_max_concurrent_streams",
        &["0 is out of range", "no request at all"],
    );
    assert_error(
        &format!("[listen]\nidle_timeout = \"0s\"\n{MINIMAL}"),
        2,
        16,
        "listen.idle_timeout",
        &["0s is out of range", "a connection timer is 1ms to 1h"],
    );
    for (key, value) in [
        ("stream_idle_timeout", "\"0s\""),
        ("stream_idle_timeout", "\"2h\""),
        ("request_body_timeout", "\"500us\""),
    ] {
        assert_error(
            &format!("[listen]\n{key} = {value}\n{MINIMAL}"),
            2,
            key.len() + 4,
            &format!("listen.{key}"),
            &["is out of range", "a body timer is 1ms to 1h"],
        );
    }
    assert_error(
        &format!("[listen]\nfirst_byte_timeout = \"0s\"\n{MINIMAL}"),
        2,
        22,
        "listen.first_byte_timeout",
        &["0s is out of range", "a connection timer is 1ms to 1h"],
    );
    assert_error(
        &format!("[listen]\nfirst_byte_timeout = \"2h\"\n{MINIMAL}"),
        2,
        22,
        "listen.first_byte_timeout",
        &["2h is out of range", "a connection timer is 1ms to 1h"],
    );
    assert_error(
        &format!("[listen]\nmax_unfinished_header_bytes = \"16KiB\"\n{MINIMAL}"),
        2,
        31,
        "listen.max_unfinished_header_bytes",
        &["16KiB is below max_header_bytes (64KiB)", "\"32MiB\""],
    );
    assert_error(
        &format!("[listen]\nmax_unfinished_header_bytes = 0\n{MINIMAL}"),
        2,
        31,
        "listen.max_unfinished_header_bytes",
        &[
            "0B is out of range",
            "max_unfinished_header_bytes is 8KiB to 1GiB",
        ],
    );
    assert_error(
        &format!("[listen]\nhttp2_keep_alive_interval = 30\n{MINIMAL}"),
        2,
        29,
        "listen.http2_keep_alive_interval",
        &["the bare number 30 is not a duration", "\"30s\""],
    );
    assert_error(
        &format!("[listen]\nshutdown_grace = \"soon\"\n{MINIMAL}"),
        2,
        18,
        "listen.shutdown_grace",
        &["invalid duration \"soon\""],
    );
}

#[test]
fn a_public_admin_address_needs_a_token() {
    assert_error(
        &format!("[admin]\naddress = \"0.0.0.0:9901\"\n{MINIMAL}"),
        2,
        11,
        "admin.address",
        &[
            "0.0.0.0:9901 is not a loopback address and there is no token",
            "set admin.token or bind the admin address to 127.0.0.1",
        ],
    );
    assert_error(
        &format!("[admin]\naddress = \"10.0.0.1:9901\"\ntoken = \" \"\n{MINIMAL}"),
        3,
        9,
        "admin.token",
        &["an empty token would let anyone in"],
    );
    // Loopback in IPv6 needs no token either.
    let config = config(&format!("[admin]\naddress = \"[::1]:9901\"\n{MINIMAL}"));
    assert_eq!(config.admin.token, None);
}

#[test]
fn listen_and_admin_cannot_share_an_address() {
    assert_error(
        &format!("[listen]\naddress = \"127.0.0.1:9901\"\n{MINIMAL}"),
        2,
        11,
        "listen.address",
        // Not the conflicting default as the way out.
        &[
            "listen.address and admin.address are both 127.0.0.1:9901",
            "its own port, e.g. 127.0.0.1:9902",
        ],
    );
    assert_error(
        &format!("[admin]\naddress = \"127.0.0.1:8080\"\n{MINIMAL}"),
        2,
        11,
        "admin.address",
        &["both 127.0.0.1:8080", "its own port, e.g. 127.0.0.1:9901"],
    );
    // An address of all interfaces takes the port on loopback too: the second bind fails.
    assert_error(
        &format!("[listen]\naddress = \"0.0.0.0:9901\"\n{MINIMAL}"),
        2,
        11,
        "listen.address",
        &[
            "(0.0.0.0:9901 and 127.0.0.1:9901) share port 9901",
            "127.0.0.1:9902",
        ],
    );
    assert_error(
        &format!(
            "[listen]\naddress = \"127.0.0.1:7000\"\n[admin]\naddress = \"[::]:7000\"\n\
             token = \"t\"\n{MINIMAL}"
        ),
        4,
        11,
        "admin.address",
        &["share port 7000"],
    );
    // With no address given, the error points at the table that brought the collision.
    assert_error(
        &format!("[listen]\naddress = \"127.0.0.1:9901\"\n[admin]\ntoken = \"t\"\n{MINIMAL}"),
        3,
        1,
        "admin.address",
        &["both 127.0.0.1:9901"],
    );
}

#[test]
fn upstreams_need_valid_distinct_instances() {
    const ROUTE: &str = "[[routes]]\nname = \"api\"\nupstream = \"api\"\n";
    assert_error(
        &format!("[upstreams.api]\nmax_in_flight = 1\n{ROUTE}"),
        1,
        1,
        "upstreams.api.instances",
        &["missing: list the upstream's instances as \"host:port\" strings"],
    );
    assert_error(
        &format!("[upstreams.api]\ninstances = []\n{ROUTE}"),
        2,
        13,
        "upstreams.api.instances",
        &["an upstream with no instance can serve nothing"],
    );
    assert_error(
        &format!("[upstreams.api]\ninstances = [\"a:1\", \"b\"]\n{ROUTE}"),
        2,
        21,
        "upstreams.api.instances[1]",
        &[
            "\"b\" is not a valid instance: it has no port",
            "use \"host:port\"",
        ],
    );
    assert_error(
        &format!("[upstreams.api]\ninstances = [\"a:1\", \"b:2\", \"a:1\"]\n{ROUTE}"),
        2,
        28,
        "upstreams.api.instances[2]",
        &["\"a:1\" is listed twice (also at index 0)"],
    );
    // The same instance written two ways (a review: each got a share of the traffic).
    for (first, second) in [
        ("127.0.0.1:41001", "127.0.0.1:041001"),
        ("[::1]:9001", "[0:0:0:0:0:0:0:1]:9001"),
        ("api.internal:80", "API.internal:080"),
    ] {
        assert_error(
            &format!("[upstreams.api]\ninstances = [\"{first}\", \"{second}\"]\n{ROUTE}"),
            2,
            15 + first.len() + 3,
            "upstreams.api.instances[1]",
            &[&format!("\"{second}\" is listed twice (also at index 0)")],
        );
    }
    assert_error(
        &format!("[upstreams.api]\ninstances = [\"a:1\"]\nmax_in_flight = 0\n{ROUTE}"),
        3,
        17,
        "upstreams.api.max_in_flight",
        &["0 is out of range", "sheds every request"],
    );
    assert_error(
        &format!("[upstreams.api]\ninstances = [\"a:1\"]\nprotocol = \"h2c\"\n{ROUTE}"),
        3,
        12,
        "upstreams.api.protocol",
        &["\"h2c\" is not a protocol", "use \"http1\"", "\"http2\""],
    );
    assert_error(
        &format!("[upstreams.\"my api\"]\ninstances = [\"a\"]\n{ROUTE}"),
        2,
        14,
        "upstreams.\"my api\".instances[0]",
        &["it has no port"],
    );
}

/// Values the proxy once took and then ran away with: a body limit of petabytes, timers that
/// overflow the clock they are added to, more connections than memory.
#[test]
fn values_too_large_to_mean_anything_are_refused_with_their_range() {
    for (line, key, says) in [
        (
            "max_request_body = \"99999TiB\"",
            "max_request_body",
            "99999TiB is out of range: a body over 1GiB held by a proxy is no limit on its \
             memory; stream it elsewhere; a body limit is 0B to 1GiB",
        ),
        (
            "max_request_body = 1073741825",
            "max_request_body",
            "0B to 1GiB",
        ),
        (
            "header_read_timeout = \"5000000000000000h\"",
            "header_read_timeout",
            "5000000000000000h is out of range",
        ),
        (
            "idle_timeout = \"2h\"",
            "idle_timeout",
            "a connection timer is 1ms to 1h",
        ),
        (
            "http2_keep_alive_interval = \"61m\"",
            "http2_keep_alive_interval",
            "1ms to 1h",
        ),
        (
            "shutdown_grace = \"2h\"",
            "shutdown_grace",
            "an added delay is 0s to 1h",
        ),
        (
            "max_header_bytes = \"2MiB\"",
            "max_header_bytes",
            "8KiB to 1MiB",
        ),
        ("max_connections = 100001", "max_connections", "1 to 100000"),
        ("max_headers = 10001", "max_headers", "1 to 10000"),
        (
            "http2_max_concurrent_streams = 10001",
            "http2_max_concurrent_streams",
            "1 to 10000",
        ),
    ] {
        let column = line.find('=').unwrap() + 3;
        assert_error(
            &format!("[listen]\n{line}\n{MINIMAL}"),
            2,
            column,
            &format!("listen.{key}"),
            &[says],
        );
    }
    assert_error(
        "[upstreams.api]\ninstances = [\"a:1\"]\nmax_in_flight = 100001\n[[routes]]\n\
         name = \"api\"\nupstream = \"api\"\ntimeout = \"2s\"\n",
        3,
        17,
        "upstreams.api.max_in_flight",
        &["max_in_flight is 1 to 100000"],
    );
    assert_error(
        &format!("{MINIMAL}max_attempts = 1000\n"),
        7,
        16,
        "routes[0].max_attempts",
        &[
            "1000 is out of range",
            "retry storm",
            "max_attempts is 1 to 100",
        ],
    );
    assert_error(
        &format!("{MINIMAL}backoff = \"constant(5000000000000000h)\"\n"),
        7,
        11,
        "routes[0].backoff",
        &["out of range: a backoff waits 1ms to 1h"],
    );
    assert_error(
        &format!("{MINIMAL}retry_body_limit = \"2GiB\"\n"),
        7,
        20,
        "routes[0].retry_body_limit",
        &["a body limit is 0B to 1GiB"],
    );
    assert_error(
        &format!("{MINIMAL}deadline_reserve = \"2h\"\n"),
        7,
        20,
        "routes[0].deadline_reserve",
        &["an added delay is 0s to 1h"],
    );
}
