//! Integration tests, against the real plugins built by the workspace and loaded from disk.

mod barrier;
mod contract;
mod gc;
mod loader;
mod signal;
mod timeout;
