//! Undoing a partly applied config: every change to the target root is
//! recorded before it is made, so a failure part way restores the root
//! exactly (nothing half applied); success drops the backups.
//!
//! An existing node that will change is first renamed to a backup beside
//! it (same directory, so the same filesystem); created nodes (directories
//! made on the way included) are removed; metadata changes to kept nodes
//! are reverted on the node itself, never through a symlink. After a
//! rollback every recorded path is checked against what was recorded, so
//! "nothing was changed" is said only when that was verified.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keel_core::beneath;

use super::sys::Sys;

#[derive(Debug)]
enum Undo {
    /// A node that did not exist: remove it.
    Created(PathBuf),
    /// A directory that did not exist: remove it (empty by then).
    CreatedDir(PathBuf),
    /// The original (that inode) was renamed to `backup`: put it back.
    MovedAside {
        path: PathBuf,
        backup: PathBuf,
        ino: (u64, u64),
    },
    /// A symlink that was removed: make it again.
    RemovedLink { path: PathBuf, target: PathBuf },
    /// A kept node's mode and owner (the node itself, never what a
    /// symlink there points to; a link has no mode of its own).
    Meta {
        path: PathBuf,
        mode: Option<u32>,
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

fn absent(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Ok(_) => Err(format!("{} is still there", path.display())),
        Err(e) => Err(format!("checking {}: {e}", path.display())),
    }
}

impl Undo {
    fn apply(&self, sys: &dyn Sys) -> io::Result<()> {
        match self {
            Undo::Created(p) => remove_any(p),
            Undo::CreatedDir(p) => fs::remove_dir(p),
            Undo::MovedAside { path, backup, .. } => {
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
            } => {
                sys.lchown(path, *uid, *gid)?;
                match mode {
                    Some(m) => beneath::set_mode(path, *m),
                    None => Ok(()),
                }
            }
        }
    }

    /// The node the record is about.
    fn path(&self) -> &Path {
        match self {
            Undo::Created(p) | Undo::CreatedDir(p) => p,
            Undo::MovedAside { path, .. }
            | Undo::RemovedLink { path, .. }
            | Undo::Meta { path, .. } => path,
        }
    }

    /// Checks that the node is as it was before the change was made.
    fn verify(&self) -> Result<(), String> {
        match self {
            Undo::Created(p) | Undo::CreatedDir(p) => absent(p),
            Undo::MovedAside { path, ino, .. } => {
                let m = fs::symlink_metadata(path)
                    .map_err(|e| format!("checking {}: {e}", path.display()))?;
                if (m.dev(), m.ino()) != *ino {
                    return Err(format!("{} is not the original node", path.display()));
                }
                Ok(())
            }
            Undo::RemovedLink { path, target } => match fs::read_link(path) {
                Ok(t) if &t == target => Ok(()),
                _ => Err(format!(
                    "{} is not the link to {} it was",
                    path.display(),
                    target.display()
                )),
            },
            Undo::Meta {
                path,
                mode,
                uid,
                gid,
            } => {
                let m = fs::symlink_metadata(path)
                    .map_err(|e| format!("checking {}: {e}", path.display()))?;
                let now_mode = (!m.file_type().is_symlink()).then_some(m.mode() & 0o7777);
                if now_mode != *mode || m.uid() != *uid || m.gid() != *gid {
                    let octal =
                        |m: Option<u32>| m.map_or_else(|| "none".into(), |m| format!("{m:o}"));
                    return Err(format!(
                        "{} has mode {} and owner {}:{}, not {} and {uid}:{gid}",
                        path.display(),
                        octal(now_mode),
                        m.uid(),
                        m.gid(),
                        octal(*mode)
                    ));
                }
                Ok(())
            }
        }
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

    /// Renames the existing node at `path` (not followed) out of the way
    /// and records it.
    pub fn move_aside(&mut self, path: &Path) -> io::Result<PathBuf> {
        self.serial += 1;
        let name = path
            .file_name()
            .map_or_else(|| "node".into(), |n| n.to_string_lossy().into_owned());
        let backup = path.with_file_name(format!(".keel-firstboot-{}-{name}", self.serial));
        let m = fs::symlink_metadata(path)?;
        fs::rename(path, &backup)?;
        self.undo.push(Undo::MovedAside {
            path: path.to_path_buf(),
            backup: backup.clone(),
            ino: (m.dev(), m.ino()),
        });
        Ok(backup)
    }

    /// Records a kept node's mode and owner before they change (of the
    /// node itself: a symlink's owner, and no mode).
    pub fn meta(&mut self, path: &Path) -> io::Result<()> {
        let m = fs::symlink_metadata(path)?;
        self.undo.push(Undo::Meta {
            path: path.to_path_buf(),
            mode: (!m.file_type().is_symlink()).then_some(m.permissions().mode() & 0o7777),
            uid: m.uid(),
            gid: m.gid(),
        });
        Ok(())
    }

    /// Reverts every recorded change, newest first, then checks that every
    /// recorded node is as it was. Returns what could not be restored or
    /// is not as it was (empty: the root was verified to be as before).
    /// Errors are collected: as much as possible is restored.
    pub fn rollback(self, sys: &dyn Sys) -> Vec<String> {
        let mut problems = Vec::new();
        for u in self.undo.iter().rev() {
            if let Err(e) = u.apply(sys) {
                problems.push(format!("undoing {u:?}: {e}"));
            }
        }
        // Checked after everything was undone (a directory made early is
        // only gone once what was made in it is gone too), each path by
        // its first record: that one knows how the path was before.
        let mut seen = std::collections::HashSet::new();
        for u in &self.undo {
            if let Undo::MovedAside { backup, .. } = u {
                if let Err(e) = absent(backup) {
                    problems.push(format!("after rollback: {e}"));
                }
            }
            if seen.insert(u.path()) {
                if let Err(e) = u.verify() {
                    problems.push(format!("after rollback: {e}"));
                }
            }
        }
        problems.dedup();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::sys::RecordingSys;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_links_metadata_is_restored_on_the_link_never_on_its_target() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
        let link = t.path().join("link");
        symlink(&outside, &link).unwrap();
        let mut j = Journal::default();
        j.meta(&link).unwrap();
        // Someone changes the target in between; the rollback must not
        // "restore" the link's 0777 onto it.
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o750)).unwrap();
        let problems = j.rollback(&RecordingSys::default());
        assert!(problems.is_empty(), "{problems:?}");
        let mode = fs::metadata(&outside).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o750);
    }

    #[test]
    fn rollback_checks_what_it_restored() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("made");
        fs::create_dir(&dir).unwrap();
        let mut j = Journal::default();
        j.created_dir(&dir);
        // Something the journal does not know of keeps the directory.
        fs::write(dir.join("stray"), "").unwrap();
        let problems = j.rollback(&RecordingSys::default());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("is still there"), "{problems:?}");

        // A node moved aside and then replaced by another one is found out.
        let f = t.path().join("f");
        fs::write(&f, "original").unwrap();
        let mut j = Journal::default();
        let backup = j.move_aside(&f).unwrap();
        fs::write(&f, "new").unwrap();
        let impostor = t.path().join("impostor");
        fs::write(&impostor, "impostor").unwrap();
        fs::rename(&impostor, &backup).unwrap();
        let problems = j.rollback(&RecordingSys::default());
        assert!(
            problems
                .iter()
                .any(|p| p.contains("is not the original node")),
            "{problems:?}"
        );
    }
}
