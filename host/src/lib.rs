//! `safepoint`: a Go-style M:N runtime whose ragged barrier (`forEachP`) and preemption
//! mechanism are dynamic-library plugins behind a stable ABI.
//!
//! The modules, in their order: each uses only those above it in this list.
//!
//! - `sys`: every syscall and raw FFI call, and the coroutine switch.
//! - [`runtime`]: goroutines (G) on OS threads (M) holding logical processors (P), with
//!   Go's statuses, a scheduler, sysmon and goroutine synchronisation; and the strategy it
//!   runs: the slot, any [`runtime::StrategyConstructor`], the swap, the host's vtable with
//!   the exactly-once check, a P's safe-point path, worldsema, the served-P policy and the
//!   safepoint timeout.
//! - [`safepoint`]: the safe [`safepoint::for_each_p`] wrapper that owns the goroutine-status
//!   transition of Go change 533455, and single-P handshakes.
//! - [`plugin`]: finding, probing, trusting and loading strategy plugins.
//! - [`gc`]: the GC workload and the deadlock demo.
//! - [`trace`]: barrier traces read back: timelines, Chrome trace JSON, SVG, barrier logs,
//!   time to safepoint.
//! - [`workloads`]: the workloads that `safepoint run` and `compare` drive barriers against.
//! - [`floor`]: the hardware floor of each mechanism.
//! - [`compare`]: strategies side by side with the floor.
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
