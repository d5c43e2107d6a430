//! The host's log lines, written where a plugin calls: no allocation, no lock, no panic.
//!
//! A line is formatted into a fixed buffer on the stack ([`Line`]; a longer line is cut and
//! ends in `...`) and written with one `write(2)` to standard error. A failed write (EPIPE
//! after `| head`, a closed descriptor) is dropped: there is nowhere to report it, and the
//! process must go on. [`RateLimit`] keeps a plugin that logs on every call from flooding
//! stderr: a few lines per second, then one line saying how many it suppressed.

use std::fmt::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

/// The longest line written; longer ones are cut.
const LINE_BYTES: usize = 512;

/// One log line in a stack buffer. Formatting into it never fails and never allocates.
pub(crate) struct Line {
    buf: [u8; LINE_BYTES],
    len: usize,
    cut: bool,
}

impl Line {
    pub(crate) fn new() -> Line {
        Line {
            buf: [0; LINE_BYTES],
            len: 0,
            cut: false,
        }
    }

    /// Writes the line, with its newline, to standard error in one `write(2)`.
    pub(crate) fn emit(mut self) {
        const TAIL: &[u8] = b"...\n";
        if self.cut {
            self.len = self.len.min(LINE_BYTES - TAIL.len());
            self.buf[self.len..self.len + TAIL.len()].copy_from_slice(TAIL);
            self.len += TAIL.len();
        } else if self.len < LINE_BYTES {
            self.buf[self.len] = b'\n';
            self.len += 1;
        } else {
            self.buf[LINE_BYTES - 1] = b'\n';
        }
        sys::write_stderr(&self.buf[..self.len]);
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the newline.
        let room = (LINE_BYTES - 1).saturating_sub(self.len);
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        self.cut |= n < s.len();
        Ok(())
    }
}

/// Writes one line built from `args` (`format_args!`), without allocating or locking.
pub(crate) fn write_line(args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    // Our `write_str` never fails; a `Display` impl that fails leaves the line as it is.
    let _ = line.write_fmt(args);
    line.emit();
}

/// Lines per window that pass [`RateLimit::admit`].
pub(crate) const LINES_PER_WINDOW: u32 = 5;
/// The window: one second.
const WINDOW_NANOS: u64 = 1_000_000_000;

/// A lock-free limit on log lines: [`LINES_PER_WINDOW`] per second, then silence until the
/// next second, whose first line is preceded by one "N more suppressed" line.
///
/// The state is one word, the window's number (upper 40 bits) and the lines admitted in it
/// (lower 24 bits), moved by compare-and-swap, and a count of the lines suppressed since
/// the last report. Async-signal-safe: atomics only.
#[derive(Default)]
pub(crate) struct RateLimit {
    window_and_count: AtomicU64,
    suppressed: AtomicU64,
}

/// What [`RateLimit::admit`] decided for one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Write it; first report this many lines suppressed before, if not zero.
    Yes { suppressed_before: u64 },
    /// Drop it (counted).
    No,
}

const COUNT_BITS: u32 = 24;

impl RateLimit {
    /// Decides for one line at monotonic time `now_nanos`.
    pub(crate) fn admit(&self, now_nanos: u64) -> Admit {
        let window = now_nanos / WINDOW_NANOS;
        let mut current = self.window_and_count.load(Ordering::Relaxed);
        loop {
            let (seen_window, count) = (current >> COUNT_BITS, current & ((1 << COUNT_BITS) - 1));
            let (next, fresh) = if seen_window != window {
                ((window << COUNT_BITS) | 1, true)
            } else if count < u64::from(LINES_PER_WINDOW) {
                (current + 1, false)
            } else {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return Admit::No;
            };
            match self.window_and_count.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let suppressed_before = if fresh {
                        self.suppressed.swap(0, Ordering::Relaxed)
                    } else {
                        0
                    };
                    return Admit::Yes { suppressed_before };
                }
                Err(now) => current = now,
            }
        }
    }

    /// Lines suppressed and not yet reported; reported by the caller now.
    pub(crate) fn take_suppressed(&self) -> u64 {
        self.suppressed.swap(0, Ordering::Relaxed)
    }

    /// Writes `args` as one line if the limit admits it, after the "N more suppressed" line
    /// it owes.
    pub(crate) fn write_line(&self, now_nanos: u64, args: fmt::Arguments<'_>) {
        if let Admit::Yes { suppressed_before } = self.admit(now_nanos) {
            report_suppressed(suppressed_before);
            write_line(args);
        }
    }
}

/// The line that stands for `n` suppressed lines, if any.
pub(crate) fn report_suppressed(n: u64) {
    if n > 0 {
        write_line(format_args!(
            "safepoint: {n} more plugin log line(s) suppressed (at most {LINES_PER_WINDOW} a second)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_on_a_char_boundary_and_marked() {
        let mut line = Line::new();
        for _ in 0..LINE_BYTES {
            line.write_str("é").unwrap();
        }
        assert!(line.cut);
        assert!(std::str::from_utf8(&line.buf[..line.len]).is_ok());
        assert!(line.len < LINE_BYTES);
    }

    #[test]
    fn the_limit_admits_a_few_lines_a_second_then_reports_the_rest_once() {
        let limit = RateLimit::default();
        let second = WINDOW_NANOS;
        let admitted = (0..100)
            .filter(|i| limit.admit(10 * second + i) != Admit::No)
            .count();
        assert_eq!(admitted, LINES_PER_WINDOW as usize);
        assert_eq!(
            limit.admit(11 * second),
            Admit::Yes {
                suppressed_before: 100 - u64::from(LINES_PER_WINDOW)
            }
        );
        assert_eq!(
            limit.admit(11 * second + 1),
            Admit::Yes {
                suppressed_before: 0
            }
        );
        assert_eq!(limit.take_suppressed(), 0);
    }
}
