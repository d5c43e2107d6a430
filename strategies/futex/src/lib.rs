//! The futex safe-point strategy: arm every P's poll word, stop the parked ones, and sleep on
//! a futex word until the last running P, at its safe point, acknowledges and wakes the
//! requester. Nobody spins: it trades the wake-up latency of a futex for a requester that
//! costs no CPU while it waits.
//!
#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use abi_stable::std_types::{RResult, RVec};
use safepoint_abi::{Capabilities, Counter, HostRef, PId, PluginError, SafePointFnArc, Strategy};
use safepoint_kit::config::{parse_config, parse_config_duration};
use safepoint_kit::futex::{Futex, WaitResult};
use safepoint_kit::panic::catch_panic;
use safepoint_kit::pending_count::{self as protocol, PendingCount};
use safepoint_kit::{CachePadded, PendingPs, Round};

safepoint_kit::export_strategy! {
    name: "futex",
    description: "arms each P's poll word; the requester sleeps on a futex the last P wakes",
    capabilities: Capabilities::NO_BUSY_WAIT.union(Capabilities::SINGLE_P_HANDSHAKE),
    new: FutexStrategy::new,
}

/// How long the requester sleeps before it re-pokes the Ps that have not acknowledged.
pub const DEFAULT_REPOKE: Duration = Duration::from_millis(1);
/// The shortest re-poke interval accepted: below it the requester would all but spin.
pub const MIN_REPOKE: Duration = Duration::from_micros(10);
/// The longest re-poke interval accepted.
pub const MAX_REPOKE: Duration = Duration::from_secs(60);

/// The strategy's configuration, from `--strategy futex:KEY=VALUE,...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `repoke=DURATION`: the requester's futex-wait timeout, after which it re-pokes late Ps.
    pub repoke: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            repoke: DEFAULT_REPOKE,
        }
    }
}

impl Config {
    /// Parses a config string, e.g. `repoke=500us`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use safepoint_futex::Config;
    ///
    /// assert_eq!(Config::parse("").unwrap(), Config::default());
    /// assert_eq!(Config::parse("repoke=250us").unwrap().repoke, Duration::from_micros(250));
    /// assert!(Config::parse("repoke=1us").is_err());
    /// assert!(Config::parse("spin=3").is_err());
    /// ```
    pub fn parse(config: &str) -> Result<Config, PluginError> {
        let mut parsed = Config::default();
        for (key, value) in parse_config("new", config)? {
            match key {
                "repoke" => {
                    let repoke = parse_config_duration("new", key, value)?;
                    if !(MIN_REPOKE..=MAX_REPOKE).contains(&repoke) {
                        return Err(PluginError::invalid_config(
                            "new",
                            format!(
                                "repoke={value}: expected an interval from \
                                 {MIN_REPOKE:?} to {MAX_REPOKE:?}"
                            ),
                        ));
                    }
                    parsed.repoke = repoke;
                }
                other => {
                    return Err(PluginError::invalid_config(
                        "new",
                        format!(
                            "unknown config key `{other}`; the futex strategy takes repoke=DURATION"
                        ),
                    ));
                }
            }
        }
        Ok(parsed)
    }
}

struct FutexStrategy {
    host: HostRef,
    /// Which Ps still wait for `f`, and `f`.
    pending: PendingPs,
    /// Ps still to acknowledge, and whether the requester sleeps: the futex word.
    count: CachePadded<PendingCount<AtomicU32>>,
    config: Config,
    futex_waits: AtomicU64,
    futex_wakes: AtomicU64,
    wait_timeouts: AtomicU64,
    wait_interruptions: AtomicU64,
}

impl FutexStrategy {
    /// The constructor behind the root module's `new`.
    fn new(host: HostRef, config: &str) -> Result<FutexStrategy, PluginError> {
        Ok(FutexStrategy::with_config(host, Config::parse(config)?))
    }

    fn with_config(host: HostRef, config: Config) -> FutexStrategy {
        FutexStrategy {
            pending: PendingPs::new(host.procs()),
            host,
            count: CachePadded(PendingCount::new()),
            config,
            futex_waits: AtomicU64::new(0),
            futex_wakes: AtomicU64::new(0),
            wait_timeouts: AtomicU64::new(0),
            wait_interruptions: AtomicU64::new(0),
        }
    }

    /// A barrier's round, or a handshake's (one P).
    fn run_round(&self, round: Round<'_>, f: &SafePointFnArc) {
        let others = u32::try_from(round.others.len()).expect("fewer than 2^31 Ps");
        self.count.reset(others);
        // 2-4. Arm every P of the round, run f for our own, serve the parked ones. We are
        //      awake: our acknowledgements wake nobody.
        self.pending
            .arm_and_serve_parked(&self.host, &round, f, || self.count.ack_by_requester());
        // 5. Sleep until the last running P wakes us, re-poking on each timeout.
        let mut repoked = false;
        protocol::wait_for_acks(&Futex, &self.count, Some(self.config.repoke), |result| {
            repoked |= self.woke(result, &round.others, f);
        });
        // 6. A re-poke may have armed a P just after it served itself. Every P has
        //    acknowledged and the next round has not begun: clearing the arms is safe.
        if repoked {
            for &p in &round.others {
                self.host.disarm_poll(p);
            }
        }
        round.end();
    }

    /// After a timed-out wait: arms each P still pending again, and serves it if it has
    /// parked since (the host's stop can miss a P that moves from `Syscall` to `Idle` between
    /// its two attempts; see the README).
    fn repoke(&self, others: &[PId], f: &SafePointFnArc) {
        for &p in others.iter().filter(|&&p| self.pending.is_pending(p)) {
            self.host.arm_poll(p);
            self.pending
                .serve_if_parked(&self.host, p, f, || self.count.ack_by_requester());
        }
    }

    /// Counts one futex wait of the requester by its outcome, and re-pokes after a timeout.
    /// Returns whether it re-poked.
    fn woke(&self, result: WaitResult, others: &[PId], f: &SafePointFnArc) -> bool {
        self.futex_waits.fetch_add(1, Ordering::Relaxed);
        match result {
            WaitResult::TimedOut => {
                self.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                self.repoke(others, f);
                true
            }
            WaitResult::Interrupted => {
                self.wait_interruptions.fetch_add(1, Ordering::Relaxed);
                false
            }
            WaitResult::Woken | WaitResult::Changed => false,
        }
    }
}

impl Strategy for FutexStrategy {
    fn for_each_p_internal(&self, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("for_each_p_internal", || {
            // 1. Publish f, mark the other Ps pending and count them, awake.
            self.run_round(self.pending.begin(&self.host, &f), &f);
            Ok(())
        })
    }

    fn handshake(&self, p: PId, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("handshake", || {
            // 1. As a barrier, but only `p` is pending and armed.
            self.run_round(self.pending.begin_one(&self.host, &f, p), &f);
            Ok(())
        })
    }
    fn on_poll(&self, p: PId) -> RResult<(), PluginError> {
        catch_panic("on_poll", || {
            let woke = self
                .pending
                .serve_at_safe_point(&self.host, p, || protocol::acknowledge(&Futex, &self.count));
            if woke == Some(true) {
                self.futex_wakes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    }

    fn counters(&self) -> RVec<Counter> {
        RVec::from(vec![
            Counter::new("barriers", self.pending.barriers()),
            Counter::new("handshakes", self.pending.handshakes()),
            Counter::read("futex waits", &self.futex_waits),
            Counter::read("futex wakes", &self.futex_wakes),
            Counter::read("wait timeouts", &self.wait_timeouts),
            Counter::read("wait interruptions", &self.wait_interruptions),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_repoke_is_one_millisecond() {
        assert_eq!(Config::default().repoke, Duration::from_millis(1));
    }

    #[test]
    fn repoke_outside_its_range_is_refused_naming_the_range() {
        let err = Config::parse("repoke=90s").unwrap_err();
        assert_eq!(err.kind, safepoint_abi::ErrorKind::InvalidConfig);
        assert_eq!(
            err.message.as_str(),
            "repoke=90s: expected an interval from 10µs to 60s"
        );
        assert!(Config::parse("repoke=10us").is_ok());
        assert!(Config::parse("repoke=9us").is_err());
    }

    #[test]
    fn an_unknown_key_is_refused_naming_the_known_one() {
        let err = Config::parse("spin=6").unwrap_err();
        assert!(err.message.contains("`spin`"), "{err}");
        assert!(err.message.contains("repoke=DURATION"), "{err}");
    }
}
