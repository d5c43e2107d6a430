//! The strategy a runtime runs, and what builds one.
//!
//! The runtime knows nothing of plugin files: [`Builder::build`](super::Builder::build) and
//! [`Runtime::swap_strategy`](super::Runtime::swap_strategy) take any
//! [`StrategyConstructor`]. The loader's `plugin::Plugin`, a layer above, is one, for a
//! strategy in a `.so`; a strategy compiled into the program is another, built with
//! [`ActiveStrategy::new`] around its [`StrategyBox`].

use safepoint_abi::{Capabilities, HostRef, StrategyBox};

/// A constructed strategy, ready to be made active: its name, what it can do, and the
/// object behind the ABI.
pub struct ActiveStrategy {
    pub(crate) name: String,
    pub(crate) capabilities: Capabilities,
    pub(crate) object: StrategyBox,
}

impl ActiveStrategy {
    /// Wraps a strategy object (`Strategy_TO::from_value(strategy, TD_Opaque)` for one
    /// compiled into the program) under `name`, claiming `capabilities`.
    pub fn new(name: impl Into<String>, capabilities: Capabilities, object: StrategyBox) -> Self {
        ActiveStrategy {
            name: name.into(),
            capabilities,
            object,
        }
    }
}

/// Builds a strategy for a runtime: once at [`Builder::build`](super::Builder::build), and
/// again at each [`Runtime::swap_strategy`](super::Runtime::swap_strategy).
pub trait StrategyConstructor {
    /// Why a construction failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Constructs the strategy, configured by `config`, calling back into the runtime
    /// through `host`.
    fn construct(&self, host: HostRef, config: &str) -> Result<ActiveStrategy, Self::Error>;
}

/// For the runtime's own tests: a strategy compiled in, so that they load no `.so`. It runs
/// no barrier (each fails as unsupported); nothing else needs one.
#[cfg(test)]
pub(crate) mod no_barriers {
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{RResult, RVec};
    use safepoint_abi::{
        Capabilities, Counter, ErrorKind, HostRef, PId, PluginError, SafePointFnArc, Strategy,
        Strategy_TO,
    };

    use super::{ActiveStrategy, StrategyConstructor};

    struct NoBarriers;

    impl Strategy for NoBarriers {
        fn for_each_p_internal(&self, _f: SafePointFnArc) -> RResult<(), PluginError> {
            RResult::RErr(PluginError::new(
                ErrorKind::Unsupported,
                "for_each_p_internal",
                "this test strategy runs no barrier",
            ))
        }

        fn on_poll(&self, _p: PId) -> RResult<(), PluginError> {
            RResult::ROk(())
        }

        fn counters(&self) -> RVec<Counter> {
            RVec::new()
        }
    }

    /// Constructs [`NoBarriers`].
    pub(crate) struct Constructor;

    impl StrategyConstructor for Constructor {
        type Error = std::convert::Infallible;

        fn construct(&self, _host: HostRef, _config: &str) -> Result<ActiveStrategy, Self::Error> {
            let object = Strategy_TO::from_value(NoBarriers, TD_Opaque);
            Ok(ActiveStrategy::new(
                "no-barriers",
                Capabilities::NONE,
                object,
            ))
        }
    }
}
