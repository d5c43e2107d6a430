//! `idle`: half of the Ps but the requester's run a polling goroutine; the rest have nothing
//! to run, so the requester serves them on their behalf.

use super::mutators::Mutator;

pub(super) const DESCRIPTION: &str = "half of the other Ps poll as in `poll`, the rest are idle";

pub(super) fn kinds(others: usize) -> Vec<Mutator> {
    vec![Mutator::Poller; others / 2]
}
