//! Swapping the safe-point strategy while goroutines run and barriers complete.
//!
//! `cargo run --release -p safepoint-host --example swap`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use safepoint_host::plugin::{self, SearchPath};
use safepoint_host::runtime::{self, Runtime, WaitGroup, WaitReason};
use safepoint_host::safepoint;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let search = SearchPath::default();
    let strategies: Vec<_> = ["polling"]
        .iter()
        .map(|name| plugin::load(name, &search))
        .collect::<Result<_, _>>()?;
    let rt = Runtime::builder().procs(4).build(&strategies[0], "")?;

    // Mutators that compute and poll.
    let stop = Arc::new(AtomicBool::new(false));
    let done = WaitGroup::new();
    for _ in 0..3 {
        let (stop, done) = (Arc::clone(&stop), done.clone());
        done.add(1);
        rt.spawn("mutator", move || {
            while !stop.load(Ordering::Relaxed) {
                runtime::poll();
            }
            done.done();
        });
    }

    for round in 0..10 {
        // Swap from a plain thread: the runtime takes worldsema, attaches every M to the
        // new strategy, and retires the old one.
        let next = &strategies[round % strategies.len()];
        let report = rt.swap_strategy(next, "")?;
        println!("{report}");
        // The next barrier runs with the new strategy.
        let barrier = rt.block_on(|| {
            let world = safepoint::acquire_world();
            safepoint::for_each_p(&world, WaitReason::GcMarkTermination, |_| {})
        })?;
        println!("  barrier over {} Ps in {:?}", barrier.ps, barrier.duration);
    }
    stop.store(true, Ordering::Relaxed);
    done.wait();
    Ok(())
}
