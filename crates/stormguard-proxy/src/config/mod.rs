//! The proxy's settings: what the file says, with every default filled in.
//!
//! A route's policy uses the same keys and meanings as a call in a graph file, so that what
//! `check` and `sim` say of a call is what the proxy does with the same settings; the route's
//! policy is converted to the core's `RetryPolicy` by the one conversion the simulator uses
//! (`stormguard_graph::policy::retry_policy`).

mod model;

pub use model::{
    AdaptiveTimeoutSpec, Admin, Config, FaultSpec, Faults, Listen, Route, RouteMatch, Upstream,
};
