//! A plugin of the host's major ABI version but the next minor one, as a plugin built
//! against a newer `safepoint-abi` would be. The loader must refuse it, naming both
//! versions, before it runs any code of the plugin: it may call host methods the host lacks.
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]

use abi_stable::export_root_module;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RResult, RStr};
use safepoint_abi::{
    ABI_VERSION, AbiVersion, Capabilities, ErrorKind, HostRef, PluginError, StrategyBox,
    StrategyMod, StrategyModRef,
};

#[unsafe(no_mangle)]
pub static SAFEPOINT_ABI_VERSION: AbiVersion = AbiVersion {
    major: ABI_VERSION.major,
    minor: ABI_VERSION.minor + 1,
};

#[export_root_module]
pub fn root_module() -> StrategyModRef {
    StrategyMod {
        name,
        description,
        capabilities,
        new,
    }
    .leak_into_prefix()
}

extern "C" fn name() -> RStr<'static> {
    RStr::from_str("newer-minor")
}

extern "C" fn description() -> RStr<'static> {
    RStr::from_str("declares the next minor ABI version (test plugin)")
}

extern "C" fn capabilities() -> Capabilities {
    Capabilities::NONE
}

extern "C" fn new(_host: HostRef, _config: RStr<'_>) -> RResult<StrategyBox, PluginError> {
    RResult::RErr(PluginError::new(
        ErrorKind::Failed,
        "new",
        "a plugin of a newer minor ABI must never be started",
    ))
}
