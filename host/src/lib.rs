//! `safepoint`: a Go-style M:N runtime whose ragged barrier (`forEachP`) and preemption
//! mechanism are dynamic-library plugins behind a stable ABI.
//!
//! - [`runtime`]: goroutines (G) on OS threads (M) holding logical processors (P), with
//!   Go's statuses, a scheduler, sysmon, and goroutine synchronisation.
//! - [`safepoint`]: the safe [`safepoint::for_each_p`] wrapper that owns the goroutine-status
//!   transition of Go change 533455, worldsema, the exactly-once check, and the timeout.
//! - [`plugin`]: finding, probing and loading strategy plugins.
//! - [`trace`]: barrier traces read back: timelines, Chrome trace JSON, SVG, barrier logs,
//!   time to safepoint.
//! - [`workloads`]: the workloads that `safepoint run` and `compare` drive barriers against.
//!
//! A strategy (polling, signal, futex, or your own) implements only the mechanism,
//! `for_each_p_internal`, through the ABI of the `safepoint-abi` crate.

#![deny(unsafe_code)]

pub mod compare;
pub mod floor;
pub mod gc;
pub mod plugin;
pub mod runtime;
pub mod safepoint;
#[allow(unsafe_code)]
mod sys;
pub mod trace;
pub mod workloads;

pub use safepoint_abi::{Capabilities, PId, PStatus};
