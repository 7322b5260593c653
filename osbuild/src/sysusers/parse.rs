//! Reading sysusers.d lines into declarations.

use std::path::{Path, PathBuf};

use super::{SysusersError, NOLOGIN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum GroupRef {
    Id(u32),
    Name(String),
}

/// Where a declaration comes from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    pub(super) file: PathBuf,
    pub(super) line: usize,
}

impl Origin {
    pub(super) fn error(&self, message: String) -> SysusersError {
        SysusersError::Line {
            file: self.file.clone(),
            line: self.line,
            message,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UserDecl {
    pub(super) origin: Origin,
    pub(super) name: String,
    pub(super) uid: Option<u32>,
    pub(super) group: Option<GroupRef>,
    pub(super) gecos: String,
    pub(super) home: String,
    pub(super) shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupDecl {
    pub(super) origin: Origin,
    pub(super) name: String,
    pub(super) gid: Option<u32>,
}

/// Everything the configuration files declare, in systemd's processing
/// order (first declaration of a name wins).
#[derive(Debug, Default)]
pub(super) struct Decls {
    pub(super) groups: Vec<GroupDecl>,
    pub(super) users: Vec<UserDecl>,
    /// group → members, groups in order of their first `m` line.
    pub(super) members: Vec<(String, Vec<(String, Origin)>)>,
}

impl Decls {
    fn has_user(&self, name: &str) -> bool {
        self.users.iter().any(|u| u.name == name)
    }
    fn has_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g.name == name)
    }
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

pub(super) fn parse_into(decls: &mut Decls, file: &Path, text: &str) -> Result<(), SysusersError> {
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
pub(super) fn add_implicit(decls: &mut Decls) {
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
