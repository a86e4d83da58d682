//! Suggestions from exposition pages with the answers worked out by hand.

use super::*;
use crate::exposition::parse;

const INF: f64 = f64::INFINITY;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn close(d: Duration, expected_ms: f64) -> bool {
    (d.as_secs_f64() * 1000.0 - expected_ms).abs() < 1e-6
}

fn latency(text: &str) -> Latency {
    let series = parse(text).unwrap();
    assert_eq!(series.len(), 1, "{series:?}");
    Latency::of(&series[0], None).unwrap()
}

/// A latency in seconds of `(le, count)` buckets, as a query's answer gives them: no page
/// line to refuse them at.
fn from_buckets(pairs: &[(f64, f64)]) -> Latency {
    let series = crate::series::Series {
        metric: "a_seconds".to_string(),
        labels: Default::default(),
        unit: Some(Unit::Seconds),
        histogram: crate::histogram::Histogram::new(
            pairs
                .iter()
                .map(|&(upper, count)| crate::histogram::Bucket { upper, count }),
        ),
    };
    Latency::of(&series, None).unwrap()
}

/// 10,000 requests, with the Prometheus client's default ladder (in seconds):
/// 9,000 by 50 ms, 9,900 by 100 ms, 9,980 by 250 ms, 9,998 by 500 ms, all by 1 s.
const DEFAULT_LADDER: &str = "\
d_seconds_bucket{le=\"0.005\"} 0
d_seconds_bucket{le=\"0.01\"} 100
d_seconds_bucket{le=\"0.025\"} 2000
d_seconds_bucket{le=\"0.05\"} 9000
d_seconds_bucket{le=\"0.1\"} 9900
d_seconds_bucket{le=\"0.25\"} 9980
d_seconds_bucket{le=\"0.5\"} 9998
d_seconds_bucket{le=\"1\"} 10000
d_seconds_bucket{le=\"2.5\"} 10000
d_seconds_bucket{le=\"+Inf\"} 10000
";

#[test]
fn a_coarse_bucket_around_the_p999_asks_for_a_bucket_at_the_suggestion() {
    let s = suggest(&latency(DEFAULT_LADDER), 0.001).unwrap();
    // p50: rank 5,000 in (25, 50] ms holding 7,000: 25 + 25 * 3000/7000.
    assert!(close(s.p50, 25.0 + 25.0 * 3000.0 / 7000.0));
    // p99: rank 9,900 is exactly the count at 100 ms.
    assert!(close(s.p99, 100.0));
    // p99.9: rank 9,990 in (250, 500] holding 18: 250 + 250 * 10/18 = 388.9 ms.
    assert!(close(s.p999, 250.0 + 250.0 * 10.0 / 18.0));
    assert_eq!(s.estimate, s.p999);
    assert_eq!(s.timeout, ms(400));
    assert_eq!(s.bucket, (ms(250), Some(ms(500))));
    assert_eq!(
        s.warnings,
        vec![Warning::CoarseBucket {
            quantile: 0.999,
            estimate: s.p999,
            lower: ms(250),
            upper: ms(500),
            add: ms(400),
        }]
    );
    assert_eq!(
        s.warnings[0].to_string(),
        "p99.9 (389ms) lies in a bucket from 250ms to 500ms, 2.0x apart, on a straight line \
         between them: a guess; add a bucket at 400ms"
    );
}

#[test]
fn the_false_timeout_rate_picks_the_quantile() {
    let s = suggest(&latency(DEFAULT_LADDER), 0.01).unwrap();
    assert_eq!(s.quantile, 0.99);
    assert!(close(s.estimate, 100.0));
    assert_eq!(s.timeout, ms(100));
    // 100 ms is the top of (50, 100]: only 2x apart, not too coarse.
    assert_eq!(s.warnings, vec![]);
    // p99.5: rank 9,950 in (100, 250] holding 80: 100 + 150 * 50/80 = 193.75 ms.
    let s = suggest(&latency(DEFAULT_LADDER), 0.005).unwrap();
    assert!(close(s.estimate, 193.75));
    assert_eq!(s.timeout, ms(200));
    let Warning::CoarseBucket { add, .. } = s.warnings[0] else {
        panic!("{:?}", s.warnings);
    };
    // 200 ms lies inside (100, 250]: the bucket goes where the timeout will be.
    assert_eq!(add, ms(200));
}

/// A fine ladder in milliseconds: every 10 ms from 200 to 300.
#[test]
fn a_fine_ladder_gives_a_measurement_not_a_guess() {
    let mut text = String::from("# TYPE rpc_milliseconds histogram\n");
    let counts = [
        (100.0, 5000.0),
        (200.0, 9900.0),
        (210.0, 9930.0),
        (220.0, 9950.0),
        (230.0, 9970.0),
        (240.0, 9985.0),
        (250.0, 9992.0),
        (260.0, 9996.0),
        (270.0, 9998.0),
        (280.0, 9999.0),
        (290.0, 10000.0),
        (INF, 10000.0),
    ];
    for (le, count) in counts {
        let le = if le == INF {
            "+Inf".to_string()
        } else {
            le.to_string()
        };
        text.push_str(&format!("rpc_milliseconds_bucket{{le=\"{le}\"}} {count}\n"));
    }
    let s = suggest(&latency(&text), 0.001).unwrap();
    // rank 9,990 in (240, 250] holding 7: 240 + 10 * 5/7.
    assert!(close(s.estimate, 240.0 + 50.0 / 7.0));
    assert_eq!(s.timeout, ms(250));
    assert_eq!(s.bucket, (ms(240), Some(ms(250))));
    assert_eq!(s.warnings, vec![]);
}

#[test]
fn a_tail_above_the_highest_bucket_makes_the_estimate_a_floor() {
    let text = "a_seconds_bucket{le=\"0.1\"} 9000\na_seconds_bucket{le=\"1\"} 9950\n\
                a_seconds_bucket{le=\"+Inf\"} 10000\n";
    let s = suggest(&latency(text), 0.001).unwrap();
    // rank 9,990 > 9,950: Prometheus answers the highest finite bound.
    assert_eq!(s.estimate, ms(1000));
    assert_eq!(s.timeout, ms(1000));
    assert_eq!(s.bucket, (ms(100), Some(ms(1000))));
    assert_eq!(
        s.warnings,
        vec![Warning::AboveHighestBucket {
            quantile: 0.999,
            highest: ms(1000),
        }]
    );
    assert_eq!(
        s.warnings[0].to_string(),
        "more than 0.1% of requests took longer than the highest bucket (1s): p99.9 is \
         somewhere above it and 1s is only a floor; add buckets above it, e.g. at 2s and 5s"
    );
}

#[test]
fn the_lowest_bucket_is_interpolated_from_zero() {
    let text = "a_seconds_bucket{le=\"0.05\"} 9995\na_seconds_bucket{le=\"0.1\"} 10000\n\
                a_seconds_bucket{le=\"+Inf\"} 10000\n";
    let s = suggest(&latency(text), 0.001).unwrap();
    // rank 9,990 of 9,995 in (0, 50]: 50 * 9990/9995.
    assert!(close(s.estimate, 50.0 * 9990.0 / 9995.0));
    assert_eq!(s.timeout, ms(50));
    assert_eq!(s.bucket, (Duration::ZERO, Some(ms(50))));
    let Warning::CoarseBucket { add, .. } = &s.warnings[0] else {
        panic!("{:?}", s.warnings);
    };
    assert_eq!(
        *add,
        ms(25),
        "half the lowest bucket; the timeout is its top"
    );
    assert!(s.warnings[0]
        .to_string()
        .starts_with("p99.9 (50ms) lies in the lowest bucket (up to 50ms), interpolated from 0"));
}

#[test]
fn few_requests_are_said_to_be_few() {
    let text = "a_seconds_bucket{le=\"0.1\"} 400\na_seconds_bucket{le=\"0.15\"} 499\n\
                a_seconds_bucket{le=\"0.2\"} 500\na_seconds_bucket{le=\"+Inf\"} 500\n";
    let s = suggest(&latency(text), 0.001).unwrap();
    assert_eq!(
        s.warnings,
        vec![Warning::FewRequests {
            quantile: 0.999,
            requests: 500.0
        }]
    );
    assert_eq!(
        s.warnings[0].to_string(),
        "only 500 requests, about 0.5 of them above the p99.9: too few for it to mean much; \
         measure over more requests"
    );
}

#[test]
fn what_cannot_be_suggested_says_why() {
    let no_inf = "a_seconds_bucket{le=\"0.1\"} 4\n";
    assert_eq!(suggest(&latency(no_inf), 0.001), Err(Skip::NoInfBucket));
    let empty = "a_seconds_bucket{le=\"0.1\"} 0\na_seconds_bucket{le=\"+Inf\"} 0\n";
    assert_eq!(suggest(&latency(empty), 0.001), Err(Skip::NoRequests));
    // A quantile in a bucket up to 1e308 s, or below zero, is no duration: said so, where
    // both were skipped as "no requests counted" with a hundred requests counted.
    let endless = "a_seconds_bucket{le=\"0.1\"} 50\na_seconds_bucket{le=\"1e308\"} 99\n\
                   a_seconds_bucket{le=\"+Inf\"} 100\n";
    assert_eq!(suggest(&latency(endless), 0.001), Err(Skip::NotADuration));
    // A page refuses these at their line (`exposition`); a query's answer has no lines, and
    // they are skipped here.
    let negative = from_buckets(&[(-5.0, 60.0), (0.1, 90.0), (INF, 100.0)]);
    assert_eq!(suggest(&negative, 0.001), Err(Skip::NotADuration));
    assert!(Skip::NotADuration.to_string().contains("le=\"1e308\""));
    // 500 requests in a lone +Inf bucket are counted, with no bound to place them: said so,
    // where it was skipped as "no requests counted".
    let only_inf = "a_seconds_bucket{le=\"+Inf\"} 500\n";
    assert_eq!(suggest(&latency(only_inf), 0.001), Err(Skip::OnlyInfBucket));
    // A count that is no count of requests is said to be that, where NaN was blamed on the
    // bounds and a negative count went through.
    for count in [f64::NAN, -3.0, INF] {
        let bad = from_buckets(&[(0.1, count), (INF, 100.0)]);
        assert_eq!(suggest(&bad, 0.001), Err(Skip::NotACount), "{count}");
    }
    let bytes = parse("s_bytes_bucket{le=\"1\"} 1\ns_bytes_bucket{le=\"+Inf\"} 1\n").unwrap();
    assert_eq!(Latency::of(&bytes[0], None), None);
    let stated = Latency::of(&bytes[0], Some(Unit::Milliseconds)).unwrap();
    assert_eq!(stated.quantile(0.5), Some(Duration::from_micros(500)));
}

#[test]
fn the_share_within_the_current_timeout() {
    let l = latency(DEFAULT_LADDER);
    assert_eq!(l.share_within(ms(100)), Some(Share::Exact(0.99)));
    // 300 ms: 9,980 + 18 * 50/250 of 10,000.
    let Some(Share::Interpolated(share)) = l.share_within(ms(300)) else {
        panic!("inside (250, 500]");
    };
    assert!((share - (9980.0 + 18.0 * 0.2) / 10000.0).abs() < 1e-12);
    assert_eq!(l.share_within(ms(5000)), Some(Share::Exact(1.0)));
}

#[test]
fn quantile_names() {
    assert_eq!(quantile_name(0.999), "p99.9");
    assert_eq!(quantile_name(0.5), "p50");
    assert_eq!(quantile_name(0.9995), "p99.95");
    assert_eq!(percent(0.001), "0.1%");
    // A rate of 1e-9 read "p100 (a false-timeout rate of 0%)": the digits it needs.
    assert_eq!(quantile_name(1.0 - 1e-9), "p99.9999999");
    assert_eq!(percent(1e-9), "0.0000001%");
    assert_eq!(quantile_name(1.0), "p100");
    assert_eq!(percent(0.0), "0%");
}

#[test]
fn bounds_near_the_largest_duration_give_a_suggestion_not_a_panic() {
    // Found by fuzzing: twice such a bound overflowed a Duration, in the coarse-bucket check
    // and in the above-the-highest-bucket warning; and the timeout came out below the estimate.
    for page in [
        "x_seconds_bucket{le=\"1e10\"} 0\nx_seconds_bucket{le=\"1.7e19\"} 5\n\
         x_seconds_bucket{le=\"1.8e19\"} 10\nx_seconds_bucket{le=\"+Inf\"} 10\n",
        "x_seconds_bucket{le=\"1e19\"} 5\nx_seconds_bucket{le=\"+Inf\"} 10\n",
    ] {
        let s = suggest(&latency(page), 0.001).unwrap();
        assert!(s.timeout >= s.estimate, "{s:?}");
        for warning in &s.warnings {
            assert!(!warning.to_string().is_empty());
        }
    }
}
