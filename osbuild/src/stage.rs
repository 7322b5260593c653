//! Reading and writing the staging tree (the image's root while it is
//! composed) without ever leaving it.
//!
//! The tree holds what packages and image trees put there, symlinks
//! included, and those point wherever their authors liked (`/etc/x`, or
//! `../../..`). Every path here is resolved the way the image will see it
//! ([`keel_core::beneath`]: links followed relative to the root, `..`
//! stopping at it), and the final component is acted on itself: a write
//! replaces a symlink there, never goes through it.
//!
//! Paths are given as inside the root (`etc/passwd` or `/etc/passwd`).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::symlink as make_symlink;
use std::path::{Path, PathBuf};

use keel_core::beneath;

/// The real location of `path` (every symlink followed inside the root),
/// `None` when it does not exist.
pub fn resolve(root: &Path, path: impl AsRef<Path>) -> io::Result<Option<PathBuf>> {
    beneath::resolve(root, path.as_ref())
}

/// Reads the file at `path` (links followed inside the root), `None` when
/// it does not exist.
pub fn read(root: &Path, path: impl AsRef<Path>) -> io::Result<Option<Vec<u8>>> {
    match resolve(root, path)? {
        Some(p) => match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    }
}

/// As [`read`], as text.
pub fn read_to_string(root: &Path, path: impl AsRef<Path>) -> io::Result<Option<String>> {
    read(root, path)?
        .map(|b| {
            String::from_utf8(b)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
        })
        .transpose()
}

/// The directory `path`, created (mode 0755, parents too) when missing;
/// its real location.
pub fn make_dir(root: &Path, path: impl AsRef<Path>) -> io::Result<PathBuf> {
    let dir = beneath::make_dirs(root, path.as_ref(), &mut |_| Ok(()))?;
    if !fs::metadata(&dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    Ok(dir)
}

/// The real location of the node `path` names, its parents created and
/// any file or symlink there removed, ready for a new node.
pub fn clear_for_new(root: &Path, path: impl AsRef<Path>) -> io::Result<PathBuf> {
    let (dir, name) = beneath::make_parents(root, path.as_ref(), &mut |_| Ok(()))?;
    let node = dir.join(name);
    match fs::symlink_metadata(&node) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            format!("{} is a directory", node.display()),
        )),
        Ok(_) => {
            fs::remove_file(&node)?;
            Ok(node)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(node),
        Err(e) => Err(e),
    }
}

/// Writes a new regular file with `data` and `mode` at `path`, replacing
/// a file or symlink there; returns it, open, for ownership changes.
pub fn write_file(
    root: &Path,
    path: impl AsRef<Path>,
    data: &[u8],
    mode: u32,
) -> io::Result<fs::File> {
    let node = clear_for_new(root, path)?;
    let mut f = beneath::create_new(&node, mode)?;
    f.write_all(data)?;
    Ok(f)
}

/// Makes `path` a symlink to `target`, replacing a file or symlink there.
pub fn symlink(root: &Path, path: impl AsRef<Path>, target: impl AsRef<Path>) -> io::Result<()> {
    let node = clear_for_new(root, path)?;
    make_symlink(target, node)
}

/// Removes the file or symlink `path` (not what it points to); `false`
/// when there was none.
pub fn remove_file(root: &Path, path: impl AsRef<Path>) -> io::Result<bool> {
    let Some((dir, name)) = beneath::resolve_parent(root, path.as_ref())? else {
        return Ok(false);
    };
    let node = dir.join(name);
    match fs::symlink_metadata(&node) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            format!("{} is a directory", node.display()),
        )),
        Ok(_) => fs::remove_file(&node).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Fails unless every component of `path` below the root is a real
/// directory or missing (no symlink, no file on the way). For the paths
/// that host tools osbuild runs write into (`depmod -b`), which resolve
/// them as the build host does.
pub fn check_no_links(root: &Path, path: impl AsRef<Path>) -> io::Result<()> {
    let mut cur = root.to_path_buf();
    for c in path.as_ref().components() {
        let std::path::Component::Normal(n) = c else {
            continue;
        };
        cur.push(n);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => {
                let what = if m.file_type().is_symlink() {
                    "a symlink"
                } else {
                    "not a directory"
                };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is {what}", cur.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A staging root whose links all point at `outside`, a sibling with
    /// a file in it.
    fn planted() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), "keep").unwrap();
        fs::set_permissions(outside.join("victim"), fs::Permissions::from_mode(0o600)).unwrap();
        make_symlink(&outside, root.join("usr/lib/keel")).unwrap();
        make_symlink("../../../../outside", root.join("etc")).unwrap();
        make_symlink(outside.join("victim"), root.join("usr/lib/os-release")).unwrap();
        (t, root, outside)
    }

    fn untouched(outside: &Path) {
        let names: Vec<_> = fs::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["victim"]);
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep");
        let mode = fs::metadata(outside.join("victim"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
    }

    #[test]
    fn writes_stay_in_the_root() {
        let (_t, root, outside) = planted();
        write_file(&root, "/usr/lib/keel/keel-init", b"init", 0o755).unwrap();
        write_file(&root, "etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644).unwrap();
        write_file(&root, "usr/lib/os-release", b"ID=keel\n", 0o644).unwrap();
        symlink(&root, "etc/os-release", "../usr/lib/os-release").unwrap();
        make_dir(&root, "etc/ssl/certs").unwrap();
        assert!(!remove_file(&root, "usr/lib/keel/victim").unwrap());
        untouched(&outside);
        // The absolute link to the outside directory names that path in
        // the root; the relative one climbs to the root and stops there.
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert_eq!(fs::read(inside.join("keel-init")).unwrap(), b"init");
        assert!(root.join("outside/passwd").is_file());
        assert!(root.join("outside/ssl/certs").is_dir());
        // The final link was replaced, not written through.
        let m = fs::symlink_metadata(root.join("usr/lib/os-release")).unwrap();
        assert!(m.is_file());
        assert_eq!(
            read_to_string(&root, "/etc/os-release").unwrap().unwrap(),
            "ID=keel\n"
        );
    }

    #[test]
    fn reads_stay_in_the_root() {
        let (_t, root, outside) = planted();
        make_symlink(outside.join("victim"), root.join("usr/lib/x")).unwrap();
        assert_eq!(read(&root, "usr/lib/x").unwrap(), None);
        assert_eq!(read(&root, "usr/lib/keel/victim").unwrap(), None);
        untouched(&outside);
    }

    #[test]
    fn links_on_a_tool_path_are_found() {
        let (_t, root, _outside) = planted();
        check_no_links(&root, "usr/lib/modules/6.1").unwrap();
        let e = check_no_links(&root, "usr/lib/keel/x").unwrap_err();
        assert!(e.to_string().contains("usr/lib/keel is a symlink"), "{e}");
        fs::write(root.join("usr/f"), "").unwrap();
        let e = check_no_links(&root, "usr/f/x").unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn a_directory_is_not_replaced_by_a_file() {
        let (_t, root, _outside) = planted();
        fs::create_dir_all(root.join("usr/lib/tmpfiles.d/x.conf")).unwrap();
        let e = write_file(&root, "usr/lib/tmpfiles.d/x.conf", b"", 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
        let e = remove_file(&root, "usr/lib/tmpfiles.d/x.conf").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
    }
}
