//! Integration tests, against the real plugins built by the workspace and loaded from disk.

mod barrier;
mod contract;
mod futex;
mod gc;
mod handshake;
mod in_process;
mod loader;
mod served;
mod signal;
mod stress;
mod swap;
mod timeout;
mod trace;
mod trust;
mod workloads;
