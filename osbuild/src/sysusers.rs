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

#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupRef {
    Id(u32),
    Name(String),
}

/// Where a declaration comes from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    file: PathBuf,
    line: usize,
}

impl Origin {
    fn error(&self, message: String) -> SysusersError {
        SysusersError::Line {
            file: self.file.clone(),
            line: self.line,
            message,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UserDecl {
    origin: Origin,
    name: String,
    uid: Option<u32>,
    group: Option<GroupRef>,
    gecos: String,
    home: String,
    shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupDecl {
    origin: Origin,
    name: String,
    gid: Option<u32>,
}

/// Everything the configuration files declare, in systemd's processing
/// order (first declaration of a name wins).
#[derive(Debug, Default)]
struct Decls {
    groups: Vec<GroupDecl>,
    users: Vec<UserDecl>,
    /// group → members, groups in order of their first `m` line.
    members: Vec<(String, Vec<(String, Origin)>)>,
}

impl Decls {
    fn has_user(&self, name: &str) -> bool {
        self.users.iter().any(|u| u.name == name)
    }
    fn has_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g.name == name)
    }
}

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
        let d = root.join(dir);
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("reading", &d)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("reading", &d))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                by_name.entry(name).or_insert_with(|| entry.path());
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

/// Follows symlinks of a configuration file inside `root` (never on the
/// build host). `None` when it is masked (a link to /dev/null).
fn resolve_in_root(root: &Path, path: &Path) -> Result<Option<PathBuf>, SysusersError> {
    let mut p = path.to_path_buf();
    for _ in 0..16 {
        let meta = fs::symlink_metadata(&p).map_err(io_err("reading", &p))?;
        if !meta.file_type().is_symlink() {
            return Ok(Some(p));
        }
        let target = fs::read_link(&p).map_err(io_err("reading", &p))?;
        if target == Path::new("/dev/null") {
            return Ok(None);
        }
        p = if target.is_absolute() {
            root.join(target.strip_prefix("/").unwrap_or(&target))
        } else {
            p.parent().unwrap_or(root).join(target)
        };
    }
    Err(SysusersError::Io {
        what: "following symlinks of",
        path: path.to_path_buf(),
        source: io::Error::other("too many levels of symbolic links"),
    })
}

/// Splits a line into fields: whitespace separated, `"…"` and `'…'`
/// quoting, backslash escapes.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut field = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => match chars.next() {
                    Some(n) => field.push(n),
                    None => return Err("trailing backslash".into()),
                },
                (q, Some(open)) if q == open => quote = None,
                (_, Some(_)) => field.push(c),
                ('"' | '\'', None) => quote = Some(c),
                (w, None) if w.is_whitespace() => break,
                _ => field.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        out.push(field);
    }
}

/// A user or group name as systemd accepts it for system accounts.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && name.len() <= 31 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_id(s: &str) -> Option<u32> {
    // 65535 and 4294967295 are never valid IDs.
    s.parse::<u32>()
        .ok()
        .filter(|id| *id != 65535 && *id != u32::MAX)
}

fn parse_into(decls: &mut Decls, file: &Path, text: &str) -> Result<(), SysusersError> {
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let origin = Origin {
            file: file.to_path_buf(),
            line: i + 1,
        };
        let bad = |message: String| origin.error(message);
        let fields = split_fields(line).map_err(&bad)?;
        if fields.len() > 6 {
            return Err(bad(format!(
                "{} fields; a line has at most 6 (type, name, ID, GECOS, home, shell)",
                fields.len()
            )));
        }
        if let Some(f) = fields.iter().find(|f| f.contains('%')) {
            return Err(bad(format!("{f:?}: specifiers (%) are not supported")));
        }
        let field = |n: usize| -> Option<&str> {
            fields
                .get(n)
                .map(String::as_str)
                .filter(|f| !f.is_empty() && *f != "-")
        };
        let kind = fields[0].as_str();
        let name = fields.get(1).map(String::as_str).unwrap_or("");
        if kind != "r" && !valid_name(name) {
            return Err(bad(format!("{name:?} is not a valid user or group name")));
        }
        match kind {
            "u" | "u!" => {
                let (uid, group) = match field(2) {
                    None => (None, None),
                    Some(id) if id.starts_with('/') => {
                        return Err(bad(format!(
                            "{id}: taking the ID from a file's owner is not supported"
                        )))
                    }
                    Some(id) => {
                        let (u, g) = match id.split_once(':') {
                            Some((u, g)) => (u, Some(g)),
                            None => (id, None),
                        };
                        let uid = match u {
                            "-" => None,
                            u => Some(
                                parse_id(u)
                                    .ok_or_else(|| bad(format!("{u:?} is not a valid UID")))?,
                            ),
                        };
                        let group = match g {
                            None => None,
                            Some(g) => Some(match parse_id(g) {
                                Some(gid) => GroupRef::Id(gid),
                                None if valid_name(g) => GroupRef::Name(g.to_string()),
                                None => {
                                    return Err(bad(format!(
                                        "{g:?} is neither a GID nor a group name"
                                    )))
                                }
                            }),
                        };
                        (uid, group)
                    }
                };
                if decls.has_user(name) {
                    continue;
                }
                decls.users.push(UserDecl {
                    origin: origin.clone(),
                    name: name.to_string(),
                    uid,
                    group,
                    gecos: field(3).unwrap_or("").to_string(),
                    home: field(4).unwrap_or("/").to_string(),
                    shell: field(5).unwrap_or(NOLOGIN).to_string(),
                });
            }
            "g" => {
                if fields.len() > 3 && fields[3..].iter().any(|f| f != "-") {
                    return Err(bad("g lines take no GECOS, home or shell".into()));
                }
                let gid = match field(2) {
                    None => None,
                    Some(id) if id.starts_with('/') => {
                        return Err(bad(format!(
                            "{id}: taking the ID from a file's group is not supported"
                        )))
                    }
                    Some(id) => Some(
                        parse_id(id).ok_or_else(|| bad(format!("{id:?} is not a valid GID")))?,
                    ),
                };
                if !decls.has_group(name) {
                    decls.groups.push(GroupDecl {
                        origin: origin.clone(),
                        name: name.to_string(),
                        gid,
                    });
                }
            }
            "m" => {
                let group = field(2).unwrap_or("");
                if !valid_name(group) {
                    return Err(bad(format!("m line: {group:?} is not a valid group name")));
                }
                if fields.len() > 3 && fields[3..].iter().any(|f| f != "-") {
                    return Err(bad("m lines take only a user and a group".into()));
                }
                let member = (name.to_string(), origin.clone());
                match decls.members.iter_mut().find(|(g, _)| g == group) {
                    Some((_, list)) => {
                        if !list.iter().any(|(u, _)| u == name) {
                            list.push(member);
                        }
                    }
                    None => decls.members.push((group.to_string(), vec![member])),
                }
            }
            "r" => {
                return Err(bad(
                    "r lines (ID ranges) are not supported: automatic IDs come from 1-999".into(),
                ))
            }
            other => return Err(bad(format!("unknown line type {other:?}"))),
        }
    }
    Ok(())
}

/// Users and groups named only by `m` lines are created too, after the
/// declared ones (systemd-sysusers' add_implicit).
fn add_implicit(decls: &mut Decls) {
    let members = decls.members.clone();
    for (group, users) in &members {
        for (user, origin) in users {
            if !decls.has_user(user) {
                decls.users.push(UserDecl {
                    origin: origin.clone(),
                    name: user.clone(),
                    uid: None,
                    group: None,
                    gecos: String::new(),
                    home: "/".into(),
                    shell: NOLOGIN.into(),
                });
            }
        }
        if let (false, false, Some((_, origin))) =
            (decls.has_user(group), decls.has_group(group), users.first())
        {
            decls.groups.push(GroupDecl {
                origin: origin.clone(),
                name: group.clone(),
                gid: None,
            });
        }
    }
}

/// One parsed line of a colon-separated account file.
#[derive(Debug, Clone)]
struct Entry {
    fields: Vec<String>,
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
struct Database {
    passwd: Vec<Entry>,
    group: Vec<Entry>,
    shadow: Vec<Entry>,
    gshadow: Vec<Entry>,
    search: u32,
}

fn read_entries(root: &Path, rel: &str, min_fields: usize) -> Result<Vec<Entry>, SysusersError> {
    let path = root.join(rel);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err("reading", &path)(e)),
    };
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
    fn read(root: &Path) -> Result<Database, SysusersError> {
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

    fn allocate(&mut self, decls: &Decls) -> Result<Report, SysusersError> {
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

    fn write(&self, root: &Path) -> Result<(), SysusersError> {
        for (rel, entries, mode) in [
            ("etc/passwd", &self.passwd, 0o644),
            ("etc/group", &self.group, 0o644),
            ("etc/shadow", &self.shadow, 0o640),
            ("etc/gshadow", &self.gshadow, 0o640),
        ] {
            let text: String = entries.iter().map(|e| e.render() + "\n").collect();
            write_keeping_metadata(&root.join(rel), text.as_bytes(), mode)?;
        }
        Ok(())
    }
}

/// Rewrites `path` in place, so an existing file keeps its mode and owner;
/// a new one gets `mode`.
fn write_keeping_metadata(path: &Path, data: &[u8], mode: u32) -> Result<(), SysusersError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(SysusersError::Io {
            what: "rewriting",
            path: path.to_path_buf(),
            source: io::Error::other("not a regular file"),
        });
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err("writing", path))?;
    f.write_all(data).map_err(io_err("writing", path))
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

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnogroup:x:65534:\n";

    fn root_with(conf: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/passwd"), PASSWD).unwrap();
        fs::write(r.join("etc/group"), GROUP).unwrap();
        let shadow: String = PASSWD
            .lines()
            .map(|l| format!("{}:*::0:99999:7:::\n", l.split(':').next().unwrap()))
            .collect();
        fs::write(r.join("etc/shadow"), shadow).unwrap();
        let gshadow: String = GROUP
            .lines()
            .map(|l| format!("{}:*::\n", l.split(':').next().unwrap()))
            .collect();
        fs::write(r.join("etc/gshadow"), gshadow).unwrap();
        for (rel, text) in conf {
            let p = r.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        tmp
    }

    fn read(root: &Path, rel: &str) -> String {
        fs::read_to_string(root.join(rel)).unwrap()
    }

    fn line<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find(|l| l.split(':').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    #[test]
    fn the_container_host_accounts() {
        let conf = r#"
# Debian's maintainer scripts would have made these.
g _ssh    -
u sshd    -:nogroup  "sshd privilege separation" /run/sshd        /usr/sbin/nologin
u _chrony -          "Chrony daemon"             /var/lib/chrony
u dhcpcd  -:nogroup  "DHCP Client Daemon"        /usr/lib/dhcpcd   /bin/false
"#;
        let tmp = root_with(&[("usr/lib/sysusers.d/keel.conf", conf)]);
        let r = tmp.path();
        let report = apply(r).unwrap();
        // Groups first: _ssh takes 999. sshd's group is nogroup, its UID the
        // next free one; _chrony gets one number for user and group.
        assert_eq!(
            report.groups,
            [
                Created {
                    name: "_ssh".into(),
                    uid: None,
                    gid: 999
                },
                Created {
                    name: "_chrony".into(),
                    uid: None,
                    gid: 997
                },
            ]
        );
        let users: Vec<_> = report
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.uid.unwrap(), u.gid))
            .collect();
        assert_eq!(
            users,
            [
                ("sshd", 998, 65534),
                ("_chrony", 997, 997),
                ("dhcpcd", 996, 65534)
            ]
        );
        let passwd = read(r, "etc/passwd");
        assert!(
            passwd.starts_with(PASSWD),
            "existing entries kept:\n{passwd}"
        );
        assert_eq!(
            line(&passwd, "sshd"),
            "sshd:x:998:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin"
        );
        assert_eq!(
            line(&passwd, "_chrony"),
            "_chrony:x:997:997:Chrony daemon:/var/lib/chrony:/usr/sbin/nologin"
        );
        assert_eq!(
            line(&passwd, "dhcpcd"),
            "dhcpcd:x:996:65534:DHCP Client Daemon:/usr/lib/dhcpcd:/bin/false"
        );
        assert_eq!(line(&read(r, "etc/group"), "_ssh"), "_ssh:x:999:");
        assert_eq!(line(&read(r, "etc/shadow"), "sshd"), "sshd:!*:::::::");
        assert_eq!(line(&read(r, "etc/gshadow"), "_chrony"), "_chrony:!::");
        assert!(read(r, "etc/shadow").starts_with("root:*::0:99999:7:::\n"));

        // A second run changes nothing: existing accounts are kept.
        let before: Vec<_> = ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"]
            .iter()
            .map(|f| read(r, f))
            .collect();
        let again = apply(r).unwrap();
        assert_eq!(again, Report::default());
        let after: Vec<_> = ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"]
            .iter()
            .map(|f| read(r, f))
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn explicit_ids_are_honoured_and_used_ids_skipped() {
        let conf = "u web 800 - /srv/web\nu taken 1\ng both 700\nu both -\ng early\nu next\n";
        // `daemon` has ID 1, so `taken` falls back to an automatic ID; `both`
        // reuses its group's 700 as UID; 999 goes to group early.
        let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", conf)]);
        let r = tmp.path();
        apply(r).unwrap();
        let passwd = read(r, "etc/passwd");
        assert_eq!(
            line(&passwd, "web"),
            "web:x:800:800::/srv/web:/usr/sbin/nologin"
        );
        assert_eq!(line(&passwd, "both"), "both:x:700:700::/:/usr/sbin/nologin");
        assert_eq!(line(&read(r, "etc/group"), "early"), "early:x:999:");
        // Groups first (early 999), then users: taken's group 998 and UID 998,
        // next's group and UID 997.
        assert_eq!(
            line(&passwd, "taken"),
            "taken:x:998:998::/:/usr/sbin/nologin"
        );
        assert_eq!(line(&passwd, "next"), "next:x:997:997::/:/usr/sbin/nologin");
    }

    #[test]
    fn explicit_gid_and_members() {
        let conf = "g docker 990\nu svc 980:docker\nm svc daemon\nm extra newgroup\n";
        let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", conf)]);
        let r = tmp.path();
        let report = apply(r).unwrap();
        let passwd = read(r, "etc/passwd");
        assert_eq!(line(&passwd, "svc"), "svc:x:980:990::/:/usr/sbin/nologin");
        let group = read(r, "etc/group");
        assert_eq!(line(&group, "daemon"), "daemon:x:1:svc");
        // m lines create what they name: group newgroup (999, implicit groups
        // come after declared ones) and user extra (own group 998).
        assert_eq!(line(&group, "newgroup"), "newgroup:x:999:extra");
        assert_eq!(
            line(&passwd, "extra"),
            "extra:x:998:998::/:/usr/sbin/nologin"
        );
        assert_eq!(line(&read(r, "etc/gshadow"), "daemon"), "daemon:*::svc");
        assert_eq!(
            report.members,
            [
                ("svc".to_string(), "daemon".to_string()),
                ("extra".to_string(), "newgroup".to_string())
            ]
        );
    }

    #[test]
    fn file_order_override_and_mask() {
        let tmp = root_with(&[
            ("usr/lib/sysusers.d/b.conf", "u second\n"),
            ("usr/lib/sysusers.d/a.conf", "u first\n"),
            ("usr/lib/sysusers.d/c.conf", "u vendor\n"),
            ("etc/sysusers.d/c.conf", "u admin\n"),
            ("usr/lib/sysusers.d/d.conf", "u masked\n"),
        ]);
        let r = tmp.path();
        std::os::unix::fs::symlink("/dev/null", r.join("etc/sysusers.d/d.conf")).unwrap();
        let report = apply(r).unwrap();
        let names: Vec<_> = report.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["first", "second", "admin"]);
        assert_eq!(report.users[0].uid, Some(999));
    }

    #[test]
    fn first_declaration_wins() {
        let tmp = root_with(&[(
            "usr/lib/sysusers.d/a.conf",
            "u svc 500 \"one\"\nu svc 501 \"two\"\n",
        )]);
        apply(tmp.path()).unwrap();
        assert_eq!(
            line(&read(tmp.path(), "etc/passwd"), "svc"),
            "svc:x:500:500:one:/:/usr/sbin/nologin"
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, needle) in [
            ("u\n", "not a valid user"),
            ("u 9lives\n", "not a valid user"),
            ("u svc abc\n", "not a valid UID"),
            ("u svc 1:bad$name\n", "neither a GID"),
            ("u svc /usr/bin/svc\n", "not supported"),
            ("g grp - \"gecos\"\n", "g lines take no GECOS"),
            ("r - 500-900\n", "r lines"),
            ("x svc\n", "unknown line type"),
            ("u svc - \"unterminated\n", "unterminated quote"),
            ("u %u\n", "specifiers"),
            ("u a - b c d e\n", "at most 6"),
            ("m svc\n", "not a valid group name"),
        ] {
            let tmp = root_with(&[("usr/lib/sysusers.d/bad.conf", &format!("# c\n{text}"))]);
            let e = apply(tmp.path()).unwrap_err().to_string();
            assert!(
                e.contains("usr/lib/sysusers.d/bad.conf:2:") && e.contains(needle),
                "{text:?}: {e}"
            );
        }
        let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", "u svc -:nosuchgroup\n")]);
        let e = apply(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("nosuchgroup") && e.contains("svc"), "{e}");
    }

    #[test]
    fn no_config_changes_nothing() {
        let tmp = root_with(&[]);
        assert_eq!(apply(tmp.path()).unwrap(), Report::default());
        assert_eq!(read(tmp.path(), "etc/passwd"), PASSWD);
    }

    #[test]
    fn malformed_database_is_named() {
        let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", "u svc\n")]);
        fs::write(tmp.path().join("etc/passwd"), "root:x:0\n").unwrap();
        let e = apply(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("etc/passwd:1") && e.contains("root:x:0"), "{e}");
    }

    #[test]
    fn keeps_mode_of_shadow() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", "u svc\n")]);
        let shadow = tmp.path().join("etc/shadow");
        fs::set_permissions(&shadow, fs::Permissions::from_mode(0o640)).unwrap();
        apply(tmp.path()).unwrap();
        let m = fs::metadata(&shadow).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o640);
        assert!(user_names(tmp.path()).unwrap().contains("svc"));
    }
}
