//! The one grammar of strategy config strings (`key=value,key=value`) and of durations
//! (`500us`, `2ms`, `1.5s`), for every plugin and the host's command line.

use std::time::Duration;

use safepoint_abi::{ErrorKind, PluginError};

/// Parses a config string of the form `key=value,key=value`. Empty text gives no pairs.
///
/// ```
/// let pairs = safepoint_kit::config::parse_config("entry_point", "spin=64,yield=on").unwrap();
/// assert_eq!(pairs, vec![("spin", "64"), ("yield", "on")]);
/// assert!(safepoint_kit::config::parse_config("new", "spin").is_err());
/// ```
pub fn parse_config<'a>(
    entry_point: &str,
    config: &'a str,
) -> Result<Vec<(&'a str, &'a str)>, PluginError> {
    config
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| {
                    PluginError::new(
                        ErrorKind::InvalidConfig,
                        entry_point,
                        format!("config item `{item}` is not of the form key=value"),
                    )
                })
        })
        .collect()
}

/// Parses the value of config key `key` as a duration: a number and a unit, `ns`,
/// `us` (or `µs`), `ms` or `s`.
///
/// ```
/// use std::time::Duration;
/// use safepoint_kit::config::parse_config_duration;
///
/// assert_eq!(parse_config_duration("new", "repoke", "250us"), Ok(Duration::from_micros(250)));
/// assert_eq!(parse_config_duration("new", "repoke", "2ms"), Ok(Duration::from_millis(2)));
/// let err = parse_config_duration("new", "repoke", "2").unwrap_err();
/// assert_eq!(err.message.as_str(), "repoke=2: expected a number and a unit (ns, us, ms, s), e.g. 500us");
/// ```
pub fn parse_config_duration(
    entry_point: &str,
    key: &str,
    value: &str,
) -> Result<Duration, PluginError> {
    parse_duration(value).ok_or_else(|| {
        PluginError::invalid_config(
            entry_point,
            format!("{key}={value}: expected a number and a unit (ns, us, ms, s), e.g. 500us"),
        )
    })
}

/// Parses a duration written as a number and a unit: `ns`, `us` (or `µs`), `ms`, `s` or `m`,
/// as in `500us`, `2ms`, `1.5s`. `None` for anything else.
///
/// ```
/// use std::time::Duration;
/// use safepoint_kit::config::parse_duration;
/// assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
/// assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("10"), None);
/// assert_eq!(parse_duration("10h"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    let number: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(number * seconds_per_unit).ok()
}
