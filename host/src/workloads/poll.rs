//! `poll`: every P but the requester's runs a goroutine that computes and polls in a loop,
//! one unit of [`work`](super::work) (about 90 ns) between polls.

use super::mutators::Mutator;

pub(super) const DESCRIPTION: &str =
    "a goroutine on every other P computes and polls, about every 90 ns";

pub(super) fn kinds(others: usize) -> Vec<Mutator> {
    vec![Mutator::Poller; others]
}
