//! Each M's alternate signal stack (Go's `gsignal` stack, `minitSignalStack`).
//!
//! A signal can interrupt a goroutine running on its small coroutine stack; a handler
//! installed with `SA_ONSTACK` then runs here instead. The runtime owns these stacks, not a
//! strategy, so that a strategy can be attached to or detached from an M from any thread
//! (as a swap does).

use std::io;
use std::ptr;

/// Usable size of the stack; one guard page below it catches overflow.
const SIZE: usize = 64 * 1024;

/// The alternate signal stack of the calling thread, removed again on drop. Not `Send`: it
/// must be dropped on the thread that installed it.
pub(crate) struct AltStack {
    mapping: *mut libc::c_void,
    mapping_len: usize,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096)
}

impl AltStack {
    /// Maps a stack and makes it the calling thread's alternate signal stack.
    pub(crate) fn install() -> io::Result<AltStack> {
        let guard = page_size();
        let mapping_len = SIZE + guard;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let mapping = unsafe {
            libc::mmap(
                ptr::null_mut(),
                mapping_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = AltStack {
            mapping,
            mapping_len,
        };
        // SAFETY: the first page lies inside the mapping just made; stacks grow down, so a
        // handler that overflows faults on it instead of corrupting memory below.
        if unsafe { libc::mprotect(mapping, guard, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let ss = libc::stack_t {
            // SAFETY: `guard` bytes into a mapping of `guard + SIZE` bytes.
            ss_sp: unsafe { mapping.cast::<u8>().add(guard) }.cast(),
            ss_flags: 0,
            ss_size: SIZE,
        };
        // SAFETY: `ss` describes memory owned by `stack`, which disables it before unmapping.
        if unsafe { libc::sigaltstack(&ss, ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling is always valid; it fails only while a handler runs on the
        // stack, which cannot be the case on the thread that is dropping it.
        unsafe { libc::sigaltstack(&disable, ptr::null_mut()) };
        // SAFETY: the mapping is ours, and no longer the alternate stack of any thread.
        unsafe { libc::munmap(self.mapping, self.mapping_len) };
    }
}
