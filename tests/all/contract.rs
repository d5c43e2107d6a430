//! The host checks the strategy's contract itself: a strategy that skips or repeats a P, or
//! panics, is reported as an error naming the strategy and the P, and the runtime goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use safepoint_abi::{ErrorKind, PId};
use safepoint_host::runtime::{self, Runtime, WaitReason};
use safepoint_host::safepoint::{BarrierError, acquire_world, for_each_p};
use safepoint_host::workloads::work;
use safepoint_tests::{block_on_bounded, misbehave, polling, runtime};

fn one_barrier(config: &str, procs: usize) -> Result<(), BarrierError> {
    let rt = runtime(&misbehave(), config, procs);
    block_on_bounded(&rt, || {
        let world = acquire_world();
        for_each_p(&world, WaitReason::GcMarkTermination, |_| {}).map(drop)
    })
}

#[test]
fn a_strategy_that_skips_a_p_is_reported_naming_it() {
    let err = one_barrier("skip=2", 4).expect_err("a skipped P must be reported");
    assert!(
        matches!(&err, BarrierError::Skipped { strategy, p: PId(2), missing: 1 } if strategy == "misbehave"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "strategy misbehave broke the for_each_p contract: f did not run for P2 (1 P(s) missed in all)"
    );
}

#[test]
fn a_strategy_that_runs_a_p_twice_is_reported_naming_it() {
    let err = one_barrier("twice=1", 3).expect_err("a repeated P must be reported");
    assert!(
        matches!(&err, BarrierError::Repeated { strategy, p: PId(1), times: 2 } if strategy == "misbehave"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("it called f 2 times for P1; f ran the first time only"),
        "{err}"
    );
}

#[test]
fn the_test_plugins_default_config_is_a_correct_strategy() {
    for _ in 0..20 {
        one_barrier("", 4).expect("every P once, each by its owner");
    }
}

/// A goroutine that computes and polls on another P until stopped, so that P serves itself
/// through `on_poll`.
struct Poller {
    stop: Arc<AtomicBool>,
    /// Polls that returned.
    polls: Arc<AtomicU64>,
    /// The P of the last poll.
    p: Arc<AtomicU32>,
}

impl Poller {
    fn spawn(rt: &Runtime) -> Poller {
        let (stop, polls, p): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU32>) =
            (Arc::default(), Arc::default(), Arc::default());
        let (s, n, on) = (Arc::clone(&stop), Arc::clone(&polls), Arc::clone(&p));
        rt.spawn("poller", move || {
            let mut x = 0;
            while !s.load(Ordering::Acquire) {
                x = work(x);
                runtime::poll();
                on.store(
                    runtime::current_p_id().map_or(u32::MAX, |p| p.0),
                    Ordering::Relaxed,
                );
                n.fetch_add(1, Ordering::Release);
            }
            std::hint::black_box(x);
        });
        Poller { stop, polls, p }
    }

    /// In a goroutine: waits until the poller has returned from two more polls on a P other
    /// than the caller's, so that it is running there (not asleep after serving the last
    /// barrier, its P idle, nor queued behind the caller).
    fn await_running(&self) {
        loop {
            let from = self.polls.load(Ordering::Acquire);
            while self.polls.load(Ordering::Acquire) < from + 2 {
                runtime::yield_now();
            }
            let own = runtime::current_p_id().expect("on a P");
            if self.p.load(Ordering::Relaxed) != own.0 {
                return;
            }
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn barrier() -> Result<(), BarrierError> {
    let world = acquire_world();
    for_each_p(&world, WaitReason::GcMarkTermination, |_| {}).map(drop)
}

#[test]
fn a_call_of_f_for_a_p_the_strategy_does_not_own_runs_nothing_and_fails_the_barrier() {
    for _ in 0..20 {
        let rt = runtime(&misbehave(), "unowned=1", 2);
        let runs: Arc<[AtomicU64; 2]> = Arc::default();
        let seen = Arc::clone(&runs);
        let (err, own) = block_on_bounded(&rt, move || {
            let world = acquire_world();
            let result = for_each_p(&world, WaitReason::GcMarkTermination, move |p| {
                seen[p.index()].fetch_add(1, Ordering::Relaxed);
            });
            (result.map(drop), runtime::current_p_id().expect("on a P"))
        });
        let err = err.expect_err("an unowned call must fail the barrier");
        let BarrierError::Unowned { strategy, p, .. } = &err else {
            panic!("expected an ownership breach, got {err:?}");
        };
        assert_eq!(strategy, "misbehave");
        assert_ne!(*p, own, "the requester owns its own P");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "strategy misbehave broke the for_each_p contract: it called f for {p}, which it \
                 did not own ({p} was "
            )),
            "{text}"
        );
        assert!(text.contains("f did not run"), "{text}");
        // The strategy's own, correct calls still ran f once for each P.
        let runs = runs.each_ref().map(|n| n.load(Ordering::Relaxed));
        assert_eq!(runs, [1, 1], "{text}");
    }
}

#[test]
fn releasing_a_p_the_strategy_did_not_stop_fails_the_barrier() {
    let err = one_barrier("release_unstopped=1", 3).expect_err("the release must be reported");
    let BarrierError::ReleasedUnstopped { strategy, p, .. } = &err else {
        panic!("expected a release breach, got {err:?}");
    };
    assert_eq!(strategy, "misbehave");
    let text = err.to_string();
    assert!(
        text.contains(&format!("it released {p}, which it had not stopped")),
        "{text}"
    );
}

#[test]
fn a_call_of_f_after_its_barrier_returned_runs_nothing_and_is_reported() {
    let rt = runtime(&misbehave(), "late=1", 2);
    let late_runs = Arc::new(AtomicU64::new(0));
    let (first, second) = block_on_bounded(&rt, {
        let late_runs = Arc::clone(&late_runs);
        move || {
            let world = acquire_world();
            let returned = Arc::new(AtomicBool::new(false));
            let r = Arc::clone(&returned);
            let first = for_each_p(&world, WaitReason::GcMarkTermination, move |_| {
                if r.load(Ordering::Acquire) {
                    late_runs.fetch_add(1, Ordering::Relaxed);
                }
            });
            returned.store(true, Ordering::Release);
            // The strategy's helper calls the first barrier's f as this one begins.
            let second = for_each_p(&world, WaitReason::GcMarkTermination, |_| {});
            (first.map(drop), second.map(drop))
        }
    });
    first.expect("the first barrier itself was correct");
    let err = second.expect_err("the late call must be reported");
    assert!(
        matches!(&err, BarrierError::LateCall { strategy, p: PId(1), calls: 1 } if strategy == "misbehave"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("after its barrier had returned"),
        "{err}"
    );
    assert_eq!(
        late_runs.load(Ordering::Relaxed),
        0,
        "f ran after for_each_p returned"
    );
}

#[test]
fn a_panic_in_on_poll_fails_the_barrier_naming_the_entry_point_and_the_p() {
    let rt = runtime(&misbehave(), "panic_in=on_poll", 2);
    let poller = Poller::spawn(&rt);
    // Each barrier's result, with the requester's P then.
    let results: Vec<_> = block_on_bounded(&rt, move || {
        (0..20)
            .map(|_| {
                poller.await_running();
                (runtime::current_p_id().expect("on a P"), barrier())
            })
            .collect()
    });
    // The panic follows the P's part of the barrier, so it may land after that barrier's
    // check, and fail the next one instead; a barrier that found the poller's P idle (its
    // M not yet back from the last one) has no on_poll.
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    assert!(
        failed >= results.len() / 2,
        "{failed} of 20 barriers failed"
    );
    for (i, (own, result)) in results.iter().enumerate() {
        let Err(err) = result else {
            continue;
        };
        let BarrierError::EntryPoint {
            strategy, p, error, ..
        } = err
        else {
            panic!("expected an entry-point error, got {err:?}");
        };
        assert_eq!(strategy, "misbehave");
        // The error is this barrier's or the last one's: the requester may have moved to
        // the poller's P of the last one in between.
        if i == 0 || results[i - 1].0 == *own {
            assert_ne!(p, own, "the requester's own P has no on_poll");
        }
        assert_eq!(error.entry_point.as_str(), "on_poll");
        assert_eq!(error.kind, ErrorKind::Panicked);
        assert!(
            error.message.contains("deliberate panic in on_poll"),
            "{error}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "strategy misbehave failed in on_poll for {p}: panicked at "
            )),
            "{err}"
        );
    }
}

#[test]
fn after_a_strategy_fails_in_on_poll_a_swap_gives_a_working_runtime() {
    let rt = runtime(&misbehave(), "panic_in=on_poll", 2);
    let poller = Poller::spawn(&rt);
    // Loaded here: the layout check recurses deeper than a goroutine's stack allows.
    let (rt2, polling) = (Arc::clone(&rt), polling());
    let (failed, after) = block_on_bounded(&rt, move || {
        poller.await_running();
        // The first, or one after it (see above).
        let failed = (0..20)
            .map(|_| {
                poller.await_running();
                barrier()
            })
            .find(Result::is_err)
            .unwrap_or(Ok(()));
        rt2.swap_strategy(&polling, "").expect("swap to polling");
        let after: Result<Vec<()>, _> = (0..20).map(|_| barrier()).collect();
        (failed, after)
    });
    assert!(
        matches!(failed, Err(BarrierError::EntryPoint { .. })),
        "{failed:?}"
    );
    after.expect("every barrier after the swap succeeds");
}
