//! The interrupted context: its PC, and whether the signal made a syscall fail with `EINTR`.

use std::ffi::c_void;

/// The PC of the interrupted code.
pub(super) fn interrupted_pc(context: *const c_void) -> Option<usize> {
    if context.is_null() {
        return None;
    }
    let context = context.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: with SA_SIGINFO the third argument is the interrupted ucontext_t.
        let pc = unsafe { (*context).uc_mcontext.gregs[libc::REG_RIP as usize] };
        Some(pc as usize)
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above.
        let pc = unsafe { (*context).uc_mcontext.pc };
        Some(pc as usize)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = context;
        None
    }
}

/// Whether the interrupted code is a syscall instruction that is about to return `-EINTR`
/// because of this signal (with SA_RESTART, restartable calls are rewound instead, and show
/// their syscall number, not `-EINTR`).
pub(super) fn caused_eintr(context: *const c_void) -> bool {
    let Some(pc) = interrupted_pc(context) else {
        return false;
    };
    let context = context.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    {
        // `syscall` is 0f 05. The check never reads across a page boundary: the page of
        // `pc` is mapped (execution resumes there), the one before it may not be.
        const SYSCALL: [u8; 2] = [0x0f, 0x05];
        // SAFETY: as in `interrupted_pc`.
        let result = unsafe { (*context).uc_mcontext.gregs[libc::REG_RAX as usize] };
        result == -i64::from(libc::EINTR)
            && pc % 4096 >= SYSCALL.len()
            // SAFETY: `pc - 2` lies in the mapped page of `pc`, checked above.
            && unsafe { std::ptr::read((pc - SYSCALL.len()) as *const [u8; 2]) } == SYSCALL
    }
    #[cfg(target_arch = "aarch64")]
    {
        // `svc #0` is d4000001.
        const SVC: u32 = 0xd400_0001;
        // SAFETY: as in `interrupted_pc`.
        let result = unsafe { (*context).uc_mcontext.regs[0] } as i64;
        result == -i64::from(libc::EINTR)
            && pc % 4096 >= 4
            // SAFETY: `pc - 4` is an aligned instruction in the mapped page of `pc`.
            && unsafe { std::ptr::read((pc - 4) as *const u32) } == SVC
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (pc, context);
        false
    }
}

/// The interrupted code's `errno`.
pub(super) struct Errno(libc::c_int);

impl Errno {
    pub(super) fn save() -> Errno {
        // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
        Errno(unsafe { *libc::__errno_location() })
    }

    pub(super) fn restore(self) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = self.0 };
    }
}
