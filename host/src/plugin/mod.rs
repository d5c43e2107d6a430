//! Finding and loading strategy plugins.
//!
//! A strategy is named (`polling` means `libsafepoint_polling.so`, looked up in the
//! [`SearchPath`]) or given as a path. Loading checks, in order, each with its own error:
//! the file exists; it is an ELF file; no one but this user or root can write it or its
//! directory, and it has the content pinned, if any (see [`LoadOptions`]); `dlopen`
//! accepts it; it exports the safepoint ABI version and abi_stable's root module; the
//! version is compatible; the layout of every type of the ABI matches. Only then does any
//! plugin code run.
//!
//! abi_stable never unloads a library, and `dlopen` returns the mapping it already has for a
//! path it has seen. So the loader remembers the identity (device, inode, size, mtime) of
//! every file it loaded: loading a path again whose file has changed (a rebuilt plugin)
//! loads a copy under a unique name, and so gets the new code; loading an unchanged file
//! again returns the plugin already loaded. Replace a plugin file by renaming a new one over
//! it, as cargo does: writing into a mapped library corrupts the code of whoever runs it.

use std::fmt;
use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::std_types::RResult;
use safepoint_abi::{ABI_VERSION, AbiVersion, Capabilities, ErrorKind, HostRef, StrategyModRef};

mod trust;

pub use trust::{LoadOptions, Problem, Sha256, StrategySpec};

use crate::runtime::{ActiveStrategy, StrategyConstructor};
use crate::sys::dl;

/// The environment variable holding extra plugin directories, separated by `:`.
pub const PLUGIN_PATH_VAR: &str = "SAFEPOINT_PLUGIN_PATH";

/// The file name of the plugin called `name`.
pub fn file_name(name: &str) -> String {
    format!("libsafepoint_{name}.so")
}

/// Where plugins are looked for, in order: `--plugin-path` directories, the
/// `SAFEPOINT_PLUGIN_PATH` variable, the executable's directory (and its `deps/`), then the
/// workspace's build directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

impl Default for SearchPath {
    fn default() -> SearchPath {
        SearchPath::new(&[])
    }
}

impl SearchPath {
    /// The default path, after the directories in `first`.
    pub fn new(first: &[PathBuf]) -> SearchPath {
        let mut dirs: Vec<PathBuf> = first.to_vec();
        if let Some(var) = std::env::var_os(PLUGIN_PATH_VAR) {
            dirs.extend(std::env::split_paths(&var).filter(|d| !d.as_os_str().is_empty()));
        }
        if let Some(exe_dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            dirs.push(exe_dir.join("deps"));
            dirs.push(exe_dir);
        }
        let target = option_env!("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        // The profile this host was built with first: a stale build of the other profile
        // must not shadow the plugins built beside it.
        let profiles = if cfg!(debug_assertions) {
            ["debug", "release"]
        } else {
            ["release", "debug"]
        };
        for profile in profiles {
            dirs.push(target.join(profile).join("deps"));
            dirs.push(target.join(profile));
        }
        let mut seen = Vec::new();
        dirs.retain(|d| {
            let key = d.canonicalize().unwrap_or_else(|_| d.clone());
            let new = !seen.contains(&key);
            seen.push(key);
            new
        });
        SearchPath { dirs }
    }

    /// The directories, in search order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Resolves a strategy spec: a path (it contains `/` or ends in `.so`) or a name.
    pub fn resolve(&self, spec: &str) -> Result<PathBuf, LoadError> {
        if spec.contains('/') || spec.ends_with(".so") {
            let path = PathBuf::from(spec);
            return if path.exists() {
                Ok(path)
            } else {
                Err(LoadError::NoSuchFile { path })
            };
        }
        let file = file_name(spec);
        self.dirs
            .iter()
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
            .ok_or_else(|| LoadError::NotFound {
                name: spec.to_owned(),
                file,
                searched: self.dirs.clone(),
            })
    }

    /// Every `libsafepoint_*.so` in the path; the first of each file name wins.
    pub fn discover(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut here: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libsafepoint_") && n.ends_with(".so"))
                })
                .collect();
            here.sort();
            for path in here {
                if !found.iter().any(|f| f.file_name() == path.file_name()) {
                    found.push(path);
                }
            }
        }
        found
    }
}

fn workspace_root() -> PathBuf {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent().unwrap_or(host).to_path_buf()
}

/// The strategies on `search`, loaded with `options`: every plugin but the test plugins
/// (`libsafepoint_test_*.so`, which misbehave on purpose), one per name, the first found.
/// What `compare` compares by default. Each file that fails to load comes back with its error.
pub fn discover_strategies(
    search: &SearchPath,
    options: &LoadOptions,
) -> (Vec<Plugin>, Vec<(PathBuf, LoadError)>) {
    let (mut found, mut failed): (Vec<Plugin>, _) = (Vec::new(), Vec::new());
    for path in search.discover() {
        if name_of_file(&path).is_some_and(|n| n.starts_with("test_")) {
            continue;
        }
        match load_path_with(&path, options) {
            Ok(p) if !found.iter().any(|f| f.name() == p.name()) => found.push(p),
            Ok(_) => {}
            Err(e) => failed.push((path, e)),
        }
    }
    (found, failed)
}

/// The plugin name a file stands for: `libsafepoint_polling.so` is `polling`.
pub fn name_of_file(path: &Path) -> Option<&str> {
    path.file_name()?
        .to_str()?
        .strip_prefix("libsafepoint_")?
        .strip_suffix(".so")
}

/// Why a plugin could not be loaded or started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file for the name in any directory of the search path.
    #[error(
        "no plugin named `{name}`: {file} is in none of {}; build the plugins with \
         `cargo build --release --workspace`, or pass --plugin-path DIR or a path to the .so",
        display_dirs(searched)
    )]
    NotFound {
        /// The name asked for.
        name: String,
        /// The file looked for.
        file: String,
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
    },
    /// An explicit path that does not exist.
    #[error("plugin file {} does not exist", path.display())]
    NoSuchFile {
        /// The path.
        path: PathBuf,
    },
    /// Not an ELF shared library, or one `dlopen` refuses.
    #[error("{} is not a shared library: {reason}", path.display())]
    NotSharedLibrary {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A shared library without the plugin's symbols.
    #[error(
        "{} is not a safepoint plugin: it does not export `{symbol}`; a plugin calls \
         `safepoint_abi::export_abi_version!()` and exports a `StrategyModRef` with \
         `#[export_root_module]`",
        path.display()
    )]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// The missing symbol.
        symbol: String,
    },
    /// A plugin built against an incompatible ABI version, or whose types' layout differs.
    #[error(
        "ABI mismatch: {} was built against safepoint ABI {plugin}, this host has ABI {host}; \
         first difference: {first_difference}; rebuild the plugin against this host \
         (--verbose shows the full layout report)",
        path.display()
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The version the plugin declares.
        plugin: AbiVersion,
        /// The host's version.
        host: AbiVersion,
        /// The first item whose layout differs, from abi_stable's check.
        first_difference: String,
        /// abi_stable's full layout report.
        details: String,
    },
    /// A plugin of this host's major ABI version but a newer minor one: it may call host
    /// methods this host lacks, so it is refused rather than degraded.
    #[error(
        "{} was built against safepoint ABI {plugin}, newer than this host's ABI {host}: it may \
         call what this host lacks; rebuild it against ABI {host} or use a newer safepoint",
        path.display()
    )]
    NewerAbi {
        /// The file.
        path: PathBuf,
        /// The version the plugin declares.
        plugin: AbiVersion,
        /// The host's version.
        host: AbiVersion,
    },
    /// A plugin file that someone other than this user or root could have written.
    #[error(
        "refusing to load {}: {what} {} {problem} (mode {mode:04o}, owner uid {owner}), so \
         whoever can write it can run code in this process; fix it with `{}`, or pass \
         --allow-untrusted-plugins to load it anyway",
        file.display(),
        path.display(),
        problem.fix(path)
    )]
    Untrusted {
        /// The plugin file asked for.
        file: PathBuf,
        /// What is at fault: the file, its directory, or a directory above it.
        what: &'static str,
        /// The file or directory at fault.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner's uid.
        owner: u32,
        /// Who else could write it.
        problem: Problem,
    },
    /// A pinned plugin whose file has other content.
    #[error(
        "{} is not the plugin pinned: its SHA-256 is {actual}, the pin asks for {expected}; \
         if it was rebuilt on purpose, pin the new digest (`sha256sum {}`)",
        path.display(),
        path.display()
    )]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// The digest pinned.
        expected: Sha256,
        /// The digest of the file's content.
        actual: Sha256,
    },
    /// A strategy spec that does not parse.
    #[error(
        "bad strategy `{spec}`: {reason}; a strategy reads NAME or PATH, then optionally \
         @sha256:HEX, then optionally :CONFIG"
    )]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other abi_stable loading error.
    #[error("cannot load {}: {message}", path.display())]
    Library {
        /// The file.
        path: PathBuf,
        /// abi_stable's message.
        message: String,
    },
    /// The plugin's constructor returned an error.
    #[error("strategy {plugin} ({}) refused to start: {message}", path.display())]
    ConstructorFailed {
        /// The strategy's name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The error kind it returned.
        kind: ErrorKind,
        /// Its message.
        message: String,
    },
    /// Plugin code panicked; the panic was caught at the boundary.
    #[error("strategy {plugin} ({}) panicked in {entry_point}: {message}", path.display())]
    Panicked {
        /// The strategy's name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The entry point that panicked.
        entry_point: String,
        /// The panic message.
        message: String,
    },
}

impl LoadError {
    /// Long detail for `--verbose`: abi_stable's full layout report for an ABI mismatch.
    pub fn details(&self) -> Option<&str> {
        match self {
            LoadError::AbiMismatch { details, .. } => Some(details),
            _ => None,
        }
    }
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!("[{}]", list.join(", "))
}

/// A loaded plugin: a strategy that can be instantiated for a runtime.
#[derive(Clone)]
pub struct Plugin {
    path: PathBuf,
    name: String,
    description: String,
    capabilities: Capabilities,
    abi_version: AbiVersion,
    module: StrategyModRef,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl Plugin {
    /// The strategy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its one-line description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// What it can do.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ABI version it was built against.
    pub fn abi_version(&self) -> AbiVersion {
        self.abi_version
    }
}

/// A loaded plugin constructs its strategy by calling the plugin's constructor.
impl StrategyConstructor for Plugin {
    type Error = LoadError;

    fn construct(&self, host: HostRef, config: &str) -> Result<ActiveStrategy, LoadError> {
        match (self.module.new())(host, config.into()) {
            RResult::ROk(object) => Ok(ActiveStrategy::new(
                self.name.clone(),
                self.capabilities,
                object,
            )),
            RResult::RErr(e) if e.kind == ErrorKind::Panicked => Err(LoadError::Panicked {
                plugin: self.name.clone(),
                path: self.path.clone(),
                entry_point: e.entry_point.into_string(),
                message: e.message.into_string(),
            }),
            RResult::RErr(e) => Err(LoadError::ConstructorFailed {
                plugin: self.name.clone(),
                path: self.path.clone(),
                kind: e.kind,
                message: e.message.into_string(),
            }),
        }
    }
}

/// Loads the plugin `target` (a name or a path) through `search`, if its file is trusted.
pub fn load(target: &str, search: &SearchPath) -> Result<Plugin, LoadError> {
    load_with(target, search, &LoadOptions::default())
}

/// Loads the plugin `target` (a name or a path) through `search`, with `options`.
pub fn load_with(
    target: &str,
    search: &SearchPath,
    options: &LoadOptions,
) -> Result<Plugin, LoadError> {
    load_path_with(&search.resolve(target)?, options)
}

/// What identifies one version of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// Every plugin loaded in this process, by file and version of that file.
static LOADED: std::sync::Mutex<Vec<(PathBuf, FileIdentity, Plugin)>> =
    std::sync::Mutex::new(Vec::new());

/// Loads the plugin file at `path`, if it is trusted; see the module documentation for
/// files that change.
pub fn load_path(path: &Path) -> Result<Plugin, LoadError> {
    load_path_with(path, &LoadOptions::default())
}

/// Loads the plugin file at `path` with `options`.
pub fn load_path_with(path: &Path, options: &LoadOptions) -> Result<Plugin, LoadError> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let identity = check_file(path, &canonical, options)?;
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, plugin)) = loaded
        .iter()
        .find(|(p, id, _)| *p == canonical && *id == identity)
    {
        return Ok(plugin.clone());
    }
    let seen_before = loaded.iter().any(|(p, _, _)| *p == canonical);
    let plugin = if seen_before {
        // dlopen would return the old mapping for this path: load a copy of the new file.
        let copy = fresh_copy(&canonical, identity).map_err(|e| LoadError::NotSharedLibrary {
            path: path.to_path_buf(),
            reason: format!("cannot copy the changed file to load it afresh: {e}"),
        })?;
        let plugin = load_file(&copy).map(|p| Plugin {
            path: path.to_path_buf(),
            ..p
        });
        // The mapping outlives the file; a later load of this version is served from `LOADED`.
        let _ = std::fs::remove_file(&copy);
        plugin?
    } else {
        load_file(path)?
    };
    loaded.push((canonical, identity, plugin.clone()));
    Ok(plugin)
}

/// Copies `file` to a name no library of this process has had.
fn fresh_copy(file: &Path, identity: FileIdentity) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("safepoint-plugins-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    // The name is predictable: a directory someone else made there first is refused.
    trust::check_own_dir(&dir)?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let copy = dir.join(format!(
        "{stem}-{}-{}-{}.so",
        identity.ino, identity.mtime.0, identity.mtime.1
    ));
    std::fs::copy(file, &copy)?;
    Ok(copy)
}

/// Probes, checks and loads one file.
fn load_file(path: &Path) -> Result<Plugin, LoadError> {
    let path = path.to_path_buf();
    let exports = dl::probe(&path).map_err(|reason| LoadError::NotSharedLibrary {
        path: path.clone(),
        reason,
    })?;
    let symbol_missing = |symbol: &str| LoadError::NotAPlugin {
        path: path.clone(),
        symbol: symbol.to_owned(),
    };
    let Some(version) = exports.abi_version else {
        let name = String::from_utf8_lossy(safepoint_abi::ABI_VERSION_SYMBOL);
        return Err(symbol_missing(name.trim_end_matches('\0')));
    };
    if !exports.has_root_module {
        let name = abi_stable::library::ROOT_MODULE_LOADER_NAME;
        return Err(symbol_missing(name));
    }
    let library_error = |e: LibraryError| LoadError::Library {
        path: path.clone(),
        message: e.to_string(),
    };
    let header = lib_header_from_path(&path).map_err(library_error)?;
    let mismatch = |details: String| LoadError::AbiMismatch {
        path: path.clone(),
        plugin: version,
        host: ABI_VERSION,
        first_difference: first_difference(&details),
        details,
    };
    if version.is_newer_minor_than(ABI_VERSION) {
        return Err(LoadError::NewerAbi {
            path,
            plugin: version,
            host: ABI_VERSION,
        });
    }
    if !version.is_compatible_with(ABI_VERSION) {
        // Only the layout check runs, to name the first difference; no plugin code does.
        let details = match header.ensure_layout::<StrategyModRef>() {
            Err(LibraryError::AbiInstability(e)) => e.to_string(),
            Err(e) => e.to_string(),
            Ok(()) => "the layouts match, but the versions are declared incompatible".to_owned(),
        };
        return Err(mismatch(details));
    }
    let module = if version == ABI_VERSION {
        match header.init_root_module::<StrategyModRef>() {
            Ok(module) => module,
            Err(LibraryError::AbiInstability(e)) => return Err(mismatch(e.to_string())),
            Err(e) => return Err(library_error(e)),
        }
    } else {
        // An older minor: its types are prefixes of this host's (see the ABI's `Versioning`).
        match dl::init_older_minor(header) {
            Ok(module) => module,
            Err(dl::OlderMinorError::Layout(details)) => return Err(mismatch(details)),
            Err(dl::OlderMinorError::Library(e)) => return Err(library_error(e)),
        }
    };
    Ok(Plugin {
        name: module.name()().to_string(),
        description: module.description()().to_string(),
        capabilities: module.capabilities()(),
        abi_version: version,
        module,
        path,
    })
}

/// Checks the file before any of it is mapped: that it exists, is trusted (see [`trust`])
/// and starts like an ELF file; returns the identity of the version checked.
fn check_file(
    path: &Path,
    canonical: &Path,
    options: &LoadOptions,
) -> Result<FileIdentity, LoadError> {
    use std::io::Read;
    let not_shared = |reason: String| LoadError::NotSharedLibrary {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::NoSuchFile {
            path: path.to_path_buf(),
        },
        _ => not_shared(format!("cannot open it: {e}")),
    })?;
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if magic == *b"\x7fELF" => {}
        Ok(()) => {
            return Err(not_shared(format!(
                "it has no ELF header (it starts with {:?})",
                String::from_utf8_lossy(&magic)
            )));
        }
        Err(_) => return Err(not_shared("it is shorter than an ELF header".to_owned())),
    }
    let meta = file
        .metadata()
        .map_err(|e| not_shared(format!("cannot read it: {e}")))?;
    trust::check(path, canonical, &mut file, &meta, options)?;
    Ok(FileIdentity::of(&meta))
}

/// The useful part of abi_stable's layout report: its last `Error:` line, with the
/// `Expected:`/`Found:` values that follow it, e.g.
/// `mismatched package (expected safepoint-abi, found my-fork-of-safepoint-abi)`.
fn first_difference(details: &str) -> String {
    let lines: Vec<&str> = details.lines().map(str::trim).collect();
    let Some(at) = lines.iter().rposition(|l| l.starts_with("Error:")) else {
        return lines
            .iter()
            .rfind(|l| !l.is_empty())
            .unwrap_or(&"unknown")
            .to_string();
    };
    let what = lines[at].trim_start_matches("Error:").trim();
    let value_after = |label: &str| {
        let i = lines[at..].iter().position(|l| *l == label)?;
        lines[at + i + 1..].iter().find(|l| !l.is_empty()).copied()
    };
    match (value_after("Expected:"), value_after("Found:")) {
        (Some(expected), Some(found)) => format!("{what} (expected {expected}, found {found})"),
        _ => what.to_owned(),
    }
}
