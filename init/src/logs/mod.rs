//! Per-unit log files under [`LOG_DIR`].
//!
//! Init gives every started process one pipe for both stdout and stderr;
//! [`pump`] reads it line by line into the unit's [`UnitLog`] (file
//! `<dir>/<unit>.log`, rotated by size to `<unit>.log.1` … `<unit>.log.N`)
//! and optionally echoes it to the console. Init's own events go to the log
//! of the unit `keel-init`. [`tail`] and [`print`] read the files back for
//! `keelctl logs UNIT [-f] [-n N]`.
//!
//! A line in a file looks like `2026-11-22T10:00:00.123Z containerd[245]: msg`.

pub mod civil;
mod pump;
mod reader;
mod writer;

#[cfg(test)]
mod tests_pump;
#[cfg(test)]
mod tests_reader;
#[cfg(test)]
mod tests_writer;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use pump::{pump, MAX_LINE};
pub use reader::{print, tail, POLL};
pub use writer::UnitLog;

/// Where the logs of the running system live.
pub const LOG_DIR: &str = "/var/log/keel";
/// Rotate when writing a line would make the file larger than this.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// How many rotated files (`UNIT.log.1` .. `UNIT.log.3`) are kept.
pub const DEFAULT_KEEP: usize = 3;

/// Rotation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when writing a line would push the file over this size. A
    /// single line larger than this still goes into a file of its own.
    pub max_bytes: u64,
    /// Number of rotated files kept; 0 keeps none (the file is started over).
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
        }
    }
}

/// Where else a line goes (e.g. `StandardOutput=journal+console`): a shared
/// writer that gets `<ident>: <text>\n` for every line.
pub type Echo = Option<Arc<Mutex<dyn Write + Send>>>;

/// Errors of writing and reading unit logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The unit name cannot name a file in the log directory.
    #[error("unit name {name:?} cannot name a log file: {reason}")]
    BadName { name: String, reason: &'static str },
    /// Neither `<unit>.log` nor `<unit>.service.log` exists.
    #[error("no log for unit {unit} in {}", dir.display())]
    NoLog { unit: String, dir: PathBuf },
    /// An I/O step on a log file or the log directory.
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing what was read to the caller's output failed.
    #[error("writing the log to the output")]
    Output(#[source] io::Error),
}

impl LogError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LogError {
        let path = path.to_path_buf();
        move |source| LogError::Io { what, path, source }
    }
}

/// The file name of a unit's log: `<unit>.log`. Unit names are already
/// restricted to `[A-Za-z0-9:_.\\@-]`; this refuses anything that could
/// leave the log directory: empty names, `.`, `..`, `/` and NUL.
pub fn file_name(unit: &str) -> Result<String, LogError> {
    let bad = |reason| {
        Err(LogError::BadName {
            name: unit.to_string(),
            reason,
        })
    };
    if unit.is_empty() {
        return bad("it is empty");
    }
    if unit == "." || unit == ".." {
        return bad("it is a directory name");
    }
    if unit.contains('/') {
        return bad("it contains '/'");
    }
    if unit.contains('\0') {
        return bad("it contains NUL");
    }
    Ok(format!("{unit}.log"))
}

/// The name a user gave (`containerd`) resolved to the unit whose log
/// exists (`containerd.service`): `X` itself when `X.log` exists, else
/// `X.service` when `X.service.log` exists.
fn resolve(dir: &Path, unit: &str) -> Result<String, LogError> {
    let exists = |name: &str| -> Result<bool, LogError> {
        let path = dir.join(file_name(name)?);
        path.try_exists()
            .map_err(LogError::io("looking for the log", &path))
    };
    if exists(unit)? {
        return Ok(unit.to_string());
    }
    if !unit.ends_with(".service") {
        let service = format!("{unit}.service");
        if exists(&service)? {
            return Ok(service);
        }
    }
    Err(LogError::NoLog {
        unit: unit.to_string(),
        dir: dir.to_path_buf(),
    })
}
