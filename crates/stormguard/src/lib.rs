//! # stormguard
//!
//! One policy model for every call from one service to another: a timeout, a decision to retry or
//! not, a backoff with jitter, a budget that keeps retries from multiplying load, a deadline that
//! travels across hops, and hedging within a budget.
//!
//! ## Why one model
//! Timeouts and retries set wrong turn one slow dependency into an outage: three tries at each of
//! five layers is 3^5 = 243 calls at the bottom; clients that back off in lockstep return as a
//! thundering herd; an edge that gives up at 2 s while the back end retries for 6 s does work
//! nobody waits for. The remedies are known (Brooker, Cockcroft, Dean & Barroso) but scattered.
//! This crate puts them in one place, as plain data and pure functions, so that the tower layers,
//! the `stormguard proxy`, and the `stormguard sim` simulator all take the same decisions.
//!
//! ## Mechanism apart from policy
//! The policy core ([`backoff`], [`classify`], [`budget`], [`deadline`], [`estimate`], [`hedge`],
//! [`instance`], [`policy`]) does no I/O and has no clock of its own: every function that needs the
//! time takes `now` as an argument. The `layer` module (feature `tower`, on by default) is the
//! mechanism that runs those decisions on real requests, with tokio's clock, so that every time
//! dependent test runs on paused time.
// A link to a module that a feature removes breaks the docs built without it.
#![cfg_attr(feature = "tower", doc = "See [`layer`].")]
//!
//! ## Quick start
//! ```
//! use stormguard::backoff::Backoff;
//! use stormguard::policy::RetryPolicy;
//!
//! let backoff: Backoff = "full-jitter(base=25ms, cap=250ms)".parse().unwrap();
//! let policy = RetryPolicy::recommended().with_backoff(backoff);
//! assert_eq!(policy.max_attempts, 2); // zero or one retry, by default
//! ```
#![deny(missing_docs)]
// Tests pick an arbitrary origin with `Instant::now()`; library code never reads the clock itself.
#![cfg_attr(test, allow(clippy::disallowed_methods))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod budget;
pub mod classify;
pub mod deadline;
pub mod duration;
pub mod estimate;
pub mod hedge;
pub mod instance;
pub mod metrics;
pub mod policy;

#[cfg(feature = "tower")]
pub mod layer;
