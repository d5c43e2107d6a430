//! Raw probing of a shared library, where abi_stable has no answer: whether it loads at all,
//! and what ABI version it declares, before any of its code runs.

use std::path::Path;

use abi_stable::StableAbi;
use abi_stable::abi_stability::abi_checking::{
    CheckingGlobals, check_layout_compatibility_with_globals,
};
use abi_stable::library::{LibHeader, LibraryError};
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use safepoint_abi::{ABI_VERSION_SYMBOL, AbiVersion, StrategyModRef, abi_stable};

/// What a shared library exports, as far as the loader cares.
pub(crate) struct Exports {
    /// The value of `SAFEPOINT_ABI_VERSION`, if exported.
    pub(crate) abi_version: Option<AbiVersion>,
    /// Whether abi_stable's root-module symbol is exported.
    pub(crate) has_root_module: bool,
}

/// Opens `path` with `RTLD_NOW | RTLD_LOCAL` and reads its exports. Returns the dynamic
/// loader's message if it cannot be opened.
pub(crate) fn probe(path: &Path) -> Result<Exports, String> {
    // SAFETY: dlopen runs the library's ELF initialisers. We open only files the user named
    // as plugins (or found in a plugin directory); Rust cdylibs run no initialiser code of
    // their own. RTLD_LOCAL keeps its symbols out of the global namespace.
    let lib =
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| e.to_string())?;
    // SAFETY: the symbol, if present, is the `AbiVersion` static of `export_abi_version!`,
    // whose layout is frozen across ABI versions; we copy it out before closing the library.
    let abi_version = unsafe { lib.get::<*const AbiVersion>(ABI_VERSION_SYMBOL) }
        .ok()
        // SAFETY: as above: a valid, aligned, immutable `AbiVersion` while `lib` is open.
        .map(|sym| unsafe { (*sym).read() });
    let root_name = abi_stable::library::ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes();
    // SAFETY: we only check that the symbol exists; its value is not used.
    let has_root_module = unsafe { lib.get::<*const u8>(root_name) }.is_ok();
    drop(lib);
    Ok(Exports {
        abi_version,
        has_root_module,
    })
}

/// Why [`init_older_minor`] refused a plugin.
pub(crate) enum OlderMinorError {
    /// The plugin's layout is not a prefix of the host's: abi_stable's report.
    Layout(String),
    /// Any other abi_stable error.
    Library(LibraryError),
}

/// Initialises the root module of a plugin of an older minor ABI version than the host's.
/// abi_stable lets the implementation side be the newer one, so the plugin's layout is
/// checked as the interface and the host's as the implementation: every type the plugin
/// knows must be a prefix of the host's. The check keeps its own record of prefix types:
/// abi_stable's process-wide one would remember the host's types as paired with the older
/// plugin's, and then hold every later plugin of the host's own version to the older layout.
pub(crate) fn init_older_minor(
    header: &'static LibHeader,
) -> Result<StrategyModRef, OlderMinorError> {
    let Some(plugin_layout) = header.layout() else {
        return Err(OlderMinorError::Layout(
            "the plugin carries no layout to check".to_owned(),
        ));
    };
    let own_record = CheckingGlobals::new();
    check_layout_compatibility_with_globals(
        plugin_layout,
        <StrategyModRef as StableAbi>::LAYOUT,
        &own_record,
    )
    .map_err(|e| OlderMinorError::Layout(e.to_string()))?;
    // SAFETY: the check above proved the plugin's root module, and every type reachable from
    // it, a prefix of the host's. Fields past the plugin's prefix are read through accessors
    // that see them absent (a strategy method missing from its vtable runs its default).
    unsafe { header.init_root_module_with_unchecked_layout::<StrategyModRef>() }
        .map_err(OlderMinorError::Library)
}
