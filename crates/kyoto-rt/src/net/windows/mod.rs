//! Windows-only networking: named pipes.
pub mod named_pipe;
