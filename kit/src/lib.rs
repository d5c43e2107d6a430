//! Plumbing that the `safepoint` host and every strategy plugin share, and that never
//! crosses the ABI: each side links its own copy, so nothing here is versioned.
//!
//! - [`futex`]: the `futex(2)` wait and wake, the one futex layer of the workspace, and the
//!   [`Word`](futex::Word) and [`Wake`](futex::Wake) traits that the protocols are written
//!   over, so that a loom model can run the very same code;
//! - [`pending_count`]: the requester's wait for the last acknowledgement of a barrier, on a
//!   futex word that counts the Ps still to acknowledge;
//! - [`sched`]: the CPUs a thread may run on, and yielding one.
//!
//! Everything here is async-signal-safe unless it says otherwise: atomics, and raw system
//! calls through rustix, which touch neither `errno` nor any lock of the C library.

pub mod futex;
pub mod pending_count;
pub mod sched;
