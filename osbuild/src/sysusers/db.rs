//! The root's account files and the ID allocation.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::parse::{Decls, GroupRef, Origin};
use super::{io_err, Created, Report, SysusersError, SYSTEM_ID_MAX};

/// One parsed line of a colon-separated account file.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) fields: Vec<String>,
}

impl Entry {
    fn name(&self) -> &str {
        &self.fields[0]
    }
    fn id(&self, n: usize) -> Option<u32> {
        self.fields.get(n).and_then(|f| f.parse().ok())
    }
    fn render(&self) -> String {
        self.fields.join(":")
    }
}

/// The four account files of the root, as lines.
#[derive(Debug)]
pub(super) struct Database {
    passwd: Vec<Entry>,
    group: Vec<Entry>,
    shadow: Vec<Entry>,
    gshadow: Vec<Entry>,
    search: u32,
}

pub(super) fn read_entries(
    root: &Path,
    rel: &str,
    min_fields: usize,
) -> Result<Vec<Entry>, SysusersError> {
    let path = Path::new("/").join(rel);
    let text = crate::stage::read_to_string(root, rel)
        .map_err(io_err("reading", &path))?
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split(':').map(str::to_string).collect();
        if fields.len() < min_fields || fields[0].is_empty() {
            return Err(SysusersError::Database {
                file: PathBuf::from(rel),
                line: i + 1,
                text: line.to_string(),
            });
        }
        out.push(Entry { fields });
    }
    Ok(out)
}

impl Database {
    pub(super) fn read(root: &Path) -> Result<Database, SysusersError> {
        Ok(Database {
            passwd: read_entries(root, "etc/passwd", 7)?,
            group: read_entries(root, "etc/group", 4)?,
            shadow: read_entries(root, "etc/shadow", 2)?,
            gshadow: read_entries(root, "etc/gshadow", 2)?,
            search: SYSTEM_ID_MAX + 1,
        })
    }

    fn user(&self, name: &str) -> Option<&Entry> {
        self.passwd.iter().find(|e| e.name() == name)
    }
    fn group_by_name(&self, name: &str) -> Option<&Entry> {
        self.group.iter().find(|e| e.name() == name)
    }
    fn uid_owner(&self, uid: u32) -> Option<&str> {
        self.passwd
            .iter()
            .find(|e| e.id(2) == Some(uid))
            .map(Entry::name)
    }
    fn gid_owner(&self, gid: u32) -> Option<&str> {
        self.group
            .iter()
            .find(|e| e.id(2) == Some(gid))
            .map(Entry::name)
    }

    /// `gid` is free for group `name` (and, with `with_uid`, the same
    /// number is free as a UID, or belongs to the user of the same name).
    fn gid_ok(&self, gid: u32, name: &str, with_uid: bool) -> bool {
        if self.gid_owner(gid).is_some() {
            return false;
        }
        !(with_uid && self.uid_owner(gid).is_some_and(|u| u != name))
    }

    /// `uid` is free for user `name` (and, with `with_gid`, the same number
    /// is free as a GID, or belongs to the group of the same name).
    fn uid_ok(&self, uid: u32, name: &str, with_gid: bool) -> bool {
        if self.uid_owner(uid).is_some() {
            return false;
        }
        !(with_gid && self.gid_owner(uid).is_some_and(|g| g != name))
    }

    /// The next lower ID of the system range, below the last one handed out.
    fn next_lower(&mut self) -> Option<u32> {
        if self.search <= 1 {
            return None;
        }
        self.search -= 1;
        Some(self.search)
    }

    fn add_group(&mut self, name: &str, gid: Option<u32>, uid_hint: Option<u32>) -> Option<u32> {
        let mut chosen = gid.filter(|g| self.gid_ok(*g, name, false));
        if chosen.is_none() {
            chosen = uid_hint.filter(|u| self.gid_ok(*u, name, true));
        }
        let gid = match chosen {
            Some(g) => g,
            None => loop {
                let candidate = self.next_lower()?;
                if self.gid_ok(candidate, name, true) {
                    break candidate;
                }
            },
        };
        self.group.push(Entry {
            fields: vec![name.into(), "x".into(), gid.to_string(), String::new()],
        });
        self.gshadow.push(Entry {
            fields: vec![name.into(), "!".into(), String::new(), String::new()],
        });
        Some(gid)
    }

    pub(super) fn allocate(&mut self, decls: &Decls) -> Result<Report, SysusersError> {
        let mut report = Report::default();
        let exhausted = |origin: &Origin, what: &str, name: &str| {
            origin.error(format!("no free ID in 1-{SYSTEM_ID_MAX} for {what} {name}"))
        };
        for g in &decls.groups {
            if self.group_by_name(&g.name).is_some() {
                continue;
            }
            let gid = self
                .add_group(&g.name, g.gid, None)
                .ok_or_else(|| exhausted(&g.origin, "group", &g.name))?;
            report.groups.push(Created {
                name: g.name.clone(),
                uid: None,
                gid,
            });
        }
        for u in &decls.users {
            if self.user(&u.name).is_some() {
                continue;
            }
            let mut strict = false;
            let gid = match &u.group {
                Some(GroupRef::Id(gid)) => {
                    strict = true;
                    *gid
                }
                Some(GroupRef::Name(group)) => {
                    strict = true;
                    self.group_by_name(group)
                        .and_then(|e| e.id(2))
                        .ok_or_else(|| {
                            u.origin.error(format!(
                                "user {}: group {group} does not exist and is not declared",
                                u.name
                            ))
                        })?
                }
                None => match self.group_by_name(&u.name).and_then(|e| e.id(2)) {
                    Some(gid) => gid,
                    None => {
                        let gid = self
                            .add_group(&u.name, None, u.uid)
                            .ok_or_else(|| exhausted(&u.origin, "group", &u.name))?;
                        report.groups.push(Created {
                            name: u.name.clone(),
                            uid: None,
                            gid,
                        });
                        gid
                    }
                },
            };
            let mut uid = u.uid.filter(|id| self.uid_ok(*id, &u.name, !strict));
            if uid.is_none() && self.uid_ok(gid, &u.name, true) {
                uid = Some(gid);
            }
            let uid = match uid {
                Some(id) => id,
                None => loop {
                    let candidate = self
                        .next_lower()
                        .ok_or_else(|| exhausted(&u.origin, "user", &u.name))?;
                    if self.uid_ok(candidate, &u.name, true) {
                        break candidate;
                    }
                },
            };
            self.passwd.push(Entry {
                fields: vec![
                    u.name.clone(),
                    "x".into(),
                    uid.to_string(),
                    gid.to_string(),
                    u.gecos.clone(),
                    u.home.clone(),
                    u.shell.clone(),
                ],
            });
            let mut shadow = vec![u.name.clone(), "!*".into()];
            shadow.extend(std::iter::repeat_n(String::new(), 7));
            self.shadow.push(Entry { fields: shadow });
            report.users.push(Created {
                name: u.name.clone(),
                uid: Some(uid),
                gid,
            });
        }
        for (group, users) in &decls.members {
            for (user, _) in users {
                let mut added = false;
                for table in [&mut self.group, &mut self.gshadow] {
                    if let Some(e) = table.iter_mut().find(|e| e.name() == group) {
                        if e.fields.len() < 4 {
                            e.fields.resize(4, String::new());
                        }
                        let list = &mut e.fields[3];
                        let mut names: Vec<&str> =
                            list.split(',').filter(|s| !s.is_empty()).collect();
                        if !names.contains(&user.as_str()) {
                            names.push(user);
                            *list = names.join(",");
                            added = true;
                        }
                    }
                }
                if added {
                    report.members.push((user.clone(), group.clone()));
                }
            }
        }
        Ok(report)
    }

    pub(super) fn write(&self, root: &Path) -> Result<(), SysusersError> {
        for (rel, entries, mode) in [
            ("etc/passwd", &self.passwd, 0o644),
            ("etc/group", &self.group, 0o644),
            ("etc/shadow", &self.shadow, 0o640),
            ("etc/gshadow", &self.gshadow, 0o640),
        ] {
            let text: String = entries.iter().map(|e| e.render() + "\n").collect();
            write_keeping_metadata(root, rel, text.as_bytes(), mode)?;
        }
        Ok(())
    }
}

/// Rewrites the file `rel` of the root in place, so an existing file keeps
/// its mode and owner; a new one gets `mode`. Its directory is resolved
/// inside the root, and a symlink at `rel` is an error (it is never
/// written through).
fn write_keeping_metadata(
    root: &Path,
    rel: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), SysusersError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = Path::new("/").join(rel);
    let dir = crate::stage::make_dir(root, Path::new(rel).parent().unwrap_or(Path::new("")))
        .map_err(io_err("writing", &shown))?;
    let path = dir.join(Path::new(rel).file_name().unwrap_or_default());
    if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
        return Err(SysusersError::Io {
            what: "rewriting",
            path: shown,
            source: io::Error::other("not a regular file"),
        });
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err("writing", &shown))?;
    f.write_all(data).map_err(io_err("writing", &shown))
}
