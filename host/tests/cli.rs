//! The `safepoint` command, run as a user would: exit status and output.

use std::path::PathBuf;
use std::process::{Command, Output};

use safepoint_host::workloads::Workload;

fn safepoint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_safepoint"))
        .args(args)
        .output()
        .expect("run the safepoint binary")
}

/// `safepoint list` with a copy of test plugin `lib_name`, named `file_name`, in a directory
/// passed as `--plugin-path`; returns the directory (kept alive), the copy and the output.
fn list_with_plugin_copy(
    lib_name: &str,
    file_name: &str,
) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let copy = dir.path().join(file_name);
    std::fs::copy(test_plugin(lib_name), &copy).expect("copy the test plugin");
    let out = safepoint(&[
        "list",
        "--plugin-path",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (dir, copy, text(&out.stdout))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn test_plugin(lib_name: &str) -> String {
    let exe = std::env::current_exe().expect("test executable");
    let path: PathBuf = exe
        .parent()
        .expect("deps directory")
        .join(format!("lib{lib_name}.so"));
    assert!(path.is_file(), "{} was not built", path.display());
    path.display().to_string()
}

#[track_caller]
fn assert_fails(out: &Output, stderr_has: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(stderr_has),
        "stderr lacks `{stderr_has}`:\n{err}"
    );
}

#[track_caller]
fn assert_summary_has(stdout: &str, fields: &[&str]) {
    for field in fields {
        assert!(stdout.contains(field), "summary lacks `{field}`:\n{stdout}");
    }
}

#[test]
fn run_prints_a_summary_for_every_strategy_and_workload() {
    for (strategy, workload) in ["polling", "futex"]
        .into_iter()
        .flat_map(|s| ["poll", "idle", "syscall", "mixed"].map(|w| (s, w)))
    {
        let out = safepoint(&[
            "run",
            "--strategy",
            strategy,
            "--procs",
            "3",
            "--workload",
            workload,
            "--barriers",
            "200",
        ]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{strategy}, {workload}: {}\n{stdout}",
            text(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!(
                "strategy {strategy}, 3 Ps, workload {workload}: 200 barriers completed"
            )),
            "{stdout}"
        );
        for field in [
            "barrier time     p50",
            "p99",
            "max",
            "requester CPU",
            "by themselves",
            "by the requester",
        ] {
            assert!(
                stdout.contains(field),
                "{strategy}, {workload}: summary lacks `{field}`:\n{stdout}"
            );
        }
    }
}

/// Issue 4's acceptance run: the requester's CPU per barrier is the line under the wall time,
/// and the strategy's counters follow.
#[test]
fn run_with_the_futex_strategy_shows_requester_cpu_under_the_wall_time() {
    let out = safepoint(&[
        "run",
        "--strategy",
        "futex",
        "--procs",
        "4",
        "--workload",
        "mixed",
        "--barriers",
        "1000",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("strategy futex, 4 Ps, workload mixed: 1000 barriers completed"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("  barrier time     p50 "), "{stdout}");
    assert!(
        lines[2].starts_with("  requester CPU    ") && lines[2].ends_with(" µs per barrier"),
        "{stdout}"
    );
    let counters = lines.last().copied().unwrap_or_default();
    for counter in [
        "barriers 1000",
        "futex waits ",
        "futex wakes ",
        "wait timeouts ",
    ] {
        assert!(counters.contains(counter), "lacks `{counter}`: {stdout}");
    }
}

#[test]
fn run_takes_a_strategy_config_after_a_colon() {
    for strategy in ["polling:spin=0", "futex:repoke=200us"] {
        let out = safepoint(&[
            "run",
            "--strategy",
            strategy,
            "--procs",
            "2",
            "--barriers",
            "50",
        ]);
        assert!(out.status.success(), "{strategy}: {}", text(&out.stderr));
    }
    for (strategy, refusal) in [
        (
            "polling:spin=many",
            "refused to start: spin=many: expected a number of rounds from 0 to 20",
        ),
        (
            "futex:repoke=1h",
            "refused to start: repoke=1h: expected a number and a unit (ns, us, ms, s)",
        ),
    ] {
        assert_fails(
            &safepoint(&["run", "--strategy", strategy, "--barriers", "1"]),
            refusal,
        );
    }
}

#[test]
fn list_shows_each_plugin_and_whether_it_loads() {
    let out = safepoint(&["list"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("polling "), "{stdout}");
    assert!(stdout.contains("libsafepoint_polling.so"), "{stdout}");
    assert!(stdout.contains("capabilities: none"), "{stdout}");
    assert!(stdout.contains("futex "), "{stdout}");
    assert!(stdout.contains("capabilities: no-busy-wait"), "{stdout}");
    assert!(stdout.contains("loads: yes"), "{stdout}");
    assert!(
        stdout.contains("loads: no: ABI mismatch"),
        "the skewed test plugin is listed as not loading:\n{stdout}"
    );
}

#[test]
fn list_shows_the_frozen_plugin_as_abi_2_0_and_it_loads() {
    let (_dir, _copy, stdout) =
        list_with_plugin_copy("safepoint_test_frozen", "libsafepoint_frozen.so");
    let entry: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("frozen "))
        .take(4)
        .collect();
    assert_eq!(entry.len(), 4, "{stdout}");
    assert!(entry[1].contains("ABI 2.0, capabilities: none"), "{stdout}");
    assert_eq!(entry[3].trim(), "loads: yes", "{stdout}");
}

#[test]
fn version_prints_the_program_and_the_abi_version() {
    let out = safepoint(&["--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "safepoint {} (ABI {})",
            env!("CARGO_PKG_VERSION"),
            safepoint_abi::ABI_VERSION
        )
    );
}

#[test]
fn list_searches_the_plugin_path_flag_first() {
    let (_dir, copy, stdout) = list_with_plugin_copy("safepoint_polling", "libsafepoint_mine.so");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("polling ") && first.ends_with(&copy.display().to_string()),
        "{stdout}"
    );
}

#[test]
fn untrusted_plugins_are_refused_unless_allowed_and_pins_are_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let copy = dir.path().join("libsafepoint_mine.so");
    std::fs::copy(test_plugin("safepoint_polling"), &copy).expect("copy the polling plugin");
    let path = copy.to_str().expect("utf-8 path");
    let run = |spec: &str, extra: &[&str]| {
        let mut args = vec!["run", "--barriers", "20", "--strategy", spec];
        args.extend_from_slice(extra);
        safepoint(&args)
    };
    let mode = |m| std::fs::Permissions::from_mode(m);

    std::fs::set_permissions(&copy, mode(0o666)).expect("chmod");
    assert_fails(&run(path, &[]), &format!("fix it with `chmod go-w {path}`"));
    let allowed = run(path, &["--allow-untrusted-plugins"]);
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    let listed = safepoint(&["list", "--plugin-path", dir.path().to_str().expect("utf-8")]);
    let listing = text(&listed.stdout);
    assert!(
        listing.contains(&format!(
            "{path}\n             loads: no: refusing to load {path}"
        )),
        "{listing}"
    );
    std::fs::set_permissions(&copy, mode(0o755)).expect("chmod");

    let sha256sum = Command::new("sha256sum")
        .arg(&copy)
        .output()
        .expect("run sha256sum");
    let digest = text(&sha256sum.stdout)[..64].to_owned();
    let pinned = run(&format!("{path}@sha256:{digest}:spin=10"), &[]);
    assert!(pinned.status.success(), "{}", text(&pinned.stderr));
    let wrong = "0".repeat(64);
    assert_fails(
        &safepoint(&[
            "run",
            "--strategies",
            &format!("futex,{path}@sha256:{wrong}"),
        ]),
        &format!("its SHA-256 is {digest}, the pin asks for {wrong}"),
    );
    assert_fails(
        &run("polling@sha256:beef", &[]),
        "bad strategy `polling@sha256:beef`: `beef` is not a SHA-256 digest",
    );
}

#[test]
fn errors_exit_with_status_1_and_say_what_to_do() {
    assert_fails(
        &safepoint(&["run", "--strategy", "nosuch"]),
        "no plugin named `nosuch`",
    );
    assert_fails(
        &safepoint(&["run", "--strategy", "polling", "--workload", "bogus"]),
        "invalid value 'bogus' for '--workload <WORKLOAD>'\n  [possible values: poll, idle, \
         syscall, mixed, nopoll, alloc, server, compute]",
    );
    assert_fails(
        &safepoint(&["run", "--strategy", "polling", "--procs", "0"]),
        "--procs",
    );
    assert_fails(
        &safepoint(&["run", "--strategy", "polling", "--safepoint-timeout", "10"]),
        "has no unit",
    );
    assert_fails(&safepoint(&["frobnicate"]), "unrecognized subcommand");
    let dir = tempfile::tempdir().expect("temporary directory");
    let fake = dir.path().join("libsafepoint_fake.so");
    std::fs::write(&fake, "not a library").expect("write");
    assert_fails(
        &safepoint(&["run", "--strategy", fake.to_str().expect("utf-8 path")]),
        "is not a shared library: it has no ELF header",
    );
}

#[test]
fn a_strategy_that_breaks_the_contract_fails_the_run_naming_the_p() {
    let misbehave = format!("{}:skip=1", test_plugin("safepoint_test_misbehave"));
    assert_fails(
        &safepoint(&[
            "run",
            "--strategy",
            &misbehave,
            "--procs",
            "2",
            "--barriers",
            "5",
        ]),
        "strategy misbehave broke the for_each_p contract: f did not run for P1",
    );
}

#[test]
fn abi_mismatch_is_short_and_verbose_adds_the_layout_report() {
    let skew = test_plugin("safepoint_test_abi_skew");
    let short = safepoint(&["run", "--strategy", &skew]);
    let expected = format!(
        "was built against safepoint ABI 99.0, this host has ABI {}; first difference: \
         mismatched package",
        safepoint_abi::ABI_VERSION
    );
    assert_fails(&short, &expected);
    let verbose = safepoint(&["--verbose", "run", "--strategy", &skew]);
    assert_fails(&verbose, "was built against safepoint ABI 99.0");
    assert!(
        verbose.stderr.len() > short.stderr.len() + 1000,
        "--verbose adds abi_stable's full report"
    );
}

/// The shipped strategies the demos run with.
const STRATEGIES: &[&str] = &["polling", "futex", "signal"];

/// The `GC` line of `run --gc`'s summary, with its cycles, values recorded and values marked.
fn gc_line(stdout: &str) -> (&str, [u64; 3]) {
    let gc = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("GC "))
        .unwrap_or_else(|| panic!("no GC line:\n{stdout}"));
    let numbers: Vec<u64> = gc
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let Ok(figures) = numbers.try_into() else {
        panic!("expected cycles, recorded and marked: {gc}")
    };
    (gc, figures)
}

#[test]
fn run_with_gc_reports_cycles_and_barrier_times_by_wait_reason() {
    let out = safepoint(&[
        "run",
        "--strategy",
        "polling",
        "--gc",
        "--procs",
        "3",
        "--workload",
        "mixed",
        "--barriers",
        "300",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let (gc, [cycles, recorded, marked]) = gc_line(&stdout);
    assert!(cycles >= 1, "{gc}");
    assert_eq!(recorded, marked, "every recorded value marked: {gc}");
    assert!(
        stdout.contains("[GC mark termination]") && stdout.contains("[flushing proc caches]"),
        "{stdout}"
    );
}

#[test]
fn the_deadlock_demo_completes_through_for_each_p() {
    for strategy in STRATEGIES {
        let out = safepoint(&["demo", "deadlock", "--strategy", strategy]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{strategy}: {}", text(&out.stderr));
        assert!(
            stdout.starts_with("deadlock demo: 1000 barriers through for_each_p completed"),
            "{strategy}: {stdout}"
        );
    }
}

#[test]
fn the_unchecked_deadlock_is_reported_and_exits_with_status_3() {
    for strategy in STRATEGIES {
        let out = safepoint(&[
            "demo",
            "deadlock",
            "--strategy",
            strategy,
            "--unchecked",
            "--safepoint-timeout",
            "500ms",
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{strategy}: {stderr}");
        let late = stderr
            .lines()
            .find(|l| l.trim_start().starts_with('P') && l.contains("held by M"))
            .unwrap_or_else(|| panic!("{strategy}: no late P in the report:\n{stderr}"));
        assert!(late.contains("[_Prunning]"), "{late}");
        assert!(
            late.contains("[GC worker (active)] \"GC mark worker\""),
            "{late}"
        );
        assert!(
            late.contains("in non-preemptible region: in suspend_g, scanning goroutine 1"),
            "{late}"
        );
        assert!(stderr.contains("1 of 2 Ps not reached"), "{stderr}");
    }
}

#[test]
fn a_strategy_that_cannot_reach_non_polling_ps_refuses_nopoll_up_front() {
    assert_fails(
        &safepoint(&[
            "run",
            "--strategy",
            "polling",
            "--workload",
            "nopoll",
            "--barriers",
            "10",
        ]),
        "strategy polling cannot run workload nopoll: it needs the capability reaches-non-polling-ps",
    );
}

/// `--gc --workload nopoll` needs both capabilities; the refusal names the missing one and
/// the strategies on the search path that have them.
#[test]
fn gc_with_nopoll_is_refused_without_a_handshake_that_reaches_non_polling_ps() {
    let frozen = test_plugin("safepoint_test_frozen");
    for (strategy, name, lacks) in [
        ("polling", "polling", "reaches-non-polling-ps"),
        ("futex", "futex", "reaches-non-polling-ps"),
        (
            frozen.as_str(),
            "frozen",
            "reaches-non-polling-ps,single-p-handshake",
        ),
    ] {
        let out = safepoint(&[
            "run",
            "--strategy",
            strategy,
            "--gc",
            "--workload",
            "nopoll",
            "--barriers",
            "10",
        ]);
        assert_fails(
            &out,
            &format!(
                "strategy {name} cannot run --gc with workload nopoll: the GC scans a goroutine \
                 that never polls inside a single-P handshake that stops its P wherever it \
                 computes, which needs the capabilities \
                 reaches-non-polling-ps,single-p-handshake; {name} lacks {lacks}"
            ),
        );
        assert_fails(
            &out,
            "on the search path, reaches-non-polling-ps,single-p-handshake: signal",
        );
    }
}

/// With signal, the GC scans the nopoll spinners through handshakes, and every value is
/// marked once.
#[test]
fn run_with_gc_and_nopoll_under_signal_scans_through_handshakes() {
    let out = safepoint(&[
        "run",
        "--strategy",
        "signal",
        "--gc",
        "--procs",
        "3",
        "--workload",
        "nopoll",
        "--barriers",
        "300",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let (gc, [cycles, recorded, marked]) = gc_line(&stdout);
    assert!(cycles >= 1, "{gc}");
    assert_eq!(recorded, marked, "{gc}");
    let handshakes: u64 = stdout
        .split("handshakes ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no handshake counter:\n{stdout}"));
    assert!(
        handshakes >= cycles,
        "{handshakes} handshakes, {cycles} cycles"
    );
}

/// `--handshakes N`: N handshakes over the other Ps, with p50, p99 and max.
#[test]
fn run_handshakes_reports_the_time_to_handshake() {
    for strategy in STRATEGIES {
        let out = safepoint(&[
            "run",
            "--strategy",
            strategy,
            "--procs",
            "3",
            "--barriers",
            "0",
            "--handshakes",
            "300",
        ]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{strategy}: {}", text(&out.stderr));
        let time = stdout
            .lines()
            .find(|l| l.trim_start().starts_with("handshake time"))
            .unwrap_or_else(|| panic!("{strategy}: {stdout}"));
        for field in ["p50 ", "p99 ", "max "] {
            assert!(time.contains(field), "{time}");
        }
        assert_summary_has(&stdout, &["handshakes       300 over the other Ps"]);
        assert!(!stdout.contains("barrier time"), "{stdout}");
    }
    assert_fails(
        &safepoint(&[
            "run",
            "--strategy",
            &test_plugin("safepoint_test_frozen"),
            "--handshakes",
            "10",
        ]),
        "strategy frozen cannot perform handshakes: it lacks the capability single-p-handshake",
    );
}

#[test]
fn gc_beside_a_realistic_workload_is_refused_up_front() {
    for (workload, reason) in [
        ("alloc", "alloc runs its own GC"),
        ("server", "its quiet phase measures it without barriers"),
        ("compute", "its quiet phase measures it without barriers"),
    ] {
        assert_fails(
            &safepoint(&[
                "run",
                "--strategy",
                "polling",
                "--gc",
                "--workload",
                workload,
            ]),
            &format!("--gc cannot run with workload {workload}: {reason}"),
        );
    }
}

/// `--help` lists every workload of the enum, each with its description.
#[test]
fn help_lists_every_workload_with_its_description() {
    for command in ["run", "compare"] {
        let out = safepoint(&[command, "--help"]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        for workload in Workload::ALL {
            let line = format!("- {}:", workload.name());
            let entry = stdout
                .lines()
                .find(|l| l.trim_start().starts_with(&line))
                .unwrap_or_else(|| panic!("{command} --help lacks {workload}:\n{stdout}"));
            assert!(entry.ends_with(workload.description()), "{entry}");
        }
    }
}

#[test]
fn run_reports_what_each_realistic_workload_measured() {
    for (workload, params, lines) in [
        (
            "alloc",
            &["--tree-depth", "6"][..],
            &[
                "alloc            binary-trees of depth 6 on 2 goroutine(s): ",
                "allocation rate  ",
                "GC               21 cycles paced by allocation, ",
                "[GC mark termination]",
                "[flushing proc caches]",
            ][..],
        ),
        (
            "server",
            &["--connections", "500"][..],
            &[
                "server           500 connection goroutines, 6 clients: ",
                "latency with barriers      p50 ",
                "latency without barriers   p50 ",
                "shutdown         506 goroutines ended, 12 sockets closed",
            ][..],
        ),
        (
            "compute",
            &["--strip-every", "4096"][..],
            &[
                "compute          64x64 matrix multiply on 2 goroutine(s): ",
                "(strip-mined every 4096)",
                "poll overhead    every iteration +",
            ][..],
        ),
    ] {
        let mut args = vec![
            "run",
            "--strategy",
            "futex",
            "--procs",
            "3",
            "--workload",
            workload,
            "--barriers",
            "40",
        ];
        args.extend(params);
        let out = safepoint(&args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{workload}: {}\n{stdout}",
            text(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!(
                "strategy futex, 3 Ps, workload {workload}: 40 barriers completed"
            )),
            "{stdout}"
        );
        assert_summary_has(&stdout, lines);
    }
}

#[test]
fn compare_writes_each_realistic_workloads_metric_beside_the_barrier_times() {
    let Compared {
        stdout,
        json: value,
        csv,
        ..
    } = compare_quick(&[
        "--procs",
        "2",
        "--workloads",
        "alloc,server,compute",
        "--barriers",
        "20",
        "--duration",
        "50ms",
        "--tree-depth",
        "6",
        "--connections",
        "500",
    ]);
    let rows = value["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), STRATEGIES.len() * 3, "{rows:#?}");
    let mut lines = csv.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let cells: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(cells.len(), rows.len());
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}: {header:?}"))
    };
    for (row, cells) in rows.iter().zip(&cells) {
        assert_eq!(cells.len(), header.len(), "{cells:?}");
        assert_eq!(row["status"], "measured", "{row}");
        let metric = &row["metric"];
        let workload = row["workload"].as_str().expect("workload");
        assert_eq!(metric["kind"], workload, "{row}");
        let keys: &[&str] = match workload {
            "alloc" => &["alloc_mb_per_s", "gc_cycles"],
            "server" => &[
                "latency_p50_ns",
                "latency_p99_ns",
                "quiet_latency_p50_ns",
                "quiet_latency_p99_ns",
            ],
            _ => &["poll_every_overhead_pct", "poll_strip_overhead_pct"],
        };
        for key in keys {
            assert!(metric[key].is_number(), "{key}: {row}");
            let cell: f64 = cells[column(key)].parse().expect("a number");
            let field = metric[key].as_f64().expect("a number");
            assert!(
                (cell - field).abs() <= 5e-4 * field.abs().max(1.0),
                "{key}: {cells:?}"
            );
        }
    }
    for metric in ["GC cycles", "request p50", "polls every iteration"] {
        assert!(
            stdout.contains(metric),
            "the table lacks `{metric}`:\n{stdout}"
        );
    }
}

#[test]
fn the_deadlock_demo_needs_two_ps() {
    assert_fails(
        &safepoint(&["demo", "deadlock", "--strategy", "polling", "--procs", "1"]),
        "--procs",
    );
}

#[test]
fn run_rotates_strategies_and_reports_the_swaps() {
    let list = STRATEGIES
        .iter()
        .chain(["polling:spin=0"].iter())
        .copied()
        .collect::<Vec<_>>()
        .join(",");
    let out = safepoint(&[
        "run",
        "--strategies",
        &list,
        "--swap-every",
        "1ms",
        "--gc",
        "--procs",
        "4",
        "--workload",
        "mixed",
        "--barriers",
        "500",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let swaps = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("swaps "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let done: u64 = swaps
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{swaps}"));
    assert!(done >= 1, "{swaps}");
    assert!(
        swaps.contains("took p50") && swaps.contains("world held p50"),
        "{swaps}"
    );
}

#[test]
fn swap_every_needs_strategies() {
    assert_fails(
        &safepoint(&["run", "--strategy", "polling", "--swap-every", "1ms"]),
        "--strategies",
    );
}

/// What `safepoint compare --quick --strategies ALL ARGS...` printed and wrote.
struct Compared {
    stdout: String,
    json: serde_json::Value,
    csv: String,
    svg: String,
}

/// Runs `compare --quick` over every shipped strategy with `args`, writing JSON, CSV and SVG.
fn compare_quick(args: &[&str]) -> Compared {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = |name: &str| {
        dir.path()
            .join(name)
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    };
    let (json, csv, svg) = (file("c.json"), file("c.csv"), file("c.svg"));
    let strategies = STRATEGIES.join(",");
    let mut all = vec!["compare", "--quick", "--strategies", &strategies];
    all.extend(args);
    all.extend(["--json", &json, "--csv", &csv, "--svg", &svg]);
    let out = safepoint(&all);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let read = |path: &str| std::fs::read_to_string(path).expect("compare wrote its file");
    Compared {
        stdout,
        json: serde_json::from_str(&read(&json)).expect("valid JSON"),
        csv: read(&csv),
        svg: read(&svg),
    }
}

#[test]
fn compare_quick_writes_every_row_and_the_floors() {
    let Compared {
        stdout,
        json: value,
        csv,
        svg,
    } = compare_quick(&[]);
    let machine = &value["machine"];
    assert!(
        machine["cores"].as_u64().is_some_and(|c| c >= 1),
        "{machine}"
    );
    for key in ["cpu_model", "kernel", "date"] {
        assert!(
            machine[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key}: {machine}"
        );
    }
    let floors: Vec<&str> = value["floors"]
        .as_array()
        .expect("floors")
        .iter()
        .map(|f| f["floor"].as_str().expect("floor name"))
        .collect();
    assert_eq!(
        floors,
        [
            "cache-line round trip",
            "signal round trip",
            "futex wake round trip"
        ]
    );
    let rows = value["rows"].as_array().expect("rows");
    // --quick: Ps 1, 2, 4 and workloads poll, mixed, nopoll, for every strategy.
    assert_eq!(rows.len(), STRATEGIES.len() * 3 * 3, "{rows:#?}");
    for strategy in STRATEGIES {
        for procs in [1, 2, 4] {
            for workload in ["poll", "mixed", "nopoll"] {
                let row = rows
                    .iter()
                    .find(|r| {
                        r["strategy"] == *strategy
                            && r["procs"] == procs
                            && r["workload"] == workload
                    })
                    .unwrap_or_else(|| panic!("no row for {strategy}, {procs} Ps, {workload}"));
                let handshake = &row["handshake"];
                if procs >= 2 && row["status"] == "measured" {
                    assert_eq!(handshake["status"], "measured", "{row}");
                    for key in ["handshakes", "p50_ns", "p99_ns", "max_ns", "by_itself"] {
                        assert!(handshake[key].as_u64().is_some(), "{key}: {row}");
                    }
                    assert!(
                        handshake["p50_over_signal_floor"]
                            .as_f64()
                            .is_some_and(|r| r > 0.0),
                        "{row}"
                    );
                } else {
                    assert!(handshake.is_null(), "{row}");
                }
                match row["status"].as_str() {
                    Some("measured") => {
                        for key in ["p50_ns", "p99_ns", "max_ns", "requester_cpu_ns", "barriers"] {
                            assert!(row[key].as_u64().is_some(), "{key}: {row}");
                        }
                        assert!(
                            row["p50_over_floor"].as_f64().is_some_and(|r| r > 0.0),
                            "{row}"
                        );
                    }
                    Some("not_applicable") => {
                        assert_eq!(workload, "nopoll", "{row}");
                        assert!(
                            row["reason"]
                                .as_str()
                                .is_some_and(|r| r.contains("reaches-non-polling-ps")),
                            "{row}"
                        );
                    }
                    other => panic!("{strategy}, {procs} Ps, {workload}: status {other:?}: {row}"),
                }
            }
        }
    }
    assert_eq!(
        csv.lines().filter(|l| !l.starts_with('#')).count(),
        1 + rows.len(),
        "{csv}"
    );
    assert!(
        svg.starts_with("<svg") && svg.contains("floor: cache-line round trip"),
        "an SVG with the floors"
    );
    assert!(stdout.contains("p50/floor"), "{stdout}");
    assert!(
        stdout.contains("single-P handshakes, round robin over the other Ps"),
        "{stdout}"
    );
    let header = csv
        .lines()
        .find(|l| l.starts_with("strategy,"))
        .expect("a CSV header");
    assert!(
        header.contains(",handshakes,handshake_p50_ns,handshake_p99_ns,"),
        "{header}"
    );
}

#[test]
fn the_signal_strategy_runs_nopoll_and_its_summary_shows_its_counters() {
    let out = safepoint(&[
        "run",
        "--strategy",
        "signal",
        "--procs",
        "4",
        "--workload",
        "nopoll",
        "--barriers",
        "200",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(
        stdout.starts_with("strategy signal, 4 Ps, workload nopoll: 200 barriers completed"),
        "{stdout}"
    );
    assert_summary_has(
        &stdout,
        &[
            "signals sent",
            "handler entries",
            "stops at async safe points",
            "stops at polls",
            "signals forwarded",
            "polls with the signal blocked",
            "EINTRs caused",
        ],
    );
}

#[test]
fn the_signal_strategy_takes_another_signal_and_refuses_unsafe_ones() {
    let out = safepoint(&[
        "run",
        "--strategy",
        "signal:signal=SIGUSR2",
        "--procs",
        "2",
        "--workload",
        "nopoll",
        "--barriers",
        "100",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_fails(
        &safepoint(&[
            "run",
            "--strategy",
            "signal:signal=SIGSEGV",
            "--barriers",
            "1",
        ]),
        "refused to start: signal=SIGSEGV: expected one of SIGURG",
    );
    let list = text(&safepoint(&["list"]).stdout);
    let signal = list
        .split("\nsignal ")
        .nth(1)
        .unwrap_or_else(|| panic!("no signal plugin listed:\n{list}"));
    assert!(
        signal.contains("capabilities: reaches-non-polling-ps"),
        "{list}"
    );
}

#[test]
fn run_writes_the_trace_the_svg_and_one_log_line_per_barrier() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (json, svg) = (dir.path().join("t.json"), dir.path().join("t.svg"));
    let out = safepoint(&[
        "run",
        "--strategy",
        "signal",
        "--procs",
        "3",
        "--workload",
        "mixed",
        "--barriers",
        "50",
        "--log-barriers",
        "--trace",
        json.to_str().expect("utf-8 path"),
        "--trace-svg",
        svg.to_str().expect("utf-8 path"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logged: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("barrier "))
        .collect();
    assert_eq!(logged.len(), 50, "{stdout}");
    for line in &logged {
        assert!(
            line.contains("\"GC mark termination\" strategy signal: 3 Ps reached in")
                && line.contains("; last P")
                && line.contains("; took"),
            "{line}"
        );
    }
    assert_summary_has(
        &stdout,
        &[
            "time to safepoint  traced over 50 barriers",
            "[GC mark termination]",
            "    P2 ",
        ],
    );
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the trace was written"))
            .expect("the trace parses");
    assert!(
        trace["traceEvents"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );
    let svg = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(svg.starts_with("<svg"));
}

#[test]
fn a_traced_timeout_report_shows_the_late_ps_last_events() {
    let out = safepoint(&[
        "demo",
        "deadlock",
        "--strategy",
        "polling",
        "--unchecked",
        "--safepoint-timeout",
        "500ms",
        "--log-barriers",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("last events of P"), "{stderr}");
    assert!(stderr.contains("armed ("), "{stderr}");
}

#[test]
fn compare_traced_gives_the_cost_of_tracing_and_the_time_to_safepoint() {
    let Compared { stdout, json, .. } = compare_quick(&[
        "--traced",
        "--procs",
        "2",
        "--workloads",
        "poll",
        "--barriers",
        "100",
        // Every row, traced or not, runs its 100 barriers, not a time slice's worth.
        "--duration",
        "20s",
    ]);
    assert!(
        stdout.contains("with tracing on (each row run again)"),
        "{stdout}"
    );
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), STRATEGIES.len());
    for row in rows {
        let traced = &row["traced"];
        assert!(traced["p50_over_untraced"].as_f64().is_some(), "{row}");
        let per_p = traced["time_to_safepoint_per_p"].as_array().expect("per P");
        assert_eq!(per_p.len(), 2, "{row}");
        let per_reason = &traced["time_to_safepoint_per_reason"][0];
        assert_eq!(per_reason["of"], "GC mark termination", "{row}");
        assert_eq!(per_reason["barriers"], row["barriers"], "{row}");
    }
}

/// A reader that goes away after one line (`2>&1 | head -1`) closes both stdout and stderr:
/// the program stops quietly, without a panic (exit status 101) on the write that fails.
#[test]
fn log_barriers_into_a_pipe_closed_after_one_line_ends_quietly() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' run --strategy polling --procs 2 --workload poll \
             --barriers 200 --log-barriers 2>&1 | head -1",
            env!("CARGO_BIN_EXE_safepoint")
        ))
        .output()
        .expect("run bash");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{:?}: {stdout}", out.status);
    assert!(stdout.starts_with("barrier 1 "), "{stdout}");
}

#[test]
fn a_short_soak_loses_nothing_and_keeps_memory_flat() {
    let out = safepoint(&["soak", "--barriers", "20000", "--procs", "4"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(
        stdout.starts_with("soak, 4 Ps, workload poll: 20000 barriers, "),
        "{stdout}"
    );
    let swaps: u64 = stdout
        .split(" barriers, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no swap count:\n{stdout}"));
    assert!(swaps > 0, "{stdout}");
    assert_summary_has(
        &stdout,
        &[
            " values recorded, 0 lost, 0 doubled; at most ",
            "  RSS              ",
            "  verdict          ok: nothing lost or doubled, memory flat",
        ],
    );
}
