//! A test plugin: a correct strategy by default, and each breach of the contract as an
//! explicit mode, for the host's checks and the loader's error paths.
//!
//! By default it is a plain polling strategy built on [`PendingPs`]: every other P pending
//! and armed, parked Ps served by the requester, running ones serving themselves at their
//! next poll (`on_poll`), and the requester yielding until all have acknowledged. Its config
//! adds breaches:
//!
//! - `skip=N`: never runs `f` for P N;
//! - `twice=N`: runs `f` twice for P N;
//! - `unowned=1`: before the barrier, the requester calls `f` for every other P, none of
//!   which it owns;
//! - `release_unstopped=1`: before the barrier, the requester releases every other P, none of
//!   which it stopped;
//! - `late=N`: a helper thread keeps the barrier's `f` and calls it for P N after the barrier
//!   returned: at the start of the next barrier (or when the strategy shuts down);
//! - `panic_in=on_poll`: `on_poll` panics after it served its P;
//! - `fail_on_poll=N`: the first N calls of `on_poll` that find their P pending return an
//!   error before serving it (counted as `on_poll failures`); later ones serve it;
//! - `log=every`: logs one line through the host on every barrier and every `on_poll`;
//! - `fail_new=MESSAGE`: its constructor returns an error with MESSAGE;
//! - `panic_in=new` or `panic_in=for_each_p_internal`: that entry point panics;
//! - `panic_in=wait`: the barrier starts as the shipped strategies start theirs, then
//!   panics instead of waiting: the unwind must withdraw the pending Ps, so that none runs
//!   `f` late;
//! - `fail_attach=N`: the N-th attach of this instance (from 0) fails, whichever M it is.
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RStr, RVec};
use safepoint_abi::{
    Capabilities, Counter, ErrorKind, HostRef, LogLevel, MId, OsThread, PId, PluginError,
    SafePointFn, SafePointFn_TO, SafePointFnArc, Strategy,
};
use safepoint_kit::PendingPs;
use safepoint_kit::config::parse_config;
use safepoint_kit::panic::catch_panic;

safepoint_kit::export_strategy! {
    name: "misbehave",
    description: "test plugin: a correct polling strategy, or one that breaks the for_each_p \
                  contract on request",
    capabilities: Capabilities::NONE,
    new: Misbehave::new,
}

#[derive(Default)]
struct Modes {
    skip: Option<u32>,
    twice: Option<u32>,
    unowned: bool,
    release_unstopped: bool,
    late: Option<u32>,
    panic_in_barrier: bool,
    panic_while_pending: bool,
    panic_in_on_poll: bool,
    log_every_call: bool,
    fail_attach: Option<u32>,
    fail_on_poll: u32,
}

struct Misbehave {
    host: HostRef,
    modes: Modes,
    pending: PendingPs,
    /// Ps of the barrier in flight that have still to acknowledge.
    remaining: AtomicU32,
    /// `late=N`: the helper thread that holds the last barrier's `f`, and its go signal.
    late_helper: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    /// Attaches so far, for `fail_attach=N`.
    attaches: AtomicU32,
    /// `fail_on_poll=N`: the failures so far, at most N.
    poll_failures: AtomicU32,
}

impl Misbehave {
    fn new(host: HostRef, config: &str) -> Result<Misbehave, PluginError> {
        let mut modes = Modes::default();
        let number = |v: &str| {
            v.parse::<u32>().map_err(|_| {
                PluginError::new(
                    ErrorKind::InvalidConfig,
                    "new",
                    format!("`{v}` is not a P number"),
                )
            })
        };
        for (key, value) in parse_config("new", config)? {
            match (key, value) {
                ("skip", v) => modes.skip = Some(number(v)?),
                ("twice", v) => modes.twice = Some(number(v)?),
                ("late", v) => modes.late = Some(number(v)?),
                ("unowned", "1") => modes.unowned = true,
                ("release_unstopped", "1") => modes.release_unstopped = true,
                ("log", "every") => modes.log_every_call = true,
                ("fail_attach", v) => modes.fail_attach = Some(number(v)?),
                ("fail_on_poll", v) => modes.fail_on_poll = number(v)?,
                ("fail_new", message) => {
                    return Err(PluginError::new(ErrorKind::Failed, "new", message));
                }
                ("panic_in", "new") => panic!("deliberate panic in new"),
                ("panic_in", "for_each_p_internal") => modes.panic_in_barrier = true,
                ("panic_in", "wait") => modes.panic_while_pending = true,
                ("panic_in", "on_poll") => modes.panic_in_on_poll = true,
                (key, _) => {
                    return Err(PluginError::new(
                        ErrorKind::InvalidConfig,
                        "new",
                        format!("unknown config key or value `{key}={value}`"),
                    ));
                }
            }
        }
        Ok(Misbehave {
            pending: PendingPs::new(host.procs()),
            host,
            modes,
            remaining: AtomicU32::new(0),
            late_helper: Mutex::new(None),
            attaches: AtomicU32::new(0),
            poll_failures: AtomicU32::new(0),
        })
    }

    fn acknowledge(&self) {
        self.remaining.fetch_sub(1, Ordering::AcqRel);
    }

    /// `fail_on_poll=N`: an error for each of the first N polls that find `p` pending.
    fn fail_before_serving(&self, p: PId) -> Result<(), PluginError> {
        let limit = self.modes.fail_on_poll;
        if limit == 0 || !self.pending.is_pending(p) {
            return Ok(());
        }
        match self
            .poll_failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            }) {
            Ok(before) => Err(PluginError::new(
                ErrorKind::Failed,
                "on_poll",
                format!(
                    "deliberate failure {} of {limit}, before serving {p}",
                    before + 1
                ),
            )),
            Err(_) => Ok(()),
        }
    }

    /// `late=N`: lets the helper call the `f` it kept, and waits for it.
    fn run_late_helper(&self) {
        let helper = self
            .late_helper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((go, thread)) = helper {
            let _ = go.send(());
            let _ = thread.join();
        }
    }

    fn barrier(&self, f: &SafePointFnArc) {
        self.run_late_helper();
        if self.modes.log_every_call {
            self.host.log(
                LogLevel::Info,
                RStr::from_str("misbehave: a barrier begins"),
            );
        }
        let others = (0..self.host.procs())
            .map(PId)
            .filter(|&p| self.host.current_p().into_option() != Some(p));
        if self.modes.unowned {
            for p in others.clone() {
                f.call(p);
            }
        }
        if self.modes.release_unstopped {
            for p in others {
                self.host.release_p(p);
            }
        }
        let twisted = Twisted::wrap(f, self.modes.skip, self.modes.twice);
        let round = self.pending.begin(&self.host, &twisted);
        self.remaining
            .store(round.others.len() as u32, Ordering::Release);
        self.pending
            .arm_and_serve_parked(&self.host, &round, &twisted, || self.acknowledge());
        assert!(
            !self.modes.panic_while_pending,
            "deliberate panic while {} P(s) are pending",
            round.others.len()
        );
        while self.remaining.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
        round.end();
        if let Some(p) = self.modes.late {
            let (go, wait) = mpsc::channel::<()>();
            let kept = f.clone();
            let thread = std::thread::spawn(move || {
                if wait.recv().is_ok() {
                    kept.call(PId(p));
                }
            });
            *self.late_helper.lock().unwrap_or_else(|e| e.into_inner()) = Some((go, thread));
        }
    }
}

/// The barrier's `f` as `skip` and `twice` bend it.
#[derive(Clone)]
struct Twisted {
    f: SafePointFnArc,
    skip: Option<u32>,
    twice: Option<u32>,
}

impl Twisted {
    fn wrap(f: &SafePointFnArc, skip: Option<u32>, twice: Option<u32>) -> SafePointFnArc {
        if skip.is_none() && twice.is_none() {
            return f.clone();
        }
        SafePointFn_TO::from_ptr(
            RArc::new(Twisted {
                f: f.clone(),
                skip,
                twice,
            }),
            TD_Opaque,
        )
    }
}

impl SafePointFn for Twisted {
    fn call(&self, p: PId) {
        if Some(p.0) == self.skip {
            return;
        }
        self.f.call(p);
        if Some(p.0) == self.twice {
            self.f.call(p);
        }
    }
}

impl Strategy for Misbehave {
    fn for_each_p_internal(&self, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("for_each_p_internal", || {
            assert!(
                !self.modes.panic_in_barrier,
                "deliberate panic in for_each_p_internal"
            );
            self.barrier(&f);
            Ok(())
        })
    }

    fn on_poll(&self, p: PId) -> RResult<(), PluginError> {
        catch_panic("on_poll", || {
            if self.modes.log_every_call {
                self.host
                    .log(LogLevel::Info, RStr::from_str("misbehave: on_poll"));
            }
            self.fail_before_serving(p)?;
            let served = self
                .pending
                .serve_at_safe_point(&self.host, p, || self.acknowledge());
            assert!(
                !(self.modes.panic_in_on_poll && served.is_some()),
                "deliberate panic in on_poll"
            );
            Ok(())
        })
    }

    fn attach_thread(&self, m: MId, _thread: OsThread) -> RResult<(), PluginError> {
        if Some(self.attaches.fetch_add(1, Ordering::Relaxed)) == self.modes.fail_attach {
            return RResult::RErr(PluginError::new(
                ErrorKind::Failed,
                "attach_thread",
                format!("{m} refused on request"),
            ));
        }
        RResult::ROk(())
    }

    fn counters(&self) -> RVec<Counter> {
        let failures = self.poll_failures.load(Ordering::Acquire);
        RVec::from(vec![Counter::new("on_poll failures", failures.into())])
    }

    fn shutdown(&self) -> RResult<(), PluginError> {
        catch_panic("shutdown", || {
            self.run_late_helper();
            Ok(())
        })
    }
}
