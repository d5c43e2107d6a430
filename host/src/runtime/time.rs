//! Timers for `sleep`: a heap of deadlines served by one timer thread per runtime.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lock::{ArcMutex, Condvar};

use super::current::park;
use super::m::M;
use super::status::WaitReason;
use super::sync::Waiter;
use super::{Shared, yield_now};

#[derive(Default)]
pub(crate) struct Timers {
    state: ArcMutex<TimerState>,
    changed: Condvar,
}

#[derive(Default)]
struct TimerState {
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    sleepers: HashMap<u64, Waiter>,
    next_id: u64,
    stop: bool,
}

/// Parks the goroutine running on `m` until `duration` has passed.
pub(crate) fn sleep(m: Arc<M>, duration: Duration) {
    if duration.is_zero() {
        drop(m);
        yield_now();
        return;
    }
    let timers = &m.shared.timers;
    let mut state = timers.state.lock();
    let id = state.next_id;
    state.next_id += 1;
    let deadline = Instant::now() + duration;
    let earliest = state
        .deadlines
        .peek()
        .is_none_or(|Reverse((d, _))| deadline < *d);
    state.deadlines.push(Reverse((deadline, id)));
    state.sleepers.insert(id, Waiter::current("sleep"));
    if earliest {
        timers.changed.notify_one();
    }
    drop(m);
    park(WaitReason::Sleep, move || drop(state));
}

pub(crate) fn start_timer_thread(shared: &Arc<Shared>) {
    let for_thread = Arc::clone(shared);
    let handle = std::thread::Builder::new()
        .name("safepoint-timers".into())
        .spawn(move || run_timers(&for_thread))
        .expect("cannot start the timer thread");
    shared.threads.lock().push(handle);
}

pub(crate) fn stop_timer_thread(shared: &Shared) {
    shared.timers.state.lock().stop = true;
    shared.timers.changed.notify_all();
}

fn run_timers(shared: &Shared) {
    let timers = &shared.timers;
    let mut state = timers.state.lock_here();
    loop {
        if state.stop {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse((deadline, id))) = state.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            state.deadlines.pop();
            due.extend(state.sleepers.remove(&id));
        }
        if !due.is_empty() {
            drop(state);
            due.into_iter().for_each(Waiter::wake);
            state = timers.state.lock_here();
            continue;
        }
        match state.deadlines.peek().copied() {
            Some(Reverse((deadline, _))) => {
                timers.changed.wait_until(&mut state, deadline);
            }
            None => timers.changed.wait(&mut state),
        }
    }
}
