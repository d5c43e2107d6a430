//! Barrier tracing: what each P and the requester did, when, in per-P ring buffers.
//!
//! Off by default. A runtime built without [`super::Builder::trace`] has no tracer, and
//! each hook costs one load of `Shared::trace` and a branch. With one, every hook writes an
//! event into a fixed-capacity ring: its own P's, or the requester's. A writer claims a slot
//! with one `fetch_add` on the ring's head (the event's sequence number), takes the slot
//! with a compare-and-swap of its sequence word, writes the fields and publishes the
//! sequence number. No lock, no allocation: a hook may run in a signal handler or on a
//! plugin's thread. A full ring overwrites its oldest events; a slot still being written by
//! a writer a whole lap behind is skipped. Both count as dropped ([`Trace::dropped`]).
//!
//! Timestamps are `CLOCK_MONOTONIC` nanoseconds (`sys::monotonic_nanos`). Each event carries
//! the number of the request (barrier or handshake) in flight when it was written, so that
//! the trace analysis above the runtime can group them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use safepoint_abi::{PId, PStatus};

use super::WaitReason;
use super::lock::Mutex;
use super::p::P;
use crate::sys;

/// Events per ring by default: 32 Ki events, 1 MiB per P.
pub const DEFAULT_CAPACITY: usize = 1 << 15;

/// How the barrier reached a P: who ran `f` for it, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReachedBy {
    /// The P's own M, at a `poll()`.
    Poll,
    /// The P's own M, at a scheduler transition (yield, park, blocking, going idle).
    Transition,
    /// The requester, on the P's behalf: the P was idle or in a syscall, and the requester
    /// stopped it (`_Pgcstop`).
    Requester,
    /// The requester, while the P's M was stopped in the strategy's signal handler (the P
    /// stayed `_Prunning`, held by an M that was not running it).
    SignalHandler,
    /// The requester's own P.
    Own,
}

impl ReachedBy {
    const ALL: [ReachedBy; 5] = [
        ReachedBy::Poll,
        ReachedBy::Transition,
        ReachedBy::Requester,
        ReachedBy::SignalHandler,
        ReachedBy::Own,
    ];

    /// A short name, as traces and logs print it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReachedBy::Poll => "poll",
            ReachedBy::Transition => "scheduler transition",
            ReachedBy::Requester => "requester",
            ReachedBy::SignalHandler => "signal handler",
            ReachedBy::Own => "own",
        }
    }

    /// Whether the P's own M ran `f` (the run summary's "by themselves").
    pub fn by_itself(self) -> bool {
        matches!(self, ReachedBy::Poll | ReachedBy::Transition)
    }

    fn from_u8(v: u8) -> ReachedBy {
        ReachedBy::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(ReachedBy::Own)
    }
}

impl std::fmt::Display for ReachedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phase of a GC cycle (the `gc` module, above the runtime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcPhase {
    /// Concurrent mark begins.
    Mark,
    /// `gc_mark_done` begins.
    MarkDone,
    /// `gc_mark_termination` begins.
    MarkTermination,
    /// The cycle ended.
    Off,
}

impl GcPhase {
    const ALL: [GcPhase; 4] = [
        GcPhase::Mark,
        GcPhase::MarkDone,
        GcPhase::MarkTermination,
        GcPhase::Off,
    ];

    /// Go's name for the phase.
    pub fn as_str(self) -> &'static str {
        match self {
            GcPhase::Mark => "mark",
            GcPhase::MarkDone => "mark done",
            GcPhase::MarkTermination => "mark termination",
            GcPhase::Off => "off",
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The requester began a barrier (requester track).
    BarrierBegin {
        /// The requester's wait reason; `Zero` for `for_each_p_unchecked`.
        reason: WaitReason,
        /// Index into [`Trace::strategies`].
        strategy: u16,
    },
    /// The barrier's strategy call returned (requester track).
    BarrierEnd,
    /// The requester began a single-P handshake (requester track).
    HandshakeBegin {
        /// The requester's wait reason.
        reason: WaitReason,
        /// Index into [`Trace::strategies`].
        strategy: u16,
        /// The handshake's P.
        target: PId,
    },
    /// The handshake returned (requester track).
    HandshakeEnd,
    /// A strategy swap began (requester track).
    SwapBegin,
    /// The swap ended (requester track).
    SwapEnd,
    /// A GC phase began (requester track).
    Gc(GcPhase),
    /// The strategy armed the P's poll word (poked it).
    Armed,
    /// The strategy signalled the P's thread; `resend` if it did so again for this request.
    Signal {
        /// Sent again, to a P still late.
        resend: bool,
    },
    /// The P reached its safe point for the request: `f` begins for it.
    Reached(ReachedBy),
    /// `f` returned for the P.
    FnEnd,
}

impl EventKind {
    fn encode(self) -> (u8, u8, u32) {
        match self {
            EventKind::BarrierBegin { reason, strategy } => (1, reason as u8, u32::from(strategy)),
            EventKind::BarrierEnd => (2, 0, 0),
            EventKind::HandshakeBegin {
                reason,
                strategy,
                target,
            } => (3, reason as u8, u32::from(strategy) | target.0 << 16),
            EventKind::HandshakeEnd => (4, 0, 0),
            EventKind::SwapBegin => (5, 0, 0),
            EventKind::SwapEnd => (6, 0, 0),
            EventKind::Gc(phase) => (7, phase as u8, 0),
            EventKind::Armed => (8, 0, 0),
            EventKind::Signal { resend } => (9, u8::from(resend), 0),
            EventKind::Reached(how) => (10, how as u8, 0),
            EventKind::FnEnd => (11, 0, 0),
        }
    }

    fn decode(code: u8, arg: u8, aux: u32) -> Option<EventKind> {
        Some(match code {
            1 => EventKind::BarrierBegin {
                reason: WaitReason::from_u8(arg),
                strategy: aux as u16,
            },
            2 => EventKind::BarrierEnd,
            3 => EventKind::HandshakeBegin {
                reason: WaitReason::from_u8(arg),
                strategy: aux as u16,
                target: PId(aux >> 16),
            },
            4 => EventKind::HandshakeEnd,
            5 => EventKind::SwapBegin,
            6 => EventKind::SwapEnd,
            7 => EventKind::Gc(*GcPhase::ALL.get(usize::from(arg))?),
            8 => EventKind::Armed,
            9 => EventKind::Signal { resend: arg != 0 },
            10 => EventKind::Reached(ReachedBy::from_u8(arg)),
            11 => EventKind::FnEnd,
            _ => return None,
        })
    }

    /// A short name, as traces print it.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::BarrierBegin { .. } => "barrier begin",
            EventKind::BarrierEnd => "barrier end",
            EventKind::HandshakeBegin { .. } => "handshake begin",
            EventKind::HandshakeEnd => "handshake end",
            EventKind::SwapBegin => "swap begin",
            EventKind::SwapEnd => "swap end",
            EventKind::Gc(_) => "gc phase",
            EventKind::Armed => "armed",
            EventKind::Signal { resend: false } => "signal sent",
            EventKind::Signal { resend: true } => "signal re-sent",
            EventKind::Reached(_) => "reached",
            EventKind::FnEnd => "f end",
        }
    }
}

/// One recorded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// `CLOCK_MONOTONIC`, nanoseconds.
    pub time_ns: u64,
    /// The request (barrier or handshake) in flight when it was written; 0 before the
    /// first.
    pub request: u32,
    /// What happened.
    pub kind: EventKind,
}

impl std::fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            EventKind::Reached(how) => write!(f, "reached by {how}"),
            EventKind::Gc(phase) => write!(f, "gc {}", phase.as_str()),
            kind => f.write_str(kind.name()),
        }
    }
}

/// Everything the rings held when read.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// The strategies' names, as [`EventKind::BarrierBegin`] indexes them.
    pub strategies: Vec<String>,
    /// The requester's track: barriers, handshakes, swaps, GC phases; oldest first.
    pub requester: Vec<TraceEvent>,
    /// Each P's track, by index; oldest first.
    pub ps: Vec<Vec<TraceEvent>>,
    /// Events lost: overwritten by newer ones in a full ring, or skipped by a writer that
    /// found its slot still being written.
    pub dropped: u64,
}

impl Trace {
    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.requester.is_empty() && self.ps.iter().all(Vec::is_empty)
    }

    /// The name of strategy `index`, or `?`.
    pub fn strategy(&self, index: u16) -> &str {
        self.strategies
            .get(usize::from(index))
            .map_or("?", String::as_str)
    }
}

/// A slot's sequence word while a writer fills it.
const BUSY: u64 = u64::MAX;

#[derive(Default)]
struct Slot {
    /// The event's sequence number plus one once published; 0 never written; [`BUSY`].
    seq: AtomicU64,
    time: AtomicU64,
    /// kind code | arg << 8 | aux << 32.
    word: AtomicU64,
    request: AtomicU64,
}

/// A multi-producer ring of events, overwriting its oldest.
struct Ring {
    slots: Box<[Slot]>,
    /// The next sequence number.
    head: AtomicU64,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        Ring {
            slots: (0..capacity.max(1)).map(|_| Slot::default()).collect(),
            head: AtomicU64::new(0),
        }
    }

    /// Async-signal-safe: atomics only.
    fn push(&self, time: u64, request: u32, kind: EventKind) {
        let n = self.head.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(n % self.slots.len() as u64) as usize];
        let seen = slot.seq.load(Ordering::Relaxed);
        // Acquire: the field stores below stay after the slot is taken.
        if seen == BUSY
            || slot
                .seq
                .compare_exchange(seen, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (code, arg, aux) = kind.encode();
        slot.time.store(time, Ordering::Relaxed);
        slot.word.store(
            u64::from(code) | u64::from(arg) << 8 | u64::from(aux) << 32,
            Ordering::Relaxed,
        );
        slot.request.store(u64::from(request), Ordering::Relaxed);
        // Release: a reader that sees the number sees the fields.
        slot.seq.store(n + 1, Ordering::Release);
    }

    /// The events still held, oldest first, and how many were lost.
    fn read(&self) -> (Vec<TraceEvent>, u64) {
        let head = self.head.load(Ordering::Acquire);
        let capacity = self.slots.len() as u64;
        let first = head.saturating_sub(capacity);
        let mut events: Vec<(u64, TraceEvent)> = Vec::new();
        for slot in self.slots.iter() {
            let seq = slot.seq.load(Ordering::Acquire);
            if seq == 0 || seq == BUSY || seq - 1 < first {
                continue;
            }
            let (time, word, request) = (
                slot.time.load(Ordering::Relaxed),
                slot.word.load(Ordering::Relaxed),
                slot.request.load(Ordering::Relaxed),
            );
            // The seqlock's read side: fields read before the second load of the number.
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) != seq {
                continue;
            }
            let Some(kind) = EventKind::decode(word as u8, (word >> 8) as u8, (word >> 32) as u32)
            else {
                continue;
            };
            let event = TraceEvent {
                time_ns: time,
                request: request as u32,
                kind,
            };
            events.push((seq - 1, event));
        }
        events.sort_unstable_by_key(|(seq, _)| *seq);
        // Every claimed number not held was overwritten, or skipped by its writer.
        let lost = head - events.len() as u64;
        (events.into_iter().map(|(_, e)| e).collect(), lost)
    }
}

/// A runtime's tracer: one ring per P, one for the requester.
pub(crate) struct Tracer {
    ps: Box<[Ring]>,
    requester: Ring,
    /// The request in flight (or the last one), as events are tagged.
    request: AtomicU32,
    /// The strategies' names; interned by the requester as a request begins.
    strategies: Mutex<Vec<String>>,
}

impl Tracer {
    pub(crate) fn new(procs: usize, capacity: usize) -> Tracer {
        Tracer {
            ps: (0..procs).map(|_| Ring::new(capacity)).collect(),
            requester: Ring::new(capacity),
            request: AtomicU32::new(0),
            strategies: Mutex::new(Vec::new()),
        }
    }

    fn strategy_index(&self, name: &str) -> u16 {
        let mut names = self.strategies.lock();
        let index = match names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                names.push(name.to_owned());
                names.len() - 1
            }
        };
        index as u16
    }

    /// The requester begins a barrier of `strategy`: a new request number.
    pub(crate) fn barrier_begin(&self, reason: WaitReason, strategy: &str) {
        let strategy = self.strategy_index(strategy);
        let request = self.request.fetch_add(1, Ordering::Relaxed) + 1;
        self.requester.push(
            sys::monotonic_nanos(),
            request,
            EventKind::BarrierBegin { reason, strategy },
        );
    }

    /// The requester begins a handshake with `target`: a new request number.
    pub(crate) fn handshake_begin(&self, reason: WaitReason, strategy: &str, target: PId) {
        let strategy = self.strategy_index(strategy);
        let request = self.request.fetch_add(1, Ordering::Relaxed) + 1;
        self.requester.push(
            sys::monotonic_nanos(),
            request,
            EventKind::HandshakeBegin {
                reason,
                strategy,
                target,
            },
        );
    }

    /// An event on the requester's track.
    pub(crate) fn requester(&self, kind: EventKind) {
        self.requester.push(
            sys::monotonic_nanos(),
            self.request.load(Ordering::Relaxed),
            kind,
        );
    }

    /// An event on `p`'s track. Async-signal-safe.
    pub(crate) fn p(&self, p: PId, kind: EventKind) {
        self.p_at(p, sys::monotonic_nanos(), kind);
    }

    /// An event on `p`'s track at `time`. Async-signal-safe.
    pub(crate) fn p_at(&self, p: PId, time: u64, kind: EventKind) {
        if let Some(ring) = self.ps.get(p.index()) {
            ring.push(time, self.request.load(Ordering::Relaxed), kind);
        }
    }

    /// `f` begins for `p` (a [`EventKind::Reached`] event): on `p`'s own M inside
    /// [`reaching`], by `how`; on another thread, stopped (`GcStop`) or in its handler.
    pub(crate) fn reached(&self, p: &P, on_own_m: bool) {
        let how = if on_own_m {
            reach_context().unwrap_or(ReachedBy::Own)
        } else if p.status.load() == PStatus::GcStop {
            ReachedBy::Requester
        } else {
            ReachedBy::SignalHandler
        };
        self.p(p.id, EventKind::Reached(how));
    }

    /// Everything held now.
    pub(crate) fn read(&self) -> Trace {
        let (requester, mut dropped) = self.requester.read();
        let ps = self
            .ps
            .iter()
            .map(|ring| {
                let (events, lost) = ring.read();
                dropped += lost;
                events
            })
            .collect();
        Trace {
            strategies: self.strategies.lock().clone(),
            requester,
            ps,
            dropped,
        }
    }

    /// The last `n` events of `p`'s track, oldest first.
    pub(crate) fn last_events(&self, p: PId, n: usize) -> Vec<TraceEvent> {
        let Some(ring) = self.ps.get(p.index()) else {
            return Vec::new();
        };
        let mut events = ring.read().0;
        events.drain(..events.len().saturating_sub(n));
        events
    }
}

thread_local! {
    /// Where this M is serving its own P from (see [`reaching`]); `u8::MAX` for nowhere.
    static REACH_CONTEXT: Cell<u8> = const { Cell::new(u8::MAX) };
}

#[inline(never)]
fn reach_context() -> Option<ReachedBy> {
    match REACH_CONTEXT.with(Cell::get) {
        u8::MAX => None,
        v => Some(ReachedBy::from_u8(v)),
    }
}

#[inline(never)]
fn replace_reach_context(v: u8) -> u8 {
    REACH_CONTEXT.with(|c| c.replace(v))
}

/// Runs `serve`, the M serving its own P at `how`, so that a `Reached` event written inside
/// names it.
pub(crate) fn reaching<R>(how: ReachedBy, serve: impl FnOnce() -> R) -> R {
    let outer = replace_reach_context(how as u8);
    let result = serve();
    replace_reach_context(outer);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_the_newest_events_in_order_and_counts_the_rest() {
        let ring = Ring::new(4);
        for i in 0..10u64 {
            ring.push(i, i as u32, EventKind::Armed);
        }
        let (events, lost) = ring.read();
        let times: Vec<u64> = events.iter().map(|e| e.time_ns).collect();
        assert_eq!(times, [6, 7, 8, 9]);
        assert_eq!(lost, 6);
    }

    #[test]
    fn every_event_kind_survives_its_encoding() {
        let kinds = [
            EventKind::BarrierBegin {
                reason: WaitReason::FlushProcCaches,
                strategy: 3,
            },
            EventKind::BarrierEnd,
            EventKind::HandshakeBegin {
                reason: WaitReason::GcWorkerActive,
                strategy: 2,
                target: PId(7),
            },
            EventKind::HandshakeEnd,
            EventKind::SwapBegin,
            EventKind::SwapEnd,
            EventKind::Gc(GcPhase::MarkTermination),
            EventKind::Armed,
            EventKind::Signal { resend: true },
            EventKind::Signal { resend: false },
            EventKind::Reached(ReachedBy::SignalHandler),
            EventKind::Reached(ReachedBy::Poll),
            EventKind::FnEnd,
        ];
        for kind in kinds {
            let (code, arg, aux) = kind.encode();
            assert_eq!(EventKind::decode(code, arg, aux), Some(kind));
        }
    }

    #[test]
    fn concurrent_writers_into_a_ring_with_room_lose_nothing() {
        let ring = std::sync::Arc::new(Ring::new(4096));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let ring = std::sync::Arc::clone(&ring);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        ring.push(t * 1000 + i, 0, EventKind::FnEnd);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
        let (events, lost) = ring.read();
        assert_eq!(lost, 0);
        let mut times: Vec<u64> = events.iter().map(|e| e.time_ns).collect();
        times.sort_unstable();
        assert_eq!(times, (0..4000).collect::<Vec<u64>>());
    }
}
