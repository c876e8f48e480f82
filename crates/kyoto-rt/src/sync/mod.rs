//! Synchronisation primitives for tasks.
