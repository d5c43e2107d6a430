//! The scheduler calls a runtime needs to give way to other threads: how many CPUs the
//! calling thread may run on, and `sched_yield`.

/// How many CPUs the calling thread may run on (`sched_getaffinity`): what `taskset`,
/// cgroup cpusets and `sched_setaffinity` leave it. At least 1.
pub fn cpus_allowed() -> u32 {
    rustix::thread::sched_getaffinity(None).map_or(1, |set| set.count().max(1))
}

/// Gives the CPU to another runnable thread, if any. Async-signal-safe: a bare syscall.
pub fn yield_now() {
    rustix::thread::sched_yield();
}
