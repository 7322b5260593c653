//! Undoing a partly applied config: every change to the target root is
//! recorded before it is made, so a failure part way restores the root
//! exactly (nothing half applied); success drops the backups.
//!
//! An existing node that will change is first renamed to a backup beside
//! it (same directory, so the same filesystem); created nodes are removed;
//! metadata changes to kept directories are reverted.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::sys::Sys;

#[derive(Debug)]
enum Undo {
    /// A node that did not exist: remove it.
    Created(PathBuf),
    /// A directory that did not exist: remove it (empty by then).
    CreatedDir(PathBuf),
    /// The original was renamed to `backup`: put it back.
    MovedAside { path: PathBuf, backup: PathBuf },
    /// A symlink that was removed: make it again.
    RemovedLink { path: PathBuf, target: PathBuf },
    /// A kept directory's mode and owner.
    Meta {
        path: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

#[derive(Debug, Default)]
pub struct Journal {
    undo: Vec<Undo>,
    serial: u32,
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl Journal {
    pub fn created(&mut self, path: &Path) {
        self.undo.push(Undo::Created(path.to_path_buf()));
    }

    pub fn created_dir(&mut self, path: &Path) {
        self.undo.push(Undo::CreatedDir(path.to_path_buf()));
    }

    /// Records a symlink removed by someone else (unit disabling).
    pub fn removed_link(&mut self, path: &Path, target: &Path) {
        self.undo.push(Undo::RemovedLink {
            path: path.to_path_buf(),
            target: target.to_path_buf(),
        });
    }

    /// Renames the existing node at `path` out of the way and records it.
    pub fn move_aside(&mut self, path: &Path) -> io::Result<PathBuf> {
        self.serial += 1;
        let name = path
            .file_name()
            .map_or_else(|| "node".into(), |n| n.to_string_lossy().into_owned());
        let backup = path.with_file_name(format!(".keel-firstboot-{}-{name}", self.serial));
        fs::rename(path, &backup)?;
        self.undo.push(Undo::MovedAside {
            path: path.to_path_buf(),
            backup: backup.clone(),
        });
        Ok(backup)
    }

    /// Records a kept directory's mode and owner before they change.
    pub fn meta(&mut self, path: &Path) -> io::Result<()> {
        let m = fs::symlink_metadata(path)?;
        self.undo.push(Undo::Meta {
            path: path.to_path_buf(),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        });
        Ok(())
    }

    /// Reverts every recorded change, newest first. Errors are collected:
    /// as much as possible is restored.
    pub fn rollback(self, sys: &dyn Sys) -> Vec<String> {
        let mut problems = Vec::new();
        for u in self.undo.into_iter().rev() {
            let r = match &u {
                Undo::Created(p) => remove_any(p),
                Undo::CreatedDir(p) => fs::remove_dir(p),
                Undo::MovedAside { path, backup } => {
                    remove_any(path).and_then(|()| fs::rename(backup, path))
                }
                Undo::RemovedLink { path, target } => {
                    remove_any(path).and_then(|()| std::os::unix::fs::symlink(target, path))
                }
                Undo::Meta {
                    path,
                    mode,
                    uid,
                    gid,
                } => sys
                    .lchown(path, *uid, *gid)
                    .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(*mode))),
            };
            if let Err(e) = r {
                problems.push(format!("undoing {u:?}: {e}"));
            }
        }
        problems
    }

    /// Keeps the changes and removes the backups.
    pub fn commit(self) -> Vec<String> {
        let mut problems = Vec::new();
        for u in self.undo {
            if let Undo::MovedAside { backup, .. } = u {
                if let Err(e) = remove_any(&backup) {
                    problems.push(format!("removing backup {}: {e}", backup.display()));
                }
            }
        }
        problems
    }
}
