//! `mixed`: polling, blocking and sleeping goroutines at once, one per P but the requester's
//! in turn: running Ps, syscall Ps and idle Ps in the same barrier.

use super::mutators::Mutator;

pub(super) const DESCRIPTION: &str =
    "polling, blocking and sleeping goroutines at once (running, syscall and idle Ps)";

pub(super) fn kinds(others: usize) -> Vec<Mutator> {
    (0..others)
        .map(|i| [Mutator::Poller, Mutator::Blocker, Mutator::Sleeper][i % 3])
        .collect()
}
