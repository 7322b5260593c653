//! `passwd.groups` and `passwd.users` applied to a root's account files
//! (`etc/passwd`, `etc/shadow`, `etc/group`, `etc/gshadow`), the way
//! Ignition's `groupadd`/`useradd`/`usermod --root` calls leave them, but
//! without those tools (the image has none):
//!
//! - groups first: a new group gets its `gid` or the next free system or
//!   normal GID; an existing group is an error;
//! - a new user gets its `uid` or the next free UID (normal: one above the
//!   highest in `UID_MIN..UID_MAX`; system: the highest free below
//!   `SYS_UID_MAX`), a user group of its name (GID = UID when free) unless
//!   `noUserGroup` or `primaryGroup`, the home `/home/<name>` made from
//!   `/etc/skel` unless `noCreateHome`, shell `/bin/sh`, password `*`
//!   (locked) unless `passwordHash`, password aging from login.defs (none
//!   for system users);
//! - an existing user gets what the entry sets (uid, gecos, home, shell,
//!   primary group, password hash) and, when `groups` is given, exactly
//!   those supplementary groups;
//! - SSH keys go to `~/.ssh/authorized_keys.d/ignition` (0600, in 0700
//!   directories owned by the user);
//! - `shouldExist: false` removes as `groupdel` and `userdel --remove` do:
//!   not a group that is a user's primary group; a user with its
//!   memberships, its user group (USERGROUPS_ENAB), its mail spool and
//!   its home, but only a home it owns;
//! - each account file's previous version is kept as `<file>-`, as
//!   shadow's tools do.
//!
//! One difference from useradd on purpose: the skeleton is copied whole,
//! subdirectories and their modes included (shadow 4.13's `useradd --root`
//! makes skeleton subdirectories 0700 and leaves them empty).
//!
//! Policy comes from the root's `etc/login.defs` and `etc/default/useradd`
//! when present, else from Debian's defaults.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ignition_config::v3_6::Passwd;

use keel_core::beneath;

use super::journal::Journal;
use super::nodes::{make_parents, make_place, read_in_root};
use super::sys::Sys;
use crate::report::JsonPath;

type Fail = (JsonPath, String);

/// A colon-separated account file.
#[derive(Debug, Clone)]
struct Table {
    rel: &'static str,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn read(root: &Path, rel: &'static str, width: usize) -> Result<Self, String> {
        let path = root.join(rel);
        let text = match read_in_root(root, rel) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel.ends_with("shadow") => {
                String::new()
            }
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let rows = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut f: Vec<String> = l.split(':').map(str::to_string).collect();
                f.resize(width.max(f.len()), String::new());
                f
            })
            .collect();
        Ok(Self { rel, rows })
    }

    fn render(&self) -> String {
        self.rows
            .iter()
            .map(|r| format!("{}\n", r.join(":")))
            .collect()
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.rows.iter().position(|r| r[0] == name)
    }

    fn ids(&self) -> BTreeSet<u32> {
        self.rows
            .iter()
            .filter_map(|r| r.get(2)?.parse().ok())
            .collect()
    }

    fn remove(&mut self, name: &str) {
        self.rows.retain(|r| r[0] != name);
    }

    fn set(&mut self, name: &str, row: Vec<String>) {
        match self.find(name) {
            Some(i) => self.rows[i] = row,
            None => self.rows.push(row),
        }
    }
}

/// What useradd reads from login.defs and default/useradd.
#[derive(Debug, Clone)]
struct Policy {
    uid: (u32, u32),
    sys_uid: (u32, u32),
    gid: (u32, u32),
    sys_gid: (u32, u32),
    user_groups: bool,
    home_mode: u32,
    aging: [String; 3],
    shell: String,
    home_base: String,
    group: u32,
    skel: String,
    mail_dir: String,
}

fn keyed(text: &str, sep: char) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once(sep)?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

impl Policy {
    fn read(root: &Path) -> Self {
        let defs = read_in_root(root, "etc/login.defs").unwrap_or_default();
        let defs: Vec<(String, String)> = defs
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next().unwrap_or("").to_string()))
            })
            .collect();
        let def = |k: &str| defs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let num = |k: &str, d: u32| def(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let octal = |k: &str| def(k).and_then(|v| u32::from_str_radix(&v, 8).ok());
        let uid_min = num("UID_MIN", 1000);
        let gid_min = num("GID_MIN", 1000);
        let umask = octal("UMASK").unwrap_or(0o022);
        let useradd = keyed(
            &read_in_root(root, "etc/default/useradd").unwrap_or_default(),
            '=',
        );
        let ua = |k: &str| useradd.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Policy {
            uid: (uid_min, num("UID_MAX", 60000)),
            sys_uid: (num("SYS_UID_MIN", 100), num("SYS_UID_MAX", uid_min - 1)),
            gid: (gid_min, num("GID_MAX", 60000)),
            sys_gid: (num("SYS_GID_MIN", 100), num("SYS_GID_MAX", gid_min - 1)),
            user_groups: def("USERGROUPS_ENAB").is_none_or(|v| v == "yes"),
            home_mode: octal("HOME_MODE").unwrap_or(0o777 & !umask),
            aging: [
                def("PASS_MIN_DAYS").unwrap_or_default(),
                def("PASS_MAX_DAYS").unwrap_or_default(),
                def("PASS_WARN_AGE").unwrap_or_default(),
            ],
            shell: ua("SHELL").unwrap_or_else(|| "/bin/sh".into()),
            home_base: ua("HOME").unwrap_or_else(|| "/home".into()),
            group: ua("GROUP").and_then(|g| g.parse().ok()).unwrap_or(100),
            skel: ua("SKEL").unwrap_or_else(|| "/etc/skel".into()),
            mail_dir: def("MAIL_DIR").unwrap_or_else(|| "/var/mail".into()),
        }
    }
}

/// The next free ID: normal IDs one above the highest used in the range
/// (or the first free), system IDs the highest free from the top.
fn allocate(used: &BTreeSet<u32>, (min, max): (u32, u32), system: bool) -> Option<u32> {
    if system {
        return (min..=max).rev().find(|i| !used.contains(i));
    }
    let highest = used.range(min..=max).next_back().copied();
    match highest {
        None => Some(min),
        Some(h) if h < max => Some(h + 1),
        Some(_) => (min..=max).find(|i| !used.contains(i)),
    }
}

fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86400).to_string()
}

struct Home {
    dir: String,
    uid: u32,
    gid: u32,
    create: bool,
    keys: Option<Vec<String>>,
    at: JsonPath,
}

/// Copies the skeleton (a real directory below the root) into a new home,
/// owned by the user. Symlinks in the skeleton are copied as links, never
/// followed.
fn fill_home(
    skel: &Path,
    home: &Path,
    h: &Home,
    journal: &mut Journal,
    sys: &dyn Sys,
) -> std::io::Result<()> {
    let Ok(entries) = fs::read_dir(skel) else {
        return Ok(());
    };
    for e in entries {
        let e = e?;
        let to = home.join(e.file_name());
        let kind = e.file_type()?;
        if kind.is_dir() {
            fs::create_dir(&to)?;
            journal.created(&to);
            let mode = fs::symlink_metadata(e.path())?.permissions().mode() & 0o7777;
            beneath::set_mode(&to, mode)?;
            sys.lchown(&to, h.uid, h.gid)?;
            fill_home(&e.path(), &to, h, journal, sys)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path())?, &to)?;
            journal.created(&to);
            sys.lchown(&to, h.uid, h.gid)?;
        } else if kind.is_file() {
            beneath::copy_new(&e.path(), &to)?;
            journal.created(&to);
            sys.lchown(&to, h.uid, h.gid)?;
        }
        // Sockets, FIFOs and devices are not copied, as useradd does not.
    }
    Ok(())
}

/// The directory `abs` (inside the root), made if missing, else kept and
/// recorded; mode 0700, owned by the user. A symlink there is followed
/// inside the root.
fn private_dir(
    root: &Path,
    abs: &str,
    h: &Home,
    journal: &mut Journal,
    sys: &dyn Sys,
) -> std::io::Result<PathBuf> {
    let path = match beneath::resolve(root, Path::new(abs))? {
        Some(p) if fs::symlink_metadata(&p)?.is_dir() => {
            journal.meta(&p)?;
            p
        }
        Some(p) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", p.display()),
            ))
        }
        // Missing, or a link to where nothing is yet: made where it
        // leads inside the root, as `mkdir -p` would after chroot.
        None => make_parents(root, Path::new(abs), journal, sys)?,
    };
    beneath::set_mode(&path, 0o700)?;
    sys.lchown(&path, h.uid, h.gid)?;
    Ok(path)
}

fn make_home(
    root: &Path,
    p: &Policy,
    h: &Home,
    journal: &mut Journal,
    sys: &dyn Sys,
) -> Result<(), Fail> {
    let err = |e: std::io::Error| (h.at.clone(), format!("home {}: {e}", h.dir));
    let home = make_place(root, Path::new(&h.dir), journal, sys).map_err(err)?;
    if h.create && fs::symlink_metadata(&home).is_err() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&home)
            .map_err(err)?;
        journal.created(&home);
        beneath::set_mode(&home, p.home_mode).map_err(err)?;
        sys.lchown(&home, h.uid, h.gid).map_err(err)?;
        // The skeleton as the root sees it; one that resolves to something
        // other than a directory is no skeleton.
        if let Some(skel) = beneath::resolve(root, Path::new(&p.skel))
            .map_err(err)?
            .filter(|s| s.is_dir())
        {
            fill_home(&skel, &home, h, journal, sys).map_err(err)?;
        }
    }
    let Some(keys) = h.keys.as_ref().filter(|k| !k.is_empty()) else {
        return Ok(());
    };
    let kerr = |e: std::io::Error| (h.at.key("sshAuthorizedKeys"), format!("{}: {e}", h.dir));
    let home_is_dir = beneath::resolve(root, Path::new(&h.dir))
        .map_err(kerr)?
        .is_some_and(|d| d.is_dir());
    if !home_is_dir {
        return Err((
            h.at.key("sshAuthorizedKeys"),
            format!("home {} does not exist for the SSH keys", h.dir),
        ));
    }
    let base = h.dir.trim_end_matches('/');
    private_dir(root, &format!("{base}/.ssh"), h, journal, sys).map_err(kerr)?;
    let dir = private_dir(
        root,
        &format!("{base}/.ssh/authorized_keys.d"),
        h,
        journal,
        sys,
    )
    .map_err(kerr)?;
    let file = dir.join("ignition");
    if fs::symlink_metadata(&file).is_ok() {
        journal.move_aside(&file).map_err(kerr)?;
    }
    let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
    let mut f = beneath::create_new(&file, 0o600).map_err(kerr)?;
    journal.created(&file);
    f.write_all(text.as_bytes()).map_err(kerr)?;
    f.sync_all().map_err(kerr)?;
    sys.lchown(&file, h.uid, h.gid).map_err(kerr)
}

/// userdel with USERGROUPS_ENAB: the group of the user's name goes too
/// when it is the user's primary group, has no members and is no other
/// user's primary group.
fn remove_user_group(
    group: &mut Table,
    gshadow: &mut Table,
    passwd: &Table,
    user: &[String],
    policy: &Policy,
) {
    if !policy.user_groups {
        return;
    }
    let Some(r) = group.find(&user[0]) else {
        return;
    };
    let g = &group.rows[r];
    let primary_elsewhere = passwd.rows.iter().any(|u| u[3] == g[2]);
    if g[2] == user[3] && g[3].is_empty() && !primary_elsewhere {
        group.remove(&user[0]);
        gshadow.remove(&user[0]);
    }
}

fn set_members(group: &mut Table, gshadow: &mut Table, user: &str, wanted: &BTreeSet<String>) {
    for (t, col) in [(group, 3usize), (gshadow, 3usize)] {
        for row in &mut t.rows {
            let mut members: Vec<String> = row[col]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            let has = members.iter().any(|m| m == user);
            if wanted.contains(&row[0]) && !has {
                members.push(user.to_string());
            } else if !wanted.contains(&row[0]) && has {
                members.retain(|m| m != user);
            }
            row[col] = members.join(",");
        }
    }
}

/// Applies `passwd` to the account files below `root`.
pub fn apply(root: &Path, pw: &Passwd, journal: &mut Journal, sys: &dyn Sys) -> Result<(), Fail> {
    let at = JsonPath::root().key("passwd");
    let read = |rel, width| Table::read(root, rel, width).map_err(|m| (at.clone(), m));
    let mut passwd = read("etc/passwd", 7)?;
    let mut shadow = read("etc/shadow", 9)?;
    let mut group = read("etc/group", 4)?;
    let mut gshadow = read("etc/gshadow", 4)?;
    let policy = Policy::read(root);
    let mut homes = Vec::new();
    // Users removed, with their passwd rows (for their homes).
    let mut removed: Vec<(JsonPath, Vec<String>)> = Vec::new();

    for (i, g) in pw.groups.iter().flatten().enumerate() {
        let gp = at.key("groups").index(i);
        if g.should_exist == Some(false) {
            // groupdel: not while it is someone's primary group.
            if let Some(r) = group.find(&g.name) {
                let gid = group.rows[r][2].clone();
                if let Some(u) = passwd.rows.iter().find(|u| u[3] == gid) {
                    return Err((
                        gp.key("shouldExist"),
                        format!(
                            "cannot remove group {}: it is the primary group of user {}",
                            g.name, u[0]
                        ),
                    ));
                }
                group.remove(&g.name);
                gshadow.remove(&g.name);
            }
            continue;
        }
        if group.find(&g.name).is_some() {
            return Err((gp, format!("group {} exists already", g.name)));
        }
        let system = g.system == Some(true);
        let gid = match g.gid {
            Some(id) => {
                u32::try_from(id).map_err(|_| (gp.key("gid"), format!("gid {id} out of range")))?
            }
            None => allocate(
                &group.ids(),
                if system { policy.sys_gid } else { policy.gid },
                system,
            )
            .ok_or_else(|| (gp.clone(), "no free GID".to_string()))?,
        };
        if group.ids().contains(&gid) {
            return Err((gp.key("gid"), format!("GID {gid} is taken")));
        }
        let hash = g.password_hash.clone().unwrap_or_else(|| "*".into());
        group.set(
            &g.name,
            vec![g.name.clone(), "x".into(), gid.to_string(), String::new()],
        );
        gshadow.set(
            &g.name,
            vec![g.name.clone(), hash, String::new(), String::new()],
        );
    }

    for (i, u) in pw.users.iter().flatten().enumerate() {
        let up = at.key("users").index(i);
        if u.should_exist == Some(false) {
            homes.push(false);
            if let Some(r) = passwd.find(&u.name) {
                let row = passwd.rows.remove(r);
                shadow.remove(&u.name);
                set_members(&mut group, &mut gshadow, &u.name, &BTreeSet::new());
                for g in &mut gshadow.rows {
                    let admins: Vec<&str> = g[2]
                        .split(',')
                        .filter(|a| !a.is_empty() && *a != u.name)
                        .collect();
                    g[2] = admins.join(",");
                }
                remove_user_group(&mut group, &mut gshadow, &passwd, &row, &policy);
                removed.push((up.clone(), row));
            }
            continue;
        }
        let gid_of = |name: &str, group: &Table| -> Result<u32, Fail> {
            group
                .find(name)
                .and_then(|r| group.rows[r][2].parse().ok())
                .ok_or_else(|| {
                    (
                        up.key("primaryGroup"),
                        format!("group {name} does not exist"),
                    )
                })
        };
        let uid = u
            .uid
            .map(|id| {
                u32::try_from(id).map_err(|_| (up.key("uid"), format!("uid {id} out of range")))
            })
            .transpose()?;
        // Only a new user gets a home made (usermod leaves homes alone).
        homes.push(passwd.find(&u.name).is_none() && u.no_create_home != Some(true));
        let row = match passwd.find(&u.name) {
            Some(r) => {
                // usermod: only what the entry sets.
                let mut row = passwd.rows[r].clone();
                if let Some(uid) = uid {
                    row[2] = uid.to_string();
                }
                if let Some(g) = u.primary_group.as_deref().filter(|g| !g.is_empty()) {
                    row[3] = gid_of(g, &group)?.to_string();
                }
                if let Some(c) = &u.gecos {
                    row[4] = c.clone();
                }
                if let Some(h) = u.home_dir.as_deref().filter(|h| !h.is_empty()) {
                    row[5] = h.to_string();
                }
                if let Some(s) = u.shell.as_deref().filter(|s| !s.is_empty()) {
                    row[6] = s.to_string();
                }
                if let Some(hash) = &u.password_hash {
                    let mut s = shadow.find(&u.name).map_or_else(
                        || {
                            vec![
                                u.name.clone(),
                                String::new(),
                                today(),
                                String::new(),
                                String::new(),
                                String::new(),
                                String::new(),
                                String::new(),
                                String::new(),
                            ]
                        },
                        |i| shadow.rows[i].clone(),
                    );
                    s[1] = hash.clone();
                    // usermod --password dates the change.
                    s[2] = today();
                    shadow.set(&u.name, s);
                }
                row
            }
            None => {
                let system = u.system == Some(true);
                let uid = match uid {
                    Some(uid) => uid,
                    None => allocate(
                        &passwd.ids(),
                        if system { policy.sys_uid } else { policy.uid },
                        system,
                    )
                    .ok_or_else(|| (up.clone(), "no free UID".to_string()))?,
                };
                if passwd.ids().contains(&uid) {
                    return Err((up.key("uid"), format!("UID {uid} is taken")));
                }
                let primary = u.primary_group.as_deref().filter(|g| !g.is_empty());
                let gid = if let Some(g) = primary {
                    gid_of(g, &group)?
                } else if policy.user_groups && u.no_user_group != Some(true) {
                    if group.find(&u.name).is_some() {
                        return Err((
                            up.clone(),
                            format!("group {} exists; set primaryGroup", u.name),
                        ));
                    }
                    let used = group.ids();
                    let gid = if used.contains(&uid) {
                        allocate(
                            &used,
                            if system { policy.sys_gid } else { policy.gid },
                            system,
                        )
                        .ok_or_else(|| (up.clone(), "no free GID".to_string()))?
                    } else {
                        uid
                    };
                    group.set(
                        &u.name,
                        vec![u.name.clone(), "x".into(), gid.to_string(), String::new()],
                    );
                    gshadow.set(
                        &u.name,
                        vec![u.name.clone(), "!".into(), String::new(), String::new()],
                    );
                    gid
                } else {
                    policy.group
                };
                let home = u
                    .home_dir
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| format!("{}/{}", policy.home_base, u.name));
                let shell = u
                    .shell
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| policy.shell.clone());
                let hash = match u.password_hash.as_deref() {
                    None => "*".to_string(),
                    Some("") => "!".to_string(),
                    Some(h) => h.to_string(),
                };
                let aging = if system {
                    [String::new(), String::new(), String::new()]
                } else {
                    policy.aging.clone()
                };
                let [min, max, warn] = aging;
                shadow.set(
                    &u.name,
                    vec![
                        u.name.clone(),
                        hash,
                        today(),
                        min,
                        max,
                        warn,
                        String::new(),
                        String::new(),
                        String::new(),
                    ],
                );
                vec![
                    u.name.clone(),
                    "x".into(),
                    uid.to_string(),
                    gid.to_string(),
                    u.gecos.clone().unwrap_or_default(),
                    home,
                    shell,
                ]
            }
        };
        if let Some(groups) = &u.groups {
            for g in groups {
                if group.find(g).is_none() {
                    return Err((up.key("groups"), format!("group {g} does not exist")));
                }
            }
            if !groups.is_empty() {
                let wanted: BTreeSet<String> = groups.iter().cloned().collect();
                set_members(&mut group, &mut gshadow, &u.name, &wanted);
            }
        }
        passwd.set(&u.name, row);
    }

    // userdel --remove takes the home and the mail spool along, but only a
    // home the user owns: anything else is an error, as userdel's.
    let mut doomed = Vec::new();
    for (up, row) in &removed {
        let err = |e: std::io::Error| (up.clone(), format!("home {}: {e}", row[5]));
        let uid: u32 = row[2].parse().unwrap_or(u32::MAX);
        let mail = format!("{}/{}", policy.mail_dir, row[0]);
        for (path, is_home) in [(row[5].as_str(), true), (mail.as_str(), false)] {
            if path.is_empty() || path == "/" {
                continue;
            }
            let Some(found) = super::nodes::resolve(root, Path::new(path)).map_err(err)? else {
                continue;
            };
            let m = fs::symlink_metadata(&found).map_err(err)?;
            if is_home && (!m.is_dir() || std::os::unix::fs::MetadataExt::uid(&m) != uid) {
                return Err((
                    up.key("shouldExist"),
                    format!(
                        "home {path} of user {} is not a directory it owns; not removing the user",
                        row[0]
                    ),
                ));
            }
            doomed.push(found);
        }
    }

    // The account files, each replaced whole: where it is a symlink, the
    // link is replaced by the file (as shadow's tools do), and nothing is
    // ever written through it.
    for t in [&passwd, &shadow, &group, &gshadow] {
        let inner = Path::new("/").join(t.rel);
        let err = |e: std::io::Error| (at.clone(), format!("writing {}: {e}", inner.display()));
        let path = make_place(root, &inner, journal, sys).map_err(err)?;
        // What it is now (a link followed inside the root).
        let current = beneath::resolve(root, &inner)
            .map_err(err)?
            .filter(|c| c.is_file());
        let meta = current.as_ref().and_then(|c| fs::metadata(c).ok());
        let mode = meta.as_ref().map_or(
            if t.rel.ends_with("shadow") {
                0o640
            } else {
                0o644
            },
            |m| m.permissions().mode() & 0o7777,
        );
        let gid = {
            use std::os::unix::fs::MetadataExt;
            meta.as_ref().map_or(0, |m| m.gid())
        };
        if let Some(current) = &current {
            // The previous version stays as `<file>-`, as shadow's tools
            // leave it.
            let backup =
                path.with_file_name(format!("{}-", t.rel.rsplit('/').next().unwrap_or("")));
            if fs::symlink_metadata(&backup).is_ok() {
                journal.move_aside(&backup).map_err(err)?;
            }
            beneath::copy_new(current, &backup).map_err(err)?;
            journal.created(&backup);
            sys.lchown(&backup, 0, gid).map_err(err)?;
        }
        if fs::symlink_metadata(&path).is_ok() {
            journal.move_aside(&path).map_err(err)?;
        }
        let mut f = beneath::create_new(&path, mode).map_err(err)?;
        journal.created(&path);
        f.write_all(t.render().as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        sys.lchown(&path, 0, gid).map_err(err)?;
    }

    // Removed users' homes and mail go aside (and away on commit).
    for path in doomed {
        journal
            .move_aside(&path)
            .map_err(|e| (at.key("users"), format!("removing {}: {e}", path.display())))?;
    }

    // Homes and SSH keys, once the accounts exist.
    for ((i, u), create) in pw.users.iter().flatten().enumerate().zip(homes) {
        if u.should_exist == Some(false) {
            continue;
        }
        let r = passwd
            .find(&u.name)
            .map(|r| passwd.rows[r].clone())
            .unwrap_or_default();
        let h = Home {
            dir: r[5].clone(),
            uid: r[2].parse().unwrap_or(0),
            gid: r[3].parse().unwrap_or(0),
            create,
            keys: u.ssh_authorized_keys.clone(),
            at: at.key("users").index(i),
        };
        if h.create || h.keys.as_ref().is_some_and(|k| !k.is_empty()) {
            make_home(root, &policy, &h, journal, sys)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::sys::RecordingSys;

    #[test]
    fn the_skeleton_is_copied_whole_and_ids_are_allocated_like_useradd() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc/skel/.config/app")).unwrap();
        fs::set_permissions(
            root.join("etc/skel/.config"),
            fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        fs::write(root.join("etc/skel/.config/app/rc"), "rc").unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\nsys:x:999:\n").unwrap();
        fs::write(root.join("etc/shadow"), "root:*::::::::\n").unwrap();
        fs::write(root.join("etc/gshadow"), "root:*::\nsys:*::\n").unwrap();
        let pw: Passwd = serde_json::from_str(
            r#"{"users":[{"name":"core"},{"name":"daemon1","system":true,"noCreateHome":true}]}"#,
        )
        .unwrap();
        let mut j = Journal::default();
        let sys = RecordingSys::default();
        apply(root, &pw, &mut j, &sys).unwrap();
        assert!(j.commit().is_empty());
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(
            passwd.contains("core:x:1000:1000::/home/core:/bin/sh\n"),
            "{passwd}"
        );
        // System IDs from the top; the user group takes the next free GID
        // when the UID's number is taken.
        assert!(
            passwd.contains("daemon1:x:999:998::/home/daemon1:/bin/sh\n"),
            "{passwd}"
        );
        let home = root.join("home/core");
        assert_eq!(fs::read(home.join(".config/app/rc")).unwrap(), b"rc");
        let mode = fs::metadata(home.join(".config"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o750);
        assert!(!root.join("home/daemon1").exists());
        assert_eq!(
            fs::read_to_string(root.join("etc/passwd-")).unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
        let owned: Vec<u32> = sys.calls.borrow().iter().map(|(_, u, _)| *u).collect();
        assert!(owned.contains(&1000), "{owned:?}");
    }

    #[test]
    fn a_removed_users_home_goes_only_if_it_owns_it_and_a_rollback_restores_it() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let me = fs::metadata(root).unwrap().uid();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("home/gone/.ssh")).unwrap();
        fs::write(root.join("home/gone/.ssh/authorized_keys"), "k").unwrap();
        // A uid that owns nothing here.
        let other = me + 1;
        fs::write(
            root.join("etc/passwd"),
            format!("root:x:0:0::/root:/bin/sh\ngone:x:{me}:4242::/home/gone:/bin/sh\nother:x:{other}:4243::/home/gone:/bin/sh\n"),
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            "root:x:0:\ngone:x:4242:\nother:x:4243:\nadm:x:4:gone,other\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/shadow"),
            "root:*::::::::\ngone:*::::::::\nother:*::::::::\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/gshadow"),
            "root:*::\ngone:!::\nother:!::\nadm:*:gone:gone,other\n",
        )
        .unwrap();
        let before = fs::read_to_string(root.join("etc/passwd")).unwrap();

        // Not its home: refused before anything changes.
        let pw: Passwd =
            serde_json::from_str(r#"{"users":[{"name":"other","shouldExist":false}]}"#).unwrap();
        let mut j = Journal::default();
        let (at, msg) = apply(root, &pw, &mut j, &RecordingSys::default()).unwrap_err();
        assert_eq!(at.to_string(), "$.passwd.users.0.shouldExist");
        assert!(
            msg.contains("home /home/gone of user other is not a directory it owns"),
            "{msg}"
        );
        assert!(j.rollback(&RecordingSys::default()).is_empty());
        assert_eq!(fs::read_to_string(root.join("etc/passwd")).unwrap(), before);

        // Its own: removed; a rollback brings all of it back.
        let pw: Passwd =
            serde_json::from_str(r#"{"users":[{"name":"gone","shouldExist":false}]}"#).unwrap();
        let mut j = Journal::default();
        apply(root, &pw, &mut j, &RecordingSys::default()).unwrap();
        assert!(!root.join("home/gone").exists());
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(!passwd.lines().any(|l| l.starts_with("gone:")), "{passwd}");
        assert_eq!(
            fs::read_to_string(root.join("etc/gshadow")).unwrap(),
            "root:*::\nother:!::\nadm:*::other\n"
        );
        assert!(j.rollback(&RecordingSys::default()).is_empty());
        assert_eq!(
            fs::read(root.join("home/gone/.ssh/authorized_keys")).unwrap(),
            b"k"
        );
        assert_eq!(fs::read_to_string(root.join("etc/passwd")).unwrap(), before);
    }

    #[test]
    fn allocation() {
        let used: BTreeSet<u32> = [0, 1000, 1001, 60000].into_iter().collect();
        assert_eq!(allocate(&used, (1000, 60000), false), Some(1002));
        assert_eq!(allocate(&BTreeSet::new(), (1000, 60000), false), Some(1000));
        let full: BTreeSet<u32> = (1000..=1002).collect();
        assert_eq!(allocate(&full, (1000, 1002), false), None);
        assert_eq!(allocate(&used, (100, 999), true), Some(999));
    }
}
