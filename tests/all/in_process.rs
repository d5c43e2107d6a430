//! A strategy compiled into the test program, not loaded from a `.so`: the runtime takes any
//! `StrategyConstructor`, builds with it, runs checked barriers with it, and swaps between it
//! and a plugin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RVec};
use safepoint_abi::{
    Capabilities, Counter, HostRef, PId, PluginError, SafePointFnArc, Strategy, Strategy_TO,
};
use safepoint_host::runtime::{self, ActiveStrategy, Runtime, StrategyConstructor};
use safepoint_host::workloads::work;
use safepoint_kit::PendingPs;
use safepoint_kit::panic::catch_panic;
use safepoint_tests::{Loops, polling, sole_owner};

/// Arms every P, serves the parked ones, and yields until each running P has served itself
/// at its poll: polling's protocol, with a requester that never sleeps.
struct Yielding {
    host: HostRef,
    pending: PendingPs,
    /// Ps of the round in flight still to acknowledge.
    left: AtomicU32,
}

impl Strategy for Yielding {
    fn for_each_p_internal(&self, f: SafePointFnArc) -> RResult<(), PluginError> {
        catch_panic("for_each_p_internal", || {
            let round = self.pending.begin(&self.host, &f);
            let others = u32::try_from(round.others.len()).expect("fewer than 2^32 Ps");
            self.left.store(others, Ordering::SeqCst);
            self.pending
                .arm_and_serve_parked(&self.host, &round, &f, || {
                    self.left.fetch_sub(1, Ordering::AcqRel);
                });
            while self.left.load(Ordering::Acquire) != 0 {
                std::thread::yield_now();
            }
            round.end();
            Ok(())
        })
    }

    fn on_poll(&self, p: PId) -> RResult<(), PluginError> {
        catch_panic("on_poll", || {
            self.pending.serve_at_safe_point(&self.host, p, || {
                self.left.fetch_sub(1, Ordering::AcqRel);
            });
            Ok(())
        })
    }

    fn counters(&self) -> RVec<Counter> {
        RVec::from(vec![Counter::new("barriers", self.pending.barriers())])
    }
}

#[derive(Clone)]
struct InProcess;

impl StrategyConstructor for InProcess {
    type Error = PluginError;

    fn construct(&self, host: HostRef, config: &str) -> Result<ActiveStrategy, PluginError> {
        if !config.is_empty() {
            return Err(PluginError::invalid_config(
                "new",
                "yielding takes no config",
            ));
        }
        let strategy = Yielding {
            pending: PendingPs::new(host.procs()),
            host,
            left: AtomicU32::new(0),
        };
        let object = Strategy_TO::from_value(strategy, TD_Opaque);
        Ok(ActiveStrategy::new("yielding", Capabilities::NONE, object))
    }
}

const PROCS: usize = 3;
const BARRIERS: u64 = 200;

fn polling_loops(rt: &Runtime) -> Loops {
    Loops::start(
        rt,
        PROCS - 1,
        |x| {
            runtime::poll();
            work(x)
        },
        || {},
    )
}

#[test]
fn a_runtime_builds_and_runs_checked_barriers_with_a_strategy_compiled_in() {
    let rt = Arc::new(
        Runtime::builder()
            .procs(PROCS)
            .build(&InProcess, "")
            .expect("an in-process strategy"),
    );
    assert_eq!(rt.strategy_name(), "yielding");
    let loops = polling_loops(&rt);
    let (by_themselves, by_requester) = loops.barriers(&rt, BARRIERS, |_| {});
    loops.stop();
    assert_eq!(
        u64::from(by_themselves + by_requester),
        (PROCS as u64 - 1) * BARRIERS
    );
    let Err(err) = Runtime::builder().procs(1).build(&InProcess, "spin=1") else {
        panic!("a bad config built a runtime");
    };
    assert!(err.to_string().contains("takes no config"), "{err}");
    sole_owner(rt).shutdown();
}

#[test]
fn a_runtime_swaps_between_a_plugin_and_a_strategy_compiled_in() {
    let rt = Arc::new(
        Runtime::builder()
            .procs(PROCS)
            .build(&polling(), "")
            .expect("runtime"),
    );
    let loops = polling_loops(&rt);
    for round in 0..5 {
        rt.swap_strategy(&InProcess, "").expect("swap in");
        assert_eq!(rt.strategy_name(), "yielding", "round {round}");
        loops.barriers(&rt, BARRIERS / 5, |_| {});
        rt.swap_strategy(&polling(), "").expect("swap back");
        assert_eq!(rt.strategy_name(), "polling", "round {round}");
        loops.barriers(&rt, BARRIERS / 5, |_| {});
    }
    loops.stop();
    sole_owner(rt).shutdown();
}
