//! `storage.files`, `storage.directories` and `storage.links` applied to a
//! target root, with Ignition's semantics:
//!
//! - missing parent directories are made (0755, root);
//! - a file gets its contents, then every `append` in order; a new file
//!   has mode 0644 unless `mode` says otherwise, a new directory 0755;
//! - an existing node is kept (and its mode and owner set when given) if it
//!   is of the same kind and the entry changes no contents; a file with
//!   contents where one exists, or a node of another kind, needs
//!   `overwrite`, which replaces whatever is there;
//! - an existing link is kept when it already points at the target;
//! - owners are numeric ids or names looked up in the target's
//!   /etc/passwd and /etc/group; the default is root.
//!
//! Parent directories are resolved inside the root: a symlink on the way
//! (`/home` → `var/home`) is followed relative to the root, never out of
//! it.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use keel_core::beneath;

use ignition_config::v3_6::{NodeGroup, NodeUser, Storage};

use super::contents::{Budget, Contents};
use super::fetch::{self, Fetch};
use super::journal::Journal;
use super::sys::Sys;
use super::ApplyError;
use crate::report::JsonPath;

/// Reads the file `abs` of the root (an account file, a policy file),
/// resolved inside the root: a symlink on the way never leads out of it.
/// A path that does not resolve is `NotFound`.
pub fn read_in_root(root: &Path, abs: &str) -> io::Result<String> {
    let abs = Path::new("/").join(abs);
    match beneath::resolve(root, &abs)? {
        Some(p) => fs::read_to_string(p),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist in the root", abs.display()),
        )),
    }
}

/// An owner: numeric, or a name to look up.
fn owner(
    root: &Path,
    at: &JsonPath,
    user: &Option<NodeUser>,
    group: &Option<NodeGroup>,
) -> Result<(Option<u32>, Option<u32>), ApplyError> {
    let lookup = |file: &str, name: &str, what: &str| -> Result<u32, ApplyError> {
        let path = root.join(file);
        let text = read_in_root(root, file).map_err(|source| ApplyError::Io {
            what: "reading",
            path: path.clone(),
            source,
        })?;
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
            .and_then(|f| f.get(2)?.parse().ok())
            .ok_or_else(|| ApplyError::Config {
                path: at.key(what).key("name"),
                message: format!("{what} {name:?} not found in {}", path.display()),
            })
    };
    let id = |v: Option<i64>, what: &str| -> Result<Option<u32>, ApplyError> {
        v.map(|i| {
            u32::try_from(i).map_err(|_| ApplyError::Config {
                path: at.key(what).key("id"),
                message: format!("{what} id {i} out of range"),
            })
        })
        .transpose()
    };
    let uid = match user {
        Some(NodeUser { id: Some(i), .. }) => id(Some(*i), "user")?,
        Some(NodeUser { name: Some(n), .. }) if !n.is_empty() => {
            Some(lookup("etc/passwd", n, "user")?)
        }
        _ => None,
    };
    let gid = match group {
        Some(NodeGroup { id: Some(i), .. }) => id(Some(*i), "group")?,
        Some(NodeGroup { name: Some(n), .. }) if !n.is_empty() => {
            Some(lookup("etc/group", n, "group")?)
        }
        _ => None,
    };
    Ok((uid, gid))
}

enum Kind {
    Dir {
        mode: Option<u32>,
    },
    File {
        mode: Option<u32>,
        contents: Option<Contents>,
        append: Vec<Contents>,
    },
    Link {
        target: String,
        hard: bool,
    },
}

pub struct Entry {
    at: JsonPath,
    path: String,
    overwrite: bool,
    user: Option<NodeUser>,
    group: Option<NodeGroup>,
    /// Resolved by [`resolve_owners`].
    uid: Option<u32>,
    gid: Option<u32>,
    kind: Kind,
}

/// Fetches every resource into `budget` (which bounds them; see
/// [`Budget`]): nothing is written before this has succeeded for all
/// entries.
pub fn prepare(s: &Storage, f: &dyn Fetch, budget: &mut Budget) -> Result<Vec<Entry>, ApplyError> {
    let st = JsonPath::root().key("storage");
    let mode = |m: Option<i64>| m.map(|m| (m as u32) & 0o7777);
    let mut out = Vec::new();
    for (i, d) in s.directories.iter().flatten().enumerate() {
        let at = st.key("directories").index(i);
        out.push(Entry {
            path: d.path.clone(),
            overwrite: d.overwrite == Some(true),
            user: d.user.clone(),
            group: d.group.clone(),
            uid: None,
            gid: None,
            kind: Kind::Dir { mode: mode(d.mode) },
            at,
        });
    }
    for (i, file) in s.files.iter().flatten().enumerate() {
        let at = st.key("files").index(i);
        let contents = match &file.contents {
            Some(c) => fetch::contents(f, c, budget).map_err(|error| ApplyError::Fetch {
                path: at.key("contents"),
                error,
            })?,
            None => None,
        };
        let mut append = Vec::new();
        for (j, a) in file.append.iter().flatten().enumerate() {
            let bytes = fetch::contents(f, a, budget).map_err(|error| ApplyError::Fetch {
                path: at.key("append").index(j),
                error,
            })?;
            append.push(bytes.unwrap_or_else(|| Contents::from_vec(Vec::new())));
        }
        out.push(Entry {
            path: file.path.clone(),
            overwrite: file.overwrite == Some(true),
            user: file.user.clone(),
            group: file.group.clone(),
            uid: None,
            gid: None,
            kind: Kind::File {
                mode: mode(file.mode),
                contents,
                append,
            },
            at,
        });
    }
    for (i, l) in s.links.iter().flatten().enumerate() {
        let at = st.key("links").index(i);
        out.push(Entry {
            path: l.path.clone(),
            overwrite: l.overwrite == Some(true),
            user: l.user.clone(),
            group: l.group.clone(),
            uid: None,
            gid: None,
            kind: Kind::Link {
                target: l.target.clone().unwrap_or_default(),
                hard: l.hard == Some(true),
            },
            at,
        });
    }
    // Parents before children, links after everything else (a hard link
    // needs its target), the order of the config otherwise.
    out.sort_by_key(|e| {
        (
            matches!(e.kind, Kind::Link { .. }),
            e.path.matches('/').count(),
        )
    });
    Ok(out)
}

/// Looks up the owners' names in the root's account files (after the
/// config's own users and groups were added).
pub fn resolve_owners(root: &Path, entries: &mut [Entry]) -> Result<(), (JsonPath, String)> {
    for e in entries {
        let (uid, gid) = owner(root, &e.at, &e.user, &e.group).map_err(|err| match err {
            ApplyError::Config { path, message } => (path, message),
            other => (e.at.clone(), other.to_string()),
        })?;
        e.uid = uid;
        e.gid = gid;
    }
    Ok(())
}

/// Resolves the directory `dir` (absolute, inside the config's view of
/// the root) to a path below `root`, following symlinks inside the root
/// ([`keel_core::beneath`]) and creating what is missing (0755, root),
/// every directory it creates recorded in `journal`.
pub fn make_parents(
    root: &Path,
    dir: &Path,
    journal: &mut Journal,
    sys: &dyn Sys,
) -> io::Result<PathBuf> {
    beneath::make_dirs(root, dir, &mut |made| {
        journal.created_dir(made);
        sys.lchown(made, 0, 0)
    })
}

/// The directory that holds `path` (absolute, inside the config's view of
/// the root), made as [`make_parents`] does, and the path of the node
/// itself there (not followed).
pub fn make_place(
    root: &Path,
    path: &Path,
    journal: &mut Journal,
    sys: &dyn Sys,
) -> io::Result<PathBuf> {
    let (dir, name) = beneath::make_parents(root, path, &mut |made| {
        journal.created_dir(made);
        sys.lchown(made, 0, 0)
    })?;
    Ok(dir.join(name))
}

/// Resolves `path` (absolute, inside the config's view of the root) to a
/// path below `root`, following symlinks inside the root; `None` when
/// something on the way does not exist.
pub fn resolve(root: &Path, path: &Path) -> io::Result<Option<PathBuf>> {
    beneath::resolve(root, path)
}

/// The place of the node `path` (absolute, inside the config's view of the
/// root) below `root`: its directory resolved inside the root, the node
/// itself not followed; `None` when a directory on the way is missing.
pub fn place(root: &Path, path: &Path) -> io::Result<Option<PathBuf>> {
    Ok(beneath::resolve_parent(root, path)?.map(|(dir, name)| dir.join(name)))
}

fn set_meta(
    sys: &dyn Sys,
    path: &Path,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    link: bool,
) -> io::Result<()> {
    if uid.is_some() || gid.is_some() {
        let m = fs::symlink_metadata(path)?;
        use std::os::unix::fs::MetadataExt;
        sys.lchown(path, uid.unwrap_or(m.uid()), gid.unwrap_or(m.gid()))?;
    }
    if let (Some(mode), false) = (mode, link) {
        beneath::set_mode(path, mode)?;
    }
    Ok(())
}

fn write_new(path: &Path, data: Option<&Contents>, append: &[Contents]) -> io::Result<()> {
    let mut f = beneath::create_new(path, 0o644)?;
    if let Some(data) = data {
        data.write_to(&mut f)?;
    }
    for a in append {
        a.write_to(&mut f)?;
    }
    f.sync_all()
}

fn apply_entry(root: &Path, e: &Entry, journal: &mut Journal, sys: &dyn Sys) -> Result<(), String> {
    let target = make_place(root, Path::new(&e.path), journal, sys).map_err(|e| e.to_string())?;
    let io = |what: &str, err: io::Error| format!("{what} {}: {err}", target.display());
    let existing = fs::symlink_metadata(&target).ok();
    let same_kind = existing.as_ref().is_some_and(|m| match &e.kind {
        Kind::Dir { .. } => m.is_dir(),
        Kind::File { .. } => m.is_file(),
        Kind::Link { hard: false, .. } => m.file_type().is_symlink(),
        Kind::Link { hard: true, .. } => false,
    });
    let changes_contents = match &e.kind {
        Kind::File { contents, .. } => contents.is_some(),
        Kind::Link { target: t, hard } => {
            *hard || fs::read_link(&target).map_or(true, |old| old != Path::new(t))
        }
        Kind::Dir { .. } => false,
    };
    let mut kept: Option<PathBuf> = None;
    if existing.is_some() {
        if e.overwrite {
            journal
                .move_aside(&target)
                .map_err(|err| io("moving aside", err))?;
        } else if !same_kind || changes_contents {
            return Err(format!(
                "a {} exists at {} and overwrite is false",
                match existing.as_ref() {
                    Some(m) if m.is_dir() => "directory",
                    Some(m) if m.file_type().is_symlink() => "link",
                    _ => "file",
                },
                e.path
            ));
        } else if matches!(e.kind, Kind::Dir { .. }) {
            journal.meta(&target).map_err(|err| io("reading", err))?;
        } else {
            // Files and links are replaced by copies, so that the original
            // can be put back.
            kept = Some(
                journal
                    .move_aside(&target)
                    .map_err(|err| io("moving aside", err))?,
            );
        }
    }
    match &e.kind {
        Kind::Dir { mode } => {
            if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&target)
                    .map_err(|err| io("creating", err))?;
                journal.created(&target);
                beneath::set_mode(&target, 0o755).map_err(|err| io("setting mode of", err))?;
                sys.lchown(&target, 0, 0)
                    .map_err(|err| io("setting owner of", err))?;
            }
            set_meta(sys, &target, *mode, e.uid, e.gid, false)
                .map_err(|err| io("setting mode and owner of", err))
        }
        Kind::File {
            mode,
            contents,
            append,
        } => {
            match &kept {
                Some(backup) => {
                    beneath::copy_new(backup, &target).map_err(|err| io("copying", err))?;
                    journal.created(&target);
                    let mut f = fs::OpenOptions::new()
                        .append(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&target)
                        .map_err(|err| io("opening", err))?;
                    for a in append {
                        a.write_to(&mut f).map_err(|err| io("appending to", err))?;
                    }
                    f.sync_all().map_err(|err| io("syncing", err))?;
                    // The copy's owner is ours; keep the original's.
                    use std::os::unix::fs::MetadataExt;
                    let m = fs::symlink_metadata(backup).map_err(|err| io("reading", err))?;
                    sys.lchown(&target, m.uid(), m.gid())
                        .map_err(|err| io("setting owner of", err))?;
                }
                None => {
                    write_new(&target, contents.as_ref(), append)
                        .map_err(|err| io("writing", err))?;
                    journal.created(&target);
                    sys.lchown(&target, 0, 0)
                        .map_err(|err| io("setting owner of", err))?;
                }
            }
            set_meta(sys, &target, *mode, e.uid, e.gid, false)
                .map_err(|err| io("setting mode and owner of", err))
        }
        Kind::Link { target: t, hard } => {
            if *hard {
                // link(2) does not follow a symlink at the target: the
                // place of the target is enough, and nothing is created.
                let src = place(root, Path::new(t))
                    .map_err(|err| format!("resolving the link target {t}: {err}"))?
                    .ok_or_else(|| format!("the link target {t} does not exist"))?;
                fs::hard_link(&src, &target).map_err(|err| {
                    format!("linking {} to {}: {err}", target.display(), src.display())
                })?;
                journal.created(&target);
                return Ok(());
            }
            symlink(t, &target).map_err(|err| io("creating symlink", err))?;
            journal.created(&target);
            let (uid, gid) = (e.uid.or(Some(0)), e.gid.or(Some(0)));
            set_meta(sys, &target, None, uid, gid, true).map_err(|err| io("setting owner of", err))
        }
    }
}

/// Writes prepared entries below `root`, recording every change in
/// `journal`; `Err` names the entry that failed.
pub fn write(
    root: &Path,
    entries: &[Entry],
    journal: &mut Journal,
    sys: &dyn Sys,
) -> Result<(), (JsonPath, String)> {
    for e in entries {
        apply_entry(root, e, journal, sys).map_err(|m| (e.at.clone(), m))?;
    }
    Ok(())
}
