//! # stormguard-graph
//!
//! A service graph: which service calls which, with what timeout, attempts, backoff, budget,
//! hedge and deadline propagation. One file describes it (see [`parse()`]); `stormguard check`
//! finds what will break in it ([`check::check`]) and `stormguard sim` runs it under faults.
//!
//! ## Why a graph, not a list of settings
//! Timeouts and retries go wrong between services, not within one: a timeout is too long only
//! against its caller's, three attempts are too many only when the layer above also retries.
//! Each setting can look reasonable alone while the graph turns one slow database into an outage
//! (Brooker's 243 calls from five layers of three tries; Cockcroft's edge that gives up while the
//! back end still retries). So the file describes the whole graph, and every figure here is a
//! property of paths through it, computed by dynamic programming over the graph, never by
//! enumerating paths.
#![deny(missing_docs)]

pub mod check;
pub mod fix;
pub mod input;
pub mod model;
pub mod parse;
pub mod policy;
pub mod render;
pub mod report;

pub use fix::{fix, Fixed};
pub use model::Graph;
pub use parse::{parse, ParseError};
pub use report::{Finding, Report, Severity};
