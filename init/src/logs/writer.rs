//! Writing one unit's log file, with size-based rotation.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::civil::rfc3339_millis;
use super::{file_name, LogError, Rotation};

const FILE_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;

/// The log of one unit (or of init itself, unit name `keel-init`): file
/// `<dir>/<unit>.log`. Thread-safe: pump threads and the supervisor write to
/// it concurrently. Use one `UnitLog` per unit (shared in an `Arc`): two
/// for the same file would rotate it independently of each other.
#[derive(Debug)]
pub struct UnitLog {
    unit: String,
    /// Unit name without `.service`, the start of every line's ident.
    ident: String,
    path: PathBuf,
    rotation: Rotation,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `None` after a failed re-open; the next line tries again.
    file: Option<File>,
    /// Size of the file as far as our writes go.
    size: u64,
}

impl UnitLog {
    /// Opens (creating it and `dir` when missing) the log of `unit` in `dir`
    /// for appending.
    pub fn open(dir: &Path, unit: &str, rotation: Rotation) -> Result<UnitLog, LogError> {
        let path = dir.join(file_name(unit)?);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(LogError::io("creating the log directory", dir))?;
        let (file, size) = open_append(&path)?;
        Ok(UnitLog {
            unit: unit.to_string(),
            ident: unit.strip_suffix(".service").unwrap_or(unit).to_string(),
            path,
            rotation,
            state: Mutex::new(State {
                file: Some(file),
                size,
            }),
        })
    }

    /// The unit this log belongs to.
    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// The current file, `<dir>/<unit>.log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What names the writer of a line: the unit name without `.service`,
    /// followed by `[pid]` when `pid` is given (`containerd[245]`).
    pub fn ident(&self, pid: Option<u32>) -> String {
        match pid {
            Some(pid) => format!("{}[{pid}]", self.ident),
            None => self.ident.clone(),
        }
    }

    /// Writes one line: `<RFC 3339 UTC with millis> <ident>: <text>\n`, e.g.
    /// `2026-11-22T10:00:00.123Z containerd[245]: msg` (see [`Self::ident`]).
    /// Newlines inside `text` become spaces so that a line stays one line.
    /// Rotates first when needed. Never panics; I/O errors are returned.
    pub fn line(&self, pid: Option<u32>, text: &str) -> Result<(), LogError> {
        self.line_at(SystemTime::now(), pid, text)
    }

    /// [`Self::line`] with an explicit time.
    ///
    /// When rotating fails the line is still appended to the current file
    /// (which then grows beyond the limit) and the rotation error is
    /// returned; the next line tries to rotate again.
    pub fn line_at(&self, when: SystemTime, pid: Option<u32>, text: &str) -> Result<(), LogError> {
        let mut record = format!("{} {}: ", rfc3339_millis(when), self.ident(pid));
        record.extend(text.chars().map(|c| if c == '\n' { ' ' } else { c }));
        record.push('\n');
        let len = record.len() as u64;

        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.file.is_none() {
            let (file, size) = open_append(&self.path)?;
            state.file = Some(file);
            state.size = size;
        }
        let mut rotate_error = None;
        if state.size > 0 && state.size.saturating_add(len) > self.rotation.max_bytes {
            if let Err(e) = self.rotate(&mut state) {
                rotate_error = Some(e);
            }
        }
        let Some(file) = &mut state.file else {
            // Only a rotation that renamed the old file but could not open
            // the new one leaves no file; the next line tries to open again.
            return Err(rotate_error.unwrap_or_else(|| {
                LogError::io("opening", &self.path)(io::Error::other("log file not open"))
            }));
        };
        // One write(2) in the normal case: the file is in append mode and
        // `write_all` only loops on a short write.
        let written = file.write_all(record.as_bytes());
        match written {
            Ok(()) => state.size += len,
            Err(e) => {
                if let Some(Ok(m)) = state.file.as_ref().map(File::metadata) {
                    state.size = m.len();
                }
                return Err(LogError::io("writing", &self.path)(e));
            }
        }
        match rotate_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `UNIT.log.(k)` → `.(k+1)` for k = keep-1..1, `UNIT.log` → `.1`,
    /// then a new `UNIT.log`. Until the renames are done the old handle
    /// stays in place, so a failed rename leaves lines going to the
    /// current file.
    fn rotate(&self, state: &mut State) -> Result<(), LogError> {
        let keep = self.rotation.keep;
        let numbered = |k: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{k}"));
            PathBuf::from(name)
        };
        if keep == 0 {
            remove_if_exists(&self.path)?;
        } else {
            remove_if_exists(&numbered(keep))?;
            for k in (1..keep).rev() {
                rename_if_exists(&numbered(k), &numbered(k + 1))?;
            }
            // A log deleted by hand is simply started anew.
            rename_if_exists(&self.path, &numbered(1))?;
        }
        // From here on the old handle points at a rotated (or deleted) file.
        state.file = None;
        state.size = 0;
        let (file, size) = open_append(&self.path)?;
        state.file = Some(file);
        state.size = size;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<(File, u64), LogError> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(LogError::io("opening", path))?;
    let size = file
        .metadata()
        .map_err(LogError::io("reading the size of", path))?
        .len();
    Ok((file, size))
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LogError::io("removing", path)(e)),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> Result<(), LogError> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LogError::io("rotating", from)(e)),
        _ => Ok(()),
    }
}
