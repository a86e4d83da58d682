//! `retryThrottling` as the closest `token_bucket`.
//!
//! gRPC (gRFC A6, `service_config.proto`): per server name, `token_count` starts at
//! `maxTokens` and stays in [0, maxTokens]; every failed RPC takes 1 token, every successful
//! one adds `tokenRatio`; no retry or hedge is sent while `token_count ≤ maxTokens / 2`.
//! stormguard's bucket (the AWS SDKs'): it starts full at `capacity`, a retry is sent only when
//! the bucket holds its cost and takes it, a success puts 1 back.
//!
//! So only the half above the threshold is ever spent, and a success is worth `tokenRatio`
//! failures. Counting in units of `tokenRatio` makes a success worth 1 as stormguard's is:
//! `capacity = (maxTokens / 2) / tokenRatio`, `retry_cost = timeout_cost = 1 / tokenRatio`. The
//! balance of failures to successes at which retries stop is then the same; what differs is
//! written in a note: gRPC charges every failure (stormguard each retry), and throttles the
//! whole channel (stormguard each call).

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::Inventory;
use crate::source::Origin;

/// The largest capacity and cost the graph takes.
const MAX_TOKENS: f64 = 1_000_000.0;

/// The `token_bucket` text a service config's routes get, and its origin.
pub(super) struct Throttle {
    pub(super) text: String,
    pub(super) origin: Origin,
}

/// Reads `retryThrottling`.
pub(super) fn read(
    doc: &Document,
    inv: &mut Inventory,
    node: &Node,
) -> Result<Throttle, ImportError> {
    let field = |key: &str| format!("retryThrottling.{key}");
    let positive = |key: &str| -> Result<f64, ImportError> {
        let value = node.get(key).ok_or_else(|| {
            doc.error(
                node,
                &field(key),
                "missing: gRFC A6 requires maxTokens and tokenRatio",
            )
        })?;
        value.as_f64().filter(|v| *v > 0.0).ok_or_else(|| {
            doc.error(
                value,
                &field(key),
                "not a number above zero: write e.g. 10 or 0.1",
            )
        })
    };
    let max_tokens = positive("maxTokens")?;
    let ratio = positive("tokenRatio")?;
    let capacity = (max_tokens / 2.0 / ratio).round().clamp(1.0, MAX_TOKENS);
    let cost = (1.0 / ratio).round().clamp(1.0, capacity);
    let origin = Origin::at(doc, node, "gRPC service config retryThrottling");
    inv.unread(
        origin.clone(),
        "retryThrottling",
        format!(
            "approximate: gRPC stops retrying once failures have taken half of maxTokens \
             {max_tokens} (each failure −1, each success +{ratio}), for the whole channel; \
             token_bucket = {{ capacity = {capacity}, retry_cost = {cost} }} keeps the same \
             balance of failures to successes per call, but charges each retry, not each failure"
        ),
    );
    Ok(Throttle {
        text: format!("{{ capacity = {capacity}, retry_cost = {cost}, timeout_cost = {cost} }}"),
        origin,
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::inventory_of;

    proptest::proptest! {
        /// Every throttle gRPC accepts (maxTokens up to 1000, tokenRatio with 3 decimals)
        /// gives a bucket the graph accepts: cost from 1 to the capacity, capacity at most
        /// 1000000.
        #[test]
        fn every_valid_throttle_is_a_valid_bucket(max_tokens in 1u32..=1000, ratio in 1u32..=3000) {
            let ratio = f64::from(ratio) / 1000.0;
            let text = format!(
                "{{\"retryThrottling\": {{\"maxTokens\": {max_tokens}, \"tokenRatio\": {ratio}}},\
                 \"methodConfig\": [{{\"name\": [{{\"service\": \"a.B\"}}], \"retryPolicy\": \
                 {{\"maxAttempts\": 2, \"initialBackoff\": \"0.1s\", \"maxBackoff\": \"1s\", \
                 \"backoffMultiplier\": 2, \"retryableStatusCodes\": [\"UNAVAILABLE\"]}}}}]}}"
            );
            let inv = inventory_of("t.json", &text).unwrap();
            let policy = &inv.routes[0].policy;
            crate::testing::assert_graph_accepts(policy, "");
        }
    }
}
