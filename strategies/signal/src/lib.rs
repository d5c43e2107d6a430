//! The signal safe-point strategy: arm every P's poll word, and send a signal to the thread
//! of every running P, whose handler stops the P at an asynchronous safe point while the
//! requester runs `f` for it. Reaches Ps whose goroutines never poll.
//!
#![doc = include_str!("../README.md")]
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]
#![deny(unsafe_code)]

mod config;
mod marks;
#[doc(hidden)]
pub mod park;
mod state;
#[allow(unsafe_code)]
mod sys;
mod threads;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use abi_stable::std_types::{RResult, RVec};
use safepoint_abi::{
    Capabilities, Counter, ErrorKind, HostRef, MId, OsThread, PId, PStatus, PluginError,
    SafePointFnArc, Strategy,
};
use safepoint_kit::Round;
use safepoint_kit::panic::catch_panic;

use config::Config;
use marks::Settled;
use state::State;
use sys::handler::{Installation, Registered};

safepoint_kit::export_strategy! {
    name: "signal",
    description: "arms each P's poll word and signals its thread (SIGURG); the handler stops \
                  the P at an asynchronous safe point; late Ps are re-signalled every 100 µs",
    capabilities: Capabilities::REACHES_NON_POLLING_PS.union(Capabilities::SINGLE_P_HANDSHAKE),
    new: SignalStrategy::new,
}

fn failed(entry_point: &str, message: String) -> PluginError {
    PluginError::new(ErrorKind::Failed, entry_point, message)
}

struct SignalStrategy {
    /// What the handler reads, registered so that it finds it.
    state: Registered,
    /// Our handler for the signal, while the strategy is live.
    installation: Mutex<Option<Installation>>,
    /// Each attached M's thread id: attach and detach may run on another thread (a swap).
    tids: Mutex<HashMap<MId, i32>>,
}

impl SignalStrategy {
    fn new(host: HostRef, config: &str) -> Result<SignalStrategy, PluginError> {
        let config = Config::parse(config)?;
        // Orphans of an earlier strategy whose signals have arrived since it retired.
        marks::settle_orphans(config.signal.number);
        let state = State::new(host, config, sys::locking_code_ranges());
        let state = sys::handler::register(Box::new(state)).map_err(|e| failed("new", e))?;
        let installation = sys::handler::install(config.signal).map_err(|e| {
            failed(
                "new",
                format!("cannot install a handler for {}: {e}", config.signal),
            )
        })?;
        Ok(SignalStrategy {
            state,
            installation: Mutex::new(Some(installation)),
            tids: Mutex::new(HashMap::new()),
        })
    }

    /// The requester's side; see the README.
    fn barrier(&self, f: &SafePointFnArc) {
        let st = &*self.state;
        // Dropped after the round, which closes it first (also as a panic unwinds): then
        // no P parks in its handler any more, and every one parked there is let go.
        let _parked = ReleaseParked(st);
        self.run_round(st.pending.begin(&st.host, f), f);
    }

    /// A single-P handshake: a round of one P, so that only that P's poll word is armed and
    /// only its thread signalled.
    fn handshake(&self, p: PId, f: &SafePointFnArc) {
        let st = &*self.state;
        let _parked = ReleaseParked(st);
        self.run_round(st.pending.begin_one(&st.host, f, p), f);
    }

    /// A barrier's round, or a handshake's: arms and signals the round's Ps, serves the
    /// parked ones and those stopped in their handler, waits for the rest.
    fn run_round(&self, round: Round<'_>, f: &SafePointFnArc) {
        let st = &*self.state;
        st.expect_acknowledgements(round.others.len());
        // 1. Arm every other P, so that running Ps head for their polls at once.
        for &p in &round.others {
            st.host.arm_poll(p);
        }
        // 2. The requester's own P.
        if let Some(own) = round.own {
            f.call(own);
        }
        // 3. Parked Ps (idle, in a syscall). A P we cannot stop is running: it reaches its
        //    poll, or our signal stops it.
        for &p in &round.others {
            st.pending
                .serve_if_parked(&st.host, p, f, || st.acknowledge());
        }
        // 4. The grace period: running Ps that poll serve themselves; signal the rest.
        if self.grace_period() {
            st.counters.polled_in_grace.add();
        } else {
            for &p in &round.others {
                if st.host.p_status(p) == PStatus::Running {
                    self.signal(p, false);
                }
            }
        }
        // 5. The running Ps.
        self.wait(&round.others, f);
        round.end();
    }

    /// Sends the signal to the thread of the M that holds `p`, unless `p` has been reached
    /// meanwhile, or one of ours is already in flight to that thread (Go issue 37741: a
    /// thread flooded with signals makes no progress, and standard signals do not queue
    /// anyway), or `p` is stopped in its handler: not late, it waits for the next serving
    /// pass (signalled there, it would get the signal once its handler returns, with nothing
    /// left to do, or as the next barrier's signal). A signal in flight for a few re-signal
    /// intervals may have been discarded by
    /// the kernel (the application ignored the signal for a moment, or took it with
    /// `sigwait` or a `signalfd`): if it is no longer pending on the thread, its mark is
    /// taken and the signal sent again. `resend`: a re-signal of a late P, for the host's
    /// trace.
    fn signal(&self, p: PId, resend: bool) {
        let st = &*self.state;
        if !st.pending.is_pending(p) {
            return;
        }
        let Some(thread) = st.host.p_thread(p).into_option() else {
            return;
        };
        let Some(mark) = st.threads.find(thread.tid).and_then(|r| r.mark()) else {
            return;
        };
        let now = st.host.now_nanos();
        let in_flight = mark.in_flight();
        // After the mark: a handler parks, then takes its mark, so a mark found taken means
        // a park we see here.
        if st.parked.get(p.index()).is_some_and(|w| w.0.is_stopped()) {
            return;
        }
        if let Some(in_flight) = in_flight {
            if now.saturating_sub(in_flight.sent_at) < st.stale_after {
                return;
            }
            match mark.settle(in_flight) {
                Settled::Gone => st.counters.stale_resent.add(),
                // Pending (blocked, or the thread has not run): it arrives when it can.
                // Unknown: without `/proc` the strategy cannot tell a discarded signal.
                Settled::Pending | Settled::Unknown => {
                    mark.touch(now);
                    return;
                }
                // The handler took it meanwhile: it is stopping the P, or has left it to its
                // poll; the next round looks again.
                Settled::Moved => return,
            }
        }
        let Some(value) = mark.start(now) else {
            return;
        };
        match sys::queue_signal(st.pid, thread.tid, st.config.signal.number, value) {
            Ok(()) => {
                st.counters.signals_sent.add();
                st.host.trace_signal(p, resend);
            }
            // The thread has exited: nothing is in flight.
            Err(_) => {
                mark.take(value);
            }
        }
    }

    /// Waits until every P has acknowledged: serves the Ps that stopped in their handler,
    /// arms and signals late Ps again every `resignal`, spins briefly for an event, then
    /// sleeps on the wake-up futex until the next event or the next re-signal.
    fn wait(&self, others: &[PId], f: &SafePointFnArc) {
        let st = &*self.state;
        if st.remaining() == 0 {
            // Every P served itself or was served: no clock read, no re-signal deadline.
            return;
        }
        let interval = st.config.resignal.as_nanos() as u64;
        let mut next_resignal = st.host.now_nanos() + interval;
        loop {
            let seen = st.wakeup.current();
            self.serve_stopped_in_handler(others, f);
            if st.remaining() == 0 {
                return;
            }
            let now = st.host.now_nanos();
            if now >= next_resignal {
                self.resignal(others);
                next_resignal = now + interval;
                continue;
            }
            if !self.spin_for_event(seen) {
                st.counters.requester_sleeps.add();
                st.wakeup
                    .sleep(seen, Duration::from_nanos(next_resignal - now));
            }
        }
    }

    /// Spins until every P has acknowledged, for at most the grace period; returns whether
    /// they all did (then nothing is signalled).
    fn grace_period(&self) -> bool {
        let st = &*self.state;
        let grace = st.grace();
        if st.remaining() == 0 {
            return true;
        }
        if grace.is_zero() {
            return false;
        }
        let start = Instant::now();
        loop {
            for _ in 0..32 {
                if st.remaining() == 0 {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= grace {
                return st.remaining() == 0;
            }
        }
    }

    /// Spins `2^i` times in round `i`, checking for an event after each round.
    fn spin_for_event(&self, seen: u32) -> bool {
        let st = &*self.state;
        for round in 0..st.spin_rounds() {
            for _ in 0..(1u32 << round) {
                std::hint::spin_loop();
            }
            if st.wakeup.moved(seen) {
                return true;
            }
        }
        false
    }

    /// Runs `f` for every P whose M waits in the handler, and lets each go.
    fn serve_stopped_in_handler(&self, others: &[PId], f: &SafePointFnArc) {
        let st = &*self.state;
        for &p in others {
            let Some(word) = st.parked.get(p.index()) else {
                continue;
            };
            if word.0.try_take() {
                assert!(
                    !st.config.inject_panic,
                    "injected fault: the requester panics holding a P stopped in its handler"
                );
                st.pending.serve(&st.host, p, f, || {
                    st.acknowledge();
                    st.counters.async_stops.add();
                });
                word.0.release();
            }
        }
    }

    /// Arms every late P again (the host counts the pokes for its timeout report) and
    /// signals it if it runs ([`SignalStrategy::signal`] skips a P stopped in its handler).
    fn resignal(&self, others: &[PId]) {
        let st = &*self.state;
        st.counters.resignal_rounds.add();
        for &p in others {
            if !st.pending.is_pending(p) {
                continue;
            }
            st.host.arm_poll(p);
            if !st.pending.is_pending(p) {
                // Claimed meanwhile, perhaps disarmed before our arm: take the arm back rather
                // than leave the P polling slowly until the next barrier. Nobody else arms it
                // before we return (see `PendingPs::is_pending`).
                st.host.disarm_poll(p);
                continue;
            }
            if st.host.p_status(p) == PStatus::Running {
                self.signal(p, true);
            }
        }
    }

    /// Retires the strategy (see "Retirement" in the README); idempotent.
    ///
    /// The handler stops seeing the strategy, every thread still attached is detached, the
    /// signals of ours that are no longer pending anywhere are settled, and the strategy's
    /// use of the signal ends. The handler itself stays installed until the last signal of
    /// ours still on its way has arrived: it absorbs it, then puts the previous disposition
    /// back. Nothing waits.
    fn retire(&self) -> Result<(), PluginError> {
        self.state.unregister();
        for mark in self.state.threads.retire_all() {
            mark.detach();
        }
        marks::settle_orphans(self.state.config.signal.number);
        let installation = self
            .installation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(installation) = installation {
            installation.uninstall().map_err(|e| {
                failed(
                    "shutdown",
                    format!(
                        "cannot restore the previous handler of {}: {e}",
                        self.state.config.signal
                    ),
                )
            })?;
        }
        Ok(())
    }
}

impl Strategy for SignalStrategy {
    fn for_each_p_internal(&self, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("for_each_p_internal", || {
            self.barrier(&f);
            Ok(())
        })
    }

    fn handshake(&self, p: PId, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("handshake", || {
            SignalStrategy::handshake(self, p, &f);
            Ok(())
        })
    }

    fn on_poll(&self, p: PId) -> RResult<(), PluginError> {
        catch_panic("on_poll", || {
            let st = &*self.state;
            let last = st
                .pending
                .serve_at_safe_point(&st.host, p, || st.acknowledge());
            if let Some(last) = last {
                if sys::signal_blocked_and_pending(st.config.signal.number) {
                    st.counters.blocked.add();
                }
                st.counters.poll_stops.add();
                // The host gives the CPU away after this returns, if others are late.
                if last {
                    st.wakeup.notify();
                }
            }
            Ok(())
        })
    }

    fn attach_thread(&self, m: MId, thread: OsThread) -> RResult<(), PluginError> {
        catch_panic("attach_thread", || {
            let st = &*self.state;
            if sys::gettid() == thread.tid {
                // On the M's own thread, as it starts: an M inherits the mask of the thread
                // that started it, which may be a goroutine's thread that blocks the
                // signal; start it unblocked, as Go's `minitSignalMask` does. (A swap
                // attaches from another thread; the M's mask is then already ours.) The
                // host gives every M its alternate signal stack.
                sys::set_signal_blocked(st.config.signal.number, false);
            }
            let mark = marks::attach(thread.tid, st.config.signal.number)
                .map_err(|e| failed("attach_thread", format!("{m}: {e}")))?;
            self.tids
                .lock()
                .expect("tid lock poisoned")
                .insert(m, thread.tid);
            // Last: from now on the requester may signal the thread.
            if let Err(e) = st.threads.add(thread.tid, mark) {
                mark.detach();
                return Err(failed("attach_thread", format!("{m}: {e}")));
            }
            Ok(())
        })
    }

    fn detach_thread(&self, m: MId) -> RResult<(), PluginError> {
        catch_panic("detach_thread", || {
            let st = &*self.state;
            let tid = self.tids.lock().expect("tid lock poisoned").remove(&m);
            let Some(tid) = tid else {
                return Err(failed("detach_thread", format!("{m} was not attached")));
            };
            // The thread's mask stays as it is, even on the M's own thread: that may be a
            // swap run by one of its goroutines, after which the M lives on (blocking the
            // signal there left it blocked for good). A signal of ours still on its way is
            // taken by the handler when it arrives, or settled when the strategy retires,
            // which comes after the threads of stopped Ms have exited.
            if let Some(mark) = st.threads.retire(tid) {
                mark.detach();
            }
            Ok(())
        })
    }

    fn counters(&self) -> RVec<Counter> {
        let mut counters = self.state.counters.report(&self.state.pending);
        let tids: Vec<i32> = self
            .tids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .collect();
        let orphans = marks::orphans_of(self.state.config.signal.number, &tids);
        counters.push(Counter::new(
            "orphaned marks of its threads",
            orphans as u64,
        ));
        RVec::from(counters)
    }

    fn shutdown(&self) -> RResult<(), PluginError> {
        catch_panic("shutdown", || self.retire())
    }
}

/// Lets go every P still stopped in its handler once the barrier's round has closed: none,
/// after a barrier that ended; after one abandoned by a panic, those the requester had not
/// served. A handler that parks after the round closed sees it closed and returns by itself.
struct ReleaseParked<'a>(&'a State);

impl Drop for ReleaseParked<'_> {
    fn drop(&mut self) {
        for word in &self.0.parked {
            word.0.release_abandoned();
        }
    }
}

impl Drop for SignalStrategy {
    fn drop(&mut self) {
        // A host that did not call shutdown: still restore the previous handler. Nothing to
        // report an error to.
        let _ = self.retire();
    }
}
