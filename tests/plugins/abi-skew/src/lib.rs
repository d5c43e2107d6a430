//! A plugin built against a different safepoint ABI: it declares ABI 99.0, and its root
//! module's `new` has another signature. The loader must refuse it before calling anything,
//! naming the file, both versions and the first differing item.
// `export_root_module` generates an undocumented public static.
#![allow(missing_docs)]
// abi_stable's derive expands to impls inside a const block.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RResult, RStr, RString};
use abi_stable::{
    StableAbi, declare_root_module_statics, export_root_module, package_version_strings,
};
use safepoint_abi::AbiVersion;

#[unsafe(no_mangle)]
pub static SAFEPOINT_ABI_VERSION: AbiVersion = AbiVersion {
    major: 99,
    minor: 0,
};

/// The root module of an imagined ABI 99: same name, different `new`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = StrategyModRef)))]
#[sabi(missing_field(panic))]
pub struct StrategyMod {
    pub name: extern "C" fn() -> RStr<'static>,
    pub description: extern "C" fn() -> RStr<'static>,
    pub capabilities: extern "C" fn() -> u64,
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(config: RStr<'_>, procs: u64) -> RResult<u64, RString>,
}

impl RootModule for StrategyModRef {
    declare_root_module_statics! {StrategyModRef}
    const BASE_NAME: &'static str = "safepoint_strategy";
    const NAME: &'static str = "safepoint strategy";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

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
    RStr::from_str("abi-skew")
}

extern "C" fn description() -> RStr<'static> {
    RStr::from_str("test plugin built against ABI 99")
}

extern "C" fn capabilities() -> u64 {
    0
}

extern "C" fn new(_config: RStr<'_>, _procs: u64) -> RResult<u64, RString> {
    RResult::ROk(0)
}
