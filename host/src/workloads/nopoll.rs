//! `nopoll`: every P but the requester's runs a goroutine that computes and never polls.
//! Only a strategy that reaches Ps that never poll (asynchronous preemption) can run it.

use super::mutators::Mutator;

pub(super) const DESCRIPTION: &str =
    "a goroutine on every other P computes and never polls (needs reaches-non-polling-ps)";

pub(super) fn kinds(others: usize) -> Vec<Mutator> {
    vec![Mutator::Spinner; others]
}
