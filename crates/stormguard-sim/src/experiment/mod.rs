//! Published experiments, re-run on the policy core.
//!
//! A simulator that disagrees with a published, independently written one is wrong somewhere,
//! either in its event semantics or in the policy code it drives; agreeing with it is the
//! cheapest evidence that both are right. Each experiment here reproduces one published setup
//! exactly, event for event, and keeps the published figures beside it so the comparison is
//! part of every run, not a one-off.

pub mod brooker_jitter;
