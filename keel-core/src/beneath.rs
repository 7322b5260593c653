//! Paths inside a root directory, resolved the way the root's own programs
//! see them after `chroot(2)`: a symlink is followed relative to the root
//! (an absolute target starts again at the root), `..` stops at the root,
//! and nothing ever resolves to a place outside it. This is the semantics
//! of `openat2(RESOLVE_IN_ROOT)`, done in user space so it also works on a
//! tree that is not the running system.
//!
//! Every program that writes into a tree it was given (keel-firstboot's
//! `apply --root`, the unit installer, osbuild's staging tree) resolves
//! its paths here and then acts on the last component without following
//! it: [`resolve_parent`] and [`make_parents`] return the real directory
//! and the final name, [`set_mode`] and [`create_new`] never follow a
//! final symlink. Between the resolution and the write nothing else may
//! swap a directory for a link; that holds for an image tree at build time
//! and for a node's root at first boot, where nothing else runs yet.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// How many symlinks resolving one path may follow (as Linux's ELOOP).
pub const MAX_LINKS: usize = 40;

/// The path `abs` (as seen inside the root) below `root`, without looking
/// at the disk: `..` stops at the root, `.` and repeated slashes vanish.
/// Only for paths whose components are known not to be symlinks (for
/// example ones osbuild itself created); otherwise use [`resolve`].
pub fn lexical(root: &Path, abs: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in abs.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

/// What [`walk`] does with a component that does not exist.
enum Missing<'a> {
    /// Stop: the path does not exist.
    Stop,
    /// Create it as a directory (0755) and tell `made`.
    Create(&'a mut dyn FnMut(&Path) -> io::Result<()>),
}

/// Resolves `path` (absolute inside the root) below `root`, following
/// every symlink, the last one too. `None` when something on the way does
/// not exist.
pub fn resolve(root: &Path, path: &Path) -> io::Result<Option<PathBuf>> {
    walk(root, path, Missing::Stop)
}

/// Resolves the directory that holds `path` (absolute inside the root)
/// and returns it with the final name, which is not followed: the caller
/// acts on that node itself (creates it, replaces it, reads a link).
/// `None` when a directory on the way does not exist.
pub fn resolve_parent(root: &Path, path: &Path) -> io::Result<Option<(PathBuf, OsString)>> {
    let (parent, name) = split(path)?;
    Ok(walk(root, parent, Missing::Stop)?.map(|d| (d, name)))
}

/// As [`resolve_parent`], creating the missing directories on the way
/// (mode 0755); `made` is told of each one right after it was created, so
/// that the caller can record it and set its owner.
pub fn make_parents(
    root: &Path,
    path: &Path,
    made: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> io::Result<(PathBuf, OsString)> {
    let (parent, name) = split(path)?;
    let dir = make_dirs(root, parent, made)?;
    Ok((dir, name))
}

/// Resolves the directory `dir` (absolute inside the root) below `root`,
/// creating what is missing (mode 0755) and telling `made` of each.
pub fn make_dirs(
    root: &Path,
    dir: &Path,
    made: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> io::Result<PathBuf> {
    walk(root, dir, Missing::Create(made)).map(|p| p.unwrap_or_else(|| root.to_path_buf()))
}

/// Splits `path` into its parent and a final name that is a real name
/// (not `.`, `..` or the root itself).
fn split(path: &Path) -> io::Result<(&Path, OsString)> {
    match (path.parent(), path.components().next_back()) {
        (Some(parent), Some(Component::Normal(name))) => Ok((parent, name.to_os_string())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a node below a directory", path.display()),
        )),
    }
}

fn walk(root: &Path, path: &Path, mut missing: Missing<'_>) -> io::Result<Option<PathBuf>> {
    // Components still to resolve, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut cur = root.to_path_buf();
    // How deep below the root `cur` is, so that `..` stops there.
    let mut depth = 0usize;
    let mut links = 0usize;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if depth > 0 {
                cur.pop();
                depth -= 1;
            }
            continue;
        }
        let next = cur.join(&part);
        let last = pending.is_empty();
        match fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {} in {}",
                        path.display(),
                        root.display()
                    )));
                }
                let target = fs::read_link(&next)?;
                if target.is_absolute() {
                    cur = root.to_path_buf();
                    depth = 0;
                }
                push_components(&mut pending, &target);
            }
            Ok(m) if m.is_dir() => {
                cur = next;
                depth += 1;
            }
            Ok(_) if last && matches!(missing, Missing::Stop) => {
                cur = next;
                depth += 1;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", next.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match &mut missing {
                Missing::Stop => return Ok(None),
                Missing::Create(made) => {
                    fs::DirBuilder::new().mode(0o755).create(&next)?;
                    // The umask may have taken bits away.
                    fs::set_permissions(&next, fs::Permissions::from_mode(0o755))?;
                    made(&next)?;
                    cur = next;
                    depth += 1;
                }
            },
            Err(e) => return Err(e),
        }
    }
    Ok(Some(cur))
}

/// Pushes the components of `p` onto `pending` so that the first one is
/// popped first.
fn push_components(pending: &mut Vec<OsString>, p: &Path) {
    for c in p.components().rev() {
        match c {
            Component::Normal(n) => pending.push(n.to_os_string()),
            Component::ParentDir => pending.push("..".into()),
            _ => {}
        }
    }
}

/// Opens `path` without following a final symlink (`O_NOFOLLOW`; a FIFO
/// or device does not block the open).
fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Sets the mode of the node at `path` itself, never of what a symlink
/// there points to (a symlink is an error: links have no mode of their
/// own on Linux).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    open_nofollow(path)?.set_permissions(fs::Permissions::from_mode(mode))
}

/// Creates a new regular file at `path` (never through a symlink there,
/// never over an existing node) with `mode`, which the umask does not
/// change.
pub fn create_new(path: &Path, mode: u32) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Copies the regular file `from` to a new file `to` (neither followed if
/// it is a symlink), with `from`'s mode; returns the bytes copied.
pub fn copy_new(from: &Path, to: &Path) -> io::Result<u64> {
    let mut src = open_nofollow(from)?;
    let meta = src.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", from.display()),
        ));
    }
    let mut dst = create_new(to, meta.permissions().mode() & 0o7777)?;
    io::copy(&mut src, &mut dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        (t, root, outside)
    }

    #[test]
    fn links_are_followed_inside_the_root_only() {
        let (_t, root, outside) = tree();
        // Absolute, relative and `..`-heavy links all end up inside.
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink(&outside, root.join("abs-out")).unwrap();
        symlink("../../../../outside", root.join("rel-out")).unwrap();
        symlink("usr/../../..", root.join("up")).unwrap();
        assert_eq!(
            resolve(&root, Path::new("/lib")).unwrap(),
            Some(root.join("usr/lib"))
        );
        // An absolute link to the outside directory's path names that path
        // below the root, which does not exist.
        assert_eq!(resolve(&root, Path::new("/abs-out/x")).unwrap(), None);
        assert_eq!(resolve(&root, Path::new("/rel-out")).unwrap(), None);
        assert_eq!(
            resolve(&root, Path::new("/up/usr")).unwrap(),
            Some(root.join("usr"))
        );
        assert_eq!(
            resolve(&root, Path::new("/../../usr/./lib/..")).unwrap(),
            Some(root.join("usr"))
        );
        // Creating through them creates inside.
        let mut made = Vec::new();
        let (dir, name) = make_parents(&root, Path::new("/rel-out/a/b/file"), &mut |p| {
            made.push(p.to_path_buf());
            Ok(())
        })
        .unwrap();
        assert_eq!(dir, root.join("outside/a/b"));
        assert_eq!(name, "file");
        assert_eq!(
            made,
            [
                root.join("outside"),
                root.join("outside/a"),
                root.join("outside/a/b")
            ]
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn the_last_component_of_a_parent_lookup_is_not_followed() {
        let (_t, root, outside) = tree();
        symlink(&outside, root.join("usr/lib/x")).unwrap();
        let (dir, name) = resolve_parent(&root, Path::new("/usr/lib/x"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (dir, name.as_os_str()),
            (root.join("usr/lib"), "x".as_ref())
        );
        assert!(resolve_parent(&root, Path::new("/")).is_err());
        assert!(resolve_parent(&root, Path::new("/usr/..")).is_err());
        assert_eq!(resolve_parent(&root, Path::new("/no/such")).unwrap(), None);
    }

    #[test]
    fn loops_and_files_on_the_way_are_errors() {
        let (_t, root, _) = tree();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        let e = resolve(&root, Path::new("/a/x")).unwrap_err();
        assert!(e.to_string().contains("too many levels"), "{e}");
        fs::write(root.join("f"), "").unwrap();
        let e = make_dirs(&root, Path::new("/f/x"), &mut |_| Ok(())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotADirectory);
        // A file as the last component is fine for a lookup.
        assert_eq!(
            resolve(&root, Path::new("/f")).unwrap(),
            Some(root.join("f"))
        );
    }

    #[test]
    fn mode_and_new_files_never_go_through_a_link() {
        let (_t, root, outside) = tree();
        let victim = outside.join("victim");
        fs::write(&victim, "keep").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let link = root.join("link");
        symlink(&victim, &link).unwrap();
        assert!(set_mode(&link, 0o777).is_err());
        assert!(create_new(&link, 0o644).is_err());
        assert!(copy_new(&link, &root.join("copy")).is_err());
        let m = fs::metadata(&victim).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::read(&victim).unwrap(), b"keep");

        let f = root.join("f");
        drop(create_new(&f, 0o640).unwrap());
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        set_mode(&f, 0o600).unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(copy_new(&f, &root.join("g")).unwrap(), 0);
        assert_eq!(
            fs::metadata(root.join("g")).unwrap().permissions().mode() & 0o7777,
            0o600
        );
    }

    #[test]
    fn lexical_stays_below_the_root() {
        let root = Path::new("/r");
        assert_eq!(
            lexical(root, Path::new("/../../etc/./x")),
            Path::new("/r/etc/x")
        );
        assert_eq!(lexical(root, Path::new("/")), Path::new("/r"));
    }
}
