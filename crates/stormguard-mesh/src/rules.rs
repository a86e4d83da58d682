//! The findings only imported settings make possible, by id: `check` reports them beside its
//! own, at the manifest's line.
