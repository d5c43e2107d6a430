//! A shared library that is not a safepoint plugin: it exports neither the ABI version nor a
//! root module. The loader must say so, naming the missing symbol.

/// A symbol, so that the library is not empty.
#[unsafe(no_mangle)]
pub extern "C" fn not_a_plugin_answer() -> u32 {
    42
}
