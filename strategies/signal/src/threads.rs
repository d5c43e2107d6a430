//! One record per M's thread, found by kernel thread id from the requester and from the
//! signal handler: whether a signal of ours is in flight to it.
//!
//! The handler cannot use a thread-local of this library (a `dlopen`ed library's TLS may be
//! allocated on first use, with `malloc`), so it looks itself up by `gettid`. The table is
//! append-only, in chunks that are allocated outside any handler and never move, so a
//! lookup is a few atomic loads and cannot fail halfway. Records are never reused: a
//! detached M's record is retired, so a late signal can never be mistaken for a request to
//! another thread that got the same slot.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

/// Records per chunk.
const CHUNK: usize = 64;
/// Chunks: at most `CHUNK * CHUNKS` Ms over a runtime's lifetime.
const CHUNKS: usize = 64;

/// No thread (yet, or any more).
const NO_THREAD: i32 = 0;

/// One M's thread.
#[derive(Debug, Default)]
pub(crate) struct ThreadRecord {
    tid: AtomicI32,
    /// A signal of ours has been sent to the thread and its handler has not started: Go's
    /// `m.signalPending` (Go issue 37741). The requester sets it before `tgkill` and sends
    /// nothing more while it is set; the handler clears it as it starts. A thread that
    /// blocks the signal keeps it set, so it is never sent a second one.
    signal_in_flight: AtomicBool,
}

impl ThreadRecord {
    /// The thread's kernel id.
    pub(crate) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Acquire)
    }

    /// Requester: marks a signal in flight, before sending it; false if one already is.
    pub(crate) fn start_signal(&self) -> bool {
        self.signal_in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Requester: the signal marked by [`ThreadRecord::start_signal`] could not be sent.
    pub(crate) fn signal_not_sent(&self) {
        self.signal_in_flight.store(false, Ordering::Release);
    }

    /// Handler: takes the mark; true if a signal of ours was in flight, so that this one is
    /// (or includes) ours. Async-signal-safe.
    pub(crate) fn take_signal(&self) -> bool {
        self.signal_in_flight.swap(false, Ordering::AcqRel)
    }
}

/// The table, shared by the requester, `attach_thread`/`detach_thread` and the handler.
#[derive(Debug)]
pub(crate) struct ThreadTable {
    chunks: Box<[OnceLock<Box<[ThreadRecord]>>]>,
    len: AtomicUsize,
}

impl Default for ThreadTable {
    fn default() -> Self {
        ThreadTable {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
        }
    }
}

impl ThreadTable {
    /// Adds a record for thread `tid`. Not for a signal handler: it may allocate.
    pub(crate) fn add(&self, tid: i32) -> Result<&ThreadRecord, String> {
        let index = self.len.fetch_add(1, Ordering::AcqRel);
        let Some(chunk) = self.chunks.get(index / CHUNK) else {
            return Err(format!(
                "more than {} Ms attached over the runtime's lifetime",
                CHUNK * CHUNKS
            ));
        };
        let chunk = chunk.get_or_init(|| (0..CHUNK).map(|_| ThreadRecord::default()).collect());
        let record = &chunk[index % CHUNK];
        record.tid.store(tid, Ordering::Release);
        Ok(record)
    }

    /// The live record of thread `tid`. Async-signal-safe: atomic loads only.
    pub(crate) fn find(&self, tid: i32) -> Option<&ThreadRecord> {
        let len = self.len.load(Ordering::Acquire).min(CHUNK * CHUNKS);
        (0..len).find_map(|index| {
            let chunk = self.chunks.get(index / CHUNK)?.get()?;
            let record = chunk.get(index % CHUNK)?;
            (record.tid() == tid).then_some(record)
        })
    }

    /// Retires the record of thread `tid`: lookups no longer find it.
    /// Whether a signal of ours is on its way to a thread still listed: one sent that its
    /// handler has not taken yet.
    pub(crate) fn signal_in_flight(&self) -> bool {
        let len = self.len.load(Ordering::Acquire).min(CHUNK * CHUNKS);
        (0..len).any(|index| {
            self.chunks
                .get(index / CHUNK)
                .and_then(|chunk| chunk.get())
                .and_then(|chunk| chunk.get(index % CHUNK))
                .is_some_and(|r| r.tid() != NO_THREAD && r.signal_in_flight.load(Ordering::Acquire))
        })
    }

    pub(crate) fn retire(&self, tid: i32) -> bool {
        match self.find(tid) {
            Some(record) => {
                record.tid.store(NO_THREAD, Ordering::Release);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_by_tid_until_retired_and_never_reused() {
        let table = ThreadTable::default();
        let a = table.add(100).expect("room") as *const ThreadRecord;
        let b = table.add(200).expect("room") as *const ThreadRecord;
        assert!(std::ptr::eq(table.find(100).expect("100"), a));
        assert!(std::ptr::eq(table.find(200).expect("200"), b));
        assert!(table.retire(100));
        assert!(table.find(100).is_none());
        let again = table.add(100).expect("room") as *const ThreadRecord;
        assert!(!std::ptr::eq(again, a), "a new record for a reused tid");
        assert!(table.find(300).is_none());
    }

    #[test]
    fn the_table_spans_chunks() {
        let table = ThreadTable::default();
        for tid in 1..=(2 * CHUNK as i32 + 1) {
            table.add(tid).expect("room");
        }
        assert_eq!(
            table.find(2 * CHUNK as i32 + 1).expect("last").tid(),
            2 * CHUNK as i32 + 1
        );
    }
}
