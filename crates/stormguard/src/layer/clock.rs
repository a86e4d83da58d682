//! The layers' one clock: tokio's, so that tests on paused time control it.

use std::time::Instant;

/// Now, as the policy core takes it (a `std::time::Instant` from tokio's clock).
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
