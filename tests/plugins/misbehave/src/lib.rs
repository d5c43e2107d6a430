//! A strategy that breaks its contract on purpose, for the host's checks and the loader's
//! error paths. It runs `f` for every P from the requester's thread, without stopping
//! anything, and then, as its config says:
//!
//! - `skip=N`: never runs `f` for P N;
//! - `twice=N`: runs `f` twice for P N;
//! - `fail_new=MESSAGE`: its constructor returns an error with MESSAGE;
//! - `panic_in=new` or `panic_in=for_each_p_internal`: that entry point panics;
//! - `panic_in=wait`: the barrier starts as the shipped strategies start theirs, with
//!   [`PendingPs`] (every other P pending and armed, parked ones served, running ones left to
//!   serve themselves at their next poll through `on_poll`), then panics instead of waiting:
//!   the unwind must withdraw the pending Ps, so that none runs `f` late;
//! - `fail_attach=N`: attaching M N fails.
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]

use abi_stable::std_types::{RResult, RVec};
use safepoint_abi::{
    Capabilities, Counter, ErrorKind, HostRef, MId, OsThread, PId, PendingPs, PluginError,
    SafePointFnArc, Strategy, catch_panic, parse_config,
};

safepoint_abi::export_strategy! {
    name: "misbehave",
    description: "test plugin that breaks the for_each_p contract on request",
    capabilities: Capabilities::NONE,
    new: Misbehave::new,
}

struct Misbehave {
    host: HostRef,
    procs: u32,
    skip: Option<u32>,
    twice: Option<u32>,
    panic_in_barrier: bool,
    panic_while_pending: bool,
    fail_attach: Option<u32>,
    pending: PendingPs,
}

impl Misbehave {
    fn new(host: HostRef, config: &str) -> Result<Misbehave, PluginError> {
        let mut strategy = Misbehave {
            procs: host.procs(),
            pending: PendingPs::new(host.procs()),
            host,
            skip: None,
            twice: None,
            panic_in_barrier: false,
            panic_while_pending: false,
            fail_attach: None,
        };
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
                ("skip", v) => strategy.skip = Some(number(v)?),
                ("twice", v) => strategy.twice = Some(number(v)?),
                ("fail_attach", v) => strategy.fail_attach = Some(number(v)?),
                ("fail_new", message) => {
                    return Err(PluginError::new(ErrorKind::Failed, "new", message));
                }
                ("panic_in", "new") => panic!("deliberate panic in new"),
                ("panic_in", "for_each_p_internal") => strategy.panic_in_barrier = true,
                ("panic_in", "wait") => strategy.panic_while_pending = true,
                (key, _) => {
                    return Err(PluginError::new(
                        ErrorKind::InvalidConfig,
                        "new",
                        format!("unknown config key `{key}`"),
                    ));
                }
            }
        }
        Ok(strategy)
    }
}

impl Strategy for Misbehave {
    fn for_each_p_internal(&self, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("for_each_p_internal", || {
            assert!(
                !self.panic_in_barrier,
                "deliberate panic in for_each_p_internal"
            );
            if self.panic_while_pending {
                let round = self.pending.begin(&self.host, &f);
                self.pending
                    .arm_and_serve_parked(&self.host, &round, &f, || {});
                panic!(
                    "deliberate panic while {} P(s) are pending",
                    round.others.len()
                );
            }
            for p in (0..self.procs).filter(|p| Some(*p) != self.skip) {
                f.call(PId(p));
                if Some(p) == self.twice {
                    f.call(PId(p));
                }
            }
            Ok(())
        })
    }

    fn on_poll(&self, p: PId) -> RResult<(), PluginError> {
        catch_panic("on_poll", || {
            self.pending.serve_at_safe_point(&self.host, p, || ());
            Ok(())
        })
    }

    fn attach_thread(&self, m: MId, _thread: OsThread) -> RResult<(), PluginError> {
        if Some(m.0) == self.fail_attach {
            return RResult::RErr(PluginError::new(
                ErrorKind::Failed,
                "attach_thread",
                format!("{m} refused on request"),
            ));
        }
        RResult::ROk(())
    }

    fn counters(&self) -> RVec<Counter> {
        RVec::new()
    }
}
