//! Plugin trust: a file that someone else could have written is refused, unless asked for;
//! a pinned file must have the content pinned. Real files, modes and owners on disk.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use safepoint_host::plugin::{self, LoadError, LoadOptions, Problem, Sha256, StrategySpec};
use safepoint_tests::plugin_file;

/// A copy of the polling plugin, as `dir/libsafepoint_<name>.so`, with mode `mode`.
fn copy_of_polling(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let copy = dir.join(plugin::file_name(name));
    std::fs::copy(plugin_file("safepoint_polling"), &copy).expect("copy the polling plugin");
    chmod(&copy, mode);
    copy
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn trusting() -> LoadOptions {
    LoadOptions {
        allow_untrusted: true,
        sha256: None,
    }
}

/// The digest as `sha256sum` prints it, computed by that program, not by the host.
fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

#[track_caller]
fn expect_untrusted(err: LoadError, at: &Path, what: &str, problem: Problem) -> String {
    let msg = err.to_string();
    let LoadError::Untrusted {
        what: found_what,
        path,
        problem: found,
        ..
    } = &err
    else {
        panic!("expected Untrusted, got {err:?}");
    };
    assert_eq!((*found_what, path.as_path(), *found), (what, at, problem));
    assert!(msg.contains("--allow-untrusted-plugins"), "{msg}");
    msg
}

#[test]
fn a_plugin_file_writable_by_its_group_is_refused_naming_the_mode_and_the_chmod() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let copy = copy_of_polling(dir.path(), "groupw", 0o775);
    let canonical = copy.canonicalize().expect("canonical path");
    let err = plugin::load_path(&copy).expect_err("a group-writable plugin is refused");
    let msg = expect_untrusted(
        err,
        &canonical,
        "the file",
        Problem::Writable {
            group: true,
            others: false,
        },
    );
    assert!(msg.contains("mode 0775"), "{msg}");
    assert!(msg.contains("is writable by its group"), "{msg}");
    assert!(
        msg.contains(&format!("`chmod go-w {}`", canonical.display())),
        "{msg}"
    );

    let loaded = plugin::load_path_with(&copy, &trusting()).expect("allowed when asked");
    assert_eq!(loaded.name(), "polling");
    chmod(&copy, 0o755);
    plugin::load_path(&copy).expect("loads once the chmod is done");
}

#[test]
fn a_plugin_in_a_world_writable_directory_is_refused_even_if_sticky() {
    for mode in [0o777, 0o1777] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let copy = copy_of_polling(dir.path(), "inworldw", 0o755);
        chmod(dir.path(), mode);
        let holder = dir.path().canonicalize().expect("canonical path");
        let err = plugin::load_path(&copy).expect_err("refused");
        let msg = expect_untrusted(
            err,
            &holder,
            "its directory",
            Problem::Writable {
                group: true,
                others: true,
            },
        );
        assert!(msg.contains(&format!("mode {mode:04o}")), "{msg}");
        // Through the search path, as `SAFEPOINT_PLUGIN_PATH` or `--plugin-path` would find it.
        let search = plugin::SearchPath::new(&[dir.path().to_path_buf()]);
        let err = plugin::load("inworldw", &search).expect_err("refused when found by name");
        assert!(matches!(err, LoadError::Untrusted { .. }), "{err:?}");
        plugin::load_with("inworldw", &search, &trusting()).expect("allowed when asked");
    }
}

#[test]
fn a_directory_above_may_be_world_writable_only_if_sticky() {
    let top = tempfile::tempdir().expect("temporary directory");
    let holder = top.path().join("plugins");
    std::fs::create_dir(&holder).expect("mkdir");
    chmod(&holder, 0o755);
    let copy = copy_of_polling(&holder, "below", 0o755);

    chmod(top.path(), 0o1777);
    plugin::load_path(&copy).expect("a sticky directory above is like /tmp: fine");

    chmod(top.path(), 0o777);
    let err = plugin::load_path(&copy).expect_err("anyone could rename plugins/ away");
    expect_untrusted(
        err,
        &top.path().canonicalize().expect("canonical path"),
        "a directory above it",
        Problem::Writable {
            group: true,
            others: true,
        },
    );
    chmod(top.path(), 0o700);
}

#[test]
fn a_plugin_file_owned_by_another_user_is_refused_naming_the_chown() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let copy = copy_of_polling(dir.path(), "othersown", 0o755);
    // A new file is owned by this process's effective uid.
    let euid = std::fs::metadata(&copy).expect("stat").uid();
    if euid != 0 {
        // Only root can give a file away; CI runs as root.
        println!("skipped: giving a file to another user needs root");
        return;
    }
    let nobody = 65534;
    std::os::unix::fs::chown(&copy, Some(nobody), None).expect("chown");
    let err = plugin::load_path(&copy).expect_err("refused");
    let canonical = copy.canonicalize().expect("canonical path");
    let msg = expect_untrusted(err, &canonical, "the file", Problem::Owner { euid });
    assert!(msg.contains(&format!("owner uid {nobody}")), "{msg}");
    assert!(
        msg.contains(&format!("`chown {euid} {}`", canonical.display())),
        "{msg}"
    );
    plugin::load_path_with(&copy, &trusting()).expect("allowed when asked");
}

#[test]
fn a_pinned_plugin_loads_only_with_the_content_pinned() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let copy = copy_of_polling(dir.path(), "pinned", 0o755);
    let digest = sha256sum(&copy);
    let spec: StrategySpec = format!("{}@sha256:{digest}:spin=10", copy.display())
        .parse()
        .expect("a pinned spec parses");
    assert_eq!(
        (spec.target.as_str(), spec.config.as_str()),
        (copy.to_str().expect("utf-8"), "spin=10")
    );
    let pin = |sha256| LoadOptions {
        allow_untrusted: false,
        sha256: Some(sha256),
    };
    let good = spec.sha256.expect("the pin");
    assert_eq!(good.to_string(), digest);
    plugin::load_path_with(&copy, &pin(good)).expect("the pinned content loads");

    let mut wrong = good;
    wrong.0[0] ^= 1;
    let err = plugin::load_path_with(&copy, &pin(wrong)).expect_err("other content is refused");
    let LoadError::DigestMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("expected DigestMismatch, got {err:?}");
    };
    assert_eq!((*expected, *actual), (wrong, good));
    let msg = err.to_string();
    assert!(
        msg.contains(&digest) && msg.contains(&wrong.to_string()),
        "{msg}"
    );
    assert!(msg.contains("sha256sum"), "{msg}");
}

#[test]
fn strategy_specs_parse_names_paths_pins_and_configs() {
    let hex = "ab".repeat(32);
    let parse = |text: &str| text.parse::<StrategySpec>();
    let spec = |target: &str, sha256: Option<&str>, config: &str| StrategySpec {
        target: target.to_owned(),
        sha256: sha256.map(|h| h.parse::<Sha256>().expect("hex")),
        config: config.to_owned(),
    };
    for (text, expected) in [
        ("polling".to_owned(), spec("polling", None, "")),
        (
            "polling:spin=10".to_owned(),
            spec("polling", None, "spin=10"),
        ),
        (
            format!("polling@sha256:{hex}"),
            spec("polling", Some(&hex), ""),
        ),
        (
            format!("polling@sha256:{}:a=1:b=2", hex.to_uppercase()),
            spec("polling", Some(&hex), "a=1:b=2"),
        ),
        (
            "/opt/a@b/libsafepoint_x.so:c".to_owned(),
            spec("/opt/a@b/libsafepoint_x.so", None, "c"),
        ),
    ] {
        assert_eq!(parse(&text).expect(&text), expected, "{text}");
    }
    for (text, says) in [
        ("polling@sha256:abc".to_owned(), "64 hex digits"),
        (format!("polling@sha256:{}zz", &hex[..62]), "64 hex digits"),
        ("polling@sha256".to_owned(), "64 hex digits"),
        ("polling@md5:abc".to_owned(), "NAME@sha256:HEX"),
    ] {
        let err = parse(&text).expect_err(&text);
        assert!(matches!(err, LoadError::BadSpec { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{text}`")), "{msg}");
        assert!(msg.contains(says), "{text}: {msg}");
    }
}
