//! The signal strategy chains to the application's handler for the signal, and gives it
//! back when it is shut down or swapped out.
//!
//! A test binary of its own, so a process of its own: it installs an application handler
//! for SIGURG, which is process-wide and would replace the strategy's handler under the
//! feet of the signal tests in `all/` that run in parallel.

use std::sync::atomic::{AtomicU64, Ordering};

use safepoint_host::workloads::work;
use safepoint_tests::{
    Loops, P_COUNTS, block_on_bounded, counter, polling, runtime, shipped, sole_owner,
};

/// SIGURGs the application's handler received.
static APP_SIGNALS: AtomicU64 = AtomicU64::new(0);

extern "C" fn app_handler_siginfo(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    APP_SIGNALS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn app_handler_plain(_signal: libc::c_int) {
    APP_SIGNALS.fetch_add(1, Ordering::SeqCst);
}

fn sigurg_disposition() -> (libc::sighandler_t, libc::c_int) {
    // SAFETY: a query: null new action; `old` is plain data the call fills.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::sigaction(libc::SIGURG, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0);
    (old.sa_sigaction, old.sa_flags & libc::SA_SIGINFO)
}

fn install_app_handler(siginfo: bool) -> libc::sighandler_t {
    // SAFETY: sigaction is plain data; the fields that matter are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = if siginfo {
        action.sa_flags = libc::SA_SIGINFO;
        app_handler_siginfo as *const () as libc::sighandler_t
    } else {
        app_handler_plain as *const () as libc::sighandler_t
    };
    // SAFETY: the handlers above are async-signal-safe (one atomic add) and of the right
    // signature for their flags.
    let rc = unsafe { libc::sigaction(libc::SIGURG, &action, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
    action.sa_sigaction
}

/// Sends SIGURG to the calling thread; it is delivered before `tgkill` returns.
fn sigurg_to_self() {
    // SAFETY: plain integer syscalls.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::gettid(),
            libc::SIGURG,
        )
    };
    assert_eq!(rc, 0);
}

/// Issue 3, test 4, and issue 6, test 3: the application's SIGURG handler, installed before
/// the plugin loads, still gets the SIGURGs that are not the strategy's, and is installed
/// again once the runtime shuts down, or once the runtime swaps to another strategy.
#[test]
fn the_application_handler_gets_foreign_signals_and_is_restored_at_shutdown_and_swap() {
    for procs in P_COUNTS {
        // With and without SA_SIGINFO: forwarding calls each form as installed.
        let app = install_app_handler(procs <= 2);
        let installed = sigurg_disposition();
        assert_eq!(installed.0, app);
        // The plugin is loaded (the first time round) and started after the application
        // handler is in place.
        let rt = runtime(&shipped("signal"), "", procs);
        assert_ne!(
            sigurg_disposition().0,
            app,
            "the strategy installs its own handler"
        );
        let before = APP_SIGNALS.load(Ordering::SeqCst);
        // No barrier pending: one SIGURG to a runtime thread, one to this thread.
        block_on_bounded(&rt, sigurg_to_self);
        sigurg_to_self();
        assert_eq!(APP_SIGNALS.load(Ordering::SeqCst), before + 2);
        assert_eq!(counter(&rt, "signals forwarded"), 1, "the one on an M");
        // The strategy's own signals stay with it.
        let spinners = Loops::start(&rt, procs - 1, work, || {});
        spinners.barriers(&rt, 200, |_| {});
        spinners.stop();
        assert_eq!(APP_SIGNALS.load(Ordering::SeqCst), before + 2);
        assert_eq!(counter(&rt, "signals forwarded"), 1);
        if procs >= 2 {
            assert!(counter(&rt, "signals sent") >= 200);
        }
        sole_owner(rt).shutdown();
        assert_eq!(
            sigurg_disposition(),
            installed,
            "the application handler is back"
        );

        // Issue 6: swapping away from the signal strategy restores the application handler
        // while the runtime goes on.
        let rt = runtime(&shipped("signal"), "", procs);
        assert_ne!(sigurg_disposition().0, app, "installed again");
        let report = rt.swap_strategy(&polling(), "").expect("swap to polling");
        assert_eq!(
            (report.old.as_str(), report.new.as_str()),
            ("signal", "polling")
        );
        assert_eq!(
            sigurg_disposition(),
            installed,
            "the handler is back after the swap"
        );
        let before = APP_SIGNALS.load(Ordering::SeqCst);
        sigurg_to_self();
        assert_eq!(
            APP_SIGNALS.load(Ordering::SeqCst),
            before + 1,
            "and receives SIGURG"
        );
        let pollers = Loops::start(
            &rt,
            procs - 1,
            |x| {
                let x = work(x);
                safepoint_host::runtime::poll();
                x
            },
            || {},
        );
        pollers.barriers(&rt, 50, |_| {});
        pollers.stop();
        sole_owner(rt).shutdown();
    }
}
