//! # stormguard-recommend
//!
//! Timeouts from measured latency. Mux tuned their timeouts from Prometheus histograms, and
//! Brooker's rule puts a timeout at the callee's p99.9, where it cuts off one good request in a
//! thousand. This crate does both for `stormguard recommend`: it reads latency histograms (a
//! `/metrics` page in [`exposition`], a Prometheus server's answers in [`prometheus_api`]),
//! takes their quantiles exactly as Prometheus's `histogram_quantile` does ([`histogram`]),
//! suggests a timeout at a false-timeout rate and says when the buckets make it a guess
//! ([`suggest`]), ties the series to a graph's calls ([`calls`]) and writes the timeouts into
//! the graph file, nothing else changed ([`rewrite`]).
//!
//! ## Why no I/O here
//! Every step is a function of text in and values out, so each is tested on pages and answers
//! written by hand with the figures worked out by hand; the command fetches and prints.
//!
//! ```
//! use stormguard_recommend::{exposition, suggest::{suggest, Latency}};
//!
//! let page = "\
//! ## TYPE rpc_seconds histogram
//! rpc_seconds_bucket{upstream=\"db\",le=\"0.1\"} 9000
//! rpc_seconds_bucket{upstream=\"db\",le=\"0.25\"} 9985
//! rpc_seconds_bucket{upstream=\"db\",le=\"0.3\"} 10000
//! rpc_seconds_bucket{upstream=\"db\",le=\"+Inf\"} 10000
//! ";
//! let series = exposition::parse(page).unwrap();
//! let latency = Latency::of(&series[0], None).unwrap();
//! let suggestion = suggest(&latency, 0.001).unwrap();
//! // Rank 9,990 is the 5th of the 15 requests between 250 and 300 ms.
//! assert_eq!(suggestion.timeout.as_millis(), 300);
//! ```
#![deny(missing_docs)]

pub mod calls;
pub mod exposition;
pub mod histogram;
pub mod prometheus_api;
pub mod readable;
pub mod rewrite;
pub mod series;
pub mod suggest;
