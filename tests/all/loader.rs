//! Every loader error, with its message: each names the thing at fault and what to do.

use std::path::Path;

use safepoint_abi::{ABI_VERSION, AbiVersion, ErrorKind};
use safepoint_host::plugin::{self, LoadError, SearchPath};
use safepoint_host::runtime::{Runtime, WaitReason};
use safepoint_host::safepoint::{acquire_world, for_each_p};
use safepoint_tests::{block_on_bounded, misbehave, plugin_file, polling, runtime};

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

#[test]
fn a_missing_plugin_lists_the_directories_searched() {
    let dir = temp_dir();
    let search = SearchPath::new(&[dir.path().to_path_buf()]);
    let err = plugin::load("nosuch", &search).expect_err("nosuch does not exist");
    let LoadError::NotFound {
        name,
        file,
        searched,
    } = &err
    else {
        panic!("expected NotFound, got {err:?}");
    };
    assert_eq!(
        (name.as_str(), file.as_str()),
        ("nosuch", "libsafepoint_nosuch.so")
    );
    assert_eq!(searched.first().map(|d| d.as_path()), Some(dir.path()));
    let msg = err.to_string();
    assert!(
        msg.starts_with("no plugin named `nosuch`: libsafepoint_nosuch.so is in none of ["),
        "{msg}"
    );
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("--plugin-path"), "{msg}");
}

#[test]
fn the_plugin_path_variable_and_flag_come_first() {
    let dir = temp_dir();
    let search = SearchPath::new(&[dir.path().to_path_buf()]);
    assert_eq!(search.dirs()[0], dir.path());
    std::fs::copy(
        plugin_file("safepoint_polling"),
        dir.path().join("libsafepoint_copied.so"),
    )
    .expect("copy");
    let found = plugin::load("copied", &search).expect("found through --plugin-path");
    assert_eq!(found.name(), "polling");
    assert_eq!(found.path(), dir.path().join("libsafepoint_copied.so"));
}

#[test]
fn an_explicit_path_that_does_not_exist_is_named() {
    let err = plugin::load("/nonexistent/libsafepoint_x.so", &SearchPath::default())
        .expect_err("missing");
    assert_eq!(
        err.to_string(),
        "plugin file /nonexistent/libsafepoint_x.so does not exist"
    );
}

#[test]
fn a_file_that_is_not_a_shared_library_is_refused() {
    let dir = temp_dir();
    let text = write(dir.path(), "libsafepoint_text.so", b"#!/bin/sh\necho hi\n");
    let err = plugin::load_path(&text).expect_err("text is no library");
    assert!(matches!(err, LoadError::NotSharedLibrary { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("libsafepoint_text.so is not a shared library: it has no ELF header"),
        "{msg}"
    );

    let mut truncated = b"\x7fELF".to_vec();
    truncated.extend_from_slice(&[0; 12]);
    let elf = write(dir.path(), "libsafepoint_truncated.so", &truncated);
    let err = plugin::load_path(&elf).expect_err("a truncated ELF does not load");
    assert!(matches!(err, LoadError::NotSharedLibrary { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("libsafepoint_truncated.so is not a shared library: "),
        "{err}"
    );
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused_naming_the_symbol() {
    let path = plugin_file("safepoint_test_not_a_plugin");
    let err = plugin::load_path(&path).expect_err("not a plugin");
    let LoadError::NotAPlugin { symbol, .. } = &err else {
        panic!("expected NotAPlugin, got {err:?}");
    };
    assert_eq!(symbol, "SAFEPOINT_ABI_VERSION");
    assert!(
        err.to_string()
            .contains("is not a safepoint plugin: it does not export `SAFEPOINT_ABI_VERSION`"),
        "{err}"
    );
}

#[test]
fn an_abi_mismatch_names_the_file_both_versions_and_the_first_difference() {
    let path = plugin_file("safepoint_test_abi_skew");
    let err = plugin::load_path(&path).expect_err("ABI 99 must be refused");
    let LoadError::AbiMismatch {
        path: at,
        plugin,
        host,
        first_difference,
        details,
    } = &err
    else {
        panic!("expected AbiMismatch, got {err:?}");
    };
    assert_eq!(at, &path);
    assert_eq!(
        *plugin,
        AbiVersion {
            major: 99,
            minor: 0
        }
    );
    assert_eq!(*host, ABI_VERSION);
    assert_eq!(
        first_difference,
        "mismatched package (expected safepoint-abi, found safepoint-test-abi-skew)"
    );
    assert!(details.contains("Error:mismatched package"), "{details}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "{} was built against safepoint ABI 99.0, this host has ABI {ABI_VERSION}",
            path.display()
        )),
        "{msg}"
    );
    assert!(msg.contains(first_difference.as_str()), "{msg}");
    assert!(
        details.len() > msg.len(),
        "the full report is for --verbose, not the message"
    );
    assert_eq!(err.details(), Some(details.as_str()));
}

#[test]
fn the_frozen_2_0_plugin_loads_in_this_host_and_runs_barriers() {
    let frozen =
        plugin::load_path(&plugin_file("safepoint_test_frozen")).expect("a 2.0 plugin loads");
    assert_eq!(frozen.abi_version(), AbiVersion { major: 2, minor: 0 });
    assert_eq!(frozen.name(), "frozen");
    assert_eq!(frozen.capabilities(), safepoint_abi::Capabilities::NONE);
    let rt = runtime(&frozen, "", 4);
    let ran = block_on_bounded(&rt, || {
        let world = acquire_world();
        for_each_p(&world, WaitReason::GcMarkTermination, |_| {})
    });
    ran.expect("a barrier through the 2.0 plugin");
}

#[test]
fn a_plugin_of_a_newer_minor_abi_is_refused_naming_both_versions() {
    let path = plugin_file("safepoint_test_newer_minor");
    let err = plugin::load_path(&path).expect_err("a newer minor is refused");
    let newer = AbiVersion {
        major: ABI_VERSION.major,
        minor: ABI_VERSION.minor + 1,
    };
    let LoadError::NewerAbi { plugin, host, .. } = &err else {
        panic!("expected NewerAbi, got {err:?}");
    };
    assert_eq!((*plugin, *host), (newer, ABI_VERSION));
    assert_eq!(
        err.to_string(),
        format!(
            "{} was built against safepoint ABI {newer}, newer than this host's ABI \
             {ABI_VERSION}: it may call what this host lacks; rebuild it against ABI \
             {ABI_VERSION} or use a newer safepoint",
            path.display()
        )
    );
}

#[test]
fn a_failing_constructor_is_reported_with_its_message() {
    let err = Runtime::builder()
        .procs(1)
        .build(&misbehave(), "fail_new=this machine has no such feature")
        .expect_err("the constructor fails");
    let LoadError::ConstructorFailed {
        plugin,
        kind,
        message,
        ..
    } = &err
    else {
        panic!("expected ConstructorFailed, got {err:?}");
    };
    assert_eq!((plugin.as_str(), *kind), ("misbehave", ErrorKind::Failed));
    assert_eq!(message, "this machine has no such feature");
    assert!(err.to_string().contains("strategy misbehave ("), "{err}");

    let err = Runtime::builder()
        .procs(1)
        .build(&polling(), "spin=lots")
        .expect_err("bad config");
    assert!(
        matches!(
            err,
            LoadError::ConstructorFailed {
                kind: ErrorKind::InvalidConfig,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("spin=lots: expected a number of rounds"),
        "{err}"
    );
}

#[test]
fn a_panicking_constructor_is_caught_naming_the_plugin_and_entry_point() {
    let err = Runtime::builder()
        .procs(1)
        .build(&misbehave(), "panic_in=new")
        .expect_err("it panics");
    let LoadError::Panicked {
        plugin,
        entry_point,
        message,
        ..
    } = &err
    else {
        panic!("expected Panicked, got {err:?}");
    };
    assert_eq!(
        (plugin.as_str(), entry_point.as_str()),
        ("misbehave", "new")
    );
    assert!(message.contains("deliberate panic in new"), "{message}");
}

#[test]
fn several_plugins_are_loaded_and_run_at_once() {
    let (polling, misbehave) = (polling(), misbehave());
    let discovered = SearchPath::default().discover();
    assert!(
        discovered
            .iter()
            .any(|p| p.ends_with("libsafepoint_polling.so")),
        "{discovered:?}"
    );
    let rts = [runtime(&polling, "", 2), runtime(&misbehave, "", 2)];
    for rt in &rts {
        let report = block_on_bounded(rt, || {
            let world = acquire_world();
            for_each_p(&world, WaitReason::GcMarkTermination, |_| {})
        })
        .expect("barrier");
        assert_eq!(report.ps, 2);
    }
    assert_eq!(rts[0].strategy_name(), "polling");
    assert_eq!(rts[1].strategy_name(), "misbehave");
}
