//! # stormguard-proxy
//!
//! A sidecar HTTP proxy that gives services in any language stormguard's policies with no code
//! change: every retry, backoff, budget, deadline and hedge decision is the policy core's, taken
//! through the library's tower layers, exactly as a Rust service using the library would.
//!
//! ## Why a sidecar
//! Most services are not written in Rust and many cannot change their HTTP client. Envoy and
//! linkerd2-proxy showed that a local proxy can carry a fleet's resilience settings; this one
//! carries the opinions they lack: a retry budget by default, deadlines that travel across hops,
//! a retry that always goes to another instance, and settings anyone can read at `/config`.
#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod reload;
pub mod signals;
