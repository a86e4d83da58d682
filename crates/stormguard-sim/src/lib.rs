//! # stormguard-sim
//!
//! Deterministic simulations of retries, in virtual time.
//!
//! ## Why a simulator
//! A retry policy's worst effects are emergent: a herd of clients that back off in lockstep, a
//! retry storm that outlives the fault that started it, work done for callers that already gave
//! up. None of them shows in a unit test of one request, and a load test finds them only after
//! the policy is deployed somewhere that can be broken. A discrete-event simulation in virtual
//! time shows them in milliseconds, on a laptop, and the same seed replays the same run, so a
//! figure in a review can be reproduced by anyone who reads it.
//!
//! Every retry decision is taken by the policy core, [`stormguard`], the code the proxy runs: a
//! simulation of a re-implementation would only show what the re-implementation does.
//!
//! The simulator is checked against published results first ([`experiment`]); the simulation of
//! a whole service graph builds on the same event loop once those agree.
#![deny(missing_docs)]

pub mod engine;
pub mod experiment;
