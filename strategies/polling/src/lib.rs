//! The polling safe-point strategy: arm every P's poll word, stop the parked ones, and spin
//! until the running ones have served themselves at their next `poll()`; then, or at once
//! when Ps outnumber CPUs, sleep until the last of them wakes the requester.
//!
#![doc = include_str!("../README.md")]
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use abi_stable::std_types::{RResult, RVec};
use safepoint_abi::{Capabilities, Counter, HostRef, PId, PluginError, SafePointFnArc, Strategy};
use safepoint_kit::config::parse_config;
use safepoint_kit::futex::Futex;
use safepoint_kit::panic::catch_panic;
use safepoint_kit::pending_count::{self, PendingCount};
use safepoint_kit::{CachePadded, PendingPs, Round};

safepoint_kit::export_strategy! {
    name: "polling",
    description: "arms each P's poll word; the requester spins with bounded backoff",
    capabilities: Capabilities::SINGLE_P_HANDSHAKE,
    new: Polling::new,
}

/// Spin rounds before the requester sleeps, when every P has a CPU. Round `i` spins `2^i`
/// times: 10 rounds are about 1,000 pauses, 20-30 µs, which covers a P that polls every few
/// hundred nanoseconds with room for a descheduled one to come back.
const DEFAULT_SPIN_ROUNDS: u32 = 10;

struct Polling {
    host: HostRef,
    /// Which Ps still wait for `f`, and `f`.
    pending: PendingPs,
    /// Ps still to acknowledge, and whether the requester sleeps: the futex word.
    count: CachePadded<PendingCount<AtomicU32>>,
    spin_rounds: u32,
    requester_sleeps: AtomicU64,
    requester_wakes: AtomicU64,
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
            count: CachePadded(PendingCount::new()),
            spin_rounds,
            requester_sleeps: AtomicU64::new(0),
            requester_wakes: AtomicU64::new(0),
        })
    }

    /// A barrier's round, or a handshake's (one P): arms the round's Ps, runs `f` for our
    /// own P if it takes part, serves the parked ones, waits for the running ones.
    fn run_round(&self, round: Round<'_>, f: &SafePointFnArc) {
        let others = u32::try_from(round.others.len()).expect("fewer than 2^31 Ps");
        self.count.reset(others);
        self.pending
            .arm_and_serve_parked(&self.host, &round, f, || self.count.ack_by_requester());
        self.wait_for_acks();
        round.end();
    }

    /// Spins while every P has a CPU of its own, then sleeps until the last P wakes it. When
    /// Ps outnumber CPUs it sleeps at once: a spinning requester keeps a CPU from the P it
    /// waits for.
    fn wait_for_acks(&self) {
        let rounds = if self.host.oversubscribed() {
            0
        } else {
            self.spin_rounds
        };
        if pending_count::spin_for_acks(&self.count, rounds) {
            return;
        }
        pending_count::wait_for_acks(&Futex, &self.count, None, |_| {
            self.requester_sleeps.fetch_add(1, Ordering::Relaxed);
        });
    }
}

impl Strategy for Polling {
    fn for_each_p_internal(&self, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("for_each_p_internal", || {
            self.run_round(self.pending.begin(&self.host, &f), &f);
            Ok(())
        })
    }

    fn handshake(&self, p: PId, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("handshake", || {
            self.run_round(self.pending.begin_one(&self.host, &f, p), &f);
            Ok(())
        })
    }

    fn on_poll(&self, p: PId) -> RResult<(), PluginError> {
        catch_panic("on_poll", || {
            let woke = self.pending.serve_at_safe_point(&self.host, p, || {
                pending_count::acknowledge(&Futex, &self.count)
            });
            if woke == Some(true) {
                self.requester_wakes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    }

    fn counters(&self) -> RVec<Counter> {
        RVec::from(vec![
            Counter::new("barriers", self.pending.barriers()),
            Counter::new("handshakes", self.pending.handshakes()),
            Counter::read("requester sleeps", &self.requester_sleeps),
            Counter::read("requester wakes", &self.requester_wakes),
        ])
    }
}
