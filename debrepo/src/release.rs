//! The Release file (the signed content of InRelease).

use std::collections::BTreeMap;

use crate::deb822;
use crate::openpgp::{verify_cleartext, KeySet};
use crate::Error;

/// Size and SHA-256 of an index file listed in Release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    pub sha256: String,
}

/// Parsed Release fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    pub suite: Option<String>,
    pub codename: Option<String>,
    /// Seconds since the epoch.
    pub date: Option<u64>,
    /// Seconds since the epoch.
    pub valid_until: Option<u64>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    pub acquire_by_hash: bool,
    /// Index files by path relative to `dists/<suite>/`.
    pub sha256: BTreeMap<String, FileEntry>,
}

/// Parses Release text.
pub fn parse_release(text: &str) -> Result<Release, String> {
    let paragraphs = deb822::parse(text).map_err(|e| format!("line {}: {}", e.line, e.message))?;
    let p = match paragraphs.as_slice() {
        [p] => p,
        [] => return Err("empty Release file".to_string()),
        _ => return Err("more than one paragraph in the Release file".to_string()),
    };
    let words = |f: &str| -> Vec<String> {
        p.get(f)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let date = |f: &str| -> Result<Option<u64>, String> {
        p.get(f)
            .map(|v| parse_date(v).ok_or_else(|| format!("invalid {f} {v:?}")))
            .transpose()
    };
    let mut sha256 = BTreeMap::new();
    for line in p.get("SHA256").unwrap_or("").lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [] => {}
            [hash, size, name] => {
                let size = size
                    .parse()
                    .map_err(|_| format!("invalid size in SHA256 line {line:?}"))?;
                if hash.len() != 64 || !hash.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("invalid hash in SHA256 line {line:?}"));
                }
                sha256.insert(
                    name.to_string(),
                    FileEntry {
                        size,
                        sha256: hash.to_ascii_lowercase(),
                    },
                );
            }
            _ => return Err(format!("invalid SHA256 line {line:?}")),
        }
    }
    Ok(Release {
        suite: p.get("Suite").map(str::to_string),
        codename: p.get("Codename").map(str::to_string),
        date: date("Date")?,
        valid_until: date("Valid-Until")?,
        architectures: words("Architectures"),
        components: words("Components"),
        acquire_by_hash: p.get("Acquire-By-Hash") == Some("yes"),
        sha256,
    })
}

/// Verifies an InRelease file for `suite` fetched from `url` against `keys` at time
/// `now` and parses it. Checks the signature, Valid-Until, and that the file is for
/// the requested suite (Suite or Codename).
pub fn verify_inrelease(
    text: &str,
    keys: &KeySet,
    suite: &str,
    url: &str,
    now: u64,
) -> Result<Release, Error> {
    let now32 = u32::try_from(now).unwrap_or(u32::MAX);
    let signed = verify_cleartext(text, keys, now32).map_err(|reason| Error::Signature {
        suite: suite.to_string(),
        url: url.to_string(),
        reason,
    })?;
    let release_err = |message: String| Error::Release {
        suite: suite.to_string(),
        url: url.to_string(),
        message,
    };
    let release = parse_release(&signed).map_err(release_err)?;
    if let Some(until) = release.valid_until {
        if until <= now {
            return Err(release_err(format!(
                "expired: Valid-Until is {} seconds in the past",
                now - until
            )));
        }
    }
    let names = [release.suite.as_deref(), release.codename.as_deref()];
    if !names.contains(&Some(suite)) {
        return Err(release_err(format!(
            "is for suite {:?} (codename {:?}), not {suite}",
            release.suite.as_deref().unwrap_or(""),
            release.codename.as_deref().unwrap_or("")
        )));
    }
    Ok(release)
}

/// Parses an RFC 2822 date as used in Release files (`Sat, 11 Jul 2026 10:16:37 UTC`)
/// into seconds since the epoch.
pub fn parse_date(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, rest)| rest).trim();
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [day, month, year, time, zone @ ..] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m.eq_ignore_ascii_case(month))? as u32
        + 1;
    // Four digits at most: the day arithmetic below cannot overflow.
    let year: i64 = year.parse().ok().filter(|y| (0..=9999).contains(y))?;
    let hms: Vec<u32> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (h, m, sec) = match hms.as_slice() {
        [h, m, s] => (*h, *m, *s),
        [h, m] => (*h, *m, 0),
        _ => return None,
    };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let offset: i64 = match zone.first().copied() {
        None | Some("UTC" | "GMT" | "Z") => 0,
        Some(z) if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hh: i64 = z.get(1..3)?.parse().ok()?;
            let mm: i64 = z.get(3..5)?.parse().ok()?;
            let v = hh * 3600 + mm * 60;
            if z.starts_with('-') {
                -v
            } else {
                v
            }
        }
        Some(_) => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(sec) - offset;
    u64::try_from(secs).ok()
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        // date -d 'Sat, 11 Jul 2026 10:16:37 UTC' +%s
        assert_eq!(
            parse_date("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1783764997)
        );
        assert_eq!(parse_date("29 Feb 2024 12:00:00 +0100"), Some(1709204400));
        assert_eq!(parse_date("Sat, 11 Foo 2026 10:16:37 UTC"), None);
        assert_eq!(parse_date("garbage"), None);
    }

    /// Found by the `release` fuzz target: a huge year overflowed the day
    /// arithmetic, and a zone with a multi-byte character was sliced
    /// inside it; both panicked.
    #[test]
    fn dates_out_of_range_or_with_odd_zones_are_refused() {
        assert_eq!(parse_date("Sat, 11 Jul 99999999999999 10:16:37 UTC"), None);
        assert_eq!(parse_date("11 Jul -9223372036854775808 10:16:37"), None);
        assert_eq!(
            parse_date("Fri, 31 Dec 9999 23:59:59 UTC"),
            Some(253402300799)
        );
        assert_eq!(parse_date("Sat, 11 Jul 2026 10:16:37 +1\u{e9}1"), None);
        assert!(parse_release("Date: 1 Jan 99999999999999 00:00 UTC\n").is_err());
    }

    #[test]
    fn release_fields() {
        let h = "a".repeat(64);
        let text = format!(
            "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n\
             Valid-Until: Sat, 18 Jul 2026 10:16:37 UTC\nArchitectures: all amd64\nComponents: main contrib\n\
             Acquire-By-Hash: yes\nMD5Sum:\n 0123 1 x\nSHA256:\n {h} 1234 main/binary-amd64/Packages.xz\n {h} 99 main/binary-amd64/Release\n"
        );
        let r = parse_release(&text).unwrap();
        assert_eq!(r.suite.as_deref(), Some("stable"));
        assert_eq!(r.codename.as_deref(), Some("bookworm"));
        assert_eq!(r.architectures, vec!["all", "amd64"]);
        assert_eq!(r.components, vec!["main", "contrib"]);
        assert!(r.acquire_by_hash);
        assert_eq!(r.valid_until.unwrap() - r.date.unwrap(), 7 * 86400);
        assert_eq!(r.sha256["main/binary-amd64/Packages.xz"].size, 1234);
        assert_eq!(r.sha256.len(), 2);
        assert!(parse_release("SHA256:\n zz 1 x\n").is_err());
    }
}
