//! Panics at the plugin boundary: [`catch_panic`] around every entry point, and the one
//! formatter of a panic's payload, [`message`].

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use safepoint_abi::abi_stable::std_types::RResult;
use safepoint_abi::{ErrorKind, PluginError};

/// The message a panic was raised with: its `&str` or `String` payload.
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("at {}", 7)).unwrap_err();
/// assert_eq!(safepoint_kit::panic::message(&*payload), "at 7");
/// ```
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Runs a plugin entry point, turning a panic into [`ErrorKind::Panicked`].
///
/// Every `extern "C"` function and [`Strategy`](safepoint_abi::Strategy) method of a plugin goes through this: a panic
/// that unwinds across the boundary would end the process. The panic prints nothing itself:
/// its message and location (and a backtrace, if `RUST_BACKTRACE` asks for one) go into the
/// error, which the host prints once. A strategy that fails on every poll is one line, not
/// one panic report per poll.
pub fn catch_panic<T>(
    entry_point: &str,
    body: impl FnOnce() -> Result<T, PluginError>,
) -> RResult<T, PluginError> {
    quiet_panics::install();
    let outer = quiet_panics::catching(true);
    let result = catch_unwind(AssertUnwindSafe(body));
    quiet_panics::catching(outer);
    match result {
        Ok(result) => result.into(),
        Err(payload) => {
            let what = message(&*payload);
            let (location, backtrace) = quiet_panics::take_caught();
            RResult::RErr(PluginError::new(
                ErrorKind::Panicked,
                entry_point,
                format!("panicked{location}: {what}{backtrace}"),
            ))
        }
    }
}

/// The panic hook behind [`catch_panic`]: silent for a panic it will catch, the hook it
/// replaced for every other. (A plugin links its own copy of std, with a hook of its own.)
mod quiet_panics {
    use std::backtrace::{Backtrace, BacktraceStatus};
    use std::cell::{Cell, RefCell};
    use std::sync::Once;

    thread_local! {
        static CATCHING: Cell<bool> = const { Cell::new(false) };
        /// Where the caught panic happened, and its backtrace if one was asked for.
        static CAUGHT: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    }

    pub(super) fn install() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !CATCHING.with(Cell::get) {
                    return previous(info);
                }
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                let backtrace = Backtrace::capture();
                let backtrace = match backtrace.status() {
                    BacktraceStatus::Captured => format!("\nbacktrace:\n{backtrace}"),
                    _ => String::new(),
                };
                CAUGHT.with(|caught| *caught.borrow_mut() = (location, backtrace));
            }));
        });
    }

    /// Sets whether the thread is inside [`super::catch_panic`]; returns the old setting.
    pub(super) fn catching(on: bool) -> bool {
        CATCHING.with(|c| c.replace(on))
    }

    pub(super) fn take_caught() -> (String, String) {
        CAUGHT.with(|caught| std::mem::take(&mut *caught.borrow_mut()))
    }
}
