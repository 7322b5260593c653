//! The output directory of a build: one build per output name at a time,
//! and outputs that become final together, last.
//!
//! [`OutputLock`] holds an exclusive `flock(2)` on `OUT/.NAME.lock` for the
//! whole build; a second build of the same name into the same directory
//! fails at once with "another build of NAME is running in OUT" rather
//! than waiting: it would only redo the same work and then replace the
//! first build's result, and a caller that wants to wait can retry. The
//! lock is the kernel's, so it goes away with the process however that
//! ends. The build removes the lock file before it lets go of the lock
//! (a build that locked a file no longer in the directory tries again),
//! so nothing is left; only a build killed with SIGKILL leaves the empty
//! file, which the next build reuses.
//!
//! [`Outputs`] hands out partial names (`OUT/.FILE.partial`) and removes
//! whatever is still partial when dropped. [`Outputs::commit`] renames
//! every partial file to its final name, the manifest last; if one rename
//! fails, the ones done are undone and the previous outputs of that name
//! are put back, so a failed build leaves what was there before.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cancel::Cancel;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("another build of {name} is running in {}", dir.display())]
    Busy { name: String, dir: PathBuf },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |source| OutputError::Io { what, path, source }
}

/// The exclusive right to build `name` into a directory, until dropped.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
    path: PathBuf,
    cancel: Cancel,
}

/// How often [`OutputLock::acquire`] retries when the lock file it locked
/// was removed meanwhile by the build that held it.
const LOCK_TRIES: usize = 10;

impl OutputLock {
    /// Takes the lock of `name` in `dir` (which must exist), or fails at
    /// once when another process holds it. `cancel` removes the lock file
    /// when a signal ends osbuild before a work tree exists.
    pub fn acquire(dir: &Path, name: &str, cancel: &Cancel) -> Result<OutputLock, OutputError> {
        let path = dir.join(format!(".{name}.lock"));
        for _ in 0..LOCK_TRIES {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err("opening the lock file", &path))?;
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(OutputError::Busy {
                        name: name.to_string(),
                        dir: dir.to_path_buf(),
                    })
                }
                Err(e) => return Err(io_err("locking", &path)(e.into())),
            }
            // The holder removes the file before it lets go: a lock on a
            // file no longer at `path` is no lock at all.
            let held = file.metadata().map_err(io_err("reading", &path))?;
            let current = fs::metadata(&path).ok();
            if current.is_some_and(|c| c.dev() == held.dev() && c.ino() == held.ino()) {
                cancel.set_remove_on_exit(Some(path.clone()), || {});
                return Ok(OutputLock {
                    _file: file,
                    path,
                    cancel: cancel.clone(),
                });
            }
        }
        Err(io_err("locking", &path)(io::Error::other(
            "the lock file keeps being replaced",
        )))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes with `file`.
        let path = &self.path;
        self.cancel.set_remove_on_exit(None, || {
            let _ = fs::remove_file(path);
        });
    }
}

/// One output file: where it is written, and its final name.
#[derive(Debug)]
struct Pending {
    partial: PathBuf,
    final_path: PathBuf,
}

/// The output files of one build, written under partial names.
#[derive(Debug)]
pub struct Outputs {
    dir: PathBuf,
    pending: Vec<Pending>,
}

impl Outputs {
    /// Outputs in `dir`; the caller holds the [`OutputLock`].
    pub fn new(dir: &Path) -> Outputs {
        Outputs {
            dir: dir.to_path_buf(),
            pending: Vec::new(),
        }
    }

    /// Registers the output `file_name` and returns the partial path to
    /// write it at. What an earlier, killed build left under that partial
    /// or backup name is cleared first. Files are made final in the order
    /// they were added.
    pub fn add(&mut self, file_name: &str) -> Result<PathBuf, OutputError> {
        let partial = self.dir.join(format!(".{file_name}.partial"));
        let final_path = self.dir.join(file_name);
        remove_if_file(&partial)?;
        // A backup exists only if a build died while committing: the
        // previous output is put back unless a new one replaced it.
        let backup = backup_path(&final_path);
        if fs::symlink_metadata(&backup).is_ok() {
            if fs::symlink_metadata(&final_path).is_err() {
                fs::rename(&backup, &final_path)
                    .map_err(io_err("restoring the previous output to", &final_path))?;
            } else {
                remove_if_file(&backup)?;
            }
        }
        self.pending.push(Pending {
            partial: partial.clone(),
            final_path,
        });
        Ok(partial)
    }

    /// Renames every output to its final name, in order; on a failure,
    /// undoes the renames done and restores the outputs they replaced.
    /// Returns the final paths.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, OutputError> {
        let pending = std::mem::take(&mut self.pending);
        for p in &pending {
            sync(&p.partial)?;
        }
        // (final path, whether a previous output was moved to its backup)
        let mut done: Vec<(&Pending, bool)> = Vec::new();
        let mut failure = None;
        for p in &pending {
            let backup = backup_path(&p.final_path);
            let had_previous = fs::symlink_metadata(&p.final_path).is_ok_and(|m| !m.is_dir());
            if had_previous {
                if let Err(e) = fs::rename(&p.final_path, &backup) {
                    failure = Some(io_err("moving aside", &p.final_path)(e));
                    break;
                }
            }
            if let Err(e) = fs::rename(&p.partial, &p.final_path) {
                failure = Some(io_err("renaming to", &p.final_path)(e));
                if had_previous {
                    let _ = fs::rename(&backup, &p.final_path);
                }
                break;
            }
            done.push((p, had_previous));
        }
        if let Some(e) = failure {
            for (p, had_previous) in done.into_iter().rev() {
                let _ = fs::remove_file(&p.final_path);
                if had_previous {
                    let _ = fs::rename(backup_path(&p.final_path), &p.final_path);
                }
            }
            for p in &pending {
                let _ = fs::remove_file(&p.partial);
            }
            return Err(e);
        }
        for (p, had_previous) in &done {
            if *had_previous {
                let b = backup_path(&p.final_path);
                fs::remove_file(&b).map_err(io_err("removing the previous output", &b))?;
            }
        }
        sync(&self.dir)?;
        Ok(pending.into_iter().map(|p| p.final_path).collect())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for p in &self.pending {
            let _ = fs::remove_file(&p.partial);
        }
    }
}

/// Where [`Outputs::commit`] keeps the previous output of a name while it
/// renames.
fn backup_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().unwrap_or_default().to_string_lossy();
    final_path.with_file_name(format!(".{name}.previous"))
}

fn remove_if_file(path: &Path) -> Result<(), OutputError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

fn sync(path: &Path) -> Result<(), OutputError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", path))
}

/// Removes a directory tree when dropped, unless disarmed.
#[derive(Debug)]
pub struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub fn new(dir: &Path) -> Self {
        RemoveOnDrop(Some(dir.to_path_buf()))
    }

    /// Keeps the directory.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_second_lock_of_the_same_name_fails_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Cancel::new();
        let a = OutputLock::acquire(tmp.path(), "img-1.0", &c).unwrap();
        assert_eq!(names(tmp.path()), [".img-1.0.lock"]);
        let e = OutputLock::acquire(tmp.path(), "img-1.0", &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "another build of img-1.0 is running in {}",
                tmp.path().display()
            )
        );
        // Another name is independent.
        let b = OutputLock::acquire(tmp.path(), "img-1.1", &c).unwrap();
        drop(a);
        let a = OutputLock::acquire(tmp.path(), "img-1.0", &c).unwrap();
        drop((a, b));
        assert!(names(tmp.path()).is_empty());
    }

    #[test]
    fn outputs_become_final_together() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = Outputs::new(tmp.path());
        for name in ["a.raw", "a.qcow2", "a.manifest.json"] {
            fs::write(o.add(name).unwrap(), name).unwrap();
        }
        assert_eq!(
            names(tmp.path()),
            [
                ".a.manifest.json.partial",
                ".a.qcow2.partial",
                ".a.raw.partial"
            ]
        );
        let done = o.commit().unwrap();
        assert_eq!(done[2], tmp.path().join("a.manifest.json"));
        assert_eq!(names(tmp.path()), ["a.manifest.json", "a.qcow2", "a.raw"]);
    }

    /// The manifest cannot be renamed (a directory is in the way): the new
    /// image is taken back and the previous one restored, byte for byte.
    #[test]
    fn a_failed_commit_restores_what_was_there() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a.raw"), "old image").unwrap();
        fs::create_dir_all(tmp.path().join("a.manifest.json/x")).unwrap();
        let mut o = Outputs::new(tmp.path());
        fs::write(o.add("a.raw").unwrap(), "new image").unwrap();
        fs::write(o.add("a.qcow2").unwrap(), "new qcow2").unwrap();
        fs::write(o.add("a.manifest.json").unwrap(), "{}").unwrap();
        let e = o.commit().unwrap_err().to_string();
        assert!(e.contains("a.manifest.json"), "{e}");
        assert_eq!(names(tmp.path()), ["a.manifest.json", "a.raw"]);
        assert_eq!(fs::read(tmp.path().join("a.raw")).unwrap(), b"old image");
    }

    #[test]
    fn dropped_outputs_leave_no_partial_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = Outputs::new(tmp.path());
        fs::write(o.add("a.raw").unwrap(), "x").unwrap();
        drop(o);
        assert!(names(tmp.path()).is_empty());
    }

    #[test]
    fn leftovers_of_a_killed_build_are_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        // Died between moving the previous image aside and renaming.
        fs::write(tmp.path().join(".a.raw.previous"), "old").unwrap();
        fs::write(tmp.path().join(".a.raw.partial"), "half").unwrap();
        // Died after renaming, before removing the backup.
        fs::write(tmp.path().join("a.qcow2"), "new").unwrap();
        fs::write(tmp.path().join(".a.qcow2.previous"), "old").unwrap();
        let mut o = Outputs::new(tmp.path());
        let raw = o.add("a.raw").unwrap();
        o.add("a.qcow2").unwrap();
        assert!(!raw.exists());
        assert_eq!(names(tmp.path()), ["a.qcow2", "a.raw"]);
        assert_eq!(fs::read(tmp.path().join("a.raw")).unwrap(), b"old");
        assert_eq!(fs::read(tmp.path().join("a.qcow2")).unwrap(), b"new");
    }
}
