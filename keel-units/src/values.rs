//! Value syntaxes shared by many directives: booleans, time spans,
//! resource limits, signals, exit statuses, octal modes.

use std::time::Duration;

/// A time span that may be infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpan {
    /// A finite span.
    Finite(Duration),
    /// `infinity` (or 0 where systemd treats that as "no timeout").
    Infinity,
}

/// Parses a systemd boolean.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Ok(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}")),
    }
}

/// Parses a systemd time span (systemd.time(7)): `5`, `5s`, `1min 30s`,
/// `500ms`, `1.5h`, `infinity`. A bare number is seconds.
pub fn parse_timespan(s: &str) -> Result<TimeSpan, String> {
    let t = s.trim();
    if t == "infinity" {
        return Ok(TimeSpan::Infinity);
    }
    let bad = || format!("invalid time span {s:?}");
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (int, frac) = rest[..num_len]
            .split_once('.')
            .unwrap_or((&rest[..num_len], ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(bad());
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let usec: u128 = match &rest[..unit_len] {
            "" | "s" | "sec" | "second" | "seconds" => 1_000_000,
            "us" | "usec" | "µs" | "μs" => 1,
            "ms" | "msec" => 1_000,
            "m" | "min" | "minute" | "minutes" => 60_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000,
            "d" | "day" | "days" => 86_400_000_000,
            "w" | "week" | "weeks" => 604_800_000_000,
            "M" | "month" | "months" => 2_629_800_000_000,
            "y" | "year" | "years" => 31_557_600_000_000,
            _ => return Err(bad()),
        };
        total += int * usec;
        // Fractional digits, as systemd: each digit scaled by the unit.
        let mut scale = usec;
        for d in frac.chars() {
            scale /= 10;
            total += u128::from(d.to_digit(10).ok_or_else(bad)?) * scale;
        }
        rest = rest[unit_len..].trim_start();
    }
    let micros = u64::try_from(total).map_err(|_| bad())?;
    Ok(TimeSpan::Finite(Duration::from_micros(micros)))
}

/// Like [`parse_timespan`], but 0 means "no timeout" as in `TimeoutSec=0`.
pub fn parse_timeout(s: &str) -> Result<TimeSpan, String> {
    match parse_timespan(s)? {
        TimeSpan::Finite(d) if d.is_zero() => Ok(TimeSpan::Infinity),
        t => Ok(t),
    }
}

/// One resource limit: `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Soft limit.
    pub soft: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

/// How a `Limit*=` value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitUnit {
    /// Plain count.
    Count,
    /// Bytes, with K/M/G/T/P/E (1024-based) suffixes.
    Bytes,
    /// Seconds, as a time span (LimitCPU).
    Seconds,
    /// Microseconds, as a time span (LimitRTTIME).
    Micros,
}

/// The resource limits systemd knows: directive suffix, RLIMIT name, unit.
pub const LIMITS: &[(&str, &str, LimitUnit)] = &[
    ("CPU", "RLIMIT_CPU", LimitUnit::Seconds),
    ("FSIZE", "RLIMIT_FSIZE", LimitUnit::Bytes),
    ("DATA", "RLIMIT_DATA", LimitUnit::Bytes),
    ("STACK", "RLIMIT_STACK", LimitUnit::Bytes),
    ("CORE", "RLIMIT_CORE", LimitUnit::Bytes),
    ("RSS", "RLIMIT_RSS", LimitUnit::Bytes),
    ("NOFILE", "RLIMIT_NOFILE", LimitUnit::Count),
    ("AS", "RLIMIT_AS", LimitUnit::Bytes),
    ("NPROC", "RLIMIT_NPROC", LimitUnit::Count),
    ("MEMLOCK", "RLIMIT_MEMLOCK", LimitUnit::Bytes),
    ("LOCKS", "RLIMIT_LOCKS", LimitUnit::Count),
    ("SIGPENDING", "RLIMIT_SIGPENDING", LimitUnit::Count),
    ("MSGQUEUE", "RLIMIT_MSGQUEUE", LimitUnit::Bytes),
    ("NICE", "RLIMIT_NICE", LimitUnit::Count),
    ("RTPRIO", "RLIMIT_RTPRIO", LimitUnit::Count),
    ("RTTIME", "RLIMIT_RTTIME", LimitUnit::Micros),
];

fn parse_limit_value(s: &str, unit: LimitUnit) -> Result<Option<u64>, String> {
    let s = s.trim();
    if s == "infinity" {
        return Ok(None);
    }
    let bad = || format!("invalid limit {s:?}");
    match unit {
        LimitUnit::Count => s.parse().map(Some).map_err(|_| bad()),
        LimitUnit::Bytes => {
            let (num, mult) = match s.char_indices().last() {
                Some((i, c)) if c.is_ascii_alphabetic() => {
                    let exp = "KMGTPE".find(c).ok_or_else(bad)?;
                    (&s[..i], 1024u64.pow(exp as u32 + 1))
                }
                _ => (s, 1),
            };
            let n: u64 = num.trim().parse().map_err(|_| bad())?;
            n.checked_mul(mult).map(Some).ok_or_else(bad)
        }
        LimitUnit::Seconds | LimitUnit::Micros => match parse_timespan(s)? {
            TimeSpan::Infinity => Ok(None),
            TimeSpan::Finite(d) if unit == LimitUnit::Seconds => Ok(Some(d.as_secs())),
            TimeSpan::Finite(d) => Ok(Some(u64::try_from(d.as_micros()).map_err(|_| bad())?)),
        },
    }
}

/// Parses `value` or `soft:hard`.
pub fn parse_limit(s: &str, unit: LimitUnit) -> Result<Limit, String> {
    let (soft, hard) = match s.split_once(':') {
        Some((a, b)) => (parse_limit_value(a, unit)?, parse_limit_value(b, unit)?),
        None => {
            let v = parse_limit_value(s, unit)?;
            (v, v)
        }
    };
    if let (Some(s), Some(h)) = (soft, hard) {
        if s > h {
            return Err("soft limit above hard limit".to_string());
        }
    }
    if soft.is_none() && hard.is_some() {
        return Err("soft limit above hard limit".to_string());
    }
    Ok(Limit { soft, hard })
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Parses a signal name (`SIGTERM`, `TERM`) or number to its number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let name = s.strip_prefix("SIG").unwrap_or(s);
    if let Some((_, n)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(*n);
    }
    if let Some(off) = name.strip_prefix("RTMIN+") {
        if let Ok(o) = off.parse::<i32>() {
            if (0..=30).contains(&o) {
                return Ok(34 + o);
            }
        }
    }
    match s.parse::<i32>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("invalid signal {s:?}")),
    }
}

/// Exit statuses and signals (`SuccessExitStatus=`, `RestartPreventExitStatus=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitStatusSet {
    /// Exit codes 0–255.
    pub codes: Vec<u8>,
    /// Signal numbers.
    pub signals: Vec<i32>,
}

/// Adds the words of `s` to `set`; returns messages for words it skipped.
pub fn parse_exit_statuses(s: &str, set: &mut ExitStatusSet) -> Vec<String> {
    let mut bad = Vec::new();
    for w in s.split_whitespace() {
        if let Ok(n) = w.parse::<u8>() {
            set.codes.push(n);
        } else if let Ok(sig) = parse_signal(w).map_err(|_| ()).and_then(|n| {
            if w.parse::<i32>().is_ok() {
                Err(())
            } else {
                Ok(n)
            }
        }) {
            set.signals.push(sig);
        } else {
            bad.push(format!("invalid exit status {w:?}, ignored"));
        }
    }
    bad
}

/// Parses an octal file mode or umask (`0755`, `022`).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("invalid mode {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> Duration {
        match parse_timespan(s).unwrap() {
            TimeSpan::Finite(d) => d,
            TimeSpan::Infinity => panic!("infinite"),
        }
    }

    #[test]
    fn timespans() {
        assert_eq!(secs("5"), Duration::from_secs(5));
        assert_eq!(secs("5s"), Duration::from_secs(5));
        assert_eq!(secs("1min 30s"), Duration::from_secs(90));
        assert_eq!(secs("1min30s"), Duration::from_secs(90));
        assert_eq!(secs("500ms"), Duration::from_millis(500));
        assert_eq!(secs("2h"), Duration::from_secs(7200));
        assert_eq!(secs("1.5 m"), Duration::from_secs(90));
        assert_eq!(secs("1d 1us"), Duration::from_micros(86_400_000_001));
        assert_eq!(parse_timespan("infinity"), Ok(TimeSpan::Infinity));
        assert_eq!(parse_timeout("0"), Ok(TimeSpan::Infinity));
        for bad in ["", "5x", "s", "-1", "1 2 x", ".", "1.2.3"] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
    }

    /// Cross-check with systemd's own parser, when it is installed.
    #[test]
    fn timespans_match_systemd_analyze() {
        let inputs = [
            "5",
            "5s",
            "1min 30s",
            "1min30s",
            "500ms",
            "1.5h",
            "0.1s",
            "1.25 min",
            "2 weeks",
            "1y",
            "3M",
            "1d 1us",
            "1h 2m 3s 4ms 5us",
            "10 s",
            "7 sec",
            ".5s",
        ];
        for input in inputs {
            let out = match std::process::Command::new("systemd-analyze")
                .args(["timespan", input])
                .output()
            {
                Ok(o) => o,
                Err(e) => panic!("systemd-analyze: {e} (apt-get install systemd)"),
            };
            assert!(out.status.success(), "systemd-analyze rejected {input:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            let usec: u64 = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("μs: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                parse_timespan(input),
                Ok(TimeSpan::Finite(Duration::from_micros(usec))),
                "{input}"
            );
        }
        for bad in ["5x", "s", "-1"] {
            let out = std::process::Command::new("systemd-analyze")
                .args(["timespan", bad])
                .output()
                .unwrap();
            assert!(
                !out.status.success() && parse_timespan(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits() {
        assert_eq!(
            parse_limit("infinity", LimitUnit::Count),
            Ok(Limit {
                soft: None,
                hard: None
            })
        );
        assert_eq!(
            parse_limit("1024:4096", LimitUnit::Count),
            Ok(Limit {
                soft: Some(1024),
                hard: Some(4096)
            })
        );
        assert_eq!(
            parse_limit("64K:infinity", LimitUnit::Bytes),
            Ok(Limit {
                soft: Some(65536),
                hard: None
            })
        );
        assert_eq!(
            parse_limit("1min", LimitUnit::Seconds).unwrap().soft,
            Some(60)
        );
        assert!(parse_limit("10:5", LimitUnit::Count).is_err());
        assert!(parse_limit("infinity:5", LimitUnit::Count).is_err());
        assert!(parse_limit("lots", LimitUnit::Count).is_err());
    }

    #[test]
    fn misc() {
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("SIGRTMIN+2"), Ok(36));
        assert!(parse_signal("SIGFOO").is_err());
        let mut set = ExitStatusSet::default();
        let bad = parse_exit_statuses("0 255 SIGPIPE TERM 300 x", &mut set);
        assert_eq!(set.codes, [0, 255]);
        assert_eq!(set.signals, [13, 15]);
        assert_eq!(bad.len(), 2);
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert!(parse_mode("0855").is_err());
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert!(parse_bool("maybe").is_err());
    }
}
