//! System users and groups from sysusers.d files, created at build time
//! with systemd-sysusers semantics (sysusers.d(5)), where Debian packages
//! would have run `adduser --system` in their maintainer scripts.
//!
//! Files are read from `etc/sysusers.d`, `run/sysusers.d`,
//! `usr/local/lib/sysusers.d` and `usr/lib/sysusers.d` of the root (a file
//! name in an earlier directory overrides the same name in a later one; a
//! symlink to /dev/null masks it), in file-name order. `u`, `u!`, `g` and
//! `m` lines are supported; `r` lines, path IDs and `%` specifiers are
//! errors.
//!
//! As systemd-sysusers does: every group (`g` lines, and groups implied by
//! `m` lines) is created before any user; each user gets a group of its own
//! name unless its ID names one (`uid:gid`, `uid:groupname`); automatic
//! IDs come from the system range counting down from 999, skipping IDs
//! that are in use, and a user and its group get the same number when it
//! is free in both tables. Existing accounts are never changed. The first
//! declaration of a name wins. Passwords are locked (`!*` in
//! /etc/shadow, `!` in /etc/gshadow) and password aging is off, so the
//! result depends only on the input files.
//!
//! Files are found, read and written inside the root only (its symlinks
//! resolved as the image sees them, [`crate::stage`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// sysusers.d directories below the root, highest precedence first.
pub const SYSUSERS_DIRS: &[&str] = &[
    "etc/sysusers.d",
    "run/sysusers.d",
    "usr/local/lib/sysusers.d",
    "usr/lib/sysusers.d",
];

/// Highest ID of the system range; automatic IDs count down from here.
pub const SYSTEM_ID_MAX: u32 = 999;
/// Default shell of created users.
pub const NOLOGIN: &str = "/usr/sbin/nologin";

#[derive(Debug, thiserror::Error)]
pub enum SysusersError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {message}", file.display())]
    Line {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: malformed account entry: {text:?}", file.display())]
    Database {
        file: PathBuf,
        line: usize,
        text: String,
    },
}

/// One account created by [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub name: String,
    pub uid: Option<u32>,
    pub gid: u32,
}

/// What [`apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// New groups, in creation order (`uid` is `None`).
    pub groups: Vec<Created>,
    /// New users, in creation order.
    pub users: Vec<Created>,
    /// `(user, group)` memberships added.
    pub members: Vec<(String, String)>,
}

mod db;
mod parse;
#[cfg(test)]
mod tests;

use db::{read_entries, Database};
use parse::{add_implicit, parse_into, Decls};

/// Creates the users and groups the root's sysusers.d files declare, in
/// its etc/passwd, etc/group, etc/shadow and etc/gshadow.
pub fn apply(root: &Path) -> Result<Report, SysusersError> {
    let files = config_files(root)?;
    let mut decls = Decls::default();
    for (shown, real) in &files {
        let text = fs::read_to_string(real).map_err(io_err("reading", real))?;
        parse_into(&mut decls, shown, &text)?;
    }
    add_implicit(&mut decls);
    if decls.groups.is_empty() && decls.users.is_empty() && decls.members.is_empty() {
        return Ok(Report::default());
    }
    let mut db = Database::read(root)?;
    let report = db.allocate(&decls)?;
    db.write(root)?;
    Ok(report)
}

/// The configuration files: `(path as named in messages, file to read)`.
fn config_files(root: &Path) -> Result<Vec<(PathBuf, PathBuf)>, SysusersError> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in SYSUSERS_DIRS {
        let shown = Path::new("/").join(dir);
        let Some(d) = crate::stage::resolve(root, dir).map_err(io_err("reading", &shown))? else {
            continue;
        };
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("reading", &shown)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("reading", &shown))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| shown.join(name));
            }
        }
    }
    let mut out = Vec::new();
    for path in by_name.into_values() {
        if let Some(real) = resolve_in_root(root, &path)? {
            out.push((path, real));
        }
    }
    Ok(out)
}

/// Follows symlinks of a configuration file (`path` as inside the root)
/// inside `root`, never on the build host. `None` when it is masked (a
/// link to /dev/null).
fn resolve_in_root(root: &Path, path: &Path) -> Result<Option<PathBuf>, SysusersError> {
    let mut p = path.to_path_buf();
    for _ in 0..keel_core::beneath::MAX_LINKS {
        let (dir, name) = keel_core::beneath::resolve_parent(root, &p)
            .map_err(io_err("reading", path))?
            .ok_or_else(|| SysusersError::Io {
                what: "reading",
                path: path.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} does not exist", p.display()),
                ),
            })?;
        let real = dir.join(&name);
        let meta = fs::symlink_metadata(&real).map_err(io_err("reading", path))?;
        if !meta.file_type().is_symlink() {
            return Ok(Some(real));
        }
        let target = fs::read_link(&real).map_err(io_err("reading", path))?;
        if target == Path::new("/dev/null") {
            return Ok(None);
        }
        p = if target.is_absolute() {
            target
        } else {
            // The link's directory as the root sees it, then the target;
            // `..` in it is resolved (and stopped at the root) by beneath.
            let in_root = dir.strip_prefix(root).unwrap_or(Path::new(""));
            Path::new("/").join(in_root).join(target)
        };
    }
    Err(SysusersError::Io {
        what: "following symlinks of",
        path: path.to_path_buf(),
        source: io::Error::other("too many levels of symbolic links"),
    })
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SysusersError {
    let path = path.to_path_buf();
    move |source| SysusersError::Io { what, path, source }
}

/// Names of all users a root's passwd file lists, for tests and checks.
pub fn user_names(root: &Path) -> Result<BTreeSet<String>, SysusersError> {
    Ok(read_entries(root, "etc/passwd", 7)?
        .into_iter()
        .map(|e| e.fields[0].clone())
        .collect())
}
