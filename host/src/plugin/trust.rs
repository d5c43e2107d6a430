//! Whether a plugin file may run in this process: who could have written it, and, when
//! pinned, whether its content is the one pinned.
//!
//! A plugin runs with the host's privileges, so whoever can write the file, or rename
//! another file over it, can run code here. The file and the directory that holds it must
//! be owned by this user or root and writable by no one else: not by its group, not by
//! others, and a sticky world-writable directory such as `/tmp` is refused too (another
//! user can plant a file there that this one then loads). The directories above it may be
//! world-writable only when sticky, since otherwise anyone could rename the directory
//! holding the plugin and put their own in its place.
//!
//! The check reads the metadata of the file opened, and `dlopen` opens the path again: a
//! file replaced in between can only be replaced by a writer the check has just excluded,
//! so the window matters only with `allow_untrusted`. A pin is only as strong as that.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256 as Hasher};

use super::LoadError;
use crate::sys;

/// What a plugin file must satisfy before it is loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Load a file that fails the owner and mode check (`--allow-untrusted-plugins`).
    pub allow_untrusted: bool,
    /// The SHA-256 digest the file's content must have (`NAME@sha256:HEX`).
    pub sha256: Option<Sha256>,
}

/// A SHA-256 digest, written as 64 lowercase hex digits, as `sha256sum` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of everything `file` holds, read from its start.
    fn of_file(file: &mut File) -> std::io::Result<Sha256> {
        file.seek(SeekFrom::Start(0))?;
        let mut hasher = Hasher::new();
        std::io::copy(file, &mut hasher)?;
        Ok(Sha256(hasher.finalize().into()))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

impl FromStr for Sha256 {
    type Err = String;

    fn from_str(hex: &str) -> Result<Sha256, String> {
        let bad = || {
            format!(
                "`{hex}` is not a SHA-256 digest: it takes 64 hex digits, as \
                 `sha256sum FILE` prints them"
            )
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            // ASCII hex digits only, so every slice is on a character boundary.
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Sha256(digest))
    }
}

/// A strategy as the command line names it: `TARGET[@sha256:HEX][:CONFIG]`, where TARGET
/// is a plugin name (`polling`) or a path to its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategySpec {
    /// The plugin's name or path.
    pub target: String,
    /// The digest its file must have.
    pub sha256: Option<Sha256>,
    /// The configuration passed to its constructor; empty for the defaults.
    pub config: String,
}

impl FromStr for StrategySpec {
    type Err = LoadError;

    fn from_str(spec: &str) -> Result<StrategySpec, LoadError> {
        let bad = |reason: String| LoadError::BadSpec {
            spec: spec.to_owned(),
            reason,
        };
        let (head, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let Some(target) = head.strip_suffix("@sha256") else {
            if !head.contains('/') && head.contains('@') {
                return Err(bad(
                    "a plugin name has no `@`; pin the plugin's content with \
                     NAME@sha256:HEX"
                        .to_owned(),
                ));
            }
            return Ok(StrategySpec {
                target: head.to_owned(),
                sha256: None,
                config: rest.to_owned(),
            });
        };
        let (hex, config) = rest.split_once(':').unwrap_or((rest, ""));
        Ok(StrategySpec {
            target: target.to_owned(),
            sha256: Some(hex.parse().map_err(bad)?),
            config: config.to_owned(),
        })
    }
}

/// Checks that `file` (opened from `path`, which resolves to `canonical`) satisfies
/// `options`.
pub(super) fn check(
    path: &Path,
    canonical: &Path,
    file: &mut File,
    meta: &Metadata,
    options: &LoadOptions,
) -> Result<(), LoadError> {
    if !options.allow_untrusted {
        check_writers(path, canonical, meta)?;
    }
    if let Some(expected) = options.sha256 {
        let actual = Sha256::of_file(file).map_err(|e| LoadError::NotSharedLibrary {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        if actual != expected {
            return Err(LoadError::DigestMismatch {
                path: path.to_path_buf(),
                expected,
                actual,
            });
        }
    }
    Ok(())
}

/// Refuses a file, or a directory on its way, that someone other than this user or root
/// could write.
fn check_writers(path: &Path, canonical: &Path, meta: &Metadata) -> Result<(), LoadError> {
    let untrusted = |at: &Path, what, meta: &Metadata, problem: Problem| LoadError::Untrusted {
        file: path.to_path_buf(),
        what,
        path: at.to_path_buf(),
        mode: meta.mode() & 0o7777,
        owner: meta.uid(),
        problem,
    };
    if let Some(problem) = Problem::of(meta, Strictness::Holder) {
        return Err(untrusted(canonical, "the file", meta, problem));
    }
    for (depth, dir) in canonical.ancestors().skip(1).enumerate() {
        let meta = std::fs::metadata(dir).map_err(|e| LoadError::NotSharedLibrary {
            path: path.to_path_buf(),
            reason: format!("cannot check who can write {}: {e}", dir.display()),
        })?;
        let (what, strictness) = if depth == 0 {
            ("its directory", Strictness::Holder)
        } else {
            ("a directory above it", Strictness::Ancestor)
        };
        if let Some(problem) = Problem::of(&meta, strictness) {
            return Err(untrusted(dir, what, &meta, problem));
        }
    }
    Ok(())
}

/// Checks that the directory this process keeps its own copies of plugins in is its own.
pub(super) fn check_own_dir(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    match Problem::of(&meta, Strictness::Holder) {
        Some(problem) => Err(std::io::Error::other(format!(
            "{} {problem} (mode {:04o})",
            dir.display(),
            meta.mode() & 0o7777
        ))),
        None => Ok(()),
    }
}

#[derive(Clone, Copy)]
enum Strictness {
    /// The file, or the directory that holds it: writable by its owner only.
    Holder,
    /// A directory further up: world-writable only if sticky.
    Ancestor,
}

/// Why a file or directory is not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Owned by a user that is neither this one nor root.
    Owner {
        /// The uid of this process.
        euid: u32,
    },
    /// Writable by its group or by others.
    Writable {
        /// Its group may write it.
        group: bool,
        /// Others may write it.
        others: bool,
    },
}

impl Problem {
    fn of(meta: &Metadata, strictness: Strictness) -> Option<Problem> {
        let euid = sys::effective_uid();
        if meta.uid() != euid && meta.uid() != 0 {
            return Some(Problem::Owner { euid });
        }
        let mode = meta.mode();
        let (group, others) = (mode & 0o020 != 0, mode & 0o002 != 0);
        let sticky_ancestor = matches!(strictness, Strictness::Ancestor) && mode & 0o1000 != 0;
        ((group || others) && !sticky_ancestor).then_some(Problem::Writable { group, others })
    }

    /// The command that fixes it for `path`.
    pub fn fix(&self, path: &Path) -> String {
        match self {
            Problem::Owner { euid } => format!("chown {euid} {}", path.display()),
            Problem::Writable { .. } => format!("chmod go-w {}", path.display()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Owner { euid } => {
                write!(f, "is owned by another user (not uid {euid}, not root)")
            }
            Problem::Writable { group, others } => {
                let who = match (group, others) {
                    (true, true) => "its group and by others",
                    (true, false) => "its group",
                    _ => "others",
                };
                write!(f, "is writable by {who}")
            }
        }
    }
}
