//! Boot Loader Specification entry names with boot counting.
//!
//! A release is booted from `keel-<version>+<left>[-<done>].conf`.
//! systemd-boot decrements `left` (and increments `done`) before each try;
//! a good boot renames the file to `keel-<version>.conf` ("blessing").

use std::fmt;

pub const ENTRY_PREFIX: &str = "keel-";
pub const ENTRY_SUFFIX: &str = ".conf";
/// Tries a freshly written release gets.
pub const DEFAULT_TRIES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    pub version: String,
    /// `None` once blessed (no counter in the name).
    pub counter: Option<Counter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub left: u32,
    pub done: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryNameError {
    #[error("boot entry {0:?} is not named keel-<version>[+<tries>].conf")]
    Malformed(String),
    #[error("version {0:?} cannot be used in a boot entry name (allowed: letters, digits, '.', '_', '~', '^'; no '+' or '-')")]
    BadVersion(String),
}

/// Checks that a release version can be spelled in an entry name and a path.
pub fn check_version(version: &str) -> Result<(), EntryNameError> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '^'))
        && !version.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(EntryNameError::BadVersion(version.to_string()))
    }
}

impl EntryName {
    /// A new, not yet tried entry with the default number of tries.
    pub fn fresh(version: &str) -> Result<Self, EntryNameError> {
        check_version(version)?;
        Ok(EntryName {
            version: version.to_string(),
            counter: Some(Counter {
                left: DEFAULT_TRIES,
                done: None,
            }),
        })
    }

    pub fn parse(file_name: &str) -> Result<Self, EntryNameError> {
        let malformed = || EntryNameError::Malformed(file_name.to_string());
        let stem = file_name
            .strip_prefix(ENTRY_PREFIX)
            .and_then(|s| s.strip_suffix(ENTRY_SUFFIX))
            .ok_or_else(malformed)?;
        let (version, counter) = match stem.split_once('+') {
            None => (stem, None),
            Some((v, c)) => {
                let (left, done) = match c.split_once('-') {
                    None => (c, None),
                    Some((l, d)) => (l, Some(d.parse::<u32>().map_err(|_| malformed())?)),
                };
                let left = left.parse::<u32>().map_err(|_| malformed())?;
                (v, Some(Counter { left, done }))
            }
        };
        check_version(version).map_err(|_| malformed())?;
        Ok(EntryName {
            version: version.to_string(),
            counter,
        })
    }

    /// The name this entry gets once the boot is judged good.
    pub fn blessed(&self) -> EntryName {
        EntryName {
            version: self.version.clone(),
            counter: None,
        }
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ENTRY_PREFIX}{}", self.version)?;
        if let Some(c) = self.counter {
            write!(f, "+{}", c.left)?;
            if let Some(d) = c.done {
                write!(f, "-{d}")?;
            }
        }
        f.write_str(ENTRY_SUFFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for name in [
            "keel-1.2.0+3.conf",
            "keel-1.2.0+2-1.conf",
            "keel-1.2.0.conf",
            "keel-2026.11_1+0-3.conf",
        ] {
            assert_eq!(
                EntryName::parse(name).map(|e| e.to_string()).as_deref(),
                Ok(name)
            );
        }
    }

    #[test]
    fn fresh_and_blessed() {
        let e = EntryName::fresh("1.0").expect("valid version");
        assert_eq!(e.to_string(), "keel-1.0+3.conf");
        let tried = EntryName::parse("keel-1.0+2-1.conf").expect("valid");
        assert_eq!(tried.blessed().to_string(), "keel-1.0.conf");
    }

    #[test]
    fn rejects_garbage() {
        for name in [
            "keel-.conf",
            "other-1.conf",
            "keel-1+x.conf",
            "keel-1+1-y.conf",
            "keel-1",
        ] {
            assert!(EntryName::parse(name).is_err(), "{name}");
        }
        assert!(EntryName::fresh("1-2").is_err());
        assert!(EntryName::fresh("a/b").is_err());
    }
}
