//! Copying the image's own file trees (`files.trees`) into the staged root.
//!
//! Only regular files, directories and symlinks are copied. File and new
//! directory modes are kept (permission bits, including set-id and sticky
//! bits) except group and other write permission, which is dropped: a git
//! checkout sets it from the umask, and the image must not depend on that.
//! Every owner is root, and timestamps are left to
//! [`crate::rootfs::clamp_times`]. Nothing is followed in the root: a
//! symlink in the root where the tree has a directory is an error, so a
//! tree can never write outside the root (use `usr/bin`, not the merged-/usr
//! link `bin`). A tree may not put a symlink at a path osbuild writes or
//! needs as a directory later ([`crate::rootfs::reserved_paths`], e.g.
//! `usr/lib/keel`, `etc/os-release`, `home`), nor above one (`usr/lib`):
//! that is an error naming the tree, its symlink and the path.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use keel_core::beneath;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("file tree {tree}: {what} {path}")]
    Io {
        tree: PathBuf,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("file tree {tree}: {path}: {reason}")]
    Entry {
        tree: PathBuf,
        path: PathBuf,
        reason: String,
    },
}

/// What one tree put into the root.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
}

/// Copies the content of `tree` into `root`, replacing files and symlinks
/// the packages put at the same paths. Entries are visited in name order,
/// so errors are reproducible.
pub fn copy_tree(tree: &Path, root: &Path) -> Result<TreeStats, TreeError> {
    let chown = rustix::process::geteuid().is_root();
    let reserved = crate::rootfs::reserved_paths();
    let mut stats = TreeStats::default();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let src_dir = tree.join(&rel);
        let mut entries = Vec::new();
        for entry in fs::read_dir(&src_dir).map_err(io_err(tree, "reading", &src_dir))? {
            let entry = entry.map_err(io_err(tree, "reading", &src_dir))?;
            entries.push(entry.file_name());
        }
        entries.sort();
        // Reversed onto the stack so directories are visited in name order.
        for name in entries.into_iter().rev() {
            let rel = rel.join(&name);
            let src = tree.join(&rel);
            let dest = root.join(&rel);
            let entry_err = |reason: String| TreeError::Entry {
                tree: tree.to_path_buf(),
                path: rel.clone(),
                reason,
            };
            let meta = fs::symlink_metadata(&src).map_err(io_err(tree, "reading", &src))?;
            let existing = fs::symlink_metadata(&dest).ok();
            let ft = meta.file_type();
            if ft.is_dir() {
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(m) if m.file_type().is_symlink() => {
                        return Err(entry_err(
                            "the root has a symlink here; a tree may not write through symlinks (merged /usr: use the usr/ path)".into(),
                        ))
                    }
                    Some(_) => {
                        return Err(entry_err(
                            "the root has a file where the tree has a directory".into(),
                        ))
                    }
                    None => {
                        fs::create_dir(&dest).map_err(io_err(tree, "creating", &dest))?;
                        finish(tree, &dest, Some(meta.permissions().mode()), chown)?;
                        stats.dirs += 1;
                    }
                }
                stack.push(rel.clone());
            } else if ft.is_file() || ft.is_symlink() {
                if ft.is_symlink() {
                    if let Some(needed) = reserved_below(&reserved, &rel) {
                        return Err(entry_err(format!(
                            "a symlink here would redirect /{needed}, which osbuild writes or needs as a directory; ship real files and directories there"
                        )));
                    }
                }
                match existing {
                    Some(m) if m.is_dir() => {
                        return Err(entry_err(
                            "the root has a directory where the tree has a file".into(),
                        ))
                    }
                    Some(_) => fs::remove_file(&dest).map_err(io_err(tree, "replacing", &dest))?,
                    None => {}
                }
                if ft.is_symlink() {
                    let target = fs::read_link(&src).map_err(io_err(tree, "reading", &src))?;
                    symlink(&target, &dest).map_err(io_err(tree, "creating symlink", &dest))?;
                    finish(tree, &dest, None, chown)?;
                    stats.symlinks += 1;
                } else {
                    // Neither end followed if it is a symlink.
                    beneath::copy_new(&src, &dest).map_err(io_err(tree, "copying to", &dest))?;
                    finish(tree, &dest, Some(meta.permissions().mode()), chown)?;
                    stats.files += 1;
                }
            } else {
                return Err(entry_err(
                    "not a regular file, directory or symlink (trees may not hold device nodes, fifos or sockets)".into(),
                ));
            }
        }
    }
    Ok(stats)
}

/// Permission bits a tree's modes may not carry (see the module docs).
const DROPPED_MODE_BITS: u32 = 0o022;

/// Owner root (when running as root) and the mode of the source without
/// [`DROPPED_MODE_BITS`]; chown first, since it clears set-id bits.
fn finish(tree: &Path, dest: &Path, mode: Option<u32>, chown: bool) -> Result<(), TreeError> {
    if chown {
        std::os::unix::fs::lchown(dest, Some(0), Some(0)).map_err(io_err(
            tree,
            "setting owner of",
            dest,
        ))?;
    }
    if let Some(mode) = mode {
        beneath::set_mode(dest, mode & 0o7777 & !DROPPED_MODE_BITS).map_err(io_err(
            tree,
            "setting mode of",
            dest,
        ))?;
    }
    Ok(())
}

/// The first reserved path that is `rel` or lies below it.
fn reserved_below<'a>(reserved: &'a [String], rel: &Path) -> Option<&'a str> {
    reserved
        .iter()
        .find(|r| Path::new(r.as_str()).starts_with(rel))
        .map(String::as_str)
}

fn io_err<'a>(
    tree: &'a Path,
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> TreeError + 'a {
    move |source| TreeError::Io {
        tree: tree.to_path_buf(),
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn copies_files_dirs_and_symlinks_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        let root = tmp.path().join("root");
        fs::create_dir_all(tree.join("etc/ssh/sshd_config.d")).unwrap();
        fs::write(tree.join("etc/ssh/sshd_config.d/keel.conf"), "x\n").unwrap();
        fs::set_permissions(
            tree.join("etc/ssh/sshd_config.d/keel.conf"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        fs::create_dir_all(tree.join("usr/bin")).unwrap();
        fs::write(tree.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            tree.join("usr/bin/tool"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        fs::create_dir_all(tree.join("opt/cni")).unwrap();
        symlink("/usr/lib/cni", tree.join("opt/cni/bin")).unwrap();
        fs::create_dir_all(tree.join("srv")).unwrap();
        fs::set_permissions(tree.join("srv"), fs::Permissions::from_mode(0o700)).unwrap();
        // A checkout under umask 002.
        fs::write(tree.join("srv/shared"), "s").unwrap();
        fs::set_permissions(tree.join("srv/shared"), fs::Permissions::from_mode(0o664)).unwrap();

        // The root already has some of it, from packages.
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        fs::set_permissions(root.join("etc/ssh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("busybox", root.join("usr/bin/tool")).unwrap();

        let stats = copy_tree(&tree, &root).unwrap();
        assert_eq!(
            stats,
            TreeStats {
                files: 3,
                dirs: 4,
                symlinks: 1
            }
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/ssh/sshd_config.d/keel.conf")).unwrap(),
            "x\n"
        );
        assert_eq!(mode(&root.join("etc/ssh/sshd_config.d/keel.conf")), 0o600);
        // A symlink from a package is replaced, not written through.
        assert!(fs::symlink_metadata(root.join("usr/bin/tool"))
            .unwrap()
            .is_file());
        assert_eq!(mode(&root.join("usr/bin/tool")), 0o4755);
        assert_eq!(
            fs::read_link(root.join("opt/cni/bin")).unwrap(),
            PathBuf::from("/usr/lib/cni")
        );
        assert_eq!(mode(&root.join("srv")), 0o700);
        assert_eq!(mode(&root.join("srv/shared")), 0o644);
        // Existing directories keep their mode.
        assert_eq!(mode(&root.join("etc/ssh")), 0o755);
    }

    #[test]
    fn never_writes_through_a_symlink_in_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(tree.join("bin")).unwrap();
        fs::write(tree.join("bin/x"), "x").unwrap();
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("bin")).unwrap();
        let e = copy_tree(&tree, &root).unwrap_err().to_string();
        assert!(e.contains("bin") && e.contains("symlink"), "{e}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    /// Symlinks where osbuild writes later (its binaries' directory, a
    /// directory above it, os-release, the homes) are refused, naming the
    /// tree and both paths; the sibling they point to is untouched.
    #[test]
    fn symlinks_over_paths_osbuild_needs_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), "keep").unwrap();
        fs::set_permissions(outside.join("victim"), fs::Permissions::from_mode(0o640)).unwrap();
        for (link, needed) in [
            ("usr/lib/keel", "usr/lib/keel/keel-init"),
            ("usr/lib", "usr/lib"),
            ("usr/sbin", "usr/sbin"),
            ("etc/os-release", "etc/os-release"),
            ("home", "home"),
            ("lib", "lib"),
            ("etc/ssl", "etc/ssl/certs/ca-certificates.crt"),
        ] {
            let tree = tmp.path().join(format!("tree-{}", link.replace('/', "-")));
            let root = tmp.path().join(format!("root-{}", link.replace('/', "-")));
            fs::create_dir_all(tree.join(link).parent().unwrap()).unwrap();
            symlink(&outside, tree.join(link)).unwrap();
            fs::create_dir_all(&root).unwrap();
            let e = copy_tree(&tree, &root).unwrap_err().to_string();
            assert!(
                e.contains(&tree.display().to_string())
                    && e.contains(&format!(": {link}: "))
                    && e.contains(&format!("redirect /{needed},")),
                "{link}: {e}"
            );
            assert!(fs::symlink_metadata(root.join(link)).is_err(), "{link}");
        }
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep");
        let m = fs::metadata(outside.join("victim")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    }

    #[test]
    fn type_clashes_and_special_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        let root = tmp.path().join("root");
        fs::create_dir_all(tree.join("etc/a")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/a"), "file").unwrap();
        let e = copy_tree(&tree, &root).unwrap_err().to_string();
        assert!(e.contains("etc/a") && e.contains("has a file"), "{e}");

        let tree2 = tmp.path().join("tree2");
        fs::create_dir_all(&tree2).unwrap();
        let fifo = tree2.join("pipe");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        let e = copy_tree(&tree2, &root).unwrap_err().to_string();
        assert!(
            e.contains("pipe") && e.contains("not a regular file"),
            "{e}"
        );
    }
}
