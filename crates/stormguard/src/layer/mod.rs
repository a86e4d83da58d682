//! Tower layers that run the policy core on real HTTP requests.
//!
//! ## Why layers
//! The policy core decides; these layers do: they read the clock (tokio's, so tests run on paused
//! time), sleep the backoff, enforce timeouts, keep a copy of a body so it can be sent again, and report
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
//! A request can be sent again only if its body can be. The first attempt streams the client's
//! body as it arrives, with no wait, and each frame it sends is copied, up to a limit (64 KiB by
//! default, as linkerd); a retry replays the copy and then goes on from the client's body where
//! the first attempt left it, so a retry needs no finished body, and a gRPC stream is
//! replayable, like any other body, while its copy is within the limit. A body that passes the
//! limit drops its copy: it streams on to the end through the attempt sending it and is never
//! sent again, let alone half-replayed; an attempt refused before reading any of it (a refused
//! connection) hands it to the next attempt whole. With one attempt allowed and no hedge, nothing
//! is copied. A hedge is sent only once the body has ended within the limit (the hedge layer
//! reads it ahead of the original into the copy), its delay counted from that end: a body
//! still arriving is the client's slowness, which a hedge cannot help. A client that stalls
//! mid-upload is bounded by the attempt's timeout within the request's deadline. The inner
//! service sees a [`ReplayBody`].
//!
//! ## Instances
//! A retry goes to an instance the request has not tried. A [`Balance`] marks the answer to a
//! request that came without a [`TriedInstances`] list with an [`Instance`] extension, and an
//! error always names its instance (an [`InstanceError`]); a retry layer's first attempt
//! carries no list, and its retries carry one with every instance the earlier attempts went
//! to, where the balancer records each choice. Even an attempt the per-try timeout ended,
//! which says nothing of where it went, is named: the balancer reports an attempt dropped
//! unanswered to the list the retry layer watches the drop with. A list that comes with the
//! request is used as it is, on every attempt.
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

/// The default limit on the copy of a body kept for replay: 64 KiB, as linkerd2-proxy.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
