//! The polling safe-point strategy: arm every P's poll word, stop the parked ones, and spin
//! (with bounded backoff) until the running ones have served themselves at their next
//! `poll()`.
//!
#![doc = include_str!("../README.md")]
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use abi_stable::std_types::{RResult, RVec};
use safepoint_abi::claim::Claims;
use safepoint_abi::{
    Capabilities, Counter, ErrorKind, HostRef, MId, OsThread, PId, PluginError, SafePointFnArc,
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
    /// Which Ps `f` has yet to run for, claimed by CAS; and how many are still to
    /// acknowledge, which the requester waits to see reach zero.
    claims: Claims,
    /// The barrier's function, while one is in flight.
    f: RwLock<Option<SafePointFnArc>>,
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
                        PluginError::new(
                            ErrorKind::InvalidConfig,
                            "new",
                            format!("spin={value}: expected a number of rounds from 0 to 20"),
                        )
                    })?;
                }
                other => {
                    return Err(PluginError::new(
                        ErrorKind::InvalidConfig,
                        "new",
                        format!("unknown config key `{other}`; the polling strategy takes spin=N"),
                    ));
                }
            }
        }
        let procs = host.procs() as usize;
        Ok(Polling {
            host,
            claims: Claims::new(procs),
            f: RwLock::new(None),
            spin_rounds,
            barriers: AtomicU64::new(0),
            requester_yields: AtomicU64::new(0),
            requester_sleeps: AtomicU64::new(0),
        })
    }

    /// Spins, then yields, then sleeps in growing steps: when Ps outnumber cores, the late
    /// P's M needs this CPU, and `sched_yield` alone does not hand it over under CFS.
    fn wait_for_acks(&self) {
        let mut round = 0u32;
        while self.claims.remaining() != 0 {
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
            *self.f.write().expect("f lock poisoned") = Some(f.clone());
            let round = self.claims.begin(&self.host);
            // 1. Arm every P first, so that running Ps start towards a safe point at once.
            for &p in &round.others {
                self.host.arm_poll(p);
            }
            if let Some(own) = round.own {
                f.call(own);
            }
            // 2. Serve the parked Ps ourselves. A P we cannot stop is running and will
            //    serve itself (the host closes the race with parking).
            for &p in &round.others {
                self.claims.serve_if_parked(&self.host, p, &f);
            }
            // 3. Wait for the running Ps.
            self.wait_for_acks();
            *self.f.write().expect("f lock poisoned") = None;
            Ok(())
        })
    }

    fn on_poll(&self, p: PId) -> RResult<(), PluginError> {
        catch_panic("on_poll", || {
            if self.claims.claim(p) {
                let f = self.f.read().expect("f lock poisoned").clone();
                let f = f.expect("a claimed P has a barrier function");
                self.claims.run_claimed(&self.host, p, &f);
                if self.claims.remaining() != 0 {
                    // Others are late: with more Ps than cores, they may be waiting for a
                    // CPU that this thread would otherwise keep for its time slice.
                    std::thread::yield_now();
                }
            }
            Ok(())
        })
    }

    fn attach_thread(&self, _m: MId, _thread: OsThread) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn detach_thread(&self, _m: MId) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn counters(&self) -> RVec<Counter> {
        let counter =
            |name: &str, value: &AtomicU64| Counter::new(name, value.load(Ordering::Relaxed));
        RVec::from(vec![
            counter("barriers", &self.barriers),
            counter("requester yields", &self.requester_yields),
            counter("requester sleeps", &self.requester_sleeps),
        ])
    }

    fn shutdown(&self) -> RResult<(), PluginError> {
        RResult::ROk(())
    }
}
