//! `stormguard export`: a graph's policies written in one system's resources.

pub mod edit;
pub mod val;
