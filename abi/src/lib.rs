//! The stable ABI between the `safepoint` host and its strategy plugins.
//!
//! A *strategy* is the mechanism of Go's ragged barrier, `forEachPInternal`: how every P
//! (logical processor) of the runtime is brought to a safe point so that a function `f` runs
//! once for each of them. The host owns everything around it (the goroutine-status transition
//! of Go change 533455, worldsema, the exactly-once check, timeouts); a plugin only supplies
//! the mechanism, through three pieces defined here:
//!
//! - [`StrategyModRef`], the root module each plugin exports: its name, description,
//!   [`Capabilities`], and a constructor [`StrategyMod::new`].
//! - [`Strategy`], the object the constructor returns: [`Strategy::for_each_p_internal`],
//!   the poll slow path [`Strategy::on_poll`], thread attach/detach and shutdown.
//! - [`Host`], the vtable the plugin calls back: P status, poll words, parked-P stopping,
//!   thread ids, time and logging.
//!
//! This crate holds only the versioned types. The plumbing that every strategy needs and
//! that never crosses the boundary (exporting a plugin, `catch_panic`, `PendingPs`, the
//! config grammar, futexes) is in the `safepoint-kit` crate, beside it.
//!
//! # Versioning
//!
//! Every plugin exports the [`AbiVersion`] it was built against under the symbol
//! [`ABI_VERSION_SYMBOL`] ([`export_abi_version!`]). The loader reads that symbol before it
//! runs any code of the plugin, and [`AbiVersion::is_compatible_with`] decides:
//!
//! - **Same major, older or equal minor: loads.** A 2.0 plugin works in a 2.1 host: the host
//!   offers more, and the plugin uses what it knows.
//! - **Same major, newer minor: refused**, with an error naming the file and both versions
//!   and saying to rebuild the plugin. A 2.1 plugin may call a [`Host`] method that a 2.0
//!   host lacks, and abi_stable would abort the process at that call, so the loader refuses
//!   it up front rather than degrade.
//! - **Another major: refused.**
//!
//! The package version of this crate is the ABI version (`2.2.0` for ABI 2.2), so that
//! abi_stable's own checks of the root module's and of every type's package version agree.
//!
//! ## Why abi_stable prefix types, checked from the older side
//!
//! Three things cross the boundary and may grow: the root module [`StrategyMod`] (a prefix
//! type), the host's vtable [`Host`] and the strategy's object [`Strategy`] (both
//! `#[sabi_trait]`s, whose vtables are prefix types). Each is read through accessors that
//! know, at run time, how many fields the side that built it had: a [`Strategy`] method
//! missing from an older plugin's vtable runs its default body, and an older plugin simply
//! never reads the tail of the host's longer [`Host`] vtable. What needs care is the load
//! time check: abi_stable checks the loader's layout as the *interface* against the
//! library's as the *implementation*, and accepts an implementation with more fields past
//! the prefix but not fewer; its model is a library at least as new as its loader. Here the
//! host is the newer side. So the loader checks a plugin of the host's own minor version
//! as abi_stable does, and a plugin of an older minor with the two sides swapped: the
//! plugin's layout as the interface, the host's as the implementation. That proves every
//! type the plugin knows (the `Host` vtable it reads included) a prefix of the host's, which
//! is exactly what makes the shorter and longer vtables safe to use against each other. It
//! keeps abi_stable's whole structural check, so a plugin that differs anywhere else is
//! still refused with abi_stable's report. A version handshake of our own would have to
//! recheck all that by hand; optional accessors alone do not get past the check.
//!
//! The frozen copy of ABI 2.0 under `tests/fixtures/abi-2.0/`, and the strategy built on it
//! (`tests/fixtures/strategy-2.0/`), prove this in every `cargo test`.
//!
//! ## Adding a method
//!
//! In a minor version (2.1 to 2.2, say):
//!
//! 1. Add the method **at the end** of [`Host`] (or of [`Strategy`]), below every existing
//!    one. Never move, remove or change a method, and leave `#[sabi(last_prefix_field)]`
//!    where it is. Say in its doc which version added it (`Since ABI 2.2.`).
//! 2. For [`Strategy`], give it a default body that returns [`ErrorKind::Unsupported`] (an
//!    older plugin's vtable lacks it, and the host then gets the default) and a
//!    [`Capabilities`] bit that says a plugin implements it; the host calls it only when
//!    the bit is set, and otherwise refuses, naming the capability. For [`Host`] no default
//!    is needed: a plugin newer than the host is refused, so every plugin that calls it
//!    runs in a host that has it.
//! 3. Bump [`ABI_VERSION`]'s minor and this crate's package version (`2.2.0`) together.
//! 4. Implement a [`Host`] method in the host (`host/src/runtime/host.rs`) and in the test
//!    hosts that implement [`Host`] (the tests of `kit/src/pending.rs`).
//! 5. For a new root-module field, add it after `new` with `#[sabi(missing_field(option))]`
//!    and read it through its accessor, which is `None` for an older plugin.
//!
//! A change to the prefix (a method removed, reordered or changed) is a new major version:
//! bump the major, move each `#[sabi(last_prefix_field)]` to the last method, and rebuild
//! every plugin.
//!
//! # Errors and panics
//!
//! Errors cross the boundary as values ([`PluginError`]), never as panics: a panic that
//! unwinds out of an `extern "C"` function aborts the process. Plugins wrap every entry point
//! in the kit's `catch_panic`, which turns a panic into [`ErrorKind::Panicked`].

// abi_stable 0.11's `sabi_trait` expands to impls inside a const block.
#![allow(non_local_definitions)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RArc, RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings, sabi_trait};

pub use abi_stable;

/// A version of this ABI. Its layout is frozen: the loader reads it from a plugin before
/// anything else, so it must read the same in every version.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiVersion {
    /// Incremented on every incompatible change; plugins must match it exactly.
    pub major: u16,
    /// Incremented on compatible additions (methods after the prefix, see
    /// [Adding a method](crate#adding-a-method)).
    pub minor: u16,
}

impl AbiVersion {
    /// Whether a plugin built against `self` can be loaded by a host of `host`: the same
    /// major version, and a minor version no newer than the host's (see
    /// [Versioning](crate#versioning)).
    ///
    /// ```
    /// use safepoint_abi::AbiVersion;
    /// let v = |major, minor| AbiVersion { major, minor };
    /// assert!(v(2, 0).is_compatible_with(v(2, 1)));
    /// assert!(v(2, 1).is_compatible_with(v(2, 1)));
    /// assert!(!v(2, 2).is_compatible_with(v(2, 1)));
    /// assert!(!v(1, 1).is_compatible_with(v(2, 1)));
    /// ```
    pub fn is_compatible_with(self, host: AbiVersion) -> bool {
        self.major == host.major && self.minor <= host.minor
    }

    /// Whether `self` is of the host's major version but a newer minor one: a plugin the
    /// host refuses because it may call what the host lacks.
    pub fn is_newer_minor_than(self, host: AbiVersion) -> bool {
        self.major == host.major && self.minor > host.minor
    }
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The ABI version of this crate.
///
/// - 2.0: minor versions; frozen under `tests/fixtures/abi-2.0/`.
/// - 2.1: single-P handshakes ([`Strategy::handshake`], [`Capabilities::SINGLE_P_HANDSHAKE`]),
///   [`Host::abi_version`].
/// - 2.2: [`Host::trace_signal`], signals in the host's barrier trace;
///   [`Host::stopped_in_handler`], so that a requester may run `f` for a P stopped in
///   its signal handler (the host checks who owns a P on every call of `f`).
pub const ABI_VERSION: AbiVersion = AbiVersion { major: 2, minor: 2 };

/// The symbol under which a plugin exports its [`AbiVersion`], with its trailing NUL.
pub const ABI_VERSION_SYMBOL: &[u8] = b"SAFEPOINT_ABI_VERSION\0";

/// Exports [`ABI_VERSION`] under [`ABI_VERSION_SYMBOL`]. Call it once in every plugin crate.
#[macro_export]
macro_rules! export_abi_version {
    () => {
        /// The safepoint ABI version this plugin was built against.
        #[unsafe(no_mangle)]
        pub static SAFEPOINT_ABI_VERSION: $crate::AbiVersion = $crate::ABI_VERSION;
    };
}

/// A P's index, `0..procs`.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PId(pub u32);

impl PId {
    /// The index as a `usize`, for indexing per-P arrays.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

/// An M's (OS thread's) id, unique for the runtime's lifetime.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MId(pub u32);

impl fmt::Display for MId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "M{}", self.0)
    }
}

/// The status of a P, as in Go's `runtime2.go`.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PStatus {
    /// Not running goroutines: in the idle list, being handed to an M, or held by an M that
    /// sleeps until the barrier in flight ends (the host's served-P policy). A requester may
    /// stop it ([`Host::try_stop_parked_p`]) in every case.
    Idle = 0,
    /// Owned by an M that is running goroutines or the scheduler.
    Running = 1,
    /// Its M is inside a blocking section; the P may be taken from it.
    Syscall = 2,
    /// Stopped and owned by a requester, see [`Host::try_stop_parked_p`].
    GcStop = 3,
    /// No longer in use (the runtime is shutting down).
    Dead = 4,
}

impl PStatus {
    /// Go's name for the status, as the goroutine dump and reports print it.
    pub fn name(self) -> &'static str {
        match self {
            PStatus::Idle => "_Pidle",
            PStatus::Running => "_Prunning",
            PStatus::Syscall => "_Psyscall",
            PStatus::GcStop => "_Pgcstop",
            PStatus::Dead => "_Pdead",
        }
    }

    /// Decodes a status word; `None` for a value that is no status.
    pub fn from_u8(v: u8) -> Option<PStatus> {
        Some(match v {
            0 => PStatus::Idle,
            1 => PStatus::Running,
            2 => PStatus::Syscall,
            3 => PStatus::GcStop,
            4 => PStatus::Dead,
            _ => return None,
        })
    }
}

impl fmt::Display for PStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a strategy can do, as a bit set.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// No capability beyond the contract.
    pub const NONE: Capabilities = Capabilities(0);
    /// Reaches Ps whose goroutines never call `poll()` (asynchronous preemption).
    pub const REACHES_NON_POLLING_PS: Capabilities = Capabilities(1 << 0);
    /// Neither the requester nor the Ps busy-wait.
    pub const NO_BUSY_WAIT: Capabilities = Capabilities(1 << 1);
    /// Implements [`Strategy::handshake`]: runs a function for one P at its next safe point
    /// while the other Ps keep running. Since ABI 2.1.
    pub const SINGLE_P_HANDSHAKE: Capabilities = Capabilities(1 << 2);

    const NAMES: [(Capabilities, &'static str); 3] = [
        (
            Capabilities::REACHES_NON_POLLING_PS,
            "reaches-non-polling-ps",
        ),
        (Capabilities::NO_BUSY_WAIT, "no-busy-wait"),
        (Capabilities::SINGLE_P_HANDSHAKE, "single-p-handshake"),
    ];

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two sets.
    pub const fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// The names of the bits set, in a stable order; unknown bits show as `bit-N`.
    pub fn names(self) -> Vec<String> {
        let mut names = Vec::new();
        for bit in 0..32 {
            let cap = Capabilities(1 << bit);
            if !self.contains(cap) {
                continue;
            }
            match Self::NAMES.iter().find(|(c, _)| *c == cap) {
                Some((_, name)) => names.push((*name).to_owned()),
                None => names.push(format!("bit-{bit}")),
            }
        }
        names
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// An OS thread, as the signal strategy needs it to direct a signal.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsThread {
    /// The kernel thread id (`gettid`).
    pub tid: i32,
    /// The `pthread_t`, as an integer.
    pub pthread: u64,
}

/// Severity of a [`Host::log`] line.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Something went wrong.
    Error = 0,
    /// Something looks wrong.
    Warn = 1,
    /// For a user who asked for detail.
    Info = 2,
}

/// What kind of error a plugin returned; the host acts on it, so it is an enum, not text.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The operation failed; the message says why.
    Failed = 0,
    /// Plugin code panicked; the panic was caught at the boundary.
    Panicked = 1,
    /// The configuration string was not understood.
    InvalidConfig = 2,
    /// The operation is not supported by this strategy.
    Unsupported = 3,
}

/// An error returned across the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// What kind of error.
    pub kind: ErrorKind,
    /// The entry point that failed (`"new"`, `"for_each_p_internal"`, ...).
    pub entry_point: RString,
    /// A lowercase message without a trailing period.
    pub message: RString,
}

impl PluginError {
    /// An error of `kind` at `entry_point`.
    pub fn new(kind: ErrorKind, entry_point: &str, message: impl Into<String>) -> PluginError {
        PluginError {
            kind,
            entry_point: entry_point.into(),
            message: message.into().into(),
        }
    }

    /// An [`ErrorKind::InvalidConfig`] error at `entry_point`.
    pub fn invalid_config(entry_point: &str, message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorKind::InvalidConfig, entry_point, message)
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.entry_point, self.message)
    }
}

impl std::error::Error for PluginError {}

/// A named counter a strategy reports for the run summary (signals sent, futex waits, ...).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// A short lowercase name, e.g. `"signals sent"`.
    pub name: RString,
    /// Its value since the strategy was constructed.
    pub value: u64,
}

impl Counter {
    /// A counter named `name` with `value`.
    pub fn new(name: &str, value: u64) -> Counter {
        Counter {
            name: name.into(),
            value,
        }
    }

    /// The counter `name`, with the current value of `value` (relaxed).
    pub fn read(name: &str, value: &AtomicU64) -> Counter {
        Counter {
            name: name.into(),
            value: value.load(Ordering::Relaxed),
        }
    }
}

/// The function a barrier runs for each P: Go's `fn(*p)`.
///
/// The host wraps the user's function: the wrapper counts calls per P (the host's
/// exactly-once check) and catches panics, so calling it from plugin code never unwinds.
///
/// # What `f` may do
///
/// `f(p)` may touch runtime state and `p`'s P-local state, and take the runtime's own locks.
/// It must not take a process-global lock that ordinary goroutine code may hold (the stderr
/// lock of `println!`, an application `Mutex`, a `OnceLock` being initialised, the dynamic
/// loader's lock): while it runs, other Ps may be stopped wherever their goroutine was, at
/// an asynchronous safe point, and one may hold that lock until the barrier ends. So `f`
/// does not print, log through `std::io`, or wait for application locks. (As in Go, where
/// code that runs with the world stopped must not take a lock a goroutine may hold.) A
/// panic of `f` is caught and reported by the host, without the panic hook's output.
#[sabi_trait]
pub trait SafePointFn: Send + Sync + Clone {
    /// Runs the barrier's function for `p`. The caller must own `p`, in one of three ways:
    ///
    /// - it is `p`'s own M, inside the host's safe-point path for `p` ([`Strategy::on_poll`],
    ///   or the requester's barrier for its own P);
    /// - it stopped `p` with [`Host::try_stop_parked_p`], on this thread, and has not
    ///   released it;
    /// - `p`'s M is stopped in a signal handler that said so ([`Host::stopped_in_handler`]).
    ///
    /// The host checks this on every call: any other call does not run the function and
    /// fails the barrier, naming the P, its status and the M that held it. So does a call
    /// after the barrier (or handshake) returned.
    #[sabi(last_prefix_field)]
    fn call(&self, p: PId);
}

/// A shareable [`SafePointFn`], valid for as long as any clone is alive.
pub type SafePointFnArc = SafePointFn_TO<'static, RArc<()>>;

/// The host's side of the boundary: what a strategy may ask of the runtime.
///
/// Every method is safe to call from any thread. The methods marked *async-signal-safe* may
/// also be called from a signal handler.
#[sabi_trait]
pub trait Host: Send + Sync + Clone {
    /// The number of Ps (GOMAXPROCS), fixed for the runtime's lifetime. Async-signal-safe.
    fn procs(&self) -> u32;

    /// The current status of `p`. Async-signal-safe.
    fn p_status(&self, p: PId) -> PStatus;

    /// The P held by the M of the calling thread, if it holds one. Async-signal-safe.
    fn current_p(&self) -> ROption<PId>;

    /// Sets the safe-point bit of `p`'s poll word: `p`'s next `poll()` or scheduler transition
    /// calls [`Strategy::on_poll`]. Release ordering: writes before it are visible to the P
    /// when it sees the bit. Async-signal-safe.
    fn arm_poll(&self, p: PId);

    /// Clears the safe-point bit of `p`'s poll word. Async-signal-safe.
    fn disarm_poll(&self, p: PId);

    /// Stops `p` if it is parked: `Idle` or `Syscall`. On success `p` is `GcStop`, owned by
    /// the caller until [`Host::release_p`]; no M can run it meanwhile, and everything its
    /// last owner wrote is visible to the caller. Returns false if `p` is running, already
    /// stopped or dead.
    fn try_stop_parked_p(&self, p: PId) -> bool;

    /// Gives back a P stopped by [`Host::try_stop_parked_p`]. A P taken from a syscall is
    /// handed to another M if it has work, as Go's `handoffp`.
    fn release_p(&self, p: PId);

    /// The OS thread of the M that holds `p`, if any.
    fn p_thread(&self, p: PId) -> ROption<OsThread>;

    /// Monotonic time in nanoseconds. Async-signal-safe.
    fn now_nanos(&self) -> u64;

    /// Writes a line to the host's log.
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// For a signal handler: whether the code it interrupted on this thread is at an
    /// asynchronous safe point (Go's `isAsyncSafePoint`): goroutine code on an M that holds
    /// a running P, outside any non-preemptible region, holding no runtime lock. If so, the
    /// P may take part in a barrier from the handler; if not, it must be left to its next
    /// `poll()`. Async-signal-safe.
    fn at_async_safe_point(&self) -> bool;

    /// Whether the runtime was oversubscribed when the barrier in flight began (or, outside
    /// a barrier, when the last one began): more of its Ms were runnable than there are CPUs
    /// it may run on. A requester that would spin sleeps at once instead, since a spinning
    /// requester keeps a CPU from the P it waits for. Async-signal-safe.
    fn oversubscribed(&self) -> bool;

    /// For a strategy that has `f(p)` run while `p` is stopped where the host does not see
    /// it (a signal handler): call it on `p`'s own thread once `f(p)` has run, before the
    /// thread goes back to the code it interrupted. Applies the host's served-P policy: it
    /// may return at once, yield the CPU, or wait until the barrier ends so that the late Ps'
    /// threads get the CPU (see the host's `ServedPs`). The host applies the policy itself
    /// after [`Strategy::on_poll`]. Async-signal-safe.
    #[sabi(last_prefix_field)]
    fn give_way(&self, p: PId);

    /// The ABI version of the host, at least the plugin's own (a newer plugin is refused).
    /// Since ABI 2.1.
    fn abi_version(&self) -> AbiVersion;

    /// For the host's barrier trace: the strategy has just sent a signal to the thread of
    /// the M that holds `p`; `resend` if it had already signalled `p` for this barrier (a
    /// re-signal of a late P). Costs one load and a branch while the host does not trace.
    /// Call it from the requester's side, not from a signal handler. Since ABI 2.2.
    fn trace_signal(&self, p: PId, resend: bool);
    /// For a signal handler that stops its thread's P to have a requester run `f` for it:
    /// call it with `stopped: true` on `p`'s own thread before publishing the stop to the
    /// requester, and with `stopped: false` once the requester has let the handler go,
    /// before it returns. Meanwhile the host accepts a call of `f(p)` from another thread
    /// (see [`SafePointFn::call`]); without it, such a call is refused as a breach of
    /// ownership. Returns false, and records nothing, if the calling thread's M does not
    /// hold `p`. Async-signal-safe. Since ABI 2.2.
    fn stopped_in_handler(&self, p: PId, stopped: bool) -> bool;
}

/// The host handle a strategy keeps.
pub type HostRef = Host_TO<'static, RArc<()>>;

/// A safe-point strategy: the mechanism behind Go's `forEachPInternal`.
///
/// Methods may be called from any thread. Every implementation wraps its body in a
/// `catch_panic` (the kit's), so that no panic unwinds across the boundary.
#[sabi_trait]
pub trait Strategy: Send + Sync {
    /// Runs `f` for every P, once, at a safe point of that P.
    ///
    /// # Contract
    ///
    /// 1. `f(p)` runs **exactly once** for every P that is not `Dead` at entry: the caller's
    ///    own P ([`Host::current_p`]); idle Ps and syscall Ps, run by the requester on their
    ///    behalf after winning [`Host::try_stop_parked_p`]; and running Ps at their next safe
    ///    point ([`Strategy::on_poll`]), by themselves or while stopped there.
    /// 2. It returns only when all have run, and it **acts as a global memory barrier**:
    ///    everything a P wrote before its safe point happens-before the return.
    /// 3. The caller holds worldsema and its goroutine is in `Waiting(reason)`; `f` does not
    ///    refer to the caller's stack.
    /// 4. It never touches goroutine status; only the host does.
    ///
    /// The host checks (1) after every call and reports a strategy that skips or repeats a P
    /// as an error naming the strategy and the P.
    fn for_each_p_internal(&self, f: SafePointFnArc) -> RResult<(), PluginError>;

    /// The poll slow path: the M that owns `p` is at a safe point and saw `p`'s safe-point bit
    /// armed. Called on that M, outside any non-preemptible region.
    fn on_poll(&self, p: PId) -> RResult<(), PluginError>;

    /// An M uses this strategy from now on: called on the M's own thread when it starts,
    /// before it runs any goroutine, and on the swapping thread when the strategy is swapped
    /// in. Do not assume the calling thread is `thread`. The runtime has already given the
    /// M an alternate signal stack. By default, nothing to do.
    fn attach_thread(&self, m: MId, thread: OsThread) -> RResult<(), PluginError> {
        let _ = (m, thread);
        RResult::ROk(())
    }

    /// An M stops using this strategy: called on the M's own thread when it stops, and on
    /// the swapping thread when the strategy is swapped out. The swapping thread may be an
    /// M's own, which lives on: being on the M's thread does not mean it stops. By default,
    /// nothing to do.
    fn detach_thread(&self, m: MId) -> RResult<(), PluginError> {
        let _ = m;
        RResult::ROk(())
    }

    /// Named counters for the run summary.
    fn counters(&self) -> RVec<Counter>;

    /// Retires the strategy: uninstall handlers, stop helper threads. No barrier is in
    /// flight and no code of the strategy runs after it returns. By default, nothing to do.
    #[sabi(last_prefix_field)]
    fn shutdown(&self) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    /// A single-P handshake: runs `f(p)` exactly once, at `p`'s next safe point, while the
    /// other Ps keep running (HotSpot's thread-local handshake; Go's `preemptM` behind
    /// `suspendG`), and returns once it has, as a memory barrier with `p`. Only `p` is
    /// disturbed: its poll word alone is armed, its thread alone signalled. A parked `p` is
    /// stopped and served by the requester, as in a barrier. The caller holds worldsema, its
    /// goroutine is in `Waiting(reason)`, and `p` is not the caller's own P.
    ///
    /// Since ABI 2.1. A plugin implements it if and only if it declares
    /// [`Capabilities::SINGLE_P_HANDSHAKE`]; the host checks that `f` ran exactly once and
    /// for `p` only. By default (and for a 2.0 plugin, whose vtable lacks it) it refuses.
    fn handshake(&self, p: PId, f: SafePointFnArc) -> RResult<(), PluginError> {
        let _ = (p, f);
        RResult::RErr(PluginError::new(
            ErrorKind::Unsupported,
            "handshake",
            "this strategy has no single-p-handshake capability",
        ))
    }
}

/// An owned strategy object.
pub type StrategyBox = Strategy_TO<'static, RBox<()>>;

/// The root module every plugin exports with `#[export_root_module]`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = StrategyModRef)))]
#[sabi(missing_field(panic))]
pub struct StrategyMod {
    /// The strategy's short name, as `--strategy` takes it (`"polling"`).
    pub name: extern "C" fn() -> RStr<'static>,
    /// One line saying how it works.
    pub description: extern "C" fn() -> RStr<'static>,
    /// What it can do.
    pub capabilities: extern "C" fn() -> Capabilities,
    /// Builds a strategy for the runtime behind `host`. `config` is the text after the
    /// strategy name in `--strategy NAME:CONFIG`, empty if none.
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(host: HostRef, config: RStr<'_>) -> RResult<StrategyBox, PluginError>,
}

impl RootModule for StrategyModRef {
    declare_root_module_statics! {StrategyModRef}
    const BASE_NAME: &'static str = "safepoint_strategy";
    const NAME: &'static str = "safepoint strategy";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
