//! Exposition pages written by hand, with the answers worked out by hand in the comments.

use std::collections::BTreeMap;

use super::*;

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The classic text format: two routes of one job, plus a counter, a gauge and comments that
/// must be read past.
const CLASSIC: &str = r#"# HELP http_request_duration_seconds Time to answer, by route.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{job="api",route="/users",le="0.005"} 0
http_request_duration_seconds_bucket{job="api",route="/users",le="0.01"} 2
http_request_duration_seconds_bucket{job="api",route="/users",le="0.025"} 50
http_request_duration_seconds_bucket{job="api",route="/users",le="0.05"} 80
http_request_duration_seconds_bucket{job="api",route="/users",le="0.1"} 95
http_request_duration_seconds_bucket{job="api",route="/users",le="0.25"} 99
http_request_duration_seconds_bucket{job="api",route="/users",le="0.5"} 100
http_request_duration_seconds_bucket{job="api",route="/users",le="1"} 100
http_request_duration_seconds_bucket{job="api",route="/users",le="+Inf"} 100
http_request_duration_seconds_sum{job="api",route="/users"} 3.2
http_request_duration_seconds_count{job="api",route="/users"} 100
http_request_duration_seconds_bucket{le="0.1",job="api",route="/orders"} 990
http_request_duration_seconds_bucket{le="1",job="api",route="/orders"} 995
http_request_duration_seconds_bucket{le="+Inf",job="api",route="/orders"} 1000 1712345678000
# a comment of no kind
# TYPE http_requests_total counter
http_requests_total{job="api"} 1100
# TYPE up gauge
up 1
"#;

#[test]
fn classic_series_are_grouped_by_their_labels_without_le() {
    let series = parse(CLASSIC).unwrap();
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(
        series[0].labels,
        labels(&[("job", "api"), ("route", "/orders")])
    );
    assert_eq!(
        series[1].labels,
        labels(&[("job", "api"), ("route", "/users")])
    );
    assert!(series.iter().all(|s| s.unit == Some(Unit::Seconds)));
    assert_eq!(series[1].histogram.buckets().len(), 9);
}

#[test]
fn classic_quantiles_match_the_hand_computed_ones() {
    let series = parse(CLASSIC).unwrap();
    let users = &series[1].histogram;
    // p50: rank 50 reaches the 0.025 bucket (count 50): 0.01 + 0.015 * (50-2)/(50-2).
    assert!(close(users.quantile(0.5), 0.025));
    // p99: rank 99 is exactly the count at 0.25.
    assert!(close(users.quantile(0.99), 0.25));
    // p99.9: rank 99.9 in (0.25, 0.5] holding 1 request: 0.25 + 0.25 * 0.9.
    assert!(close(users.quantile(0.999), 0.475));
    let orders = &series[0].histogram;
    // p50: rank 500 in the lowest bucket (0, 0.1] holding 990: 0.1 * 500/990.
    assert!(close(orders.quantile(0.5), 0.1 * 500.0 / 990.0));
    // p99.9: rank 999 is beyond 995, the count at the highest finite bound: 1 (a floor).
    assert!(close(orders.quantile(0.999), 1.0));
}

/// OpenMetrics as prometheus-client writes it (the proxy's `/metrics`), with a `# UNIT`,
/// `_created`, an exemplar and `# EOF`.
const OPENMETRICS: &str = r#"# HELP rpc Attempt latency.
# TYPE rpc histogram
# UNIT rpc milliseconds
rpc_bucket{upstream="db",le="10.0"} 40 # {trace_id="abc"} 7.5 1712345678.1
rpc_bucket{upstream="db",le="20.0"} 80
rpc_bucket{upstream="db",le="40.0"} 100
rpc_bucket{upstream="db",le="+Inf"} 100
rpc_sum{upstream="db"} 1500.0
rpc_count{upstream="db"} 100
rpc_created{upstream="db"} 1712340000.0
# EOF
this line is past the end and never read {
"#;

#[test]
fn openmetrics_units_created_exemplars_and_eof() {
    let series = parse(OPENMETRICS).unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].unit, Some(Unit::Milliseconds), "from # UNIT");
    // p50: rank 50 in (10, 20] holding 40: 10 + 10 * 10/40.
    assert!(close(series[0].histogram.quantile(0.5), 12.5));
    // p99: rank 99 in (20, 40] holding 20: 20 + 20 * 19/20.
    assert!(close(series[0].histogram.quantile(0.99), 39.0));
}

#[test]
fn the_unit_in_the_name_wins_and_untyped_buckets_count() {
    let text = "db_query_ms_bucket{le=\"5\"} 1\ndb_query_ms_bucket{le=\"+Inf\"} 2\n\
                size_bytes_bucket{le=\"100\"} 1\nsize_bytes_bucket{le=\"+Inf\"} 1\n";
    let series = parse(text).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].metric, "db_query_ms");
    assert_eq!(series[0].unit, Some(Unit::Milliseconds));
    assert_eq!(series[1].unit, None, "bytes are no latency");
}

#[test]
fn label_values_are_unescaped_and_spacing_is_free() {
    let text = "lat_seconds_bucket { path = \"/a\\\"b\\\\c\\nd\" , le = \"1e-1\" , } 3\n\
                \tlat_seconds_bucket{path=\"/a\\\"b\\\\c\\nd\",le=\"+Inf\"}\t4\n";
    let series = parse(text).unwrap();
    assert_eq!(series[0].labels["path"], "/a\"b\\c\nd");
    assert_eq!(series[0].histogram.buckets()[0].upper, 0.1);
    assert_eq!(series[0].histogram.total(), 4.0);
}

#[test]
fn other_families_ending_in_bucket_are_left_alone() {
    let text = "# TYPE s3_bucket gauge\ns3_bucket{le=\"x\"} 1\n\
                # TYPE token_bucket counter\ntoken_bucket_bucket{le=\"1\"} 1\n";
    assert_eq!(parse(text).unwrap(), vec![]);
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn errors_say_line_column_and_what_would_be_valid() {
    assert_eq!(
        error("# TYPE a histogram\na_bucket{le=\"0.1} 1\n"),
        "2:20: the value of label `le` is never closed with `\"`"
    );
    assert_eq!(
        error("a_bucket{le=\"0.1\" 1\n"),
        "1:19: expected `,` or `}` after a label"
    );
    assert_eq!(
        error("a_bucket{le=\"fast\"} 1\n"),
        "1:13: le=\"fast\" is not a bound: use a number such as \"0.25\", or \"+Inf\""
    );
    assert_eq!(
        error("a_bucket{x=\"\\t\",le=\"1\"} 1\n"),
        "1:14: unknown escape in a label value: only \\\\, \\\" and \\n are valid"
    );
    assert_eq!(
        error("  a_bucket{le=\"1\"} lots\n"),
        "1:20: `lots` is not a number: a value is a float such as 12, 0.5, 1e3 or +Inf"
    );
    assert_eq!(
        error("# TYPE a histogram\na_bucket{x=\"1\"} 1\n"),
        "2:9: `a_bucket` has no `le` label: every bucket of histogram `a` needs its upper \
         bound, e.g. {le=\"0.25\"} or {le=\"+Inf\"}"
    );
    assert_eq!(
        error("a_bucket{le=\"1\",x=\"y\"} 1\na_bucket{x=\"y\",le=\"1\"} 2\n"),
        "2:1: the same bucket again (first on line 1, with the same labels and a bound of the \
         same value): a page exposes each series once"
    );
    // One bound written two ways is one bucket twice: its counts were added into a bucket of
    // twice the requests, and the timeout came out ten times too short.
    assert_eq!(
        error("a_bucket{le=\"0.1\"} 50\na_bucket{le=\"0.10\"} 50\n"),
        "2:1: the same bucket again (first on line 1, with the same labels and a bound of the \
         same value): a page exposes each series once"
    );
    // NaN and negative bounds were dropped or skipped without a line.
    assert_eq!(
        error("a_bucket{le=\"0.1\"} 10\na_bucket{le=\"NaN\"} 90\n"),
        "2:13: le=\"NaN\" is not a bound: use a number such as \"0.25\", or \"+Inf\""
    );
    assert_eq!(
        error("a_bucket{le=\"-0.1\"} 10\n"),
        "1:13: le=\"-0.1\" is below zero: a latency bucket's bound is a duration, 0 or more"
    );
    for count in ["NaN", "-5", "+Inf"] {
        assert_eq!(
            error(&format!("a_bucket{{le=\"0.1\"}} {count}\n")),
            format!(
                "1:20: {} is not a count of requests: a bucket's value is a number 0 or more",
                parse_float(count).unwrap()
            )
        );
    }
    // Counts that fall with a rising bound, either way round on the page.
    assert_eq!(
        error("a_bucket{le=\"0.1\"} 50\na_bucket{le=\"0.2\"} 40\n"),
        "2:20: 40 requests at or below le=\"0.2\", but 50 at or below le=\"0.1\" (line 1): a \
         histogram's buckets count cumulatively, so a higher bound never counts fewer"
    );
    assert_eq!(
        error("a_bucket{le=\"+Inf\"} 40\na_bucket{le=\"0.2\"} 50\n"),
        "2:20: 50 requests at or below le=\"0.2\", but 40 at or below le=\"+Inf\" (line 1): a \
         histogram's buckets count cumulatively, so a higher bound never counts fewer"
    );
    // Junk after the value, where a timestamp or an exemplar may be.
    assert_eq!(
        error("a_bucket{le=\"0.1\"} 50 abc\n"),
        "1:23: `abc` after the value of `a_bucket` is not a timestamp: a sample is a name, \
         labels, a value and an optional timestamp (a number)"
    );
    assert_eq!(
        error("a_bucket{le=\"0.1\"} 50 1712345678000 x\n"),
        "1:37: more after the timestamp of `a_bucket`: only an OpenMetrics exemplar (`# ...`) \
         may follow it"
    );
    assert!(parse("a_bucket{le=\"0.1\"} 50 1712345678000 # {trace_id=\"x\"} 0.05\n").is_ok());
    assert_eq!(
        error("a_bucket{le=\"1\",le=\"2\"} 1\n"),
        "1:17: label `le` given twice in one sample"
    );
    assert_eq!(
        error("9a 1\n"),
        "1:1: expected a metric name (letters, digits and `_`, `:`, not starting with a digit)"
    );
}

#[test]
fn columns_count_characters() {
    // "é" is two bytes; the quote opening the bad value is still the 19th character.
    let text = "a_bucket{p=\"é\",le=\"x\"} 1\n";
    assert!(error(text).starts_with("1:19: "), "{}", error(text));
}

#[test]
fn a_value_that_is_not_ascii_is_refused_at_its_column() {
    // Found by fuzzing: the value was read a byte at a time, and sliced inside the "é".
    assert_eq!(
        error("a_bucket{le=\"1\"} 1é2\n"),
        "1:18: `1é2` is not a number: a value is a float such as 12, 0.5, 1e3 or +Inf"
    );
    assert!(error("a é\n").starts_with("1:3: "), "{}", error("a é\n"));
}
