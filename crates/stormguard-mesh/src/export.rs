//! `stormguard export`: a graph's policies written in one system's resources.
