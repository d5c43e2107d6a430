//! The barrier's fast path (issue 12), each step next to what it guards:
//!
//! - `host/1P/<strategy>`: a whole `for_each_p` with one P, the host's overhead alone (the
//!   tally, live-P list and in-flight record are reused, not allocated; two clock reads).
//! - `host/ownership-check`: the check that the caller of `f(p)` owns `p` (issue 14), once,
//!   as a requester that stopped a parked P makes it: target under 5 ns.
//! - `polling/2P/poll`: a served P's path from its bit to its acknowledgement (no lock to find
//!   `f`, no reference count, per-P tally slots on their own lines, one shared write), next
//!   to the cache-line floor.
//! - `signal/2P/poll/grace=...`: the grace period, which lets Ps that poll serve themselves
//!   before any signal; `grace=0ns` is the old behaviour, signalling every running P at once.
//! - `signal/2P/nopoll/grace=...`: what the grace period costs a P that never polls, next to
//!   the signal floor.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use criterion::Criterion;
use safepoint_benches::{Rig, bench_floors, shipped_strategies};
use safepoint_host::safepoint::time_ownership_check;
use safepoint_host::workloads::Workload;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("fast_path");
    bench_floors(&mut group);
    let plugins = shipped_strategies();
    for plugin in &plugins {
        let rig = Rig::start(plugin, "", 1, Workload::Poll);
        group.bench_function(format!("host/1P/{}", plugin.name()), |b| {
            b.iter_custom(|iters| rig.barriers(iters))
        });
    }
    if let Some(polling) = plugins.iter().find(|p| p.name() == "polling") {
        // Half of the Ps idle: one of them is stopped for the check.
        let rig = Rig::start(polling, "", 4, Workload::Idle);
        group.bench_function("host/ownership-check", |b| {
            b.iter_custom(|iters| {
                time_ownership_check(rig.runtime(), iters).expect("an idle P to stop")
            })
        });
    }
    for plugin in &plugins {
        match plugin.name() {
            "polling" => {
                let rig = Rig::start(plugin, "", 2, Workload::Poll);
                group.bench_function("polling/2P/poll", |b| {
                    b.iter_custom(|iters| rig.barriers(iters))
                });
            }
            "signal" => {
                for workload in [Workload::Poll, Workload::NoPoll] {
                    for grace in ["0ns", "1us"] {
                        let rig = Rig::start(plugin, &format!("grace={grace}"), 2, workload);
                        group.bench_function(format!("signal/2P/{workload}/grace={grace}"), |b| {
                            b.iter_custom(|iters| rig.barriers(iters))
                        });
                    }
                }
            }
            _ => {}
        }
    }
    group.finish();
}

safepoint_benches::bench_main!(bench);
