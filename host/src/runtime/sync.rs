//! Goroutine synchronisation: a semaphore, a WaitGroup and a bounded channel.
//!
//! Each blocks by parking the goroutine (Go's `gopark`), never its M: the waiter enqueues
//! itself under the primitive's lock and parks, and the M releases that lock only once the
//! goroutine is `Waiting`, so a waker that finds it in the queue can always make it runnable.

use std::collections::VecDeque;
use std::sync::Arc;

use super::lock::{ArcMutex, Condvar};

use super::current::{current_m, park};
use super::status::WaitReason;
use super::{G, Shared, ready};

/// A parked goroutine and the runtime to make it runnable on.
pub(crate) struct Waiter {
    g: Arc<G>,
    shared: Arc<Shared>,
}

impl Waiter {
    /// The calling goroutine, about to park.
    pub(crate) fn current(what: &str) -> Waiter {
        let m = current_m().unwrap_or_else(|| panic!("{what}: not called on a goroutine"));
        let g = m
            .curg()
            .unwrap_or_else(|| panic!("{what}: not called on a goroutine"));
        Waiter {
            g,
            shared: Arc::clone(&m.shared),
        }
    }

    pub(crate) fn wake(self) {
        ready(&self.shared, self.g);
    }
}

/// A counting semaphore for goroutines (Go's `semacquire`/`semrelease`). Release hands the
/// permit directly to the longest waiter, so waiters are served in order.
#[derive(Clone)]
pub struct Sema {
    state: ArcMutex<SemaState>,
}

struct SemaState {
    permits: usize,
    waiters: VecDeque<Waiter>,
}

impl Sema {
    /// A semaphore with `permits` permits.
    pub fn new(permits: usize) -> Sema {
        Sema {
            state: ArcMutex::new(SemaState {
                permits,
                waiters: VecDeque::new(),
            }),
        }
    }

    /// Takes a permit, parking the goroutine for `reason` until one is free.
    pub fn acquire(&self, reason: WaitReason) {
        let mut state = self.state.lock();
        if state.permits > 0 {
            state.permits -= 1;
            return;
        }
        state.waiters.push_back(Waiter::current("Sema::acquire"));
        park(reason, move || drop(state));
    }

    /// Holds the semaphore's internal lock, as runtime code does for a moment.
    #[cfg(test)]
    pub(crate) fn state_for_test(&self) -> impl Sized + '_ {
        self.state.lock_here()
    }

    /// Returns a permit.
    pub fn release(&self) {
        let mut state = self.state.lock();
        match state.waiters.pop_front() {
            Some(waiter) => {
                drop(state);
                waiter.wake();
            }
            None => state.permits += 1,
        }
    }
}

/// Go's `sync.WaitGroup`. `wait` parks a goroutine, or blocks an OS thread outside one.
#[derive(Clone, Default)]
pub struct WaitGroup {
    state: ArcMutex<WaitGroupState>,
    threads: Arc<Condvar>,
}

#[derive(Default)]
struct WaitGroupState {
    count: usize,
    waiters: Vec<Waiter>,
}

impl WaitGroup {
    /// A WaitGroup with a count of zero.
    pub fn new() -> WaitGroup {
        WaitGroup::default()
    }

    /// Adds `n` to the count.
    pub fn add(&self, n: usize) {
        self.state.lock().count += n;
    }

    /// Subtracts one from the count, waking every waiter when it reaches zero.
    ///
    /// # Panics
    ///
    /// If the count is already zero, as Go's "sync: negative WaitGroup counter".
    pub fn done(&self) {
        let mut state = self.state.lock();
        state.count = state
            .count
            .checked_sub(1)
            .expect("sync: negative WaitGroup counter");
        if state.count == 0 {
            let waiters = std::mem::take(&mut state.waiters);
            drop(state);
            self.threads.notify_all();
            for w in waiters {
                w.wake();
            }
        }
    }

    /// Waits until the count is zero.
    pub fn wait(&self) {
        if !super::in_goroutine() {
            let mut state = self.state.lock_here();
            while state.count > 0 {
                self.threads.wait(&mut state);
            }
            return;
        }
        let mut state = self.state.lock();
        if state.count == 0 {
            return;
        }
        state.waiters.push(Waiter::current("WaitGroup::wait"));
        park(WaitReason::SyncWaitGroupWait, move || drop(state));
    }
}

/// A bounded multi-producer, multi-consumer channel between goroutines.
pub struct Chan<T> {
    state: ArcMutex<ChanState<T>>,
}

impl<T> Clone for Chan<T> {
    fn clone(&self) -> Self {
        Chan {
            state: self.state.clone(),
        }
    }
}

struct ChanState<T> {
    buf: VecDeque<T>,
    cap: usize,
    closed: bool,
    recvq: VecDeque<Waiter>,
    sendq: VecDeque<Waiter>,
}

impl<T: Send + 'static> Chan<T> {
    /// A channel that buffers up to `cap` values.
    ///
    /// # Panics
    ///
    /// If `cap` is zero: unbuffered channels are not supported.
    pub fn bounded(cap: usize) -> Chan<T> {
        assert!(cap > 0, "Chan::bounded: capacity must be at least 1");
        Chan {
            state: ArcMutex::new(ChanState {
                buf: VecDeque::with_capacity(cap),
                cap,
                closed: false,
                recvq: VecDeque::new(),
                sendq: VecDeque::new(),
            }),
        }
    }

    /// Sends `value`, parking while the buffer is full. Gives the value back if the channel
    /// is closed.
    pub fn send(&self, value: T) -> Result<(), T> {
        loop {
            let mut state = self.state.lock();
            if state.closed {
                return Err(value);
            }
            if state.buf.len() < state.cap {
                state.buf.push_back(value);
                let receiver = state.recvq.pop_front();
                drop(state);
                if let Some(r) = receiver {
                    r.wake();
                }
                return Ok(());
            }
            state.sendq.push_back(Waiter::current("Chan::send"));
            park(WaitReason::ChanSend, move || drop(state));
        }
    }

    /// Receives a value, parking while the buffer is empty. `None` once the channel is
    /// closed and drained.
    pub fn recv(&self) -> Option<T> {
        loop {
            let mut state = self.state.lock();
            if let Some(value) = state.buf.pop_front() {
                let sender = state.sendq.pop_front();
                drop(state);
                if let Some(s) = sender {
                    s.wake();
                }
                return Some(value);
            }
            if state.closed {
                return None;
            }
            state.recvq.push_back(Waiter::current("Chan::recv"));
            park(WaitReason::ChanReceive, move || drop(state));
        }
    }

    /// Closes the channel, waking every waiter.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        let mut waiters: Vec<_> = state.recvq.drain(..).collect();
        waiters.extend(state.sendq.drain(..));
        drop(state);
        for w in waiters {
            w.wake();
        }
    }
}
