//! Any text through debrepo's Release parser (`debrepo::parse_release`,
//! what a verified InRelease's signed text goes through) and its date
//! parser (`debrepo::parse_date`): nothing may panic.
//!
//! Invariants: a parsed Release's SHA256 entries are 64 lowercase hex
//! digits; a date that parses, written again in the canonical form
//! (`Sat, 11 Jul 2026 10:16:37 UTC`), parses to the same time.
#![no_main]

use debrepo::{parse_date, parse_release};
use libfuzzer_sys::fuzz_target;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the epoch as an RFC 2822 date in UTC (Howard Hinnant's
/// civil_from_days); the weekday is not checked by the parser.
fn format_date(t: u64) -> String {
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "Thu, {d:02} {} {y} {:02}:{:02}:{:02} UTC",
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn check_date(s: &str) {
    if let Some(t) = parse_date(s) {
        let canonical = format_date(t);
        assert_eq!(
            parse_date(&canonical),
            Some(t),
            "{s:?} -> {t} -> {canonical:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_release(text) {
        Ok(r) => {
            for (name, entry) in &r.sha256 {
                assert!(!name.is_empty());
                assert_eq!(entry.sha256.len(), 64);
                assert!(entry
                    .sha256
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
    for line in text.lines().take(64) {
        check_date(line);
        if let Some((_, value)) = line.split_once(':') {
            check_date(value);
        }
    }
});
