//! Users and groups from `<root>/etc/passwd` and `<root>/etc/group`, for
//! tmpfiles.d ownership and the supervisor's `User=`/`Group=`.
//!
//! A name is looked up in the files; a numeric id is accepted even when no
//! entry has it (as systemd does): a user then gets the group of the same
//! number. `root` (0) always resolves, even without the files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::stage1::at;

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Home directory; empty for a numeric id without an entry.
    pub home: String,
    /// Login shell; empty for a numeric id without an entry.
    pub shell: String,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    /// Supplementary members by user name.
    pub members: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unknown user {0:?} (not in {PASSWD})")]
    UnknownUser(String),
    #[error("unknown group {0:?} (not in {GROUP})")]
    UnknownGroup(String),
}

/// The user and group databases of a root, read once.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
}

fn read_db(root: &Path, abs: &str) -> Result<String, AccountError> {
    let path = at(root, abs);
    match fs::read_to_string(&path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(AccountError::Io { path, source }),
    }
}

/// A numeric id as systemd accepts it: decimal, not -1 and not 65535
/// (both reserved as "no id" by 16- and 32-bit interfaces).
pub fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>()
        .ok()
        .filter(|id| *id != u32::MAX && *id != 65535)
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group` below `root`; a missing file is
    /// an empty database.
    pub fn load(root: &Path) -> Result<Self, AccountError> {
        Ok(Accounts {
            users: parse_passwd(&read_db(root, PASSWD)?),
            groups: parse_group(&read_db(root, GROUP)?),
        })
    }

    /// The user named `spec`, or with the numeric id `spec`.
    pub fn user(&self, spec: &str) -> Result<User, AccountError> {
        let id = parse_id(spec);
        let found = match id {
            Some(uid) => self.users.iter().find(|u| u.uid == uid),
            None => self.users.iter().find(|u| u.name == spec),
        };
        if let Some(u) = found {
            return Ok(u.clone());
        }
        match (spec, id) {
            ("root", _) | (_, Some(0)) => Ok(User {
                name: "root".into(),
                uid: 0,
                gid: 0,
                home: "/root".into(),
                shell: "/bin/sh".into(),
            }),
            (_, Some(uid)) => Ok(User {
                name: spec.to_string(),
                uid,
                gid: uid,
                home: String::new(),
                shell: String::new(),
            }),
            _ => Err(AccountError::UnknownUser(spec.to_string())),
        }
    }

    /// The group named `spec`, or with the numeric id `spec`.
    pub fn group(&self, spec: &str) -> Result<Group, AccountError> {
        let id = parse_id(spec);
        let found = match id {
            Some(gid) => self.groups.iter().find(|g| g.gid == gid),
            None => self.groups.iter().find(|g| g.name == spec),
        };
        if let Some(g) = found {
            return Ok(g.clone());
        }
        match (spec, id) {
            ("root", _) | (_, Some(0)) => Ok(Group {
                name: "root".into(),
                gid: 0,
                members: Vec::new(),
            }),
            (_, Some(gid)) => Ok(Group {
                name: spec.to_string(),
                gid,
                members: Vec::new(),
            }),
            _ => Err(AccountError::UnknownGroup(spec.to_string())),
        }
    }
}

/// Looks up a user by name or numeric id in `<root>/etc/passwd`.
pub fn lookup_user(root: &Path, spec: &str) -> Result<User, AccountError> {
    Accounts::load(root)?.user(spec)
}

/// Looks up a group by name or numeric id in `<root>/etc/group`.
pub fn lookup_group(root: &Path, spec: &str) -> Result<Group, AccountError> {
    Accounts::load(root)?.group(spec)
}

/// The supplementary groups of `user`: every group in `<root>/etc/group`
/// that lists it as a member, as initgroups(3) finds them.
pub fn groups_of(root: &Path, user: &str) -> Result<Vec<u32>, AccountError> {
    Ok(Accounts::load(root)?
        .groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m == user))
        .map(|g| g.gid)
        .collect())
}

/// `name:password:uid:gid:gecos:home:shell` lines; malformed lines and
/// NIS `+`/`-` entries are skipped.
pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() != 7 || f[0].is_empty() || f[0].starts_with(['+', '-']) {
                return None;
            }
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// `name:password:gid:member,member` lines; malformed lines and NIS
/// entries are skipped.
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() != 4 || f[0].is_empty() || f[0].starts_with(['+', '-']) {
                return None;
            }
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        +nis::::::\n\
        systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n";
    const GROUP_TEXT: &str = "root:x:0:\nutmp:x:43:\nadm:x:4:syslog,alice\nbad\n";

    fn root_with_files() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        fs::write(t.path().join("etc/passwd"), PASSWD_TEXT).unwrap();
        fs::write(t.path().join("etc/group"), GROUP_TEXT).unwrap();
        t
    }

    #[test]
    fn looks_up_names_and_ids() {
        let t = root_with_files();
        let u = lookup_user(t.path(), "systemd-network").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (998, 998, "/"));
        assert_eq!(lookup_user(t.path(), "1").unwrap().name, "daemon");
        let g = lookup_group(t.path(), "adm").unwrap();
        assert_eq!(
            (g.gid, g.members.clone()),
            (4, vec!["syslog".into(), "alice".into()])
        );
        assert_eq!(lookup_group(t.path(), "43").unwrap().name, "utmp");
    }

    #[test]
    fn numeric_ids_without_entries_are_accepted() {
        let t = root_with_files();
        let u = lookup_user(t.path(), "4242").unwrap();
        assert_eq!((u.uid, u.gid, u.name.as_str()), (4242, 4242, "4242"));
        assert_eq!(lookup_group(t.path(), "4243").unwrap().gid, 4243);
        assert!(matches!(
            lookup_user(t.path(), "65535"),
            Err(AccountError::UnknownUser(_))
        ));
        assert!(matches!(
            lookup_user(t.path(), "4294967295"),
            Err(AccountError::UnknownUser(_))
        ));
    }

    #[test]
    fn unknown_names_are_errors_but_root_always_resolves() {
        let t = tempfile::tempdir().unwrap();
        let e = lookup_user(t.path(), "nobody-here").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown user \"nobody-here\" (not in /etc/passwd)"
        );
        assert!(matches!(
            lookup_group(t.path(), "wheel"),
            Err(AccountError::UnknownGroup(_))
        ));
        assert_eq!(lookup_user(t.path(), "root").unwrap().home, "/root");
        assert_eq!(lookup_group(t.path(), "0").unwrap().name, "root");
    }

    #[test]
    fn skips_malformed_and_nis_lines() {
        let users = parse_passwd(PASSWD_TEXT);
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["root", "daemon", "systemd-network"]);
        assert_eq!(parse_group(GROUP_TEXT).len(), 3);
    }
}
