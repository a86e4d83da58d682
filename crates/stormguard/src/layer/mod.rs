//! Tower layers that run the policy core on real HTTP requests.
//!
//! ## Why layers
//! The policy core decides; these layers do: they read the clock (tokio's, so tests run on paused
//! time), sleep the backoff, enforce timeouts, buffer a body so it can be sent again, and report
//! every decision to an [`Observer`](crate::metrics::Observer). They are ordinary
//! [`tower::Layer`](tower_layer::Layer)s over `http::Request<B>`, so they stack onto hyper-util's
//! client, reqwest (through its tower service) and tonic channels alike.
//!
//! | layer | what it does |
//! |---|---|
//! | [`RetryLayer`] | classification, backoff, retry budget or token bucket, per-try timeouts within the deadline, a different instance on retry |
//! | [`HedgeLayer`] | one extra copy of a slow idempotent request to another instance, within a hedge budget; the first answer wins |
//! | [`DeadlineLayer`] | reads the incoming budget (`stormguard-budget-ms`, `grpc-timeout`, `x-envoy-expected-rq-timeout-ms`), times the call out at the deadline, writes the decremented budget downstream |
//! | [`Balance`] | least loaded of two among instances not yet tried by this request, leaving out those ejected for failing in a row (passive health checking) |
//! | [`SetAuthority`] | one instance as an address on a shared, pooled client |
//!
//! A typical client stack, outermost first: `DeadlineLayer`, `RetryLayer`, `HedgeLayer`, then a
//! `Balance` over the instances.
//!
//! ## Bodies
//! A request can be sent again only if its body can be: the retry and hedge layers buffer a body
//! up to a limit (64 KiB by default, as linkerd) and replay it. A larger body is sent once, what
//! was read first and then the rest as it arrives, and never half-replayed; an attempt refused
//! before reading any of it (a refused connection) hands it to the next attempt whole. The body is read
//! before the first attempt, within the request's deadline (a client that stalls mid-upload gets
//! [`ErrorKind::Deadline`], not a hang), and the first attempt gets the time left after it. A
//! gRPC body is buffered only while its frames come without a pause of more than 10 ms: a unary
//! call's one message does (even when it arrives just after the head), while a streaming call
//! that waits for a reply before sending more streams once instead. The
//! inner service sees a [`ReplayBody`].
//!
//! ## Instances
//! A retry goes to an instance the request has not tried. A [`Balance`] below says which instance
//! answered (an [`Instance`] response extension, an [`InstanceError`]); once the retry layer has
//! seen that, it gives each request a [`TriedInstances`] list from its first attempt, so that even
//! a retry after a per-try timeout, which says nothing of where it went, goes elsewhere. Without a
//! balancer below, nothing is attached and nothing is paid.
//!
//! The balancer also records what each attempt came to: an instance that refuses a connection,
//! or answers five 5xx in a row, is ejected (left out of the choice) for 1 s, doubling while it
//! keeps failing, so that a dead instance costs a retry now and then rather than a share of every
//! first attempt ([`crate::instance::ejection`]).

//! ## Cancel safety
//! Dropping a response future cancels the attempt in flight and any pending backoff; no further
//! attempt is sent. A hedge's losing attempt is dropped (cancelled) as soon as the other answers.

mod authority;
mod balance;
mod body;
mod clock;
mod deadline;
mod error;
mod hedge;
mod retry;
#[cfg(test)]
mod test_support;

pub use self::authority::SetAuthority;
pub use self::balance::{Balance, Instance, InstanceError, TriedInstances};
pub use self::body::ReplayBody;
pub use self::deadline::{DeadlineLayer, DeadlineService};
pub use self::error::{classify_error, BoxError, Error, ErrorKind, NotSent};
pub use self::hedge::{Hedge, HedgeLayer};
pub use self::retry::{AttemptNumber, Attempts, Retry, RetryLayer};

/// The default limit on a body buffered for replay: 64 KiB, as linkerd2-proxy.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
