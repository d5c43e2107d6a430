//! One record per M's thread, found by kernel thread id from the requester and from the
//! signal handler: the thread's in-flight mark (`crate::marks`).
//!
//! The handler cannot use a thread-local of this library (a `dlopen`ed library's TLS may be
//! allocated on first use, with `malloc`), so it looks itself up by `gettid`. The table is
//! append-only, in chunks that are allocated outside any handler and never move, so a
//! lookup is a few atomic loads and cannot fail halfway. Records are never reused: a
//! detached M's record is retired, so a late signal can never be mistaken for a request to
//! another thread that got the same slot.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::marks::Mark;

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
    /// The thread's in-flight mark, set before `tid`: its slot number plus one (0 until
    /// then).
    mark: AtomicUsize,
}

impl ThreadRecord {
    /// The thread's kernel id.
    pub(crate) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Acquire)
    }

    /// The thread's in-flight mark: whether a signal of ours is on its way to it (Go's
    /// `m.signalPending`).
    pub(crate) fn mark(&self) -> Option<&'static Mark> {
        let slot = self.mark.load(Ordering::Acquire).checked_sub(1)?;
        crate::marks::at(slot)
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
    /// Adds a record for thread `tid` with its mark. Not for a signal handler: it may
    /// allocate.
    pub(crate) fn add(&self, tid: i32, mark: &'static Mark) -> Result<&ThreadRecord, String> {
        let index = self.len.fetch_add(1, Ordering::AcqRel);
        let Some(chunk) = self.chunks.get(index / CHUNK) else {
            return Err(format!(
                "more than {} Ms attached over the runtime's lifetime",
                CHUNK * CHUNKS
            ));
        };
        let chunk = chunk.get_or_init(|| (0..CHUNK).map(|_| ThreadRecord::default()).collect());
        let record = &chunk[index % CHUNK];
        record.mark.store(mark.slot() + 1, Ordering::Release);
        record.tid.store(tid, Ordering::Release);
        Ok(record)
    }

    /// The live record of thread `tid`. Async-signal-safe: atomic loads only.
    pub(crate) fn find(&self, tid: i32) -> Option<&ThreadRecord> {
        self.records().find(|record| record.tid() == tid)
    }

    /// Every record, live or retired.
    fn records(&self) -> impl Iterator<Item = &ThreadRecord> {
        let len = self.len.load(Ordering::Acquire).min(CHUNK * CHUNKS);
        (0..len).filter_map(|index| {
            let chunk = self.chunks.get(index / CHUNK)?.get()?;
            chunk.get(index % CHUNK)
        })
    }

    /// Retires the record of thread `tid`: lookups no longer find it. Returns its mark, for
    /// the caller to detach.
    pub(crate) fn retire(&self, tid: i32) -> Option<&'static Mark> {
        let record = self.find(tid)?;
        record.tid.store(NO_THREAD, Ordering::Release);
        record.mark()
    }

    /// Retires every live record and returns their marks.
    pub(crate) fn retire_all(&self) -> Vec<&'static Mark> {
        self.records()
            .filter(|r| r.tid() != NO_THREAD)
            .filter_map(|r| {
                r.tid.store(NO_THREAD, Ordering::Release);
                r.mark()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark() -> &'static Mark {
        crate::marks::attach(1, libc::SIGWINCH).expect("a free mark")
    }

    #[test]
    fn records_are_found_by_tid_until_retired_and_never_reused() {
        let table = ThreadTable::default();
        let a = table.add(100, mark()).expect("room") as *const ThreadRecord;
        let b = table.add(200, mark()).expect("room") as *const ThreadRecord;
        assert!(std::ptr::eq(table.find(100).expect("100"), a));
        assert!(std::ptr::eq(table.find(200).expect("200"), b));
        table.retire(100).expect("a mark").detach();
        assert!(table.find(100).is_none());
        let again = table.add(100, mark()).expect("room") as *const ThreadRecord;
        assert!(!std::ptr::eq(again, a), "a new record for a reused tid");
        assert!(table.find(300).is_none());
        for mark in table.retire_all() {
            mark.detach();
        }
        assert!(table.find(200).is_none());
    }

    #[test]
    fn the_table_spans_chunks() {
        let table = ThreadTable::default();
        for tid in 1..=(2 * CHUNK as i32 + 1) {
            table.add(tid, mark()).expect("room");
        }
        assert_eq!(
            table.find(2 * CHUNK as i32 + 1).expect("last").tid(),
            2 * CHUNK as i32 + 1
        );
        for mark in table.retire_all() {
            mark.detach();
        }
    }
}
