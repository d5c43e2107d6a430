//! The polling safe-point strategy: arm every P's poll word, stop the parked ones, and spin
//! (with bounded backoff) until the running ones have served themselves at their next
//! `poll()`.
//!
#![doc = include_str!("../README.md")]
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use abi_stable::std_types::{RResult, RVec};
use safepoint_abi::{
    CachePadded, Capabilities, Counter, HostRef, PId, PendingPs, PluginError, SafePointFnArc,
    Strategy, catch_panic, parse_config,
};

safepoint_abi::export_strategy! {
    name: "polling",
    description: "arms each P's poll word; the requester spins with bounded backoff",
    capabilities: Capabilities::NONE,
    new: Polling::new,
}

/// Spin rounds before the requester starts yielding its thread. Round `i` spins `2^i` times.
const DEFAULT_SPIN_ROUNDS: u32 = 6;
/// `sched_yield` rounds after spinning, before the requester sleeps.
const YIELD_ROUNDS: u32 = 4;
/// The first sleep; each further one doubles, up to 32 times this.
const MIN_SLEEP_MICROS: u64 = 2;

struct Polling {
    host: HostRef,
    /// Which Ps still wait for `f`, and `f`.
    pending: PendingPs,
    /// Ps still to acknowledge; the requester waits for zero.
    remaining: CachePadded<AtomicUsize>,
    spin_rounds: u32,
    barriers: AtomicU64,
    requester_yields: AtomicU64,
    requester_sleeps: AtomicU64,
}

impl Polling {
    fn new(host: HostRef, config: &str) -> Result<Polling, PluginError> {
        let mut spin_rounds = DEFAULT_SPIN_ROUNDS;
        for (key, value) in parse_config("new", config)? {
            match key {
                "spin" => {
                    spin_rounds = value.parse().ok().filter(|n| *n <= 20).ok_or_else(|| {
                        PluginError::invalid_config(
                            "new",
                            format!("spin={value}: expected a number of rounds from 0 to 20"),
                        )
                    })?;
                }
                other => {
                    return Err(PluginError::invalid_config(
                        "new",
                        format!("unknown config key `{other}`; the polling strategy takes spin=N"),
                    ));
                }
            }
        }
        Ok(Polling {
            pending: PendingPs::new(host.procs()),
            host,
            remaining: CachePadded(AtomicUsize::new(0)),
            spin_rounds,
            barriers: AtomicU64::new(0),
            requester_yields: AtomicU64::new(0),
            requester_sleeps: AtomicU64::new(0),
        })
    }

    /// A P's acknowledgement, after its `f` ran and its poll word was disarmed.
    fn acknowledge(&self) {
        self.remaining.fetch_sub(1, Ordering::Release);
    }

    /// Spins, then yields, then sleeps in growing steps: when Ps outnumber cores, the late
    /// P's M needs this CPU, and `sched_yield` alone does not hand it over under CFS.
    fn wait_for_acks(&self) {
        let mut round = 0u32;
        while self.remaining.load(Ordering::Acquire) != 0 {
            if round < self.spin_rounds {
                for _ in 0..(1u32 << round) {
                    std::hint::spin_loop();
                }
            } else if round < self.spin_rounds + YIELD_ROUNDS {
                std::thread::yield_now();
                self.requester_yields.fetch_add(1, Ordering::Relaxed);
            } else {
                let step = (round - self.spin_rounds - YIELD_ROUNDS).min(5);
                std::thread::sleep(Duration::from_micros(MIN_SLEEP_MICROS << step));
                self.requester_sleeps.fetch_add(1, Ordering::Relaxed);
            }
            round += 1;
        }
    }
}

impl Strategy for Polling {
    fn for_each_p_internal(&self, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("for_each_p_internal", || {
            self.barriers.fetch_add(1, Ordering::Relaxed);
            let round = self.pending.begin(&self.host, &f);
            self.remaining.store(round.others.len(), Ordering::Relaxed);
            // Arm every P, run f for our own, serve the parked ones.
            self.pending
                .arm_and_serve_parked(&self.host, &round, &f, || self.acknowledge());
            // Wait for the running Ps.
            self.wait_for_acks();
            self.pending.end();
            Ok(())
        })
    }

    fn on_poll(&self, p: PId) -> RResult<(), PluginError> {
        catch_panic("on_poll", || {
            let served = self
                .pending
                .serve_at_safe_point(&self.host, p, || self.acknowledge());
            if served.is_some() && self.remaining.load(Ordering::Relaxed) != 0 {
                // Others are late: with more Ps than cores, they may be waiting for a
                // CPU that this thread would otherwise keep for its time slice.
                std::thread::yield_now();
            }
            Ok(())
        })
    }

    fn counters(&self) -> RVec<Counter> {
        RVec::from(vec![
            Counter::read("barriers", &self.barriers),
            Counter::read("requester yields", &self.requester_yields),
            Counter::read("requester sleeps", &self.requester_sleeps),
        ])
    }
}
