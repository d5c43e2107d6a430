//! Every syscall and raw FFI call of the strategy (futexes excepted: they are the kit's):
//! thread-directed signals, signal masks, the loaded objects' code ranges, and (in
//! [`handler`]) the signal handler itself with its installation.
//!
//! The rest of the crate is `#![deny(unsafe_code)]`; each `unsafe` block here says why it is
//! sound. The functions marked *async-signal-safe* make only the syscalls named, touch no
//! allocator, lock or lazily initialised thread-local, and cannot panic.

pub(crate) mod handler;

use std::io;
use std::ops::Range;

/// The calling thread's kernel id. Async-signal-safe: a bare syscall.
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The process id. Async-signal-safe.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Sends `signal` to thread `tid` of process `pid`: `tgkill`, so that a thread id reused
/// by another process can never receive it. Async-signal-safe: a bare syscall.
pub(crate) fn tgkill(pid: i32, tid: i32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: tgkill takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The `siginfo_t` of a signal sent with `rt_tgsigqueueinfo` (the kernel's `SIL_RT`
/// layout on Linux, 128 bytes): what `sigqueue` fills in.
#[repr(C)]
struct QueuedInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _align: libc::c_int,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: u64,
    _rest: [u64; 12],
}

const _: () = assert!(size_of::<QueuedInfo>() == size_of::<libc::siginfo_t>());

/// Sends `signal` to thread `tid` of process `pid` (our own) with `value` as its `si_value`
/// and `SI_QUEUE` as its code: `rt_tgsigqueueinfo`, `sigqueue` for one thread. A thread id
/// reused by another process can never receive it. Async-signal-safe: a bare syscall.
pub(crate) fn queue_signal(pid: i32, tid: i32, signal: libc::c_int, value: u64) -> io::Result<()> {
    let info = QueuedInfo {
        signo: signal,
        errno: 0,
        code: libc::SI_QUEUE,
        _align: 0,
        pid,
        // SAFETY: getuid has no preconditions and cannot fail.
        uid: unsafe { libc::getuid() },
        value,
        _rest: [0; 12],
    };
    // SAFETY: `info` is a fully initialised siginfo of the size the kernel reads, alive for
    // the call; the other arguments are plain integers. The kernel accepts any code for a
    // signal a process sends to itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            signal,
            &raw const info,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// If the signal a handler runs for was sent by [`queue_signal`] from this process, its
/// value. Async-signal-safe.
///
/// # Safety
///
/// `info` is null or the `siginfo_t` the kernel passed to an `SA_SIGINFO` handler.
pub(crate) unsafe fn queued_value(info: *const libc::siginfo_t, pid: i32) -> Option<u64> {
    if info.is_null() {
        return None;
    }
    // SAFETY: the caller passes the kernel's siginfo; for SI_QUEUE the sender's pid and the
    // value are the valid members of its union.
    unsafe {
        ((*info).si_code == libc::SI_QUEUE && (*info).si_pid() == pid)
            .then(|| (*info).si_value().sival_ptr as u64)
    }
}

/// Whether `signal` is pending for thread `tid` of this process (sent to that thread, not
/// yet delivered): its `SigPnd` in `/proc/self/task/TID/status`. `Some(false)` also when
/// the thread no longer exists, or is exiting (a joined thread may still be listed for a
/// moment, and what is pending there is never delivered); `None` when the kernel cannot say
/// (no `/proc`). Not for a signal handler: it allocates.
pub(crate) fn pending_on_thread(tid: i32, signal: libc::c_int) -> Option<bool> {
    let pending = pending_in_status(tid, signal)?;
    Some(pending && !exiting(tid))
}

/// Whether thread `tid` of this process is gone or exiting: `PF_EXITING` (0x4) in the
/// flags of `/proc/self/task/TID/stat`, which `do_exit` sets before the thread's joiner is
/// woken.
fn exiting(tid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return true;
    };
    // The name, in parentheses, may hold spaces: fields are counted after its end. The
    // flags are the ninth field, the seventh after the name.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(6))
        .and_then(|flags| flags.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_EXITING != 0)
}

fn pending_in_status(tid: i32, signal: libc::c_int) -> Option<bool> {
    let status = match std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) {
        Ok(status) => status,
        // A thread that is being reaped as we read answers ESRCH.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            return Some(false);
        }
        Err(_) => return None,
    };
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigPnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())?;
    let bit = u32::try_from(signal - 1).ok().filter(|&b| b < 64)?;
    Some(mask & (1 << bit) != 0)
}

/// A signal set holding only `signal`.
fn only(signal: libc::c_int) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it and sigaddset with a
    // valid signal number cannot fail.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        set
    }
}

/// Changes the calling thread's mask for `signal`: `how` is `SIG_BLOCK` or `SIG_UNBLOCK`.
pub(crate) fn set_signal_blocked(signal: libc::c_int, blocked: bool) {
    let set = only(signal);
    let how = if blocked {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
}

/// Whether the calling thread blocks `signal` and it is pending for the thread: a signal
/// sent to it that it has not received.
pub(crate) fn signal_blocked_and_pending(signal: libc::c_int) -> bool {
    // SAFETY: both sets are plain data that the calls below initialise before we read them;
    // with a null new-set pointer, pthread_sigmask only reports the mask.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        if libc::sigismember(&mask, signal) != 1 {
            return false;
        }
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending);
        libc::sigismember(&pending, signal) == 1
    }
}

/// Writes `message` on stderr and aborts: the fatal path of code that may run in a signal
/// handler, where `eprintln!` (a lock) and `panic!` (allocation, unwinding) are not allowed.
/// Async-signal-safe.
pub(crate) fn fatal(message: &[u8]) -> ! {
    // SAFETY: write(2) reads `message.len()` bytes from a live slice; abort has no
    // preconditions.
    unsafe {
        libc::write(libc::STDERR_FILENO, message.as_ptr().cast(), message.len());
        libc::abort()
    }
}

/// Names of the shared objects whose code must not be stopped asynchronously: they take
/// internal locks (malloc's arenas, stdio, the dynamic loader's lock, the unwinder's
/// caches) that goroutine code outside any runtime lock may hold there, and that the
/// requester or `f` may need meanwhile.
const LOCKING_OBJECTS: [&str; 5] = [
    "libc.so",
    "ld-linux",
    "ld64.so",
    "libgcc_s.so",
    "libpthread.so",
];

/// The address ranges of the executable segments of [`LOCKING_OBJECTS`] in this process.
pub(crate) fn locking_code_ranges() -> Vec<Range<usize>> {
    extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid `info` for the duration of the callback,
        // and `data` is the `&mut Vec` passed below, used by no one else meanwhile.
        let (info, ranges) = unsafe { (&*info, &mut *data.cast::<Vec<Range<usize>>>()) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: a non-null dlpi_name is a NUL-terminated string owned by the loader.
        let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes();
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
        if !LOCKING_OBJECTS
            .iter()
            .any(|prefix| base.starts_with(prefix.as_bytes()))
        {
            return 0;
        }
        let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: the loader's program headers, dlpi_phnum of them.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        for header in headers {
            if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
                let start = info.dlpi_addr as usize + header.p_vaddr as usize;
                ranges.push(start..start + header.p_memsz as usize);
            }
        }
        0
    }
    let mut ranges: Vec<Range<usize>> = Vec::new();
    // SAFETY: `visit` matches the callback type and only touches what its comments say;
    // the pointer to `ranges` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut ranges).cast()) };
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_library_is_found_and_holds_malloc() {
        let ranges = locking_code_ranges();
        let malloc = libc::malloc as *const () as usize;
        assert!(
            ranges.iter().any(|r| r.contains(&malloc)),
            "malloc at {malloc:#x} is in none of {ranges:x?}"
        );
        let here = the_c_library_is_found_and_holds_malloc as *const () as usize;
        assert!(!ranges.iter().any(|r| r.contains(&here)));
    }

    #[test]
    fn a_queued_signal_is_pending_on_its_thread_with_its_value() {
        std::thread::spawn(|| {
            let signal = libc::SIGWINCH;
            set_signal_blocked(signal, true);
            assert_eq!(pending_on_thread(gettid(), signal), Some(false));
            queue_signal(getpid(), gettid(), signal, 0x1234_5678_9abc).expect("queue");
            assert_eq!(pending_on_thread(gettid(), signal), Some(true));
            let set = only(signal);
            // SAFETY: `info` is plain data the call fills; a zero timeout only polls.
            let (got, info) = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                (libc::sigtimedwait(&set, &mut info, &zero), info)
            };
            assert_eq!(got, signal);
            // SAFETY: the siginfo sigtimedwait filled.
            let value = unsafe { queued_value(&info, getpid()) };
            assert_eq!(value, Some(0x1234_5678_9abc));
            assert_eq!(pending_on_thread(gettid(), signal), Some(false));
            set_signal_blocked(signal, false);
        })
        .join()
        .expect("thread");
        assert_eq!(
            pending_on_thread(i32::MAX, libc::SIGWINCH),
            Some(false),
            "no such thread"
        );
    }

    #[test]
    fn blocked_and_pending_sees_a_signal_sent_to_a_blocking_thread() {
        std::thread::spawn(|| {
            let signal = libc::SIGWINCH;
            set_signal_blocked(signal, true);
            assert!(!signal_blocked_and_pending(signal));
            tgkill(getpid(), gettid(), signal).expect("tgkill");
            assert!(signal_blocked_and_pending(signal));
            // Unblocking delivers it: SIGWINCH is ignored by default (and by the test
            // harness), so this thread consumes it and nothing else happens.
            set_signal_blocked(signal, false);
            assert!(!signal_blocked_and_pending(signal));
        })
        .join()
        .expect("thread");
    }
}
