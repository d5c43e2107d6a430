//! A strategy that breaks its contract on purpose, for the host's checks and the loader's
//! error paths. It runs `f` for every P from the requester's thread, without stopping
//! anything, and then, as its config says:
//!
//! - `skip=N`: never runs `f` for P N;
//! - `twice=N`: runs `f` twice for P N;
//! - `fail_new=MESSAGE`: its constructor returns an error with MESSAGE;
//! - `panic_in=new` or `panic_in=for_each_p_internal`: that entry point panics.
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]

use abi_stable::std_types::{RResult, RVec};
use safepoint_abi::{
    Capabilities, Counter, ErrorKind, HostRef, MId, OsThread, PId, PluginError, SafePointFnArc,
    Strategy, catch_panic, parse_config,
};

safepoint_abi::export_strategy! {
    name: "misbehave",
    description: "test plugin that breaks the for_each_p contract on request",
    capabilities: Capabilities::NONE,
    new: Misbehave::new,
}

#[derive(Default)]
struct Misbehave {
    procs: u32,
    skip: Option<u32>,
    twice: Option<u32>,
    panic_in_barrier: bool,
}

impl Misbehave {
    fn new(host: HostRef, config: &str) -> Result<Misbehave, PluginError> {
        let mut strategy = Misbehave {
            procs: host.procs(),
            ..Misbehave::default()
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
                ("fail_new", message) => {
                    return Err(PluginError::new(ErrorKind::Failed, "new", message));
                }
                ("panic_in", "new") => panic!("deliberate panic in new"),
                ("panic_in", "for_each_p_internal") => strategy.panic_in_barrier = true,
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
            for p in (0..self.procs).filter(|p| Some(*p) != self.skip) {
                f.call(PId(p));
                if Some(p) == self.twice {
                    f.call(PId(p));
                }
            }
            Ok(())
        })
    }

    fn on_poll(&self, _p: PId) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn attach_thread(&self, _m: MId, _thread: OsThread) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn detach_thread(&self, _m: MId) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn counters(&self) -> RVec<Counter> {
        RVec::new()
    }

    fn shutdown(&self) -> RResult<(), PluginError> {
        RResult::ROk(())
    }
}
