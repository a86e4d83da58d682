//! The Prometheus (and OpenMetrics) text exposition parser behind `stormguard recommend
//! --metrics-url`, and the quantiles and suggestions taken from every histogram it reads.
//!
//! Promises checked: a refusal points inside the page; every histogram read has its buckets
//! sorted by bound; its quantiles never fall as the quantile rises (when its counts are real
//! counts); a suggestion's timeout is never below the estimate it rounds up (to float precision); every warning
//! prints.

use stormguard_recommend::exposition;
use stormguard_recommend::series::Unit;
use stormguard_recommend::suggest::{quantile_name, suggest, Latency};

use crate::assert_position;

/// Quantiles checked in rising order.
const QUANTILES: [f64; 8] = [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];

/// False-timeout rates a suggestion is asked for: `recommend`'s default and two others.
const RATES: [f64; 3] = [0.001, 0.01, 0.5];

/// Runs one input (UTF-8 text; other bytes are not a page and are skipped).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let series = match exposition::parse(text) {
        Ok(series) => series,
        Err(error) => {
            assert_position(text, error.line, error.column, &error);
            return;
        }
    };
    for one in &series {
        let _ = one.to_string();
        let buckets = one.histogram.buckets();
        assert!(
            buckets.windows(2).all(|w| w[0].upper < w[1].upper),
            "{one}: buckets not sorted by bound, or a bound twice"
        );
        let counts = buckets
            .iter()
            .all(|b| b.count.is_finite() && b.count >= 0.0);
        let mut previous: Option<f64> = None;
        for q in QUANTILES {
            let Some(value) = one.histogram.quantile(q) else {
                continue;
            };
            if counts && !value.is_nan() {
                if let Some(previous) = previous {
                    assert!(
                        value >= previous,
                        "{one}: the {} is {value}, below a lower quantile's {previous}",
                        quantile_name(q)
                    );
                }
                previous = Some(value);
            }
        }
        let Some(latency) = Latency::of(one, Some(Unit::Seconds)) else {
            continue;
        };
        for rate in RATES {
            let Ok(suggestion) = suggest(&latency, rate) else {
                continue;
            };
            // round_up takes a bound met to float precision (1e-9 of it) as met.
            let estimate = suggestion.estimate.as_secs_f64();
            assert!(
                suggestion.timeout.as_secs_f64() >= estimate * (1.0 - 1e-9),
                "{one}: timeout {:?} below its estimate {:?}",
                suggestion.timeout,
                suggestion.estimate
            );
            for warning in &suggestion.warnings {
                let _ = warning.to_string();
            }
        }
    }
}
