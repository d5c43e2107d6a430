//! Stress: 100,000 barriers while goroutines keep joining and leaving (and yielding), sleeping
//! (their Ps go idle), entering and leaving blocking syscalls (their Ps go to `Syscall` and
//! back, or are retaken by sysmon), and computing between polls. Every barrier must complete,
//! with `f` run exactly once per P; a barrier that hangs trips the watchdog of
//! `block_on_bounded`, which fails the test with the safepoint-timeout report of the late P
//! and a goroutine dump.
//!
//! The 100,000 barriers are spread evenly over the P counts (25,000 at each of 1, 2, 4 and 8
//! Ps), rather than 100,000 at each: on the 2-core CI machine that keeps the test well under
//! a minute (measured alone: 20 to 40 s, most of it at 8 Ps, about 1 ms a barrier). Each
//! count runs in chunks of 5,000 barriers on a fresh runtime, each chunk under its own
//! watchdog, so that a slow machine stays far inside the watchdog's 120 s.

use safepoint_tests::{Kind, P_COUNTS, shipped};

use crate::barrier::counted_barriers;

const TOTAL_BARRIERS: u64 = 100_000;
const CHUNK: u64 = 5_000;

/// Every kind of goroutine, churners twice: joining and leaving is the busiest path.
const KINDS: [Kind; 5] = [
    Kind::Poller,
    Kind::Blocker,
    Kind::Sleeper,
    Kind::Churner,
    Kind::Churner,
];

#[test]
fn futex_completes_100_000_barriers_while_goroutines_churn_sleep_and_block() {
    let futex = shipped("futex");
    let chunks_per_count = TOTAL_BARRIERS / P_COUNTS.len() as u64 / CHUNK;
    for procs in P_COUNTS {
        for _ in 0..chunks_per_count {
            counted_barriers(&futex, procs, &KINDS, CHUNK);
        }
    }
}
