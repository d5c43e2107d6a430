//! Retiring the signal strategy never lets a signal of ours reach another disposition
//! (issue 11): swaps between every pair of strategies, with signals still on their way at
//! each swap, on signals whose default action ends the process; a thread that blocks the
//! signal across a swap; and an application handler that chains back to ours.
//!
//! Each scenario runs in a child process of its own, this test binary again: signal
//! dispositions are process-wide, and a signal that reaches `SIG_DFL` ends the whole
//! process. The parent then reports how the child ended.

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use safepoint_host::plugin::Plugin;
use safepoint_host::runtime::{self, WaitReason};
use safepoint_host::safepoint::{acquire_world, for_each_p};
use safepoint_host::workloads::{Mutators, Workload, work};
use safepoint_tests::{
    block_on_bounded, counter, polling, runtime, set_blocked, shipped, sole_owner,
};

/// Set in a child process: the scenario it runs, and its argument.
const CHILD: &str = "SAFEPOINT_SIGNAL_RETIREMENT_CHILD";

/// Runs `child` (one of the `#[test]`s below) in a child process with `arg`.
fn run_child(child: &str, arg: &str) -> Output {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(CHILD, arg)
        .output()
        .expect("run this test binary as a child")
}

/// The child's exit, as a person reads it.
fn how_it_ended(out: &Output) -> String {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    match out.status.signal() {
        Some(signal) => format!("killed by signal {signal}; its stderr ends:\n{tail}"),
        None => format!("exited with {}; its stderr ends:\n{tail}", out.status),
    }
}

/// The argument of this child process, or `None` in the parent.
fn child_arg() -> Option<String> {
    std::env::var(CHILD).ok()
}

/// The current handler of `signal`.
fn disposition(signal: libc::c_int) -> libc::sighandler_t {
    // SAFETY: a query: null new action; `old` is plain data the call fills.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0);
    old.sa_sigaction
}

fn signal_number(name: &str) -> libc::c_int {
    match name {
        "SIGURG" => libc::SIGURG,
        "SIGUSR1" => libc::SIGUSR1,
        "SIGUSR2" => libc::SIGUSR2,
        _ => {
            let n: libc::c_int = name
                .strip_prefix("SIGRTMIN+")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a signal of this test: {name}"));
            libc::SIGRTMIN() + n
        }
    }
}

/// The signals rotated through: two standard ones whose default action ends the process,
/// the default (ignored by default), and a real-time one (which queues).
const SIGNALS: [&str; 4] = ["SIGURG", "SIGUSR1", "SIGUSR2", "SIGRTMIN+3"];

/// Ps of each rotation's runtime: the requester's and one that runs a mutator, so that on a
/// machine of 2 CPUs the signalled thread has a CPU and the swaps go fast.
const PROCS: usize = 2;

/// Swaps per signal, half under each workload.
const SWAPS: u64 = 10_000;

/// Issue 11: for each signal, 10,000 swaps, half under `poll` and half under `nopoll`, with
/// one barrier between swaps, so that a swap often retires a signal strategy while signals
/// of its are still on their way (a P that served itself at its poll before its signal
/// arrived). The child exits with status 0, and every disposition it touched is back.
///
/// Under `poll`, the rotation takes every ordered pair of {signal, polling, futex}, and the
/// signal strategy to itself and to one on another signal. Under `nopoll` only a strategy
/// that stops Ps which never poll can serve a barrier, so the rotation goes between signal
/// strategies: on the same signal, and on another.
#[test]
fn swaps_between_every_strategy_pair_never_let_a_signal_of_ours_end_the_process() {
    if child_arg().is_some() {
        return;
    }
    for signal in SIGNALS {
        let start = Instant::now();
        let out = run_child("rotation_child", signal);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{signal}: the child {}\nstdout:\n{stdout}",
            how_it_ended(&out)
        );
        for workload in ["poll", "nopoll"] {
            let label = format!("swaps under {workload}: ");
            let swaps: u64 = stdout
                .lines()
                .find_map(|l| Some(&l[l.find(&label)? + label.len()..]))
                .and_then(|n| n.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("{signal}: no swap count for {workload}:\n{stdout}"));
            assert_eq!(swaps, SWAPS / 2, "{signal}, {workload}");
        }
        eprintln!("{signal}: {SWAPS} swaps in {:.1?}", start.elapsed());
    }
}

/// One strategy of a rotation.
#[derive(Clone)]
struct Spec {
    plugin: Plugin,
    config: String,
}

fn signal_spec(name: &str) -> Spec {
    Spec {
        plugin: shipped("signal"),
        config: format!("signal={name}"),
    }
}

/// The child of the test above: the rotations for the signal named in [`CHILD`].
#[test]
fn rotation_child() {
    let Some(name) = child_arg() else {
        return;
    };
    let next = SIGNALS[(SIGNALS
        .iter()
        .position(|s| *s == name)
        .expect("a known signal")
        + 1)
        % SIGNALS.len()];
    let (s, s2) = (signal_spec(&name), signal_spec(next));
    let p = Spec {
        plugin: polling(),
        config: String::new(),
    };
    let f = Spec {
        plugin: shipped("futex"),
        config: String::new(),
    };
    // Cyclic: S P P F F S F P S S S' (S): every ordered pair of {S, P, F}, and S <-> S'.
    let poll = [&s, &p, &p, &f, &f, &s, &f, &p, &s, &s, &s2].map(Spec::clone);
    // Cyclic: S S S' S' (S).
    let nopoll = [&s, &s, &s2, &s2].map(Spec::clone);
    let dispositions = [signal_number(&name), signal_number(next)].map(disposition);
    for (workload, rotation) in [(Workload::Poll, &poll[..]), (Workload::NoPoll, &nopoll[..])] {
        let start = Instant::now();
        let swaps = rotate(workload, rotation, SWAPS / 2);
        println!("swaps under {workload}: {swaps} in {:.1?}", start.elapsed());
    }
    assert_eq!(
        [signal_number(&name), signal_number(next)].map(disposition),
        dispositions,
        "every strategy has retired and every signal of ours has arrived: the dispositions \
         found at the start are back"
    );
}

/// Runs `swaps` swaps through `rotation` (cyclic, starting with its first strategy) on a
/// runtime of [`PROCS`] Ps running `workload`, one barrier before each swap; returns the swaps done.
fn rotate(workload: Workload, rotation: &[Spec], swaps: u64) -> u64 {
    let rt = runtime(&rotation[0].plugin, &rotation[0].config, PROCS);
    let mutators = Mutators::start(&rt, workload);
    let (rt2, rotation) = (Arc::clone(&rt), rotation.to_vec());
    let done = block_on_bounded(&rt, move || {
        let mut done = 0;
        for i in 1..=swaps {
            let world = acquire_world();
            let report = for_each_p(&world, WaitReason::GcMarkTermination, |_| {})
                .unwrap_or_else(|e| panic!("{workload}: barrier before swap {i}: {e}"));
            assert_eq!(report.ps as usize, PROCS);
            drop(world);
            let next = &rotation[i as usize % rotation.len()];
            rt2.swap_strategy(&next.plugin, &next.config)
                .unwrap_or_else(|e| panic!("{workload}: swap {i}: {e}"));
            done += 1;
        }
        done
    });
    mutators.stop();
    sole_owner(rt).shutdown();
    done
}

/// Issue 11: a thread that blocks the signal keeps a signal of ours pending across a swap to
/// polling. The handler stays installed while it is pending; when the thread unblocks the
/// signal, the handler absorbs it and only then puts `SIG_DFL` back.
#[test]
fn a_signal_pending_on_a_thread_that_blocks_it_is_absorbed_after_the_swap() {
    if child_arg().is_some() {
        return;
    }
    let out = run_child("blocked_child", "SIGUSR1");
    assert!(
        out.status.success(),
        "the child {}\nstdout:\n{}",
        how_it_ended(&out),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Whether `signal` is pending for the calling thread.
fn pending_here(signal: libc::c_int) -> bool {
    // SAFETY: plain data the call fills.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set);
        libc::sigismember(&set, signal) == 1
    }
}

/// Spins until `flag` is set, failing after 30 s.
fn wait_for(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !flag.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// The child of the test above.
#[test]
fn blocked_child() {
    let Some(name) = child_arg() else {
        return;
    };
    let signal = signal_number(&name);
    let default = disposition(signal);
    let rt = runtime(&shipped("signal"), &format!("signal={name}"), 2);
    let ours = disposition(signal);
    assert_ne!(ours, default, "the strategy installs its handler");
    // The goroutine polls while the test thread runs barriers (BARRIERS); once a poll has
    // found the signal pending, the test thread stops (QUIET) and the goroutine checks that
    // the signal is pending on the thread it is on now (it may have moved at a poll): then
    // it stops polling and stays there (HOLDING), else the barriers go on (RETRY).
    const BARRIERS: u8 = 0;
    const QUIET: u8 = 1;
    const HOLDING: u8 = 2;
    const RETRY: u8 = 3;
    let phase = Arc::new(AtomicU8::new(BARRIERS));
    let flags: Arc<[AtomicBool; 2]> = Arc::new(Default::default());
    let (swapped, unblocked) = (0, 1);
    let (g, ph) = (Arc::clone(&flags), Arc::clone(&phase));
    rt.spawn("blocks the signal", move || {
        let mut x = 0;
        loop {
            // The mask is the thread's: block it on whatever M this goroutine is now.
            set_blocked(signal, true);
            x = work(x);
            runtime::poll();
            if ph.load(Ordering::Acquire) == QUIET {
                if pending_here(signal) {
                    ph.store(HOLDING, Ordering::Release);
                    break;
                }
                ph.store(RETRY, Ordering::Release);
            }
        }
        // No more polls: it stays on this thread, which keeps the signal pending.
        while !g[swapped].load(Ordering::Acquire) {
            x = work(x);
        }
        std::hint::black_box(x);
        // Delivered before pthread_sigmask returns.
        set_blocked(signal, false);
        g[unblocked].store(true, Ordering::Release);
    });
    let (rt2, ph) = (Arc::clone(&rt), Arc::clone(&phase));
    block_on_bounded(&rt, move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "no barrier left the signal pending on the blocking goroutine's thread"
            );
            let seen = counter(&rt2, "polls with the signal blocked");
            while counter(&rt2, "polls with the signal blocked") == seen {
                let world = acquire_world();
                for_each_p(&world, WaitReason::GcMarkTermination, |_| {}).expect("barrier");
            }
            ph.store(QUIET, Ordering::Release);
            loop {
                match ph.load(Ordering::Acquire) {
                    HOLDING => return,
                    RETRY => break,
                    _ => runtime::yield_now(),
                }
            }
            ph.store(BARRIERS, Ordering::Release);
        }
    });
    rt.swap_strategy(&polling(), "").expect("swap to polling");
    let after_swap = disposition(signal);
    // Before any assertion: a failing one would wait for ever for the spinning goroutine.
    flags[swapped].store(true, Ordering::Release);
    wait_for(&flags[unblocked], "the goroutine unblocks the signal");
    assert_eq!(
        after_swap, ours,
        "a signal of ours is pending on the blocking thread: the handler stays"
    );
    assert_eq!(
        disposition(signal),
        default,
        "the handler absorbed the last signal of ours and put the default action back"
    );
    sole_owner(rt).shutdown();
}

/// The handler the application found (and chains to), and how often its own ran.
static APP_FOUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static APP_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An application's handler that chains to the handler it replaced, as well-behaved
/// libraries do.
extern "C" fn app_chaining_handler(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    APP_CALLS.fetch_add(1, Ordering::SeqCst);
    let found = APP_FOUND.load(Ordering::SeqCst);
    if found != libc::SIG_DFL && found != libc::SIG_IGN {
        // SAFETY: `found` was installed with SA_SIGINFO (the strategy's handler), so it
        // takes these three arguments.
        let found: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(found) };
        found(signal, info, context);
    }
}

/// Issue 11, defect 4: the application installs a handler that chains to ours while a
/// signal strategy is live; a later strategy saves that handler as the one before its own.
/// A signal that is not ours then goes from our handler to the application's and back: our
/// handler must not forward it a second time (before, it looped until the alternate stack
/// overflowed).
#[test]
fn a_handler_that_chains_back_to_ours_is_called_once() {
    if child_arg().is_some() {
        return;
    }
    let out = run_child("cycle_child", "SIGUSR2");
    assert!(
        out.status.success(),
        "the child {}\nstdout:\n{}",
        how_it_ended(&out),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The child of the test above.
#[test]
fn cycle_child() {
    let Some(name) = child_arg() else {
        return;
    };
    let signal = signal_number(&name);
    let config = format!("signal={name}");
    let first = runtime(&shipped("signal"), &config, 2);
    APP_FOUND.store(disposition(signal), Ordering::SeqCst);
    // SAFETY: sigaction is plain data; the handler is async-signal-safe (atomics and a call
    // to the handler it found) and of the SA_SIGINFO signature.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = app_chaining_handler as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
    // The first strategy leaves the application's handler in place; the second saves it.
    sole_owner(first).shutdown();
    let second = runtime(&shipped("signal"), &config, 2);
    // A signal that is not ours, to this thread: delivered before tgkill returns.
    // SAFETY: plain integer syscalls.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), signal) };
    assert_eq!(rc, 0);
    assert_eq!(
        APP_CALLS.load(Ordering::SeqCst),
        1,
        "the application's handler runs once"
    );
    sole_owner(second).shutdown();
}
