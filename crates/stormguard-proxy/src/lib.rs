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
//!
//! ## The data path
//! [`serve`] accepts connections and hands each request to a [`Proxy`], which holds the running
//! generation of routes. A request is checked (target, route, body size), its body read as far
//! as a retry would keep it (`request_body_timeout`), then checked against the upstream's
//! `max_in_flight`; it may get an injected fault, and goes through its route's stack of library
//! layers to a kept-alive connection to one of the upstream's instances. A request whose
//! bodies stall for `stream_idle_timeout` is cut off, and gives back what it held upstream. Every answer carries
//! `stormguard-attempts`; an answer the proxy made itself carries `stormguard-reason` (see
//! [`REASON_HEADER`] for the statuses). Each request is one line of the access log (target
//! [`ACCESS_LOG_TARGET`], `listen.access_log`), written when its response ends.
//!
//! ## TLS
//! The proxy speaks TLS with rustls (never OpenSSL) to upstreams that ask for it (`tls = true`,
//! `https://` instances), verifying each instance's certificate, and to clients when
//! `listen.tls` is set. A handshake that fails is a connect failure: retried on another
//! instance, counted with reason `tls`, never a fall back to plain text.
//!
//! ## Around it
//! [`reload`] reads the settings file again on SIGHUP, `POST /reload` or an edit, and applies it
//! without failing a request; [`admin`] serves `/metrics`, `/config`, `/healthz` and
//! `/reload`; [`signals`] catches SIGHUP and SIGTERM before the proxy says it is ready.
#![deny(missing_docs)]

mod access_log;
pub mod admin;
mod answer;
pub mod config;
mod discovery;
mod fault;
mod forward;
mod h1;
mod h2_pool;
mod headers;
mod metrics;
mod pool;
mod proxy;
pub mod reload;
mod request_body;
mod server;
pub mod signals;
mod stack;
mod timer;
mod tls;

pub use access_log::{set_format as access_log_format, AccessLineFormat, ACCESS_LOG_TARGET};
pub use answer::{ATTEMPTS_HEADER, REASON_HEADER};
pub use fault::{ABORT_HEADER as FAULT_ABORT_HEADER, DELAY_HEADER as FAULT_DELAY_HEADER};
#[doc(hidden)]
pub use h1::{decode_head_after, decode_response, DecodedResponse};
pub use proxy::{BuildError, InstanceStatus, Proxy};
pub use server::serve;
#[doc(hidden)]
pub use server::serve_connection;
