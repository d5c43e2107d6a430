//! Plumbing that the `safepoint` host and every strategy plugin share, and that never
//! crosses the ABI: each side links its own copy, so nothing here is versioned. The ABI
//! crate, [`safepoint_abi`] (re-exported as [`abi`]), holds only the versioned types.
//!
//! - [`export_strategy!`]: a plugin's exports, its constructor inside [`panic::catch_panic`];
//! - [`pending`]: which Ps a barrier still waits for, the barrier's function, and the two
//!   ways a P is served ([`PendingPs`]), and [`CachePadded`];
//! - [`panic`](mod@panic): [`catch_panic`](panic::catch_panic) around every entry point, and the one
//!   formatter of a panic's payload;
//! - [`config`]: the one grammar of config strings and durations;
//! - [`futex`]: the `futex(2)` wait and wake, the one futex layer of the workspace, and the
//!   [`Word`](futex::Word) and [`Wake`](futex::Wake) traits that the protocols are written
//!   over, so that a loom model can run the very same code;
//! - [`pending_count`]: the requester's wait for the last acknowledgement of a barrier, on a
//!   futex word that counts the Ps still to acknowledge;
//! - [`sched`]: the CPUs a thread may run on, and yielding one.
//!
//! Everything here is async-signal-safe unless it says otherwise: atomics, and raw system
//! calls through rustix, which touch neither `errno` nor any lock of the C library.

pub use safepoint_abi as abi;

pub mod config;
pub mod futex;
pub mod panic;
pub mod pending;
pub mod pending_count;
pub mod sched;

pub use pending::{CachePadded, PendingPs, Round};

/// Exports a strategy plugin: its ABI version ([`export_abi_version!`](safepoint_abi::export_abi_version)) and its root module,
/// `root_module`, whose constructor calls `new(host, config)` inside [`catch_panic`](panic::catch_panic).
///
/// `new` is anything callable as `fn(HostRef, &str) -> Result<S, PluginError>` where `S`
/// implements [`Strategy`](safepoint_abi::Strategy). The plugin crate depends on `abi_stable`
/// itself, as `#[export_root_module]` needs.
///
/// ```
/// use abi_stable::std_types::{RResult, RVec};
/// use safepoint_abi::{Capabilities, Counter, ErrorKind, HostRef, PId, PluginError};
/// use safepoint_abi::{SafePointFnArc, Strategy};
///
/// /// A skeleton that refuses every barrier.
/// struct Skeleton;
///
/// impl Strategy for Skeleton {
///     fn for_each_p_internal(&self, _f: SafePointFnArc) -> RResult<(), PluginError> {
///         Err(PluginError::new(ErrorKind::Unsupported, "for_each_p_internal", "a skeleton"))
///             .into()
///     }
///
///     fn on_poll(&self, _p: PId) -> RResult<(), PluginError> {
///         Ok(()).into()
///     }
///
///     fn counters(&self) -> RVec<Counter> {
///         RVec::new()
///     }
/// }
///
/// safepoint_kit::export_strategy! {
///     name: "skeleton",
///     description: "refuses every barrier",
///     capabilities: Capabilities::NONE,
///     new: |_host: HostRef, _config: &str| Ok::<_, PluginError>(Skeleton),
/// }
///
/// fn main() {
///     let module = root_module();
///     assert_eq!(module.name()().as_str(), "skeleton");
///     assert_eq!(module.capabilities()(), Capabilities::NONE);
/// }
/// ```
#[macro_export]
macro_rules! export_strategy {
    (
        name: $name:literal,
        description: $description:literal,
        capabilities: $capabilities:expr,
        new: $new:expr $(,)?
    ) => {
        $crate::abi::export_abi_version!();

        /// The plugin's root module.
        #[$crate::abi::abi_stable::export_root_module]
        pub fn root_module() -> $crate::abi::StrategyModRef {
            use $crate::abi::abi_stable::prefix_type::PrefixTypeTrait;
            use $crate::abi::abi_stable::std_types::{RResult, RStr};

            extern "C" fn name() -> RStr<'static> {
                RStr::from_str($name)
            }

            extern "C" fn description() -> RStr<'static> {
                RStr::from_str($description)
            }

            extern "C" fn capabilities() -> $crate::abi::Capabilities {
                $capabilities
            }

            extern "C" fn new(
                host: $crate::abi::HostRef,
                config: RStr<'_>,
            ) -> RResult<$crate::abi::StrategyBox, $crate::abi::PluginError> {
                $crate::panic::catch_panic("new", || {
                    let strategy = ($new)(host, config.as_str())?;
                    Ok($crate::abi::Strategy_TO::from_value(
                        strategy,
                        $crate::abi::abi_stable::sabi_trait::TD_Opaque,
                    ))
                })
            }

            $crate::abi::StrategyMod {
                name,
                description,
                capabilities,
                new,
            }
            .leak_into_prefix()
        }
    };
}
