//! The hardware floor under each kind of strategy: the raw primitive a barrier cannot beat.
//!
//! - **Cache-line round trip** (polling): one thread writes a line, another spinning on it
//!   answers by writing it back.
//! - **Signal round trip** (signal): a signal sent with `tgkill` to a spinning thread until
//!   its handler's acknowledgement is seen.
//! - **Futex wake round trip** (futex): a `FUTEX_WAKE` of a thread asleep in `FUTEX_WAIT`,
//!   until it answers through a second futex.
//!
//! A strategy is compared with the floor of the mechanism its capabilities declare: reaching
//! Ps that never poll takes a signal, waiting without spinning takes a futex, anything else
//! is a cache line.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use safepoint_abi::Capabilities;

use crate::sys::{self, signal};
use crate::workloads::latency_histogram;
use safepoint_kit::futex;

/// A mechanism's raw primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Floor {
    /// A cache line written by one core and answered by another.
    CacheLine,
    /// A signal delivered to a spinning thread and acknowledged by its handler.
    Signal,
    /// A futex wake acknowledged through another futex.
    Futex,
}

impl Floor {
    /// Every floor.
    pub const ALL: [Floor; 3] = [Floor::CacheLine, Floor::Signal, Floor::Futex];

    /// The floor of a strategy with `capabilities`.
    pub fn of(capabilities: Capabilities) -> Floor {
        if capabilities.contains(Capabilities::REACHES_NON_POLLING_PS) {
            Floor::Signal
        } else if capabilities.contains(Capabilities::NO_BUSY_WAIT) {
            Floor::Futex
        } else {
            Floor::CacheLine
        }
    }

    /// A short name for tables and files.
    pub fn name(self) -> &'static str {
        match self {
            Floor::CacheLine => "cache-line round trip",
            Floor::Signal => "signal round trip",
            Floor::Futex => "futex wake round trip",
        }
    }

    /// Round trips per sample: enough that reading the clock does not dominate.
    fn batch(self) -> u64 {
        match self {
            Floor::CacheLine => 1000,
            Floor::Signal | Floor::Futex => 1,
        }
    }

    /// Wall time of `round_trips` round trips, back to back.
    pub fn measure(self, round_trips: u64) -> Duration {
        match self {
            Floor::CacheLine => cache_line_round_trips(round_trips, None),
            Floor::Signal => signal_round_trips(round_trips, None),
            Floor::Futex => futex_round_trips(round_trips, None),
        }
    }

    /// The time of one round trip, `samples` times (each the mean of a small batch for the
    /// cache line), in nanoseconds.
    pub fn histogram(self, samples: u64) -> Histogram<u64> {
        let mut histogram = latency_histogram();
        let batch = self.batch();
        let trips = samples * batch;
        let mut sink = |elapsed: Duration| {
            histogram.saturating_record((elapsed.as_nanos() as u64 / batch).max(1));
        };
        match self {
            Floor::CacheLine => cache_line_round_trips(trips, Some(&mut sink)),
            Floor::Signal => signal_round_trips(trips, Some(&mut sink)),
            Floor::Futex => futex_round_trips(trips, Some(&mut sink)),
        };
        histogram
    }
}

impl fmt::Display for Floor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Called after each full batch of round trips with the time the batch took.
type Sink<'a> = Option<&'a mut dyn FnMut(Duration)>;

/// Runs `round_trip(i)` `n` times, timing batches for `sink`; returns the total time.
fn timed(n: u64, mut sink: Sink<'_>, batch: u64, mut round_trip: impl FnMut(u64)) -> Duration {
    let start = Instant::now();
    let mut batch_start = start;
    for i in 0..n {
        round_trip(i);
        if let Some(sink) = sink.as_deref_mut()
            && (i + 1).is_multiple_of(batch)
        {
            let now = Instant::now();
            sink(now - batch_start);
            batch_start = now;
        }
    }
    start.elapsed()
}

/// Spawns `body` on a new thread and returns once it runs, so that no round trip is timed
/// while the thread is still starting.
fn spawn_running(body: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    let running = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&running);
    let handle = std::thread::spawn(move || {
        flag.store(true, Ordering::Release);
        body();
    });
    while !running.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    handle
}

fn cache_line_round_trips(n: u64, sink: Sink<'_>) -> Duration {
    let line = Arc::new(AtomicU64::new(0));
    let echo = {
        let line = Arc::clone(&line);
        spawn_running(move || {
            for i in 0..n {
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let elapsed = timed(n, sink, Floor::CacheLine.batch(), |i| {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    });
    echo.join().expect("echo thread");
    elapsed
}

fn signal_round_trips(n: u64, sink: Sink<'_>) -> Duration {
    signal::install_counter().expect("install the floor's signal handler");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let spinner = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            tx.send(sys::current_os_thread())
                .expect("report the thread");
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let target = rx.recv().expect("the spinner reports its thread");
    let elapsed = timed(n, sink, Floor::Signal.batch(), |_| {
        let before = signal::received();
        signal::send(target).expect("tgkill the spinner");
        while signal::received() == before {
            std::hint::spin_loop();
        }
    });
    stop.store(true, Ordering::Relaxed);
    spinner.join().expect("spinner thread");
    elapsed
}

fn futex_round_trips(n: u64, sink: Sink<'_>) -> Duration {
    let words = Arc::new((AtomicU32::new(0), AtomicU32::new(0)));
    let echo = {
        let words = Arc::clone(&words);
        spawn_running(move || {
            let (ping, pong) = (&words.0, &words.1);
            for i in 1..=n as u32 {
                loop {
                    let seen = ping.load(Ordering::Acquire);
                    if seen == i {
                        break;
                    }
                    futex::wait(ping, seen, None);
                }
                pong.store(i, Ordering::Release);
                futex::wake(pong, 1);
            }
        })
    };
    let (ping, pong) = (&words.0, &words.1);
    let elapsed = timed(n, sink, Floor::Futex.batch(), |i| {
        let i = i as u32 + 1;
        ping.store(i, Ordering::Release);
        futex::wake(ping, 1);
        loop {
            let seen = pong.load(Ordering::Acquire);
            if seen == i {
                break;
            }
            futex::wait(pong, seen, None);
        }
    });
    echo.join().expect("echo thread");
    elapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_floor_completes_its_round_trips() {
        for floor in Floor::ALL {
            let h = floor.histogram(20);
            assert_eq!(h.len(), 20, "{floor}");
            assert!(h.min() > 0, "{floor}");
        }
    }

    #[test]
    fn capabilities_choose_the_floor() {
        assert_eq!(Floor::of(Capabilities::NONE), Floor::CacheLine);
        assert_eq!(Floor::of(Capabilities::NO_BUSY_WAIT), Floor::Futex);
        assert_eq!(
            Floor::of(Capabilities::REACHES_NON_POLLING_PS.union(Capabilities::NO_BUSY_WAIT)),
            Floor::Signal
        );
    }
}
