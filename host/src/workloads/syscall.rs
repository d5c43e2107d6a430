//! `syscall`: every P but the requester's runs a goroutine that is mostly inside
//! [`blocking`](crate::runtime::blocking), a real `nanosleep`: its P is in `Syscall`, at a
//! continuous safe point, and a signal may interrupt the call (EINTR).

use super::mutators::Mutator;

pub(super) const DESCRIPTION: &str =
    "a goroutine on every other P is mostly inside a blocking nanosleep";

pub(super) fn kinds(others: usize) -> Vec<Mutator> {
    vec![Mutator::Blocker; others]
}
