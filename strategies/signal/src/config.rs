//! The strategy's configuration: `--strategy signal:KEY=VALUE,...`.

use std::fmt;
use std::time::Duration;

use safepoint_abi::{ErrorKind, PluginError};
use safepoint_kit::config::{parse_config, parse_duration};

/// The signal sent by default: Go's `sigPreempt`. Its default action is to do nothing, few
/// programs use it, and the kernel never sends it on its own except for out-of-band socket
/// data (Go's reasoning, `signal_unix.go`).
pub(crate) const DEFAULT_SIGNAL: &str = "SIGURG";

/// How long a P may stay late before the requester arms and signals it again: Go's
/// `forEachP` re-preempts every 10 ms, `suspendG` every 100 µs; a barrier is as urgent as
/// the latter.
pub(crate) const DEFAULT_RESIGNAL: Duration = Duration::from_micros(100);

/// How long the requester lets running Ps reach their poll before it signals those still
/// pending, when every P can have a CPU of its own (`grace=DURATION`); chosen by
/// measurement (see the README): a P that polls every few hundred nanoseconds is reached
/// within it, at polling's cost, and one that never polls pays a signal a little later.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_micros(1);

/// Spin rounds before a waiter sleeps, when every P can have a CPU of its own: `2^9 - 1`
/// pauses, about 11 µs on the development machine (22 ns a pause), which covers a signal's
/// delivery to a running thread (10 µs there) and a requester's reply.
pub(crate) const SPIN_ROUNDS_FITTING: u32 = 9;
/// Spin rounds when Ps outnumber CPUs: none. A waiter that spins keeps a CPU from the thread
/// it waits for.
pub(crate) const SPIN_ROUNDS_OVERSUBSCRIBED: u32 = 0;

/// A signal the strategy may use: one whose default action is harmless or that programs
/// rarely use, never one the kernel sends for faults or job control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Signal {
    pub(crate) number: libc::c_int,
}

/// The fixed signals accepted by name, with whether their default action is to ignore.
const NAMED: [(&str, libc::c_int, bool); 5] = [
    ("SIGURG", libc::SIGURG, true),
    ("SIGWINCH", libc::SIGWINCH, true),
    ("SIGUSR1", libc::SIGUSR1, false),
    ("SIGUSR2", libc::SIGUSR2, false),
    ("SIGIO", libc::SIGIO, false),
];

impl Signal {
    /// Parses `SIGURG`, `urg`, `SIGUSR2`, `SIGRTMIN+3`, ... (case-insensitive, `SIG` optional).
    pub(crate) fn parse(text: &str) -> Result<Signal, String> {
        let upper = text.trim().to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper.clone()
        } else {
            format!("SIG{upper}")
        };
        if let Some(&(_, number, _)) = NAMED.iter().find(|(n, _, _)| *n == name) {
            return Ok(Signal { number });
        }
        let rt = match name.as_str() {
            "SIGRTMIN" => Some(0),
            _ => name
                .strip_prefix("SIGRTMIN+")
                .and_then(|n| n.parse::<libc::c_int>().ok()),
        };
        if let Some(offset) = rt {
            let number = libc::SIGRTMIN() + offset;
            if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&number) {
                return Ok(Signal { number });
            }
        }
        let names: Vec<&str> = NAMED.iter().map(|(n, _, _)| *n).collect();
        Err(format!(
            "signal={text}: expected one of {} or SIGRTMIN+N (N from 0 to {})",
            names.join(", "),
            libc::SIGRTMAX() - libc::SIGRTMIN()
        ))
    }

    /// Whether the signal's default action (`SIG_DFL`) is to ignore it.
    pub(crate) fn ignored_by_default(self) -> bool {
        NAMED
            .iter()
            .any(|&(_, number, ignored)| number == self.number && ignored)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match NAMED.iter().find(|(_, n, _)| *n == self.number) {
            Some((name, _, _)) => f.write_str(name),
            None => write!(f, "SIGRTMIN+{}", self.number - libc::SIGRTMIN()),
        }
    }
}

/// What `signal:CONFIG` chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// The signal sent to late Ps: `signal=SIGURG`.
    pub(crate) signal: Signal,
    /// How often late Ps are armed and signalled again: `resignal=100us`.
    pub(crate) resignal: Duration,
    /// How long running Ps may take to poll before they are signalled: `grace=1us`; `None`
    /// for the default, which is none when Ps outnumber CPUs (a requester that waits for a
    /// P keeps a CPU from it) and [`DEFAULT_GRACE`] otherwise.
    pub(crate) grace: Option<Duration>,
    /// How long the requester, and a P stopped in its handler, spin before they sleep on
    /// their futex: `2^N - 1` pauses (`spin=N`), or `None` for the default, which depends on
    /// whether the Ps fit the CPUs (`spin=auto`).
    pub(crate) spin_rounds: Option<u32>,
    /// Fault injection, for the tests of the unwind path only
    /// (`fault=panic-serving-stopped-p`): the requester panics as it takes a P stopped in its
    /// handler, before it runs `f` for it.
    pub(crate) inject_panic: bool,
}

/// The one fault the strategy can inject; see [`Config::inject_panic`].
const FAULT_PANIC_SERVING: &str = "panic-serving-stopped-p";

const KEYS: &str =
    "signal=NAME, resignal=DURATION (e.g. 100us, 1ms), grace=DURATION|auto, spin=N|auto";

fn invalid(message: String) -> PluginError {
    PluginError::new(ErrorKind::InvalidConfig, "new", message)
}

impl Config {
    pub(crate) fn parse(config: &str) -> Result<Config, PluginError> {
        let mut parsed = Config {
            signal: Signal::parse(DEFAULT_SIGNAL).expect("the default signal parses"),
            resignal: DEFAULT_RESIGNAL,
            grace: None,
            spin_rounds: None,
            inject_panic: false,
        };
        for (key, value) in parse_config("new", config)? {
            match key {
                "signal" => parsed.signal = Signal::parse(value).map_err(invalid)?,
                "resignal" => {
                    parsed.resignal = parse_duration(value)
                        .filter(|d| {
                            (Duration::from_micros(10)..=Duration::from_secs(1)).contains(d)
                        })
                        .ok_or_else(|| {
                            invalid(format!(
                                "resignal={value}: expected a duration from 10us to 1s, \
                                 with its unit (ns, us, ms, s)"
                            ))
                        })?;
                }
                "grace" if value == "auto" => parsed.grace = None,
                "grace" => {
                    let grace = parse_duration(value)
                        .filter(|d| *d <= Duration::from_millis(1))
                        .ok_or_else(|| {
                            invalid(format!(
                                "grace={value}: expected auto or a duration from 0ns to 1ms, \
                                 with its unit (ns, us, ms, s)"
                            ))
                        })?;
                    parsed.grace = Some(grace);
                }
                "fault" if value == FAULT_PANIC_SERVING => parsed.inject_panic = true,
                "fault" => {
                    return Err(invalid(format!(
                        "fault={value}: the only fault the strategy injects (for tests) is \
                         {FAULT_PANIC_SERVING}"
                    )));
                }
                "spin" if value == "auto" => parsed.spin_rounds = None,
                "spin" => {
                    let rounds = value.parse().ok().filter(|n| *n <= 20).ok_or_else(|| {
                        invalid(format!(
                            "spin={value}: expected auto or a number of rounds from 0 to 20"
                        ))
                    })?;
                    parsed.spin_rounds = Some(rounds);
                }
                other => {
                    return Err(invalid(format!(
                        "unknown config key `{other}`; the signal strategy takes {KEYS}"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sigurg_and_100_microseconds() {
        let config = Config::parse("").expect("empty config");
        assert_eq!(config.signal.number, libc::SIGURG);
        assert_eq!(config.resignal, Duration::from_micros(100));
        assert!(config.signal.ignored_by_default());
    }

    #[test]
    fn signals_parse_by_name_with_or_without_sig() {
        for (text, number) in [
            ("SIGUSR2", libc::SIGUSR2),
            ("usr1", libc::SIGUSR1),
            ("SigWinch", libc::SIGWINCH),
            ("SIGRTMIN+2", libc::SIGRTMIN() + 2),
        ] {
            let signal = Signal::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(signal.number, number, "{text}");
        }
        assert_eq!(Signal::parse("usr2").expect("usr2").to_string(), "SIGUSR2");
        assert!(!Signal::parse("SIGUSR2").expect("usr2").ignored_by_default());
    }

    #[test]
    fn bad_configs_say_what_is_expected() {
        let err = |text: &str| Config::parse(text).expect_err(text).message.to_string();
        assert!(err("signal=SIGSEGV").contains("expected one of SIGURG"));
        assert!(err("signal=SIGRTMIN+999").contains("SIGRTMIN+N"));
        assert!(err("resignal=100").contains("with its unit"));
        assert!(err("resignal=5s").contains("from 10us to 1s"));
        assert_eq!(
            Config::parse("resignal=1s")
                .expect("the grammar of every strategy")
                .resignal,
            Duration::from_secs(1)
        );
        assert!(err("spin=99").contains("from 0 to 20"));
        assert!(err("grace=2s").contains("from 0ns to 1ms"));
        assert_eq!(
            Config::parse("grace=500ns").expect("grace").grace,
            Some(Duration::from_nanos(500))
        );
        assert_eq!(Config::parse("grace=auto").expect("auto").grace, None);
        assert!(err("colour=blue").contains("the signal strategy takes signal=NAME"));
        let ok = Config::parse("signal=SIGUSR2, resignal=1ms, spin=0").expect("valid");
        assert_eq!(ok.signal.number, libc::SIGUSR2);
        assert_eq!(ok.resignal, Duration::from_millis(1));
        assert_eq!(ok.spin_rounds, Some(0));
        assert_eq!(Config::parse("spin=auto").expect("auto").spin_rounds, None);
        assert!(err("fault=segfault").contains("panic-serving-stopped-p"));
        assert!(
            Config::parse("fault=panic-serving-stopped-p")
                .expect("the fault")
                .inject_panic
        );
    }
}
