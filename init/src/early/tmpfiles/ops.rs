//! What each tmpfiles.d item does to the file system below the root.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{
    lchown, symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Path, PathBuf};

use super::super::{follow_in_root, glob};
use super::parse::{default_mode, Item};
use crate::stage1::at;

/// Boot-time removal (r, R, D contents) only deletes below these.
pub const REMOVABLE_BELOW: [&str; 3] = ["/run", "/tmp", "/var"];

type Outcome = Result<(), String>;

/// The remove phase: r and R remove their paths, D empties its directory.
pub fn remove(root: &Path, item: &Item) -> Vec<String> {
    let mut errors = Vec::new();
    match item.kind {
        'r' | 'R' => {
            for p in glob::expand(root, &item.path) {
                let r = if !removable(root, &p, false) {
                    Err(refusal(&p))
                } else if item.kind == 'R' {
                    let real = at(root, &p);
                    fs::symlink_metadata(&real)
                        .map_err(|e| format!("removing {p}: {e}"))
                        .and_then(|m| {
                            remove_tree(&real, m.dev()).map_err(|e| format!("removing {p}: {e}"))
                        })
                } else {
                    remove_one(&at(root, &p)).map_err(|e| format!("removing {p}: {e}"))
                };
                errors.extend(r.err());
            }
        }
        'D' => {
            let real = at(root, &item.path);
            match fs::symlink_metadata(&real) {
                Ok(m) if m.is_dir() => {
                    if !removable(root, &item.path, true) {
                        errors.push(refusal(&format!("the contents of {}", item.path)));
                    } else if let Err(e) = empty_dir(&real, m.dev()) {
                        errors.push(format!("emptying {}: {e}", item.path));
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    errors
}

/// The create phase for every type but r and R.
pub fn create(root: &Path, item: &Item) -> Vec<String> {
    let one = |r: Outcome| r.err().into_iter().collect::<Vec<_>>();
    match item.kind {
        'f' | 'F' => one(create_file(root, item)),
        'd' | 'D' | 'v' | 'q' | 'Q' => one(create_dir(root, item)),
        'L' => one(create_symlink(root, item)),
        'w' => glob::expand(root, &item.path)
            .iter()
            .filter_map(|p| write_file(root, p, item).err())
            .collect(),
        'z' | 'Z' | 'e' => glob::expand(root, &item.path)
            .iter()
            .filter_map(|p| adjust(root, p, item).err())
            .collect(),
        _ => Vec::new(),
    }
}

fn refusal(what: &str) -> String {
    format!(
        "refusing to remove {what}: at boot only paths below {} are removed",
        REMOVABLE_BELOW.join(", ")
    )
}

/// Whether `abs` may be removed (`contents`: whether its contents may):
/// the directory holding what is removed must resolve to one of
/// [`REMOVABLE_BELOW`] or below.
fn removable(root: &Path, abs: &str, contents: bool) -> bool {
    let path = Path::new(abs);
    let holder = if contents {
        Some(path)
    } else {
        path.file_name().and(path.parent())
    };
    let Some(holder) = holder else {
        return false;
    };
    let Ok(real) = fs::canonicalize(at(root, &holder.to_string_lossy())) else {
        return false;
    };
    REMOVABLE_BELOW
        .iter()
        .filter_map(|b| fs::canonicalize(at(root, b)).ok())
        .any(|b| real.starts_with(b))
}

/// Removes a file, a symlink or an empty directory.
fn remove_one(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes `path` and everything below it without following symlinks and
/// without descending into other file systems (mount points stay).
fn remove_tree(path: &Path, dev: u64) -> io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    if !m.is_dir() {
        return fs::remove_file(path);
    }
    if m.dev() != dev {
        return Ok(());
    }
    empty_dir(path, dev)?;
    fs::remove_dir(path)
}

fn empty_dir(dir: &Path, dev: u64) -> io::Result<()> {
    let mut first_err = None;
    for entry in fs::read_dir(dir)? {
        let r = entry.and_then(|e| remove_tree(&e.path(), dev));
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn mkdir_parents(path: &Path) -> Outcome {
    match path.parent() {
        Some(parent) => DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| format!("creating parent directories of {}: {e}", path.display())),
        None => Ok(()),
    }
}

fn create_dir(root: &Path, item: &Item) -> Outcome {
    let path = at(root, &item.path);
    mkdir_parents(&path)?;
    let mode = item.mode.map_or(0o755, |m| m.bits);
    match DirBuilder::new().mode(mode).create(&path) {
        Ok(()) => set_perms(&path, item, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let real = follow_in_root(root, &path);
            if real.is_dir() {
                set_perms(&real, item, false)
            } else {
                Err(format!("{} exists and is not a directory", item.path))
            }
        }
        Err(e) => Err(format!("creating directory {}: {e}", item.path)),
    }
}

fn create_file(root: &Path, item: &Item) -> Outcome {
    let path = at(root, &item.path);
    mkdir_parents(&path)?;
    let truncate = item.kind == 'F' || item.force;
    let mode = item.mode.map_or(0o644, |m| m.bits);
    let content = item.argument.as_deref().unwrap_or_default();
    let fail = |e: io::Error| format!("writing {}: {e}", item.path);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(content).map_err(fail)?;
            set_perms(&path, item, true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let m = fs::symlink_metadata(&path).map_err(fail)?;
            if !m.is_file() {
                return Err(format!("{} exists and is not a regular file", item.path));
            }
            if truncate {
                OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .and_then(|mut f| f.write_all(content))
                    .map_err(fail)?;
            }
            set_perms(&path, item, false)
        }
        Err(e) => Err(fail(e)),
    }
}

/// `w`: writes the argument to an existing file (following symlinks),
/// appending with `w+`; without truncating, as systemd does.
fn write_file(root: &Path, abs: &str, item: &Item) -> Outcome {
    let real = follow_in_root(root, &at(root, abs));
    let content = item.argument.as_deref().unwrap_or_default();
    OpenOptions::new()
        .write(true)
        .append(item.force)
        .open(&real)
        .and_then(|mut f| f.write_all(content))
        .map_err(|e| format!("writing {abs}: {e}"))
}

fn create_symlink(root: &Path, item: &Item) -> Outcome {
    let path = at(root, &item.path);
    mkdir_parents(&path)?;
    let target = PathBuf::from(
        String::from_utf8_lossy(item.argument.as_deref().unwrap_or_default()).into_owned(),
    );
    let fail = |e: io::Error| {
        format!(
            "creating symlink {} -> {}: {e}",
            item.path,
            target.display()
        )
    };
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => symlink(&target, &path).map_err(fail),
        Err(e) => Err(fail(e)),
        Ok(m) => {
            if m.file_type().is_symlink() && fs::read_link(&path).ok().as_ref() == Some(&target) {
                return Ok(());
            }
            if !item.force {
                // systemd leaves it too, without complaint.
                return Ok(());
            }
            remove_tree(&path, m.dev())
                .and_then(|()| symlink(&target, &path))
                .map_err(fail)
        }
    }
}

/// z, Z and e: mode and ownership of existing paths (Z: recursively,
/// not following symlinks or leaving the file system; e: directories).
fn adjust(root: &Path, abs: &str, item: &Item) -> Outcome {
    let path = at(root, abs);
    let m = fs::symlink_metadata(&path).map_err(|e| format!("{abs}: {e}"))?;
    if item.kind == 'e' && !m.is_dir() {
        return Ok(());
    }
    set_perms(&path, item, false)?;
    if item.kind == 'Z' && m.is_dir() {
        adjust_below(&path, m.dev(), item)?;
    }
    Ok(())
}

fn adjust_below(dir: &Path, dev: u64, item: &Item) -> Outcome {
    let entries = fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let p = entry.path();
        let m = fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        set_perms(&p, item, false)?;
        if m.is_dir() && m.dev() == dev {
            adjust_below(&p, dev, item)?;
        }
    }
    Ok(())
}

/// The mode a `~` mode becomes on an existing inode of mode `old`:
/// execute, write and read bits go where the old mode had none, and
/// set-id/sticky bits go unless it is a directory.
pub fn mask_mode(want: u32, old: u32, is_dir: bool) -> u32 {
    let mut m = want;
    if old & 0o111 == 0 {
        m &= !0o111;
    }
    if old & 0o222 == 0 {
        m &= !0o222;
    }
    if old & 0o444 == 0 {
        m &= !0o444;
    }
    if !is_dir {
        m &= !0o7000;
    }
    m
}

/// Applies the item's owner (lchown) and then its mode. On an inode that
/// already existed, `-` columns and `:` (create-only) columns change
/// nothing; a new inode gets the default mode for `-`. Symlinks only get
/// their owner.
fn set_perms(path: &Path, item: &Item, created: bool) -> Outcome {
    let shown = &item.path;
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    let uid = item.uid.filter(|o| created || !o.create_only).map(|o| o.id);
    let gid = item.gid.filter(|o| created || !o.create_only).map(|o| o.id);
    let chown = uid.is_some_and(|u| u != meta.uid()) || gid.is_some_and(|g| g != meta.gid());
    if chown {
        lchown(path, uid, gid).map_err(|e| format!("changing the owner of {shown}: {e}"))?;
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let old = meta.mode() & 0o7777;
    let want = match item.mode {
        Some(m) if created || !m.create_only => Some(if m.masked {
            mask_mode(m.bits, old, meta.is_dir())
        } else {
            m.bits
        }),
        Some(_) => None,
        None if created => Some(default_mode(item.kind)),
        None => None,
    };
    match want {
        Some(w) if w != old || chown => fs::set_permissions(path, fs::Permissions::from_mode(w))
            .map_err(|e| format!("changing the mode of {shown}: {e}")),
        _ => Ok(()),
    }
}
