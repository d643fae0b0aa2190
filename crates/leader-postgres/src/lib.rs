//! Skeleton: not built yet.
