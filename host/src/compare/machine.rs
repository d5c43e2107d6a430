//! The machine a comparison ran on: cores, CPU model, kernel, date.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Where a comparison ran.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPUs available to the process.
    pub cores: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
    /// When, in UTC, as `YYYY-MM-DD HH:MM`.
    pub date: String,
}

impl Machine {
    /// The machine this process runs on.
    pub fn this_one() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| format!("Linux {}", k.trim()))
            .unwrap_or_else(|_| "unknown kernel".to_owned());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            kernel,
            date: utc_now(),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "machine: {} cores, {}, {}, {} UTC",
            self.cores, self.cpu_model, self.kernel, self.date
        )
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM`, from the days-since-epoch civil calendar
/// algorithm (Howard Hinnant's `civil_from_days`).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
