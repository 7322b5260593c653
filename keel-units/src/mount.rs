//! `[Mount]` and `[Swap]` directives (systemd.mount(5), systemd.swap(5)),
//! the load-time checks systemd makes, and the oneshot service a mount or
//! swap unit runs as.
//!
//! A mount unit starts as `/usr/bin/mount --mkdir=0755 [-t TYPE] [-o
//! OPTIONS] WHAT WHERE` and stops as `/usr/bin/umount WHERE`; a swap unit
//! as `/usr/sbin/swapon [-p PRIORITY] [-o OPTIONS] WHAT` and `/usr/sbin/
//! swapoff WHAT` (util-linux, as systemd forks them too). The commands go
//! into the unit's [`ServiceSection`](super::ServiceSection) as a
//! `Type=oneshot`, `RemainAfterExit=yes` service with a 90 s timeout, so
//! the supervisor runs them like any other service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::apply::Applier;
use super::command::Command;
use super::model::{ServiceType, Unit, UnitKind};
use super::name::{from_path, normalize_path};
use super::syntax::Entry;
use super::values::{parse_mode, parse_timeout, TimeSpan};
use super::LoadError;

/// util-linux's mount(8).
pub const MOUNT: &str = "/usr/bin/mount";
/// util-linux's umount(8).
pub const UMOUNT: &str = "/usr/bin/umount";
/// util-linux's swapon(8).
pub const SWAPON: &str = "/usr/sbin/swapon";
/// util-linux's swapoff(8).
pub const SWAPOFF: &str = "/usr/sbin/swapoff";
/// systemd's `DefaultTimeoutStartSec=`, which mount and swap units use
/// unless `TimeoutSec=` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
/// Mode of the mount point directories mount(8) creates.
pub const DEFAULT_DIRECTORY_MODE: u32 = 0o755;

/// Applies one `[Mount]` entry; false when the directive is unknown.
pub(super) fn apply_mount(a: &mut Applier<'_>, e: &Entry) -> bool {
    match e.key.as_str() {
        "What" => a.unit.mount.what = value(a, e),
        "Where" => a.unit.mount.where_ = value(a, e).map(PathBuf::from),
        "Type" => a.unit.mount.fs_type = value(a, e),
        "Options" => a.unit.mount.options = value(a, e),
        "DirectoryMode" => match parse_mode(&e.value) {
            Ok(m) => a.unit.mount.directory_mode = Some(m),
            Err(_) if e.value.is_empty() => a.unit.mount.directory_mode = None,
            Err(m) => a.warn(e, format!("{m}, ignored")),
        },
        "TimeoutSec" => timeout(a, e),
        _ => return false,
    }
    true
}

/// Applies one `[Swap]` entry; false when the directive is unknown.
pub(super) fn apply_swap(a: &mut Applier<'_>, e: &Entry) -> bool {
    match e.key.as_str() {
        "What" => a.unit.swap.what = value(a, e),
        "Options" => a.unit.swap.options = value(a, e),
        "Priority" => match e.value.parse::<i32>() {
            Ok(p) if (-1..=32767).contains(&p) => a.unit.swap.priority = Some(p),
            _ if e.value.is_empty() => a.unit.swap.priority = None,
            _ => a.warn(
                e,
                format!("invalid priority {:?} (-1 to 32767), ignored", e.value),
            ),
        },
        "TimeoutSec" => timeout(a, e),
        _ => return false,
    }
    true
}

/// The value with specifiers expanded; empty resets to `None`.
fn value(a: &mut Applier<'_>, e: &Entry) -> Option<String> {
    let v = a.spec(e, &e.value);
    (!v.is_empty()).then_some(v)
}

fn timeout(a: &mut Applier<'_>, e: &Entry) {
    if e.value.is_empty() {
        a.unit.service.timeout_start = None;
        a.unit.service.timeout_stop = None;
        return;
    }
    match parse_timeout(&e.value) {
        Ok(t) => {
            a.unit.service.timeout_start = Some(t);
            a.unit.service.timeout_stop = Some(t);
        }
        Err(m) => a.warn(e, format!("{m}, ignored")),
    }
}

/// A command that runs `argv` as given (no `$VAR` expansion: options may
/// contain `$`).
fn command(argv: Vec<String>) -> Command {
    Command {
        path: argv.first().cloned().unwrap_or_default(),
        argv,
        no_env_expansion: true,
        ..Command::default()
    }
}

fn invalid(unit: &Unit, message: String) -> LoadError {
    LoadError::Invalid {
        file: unit.fragment.clone(),
        message,
    }
}

/// The unit name a path gives, checked against the unit's own name.
fn check_name(unit: &Unit, directive: &str, path: &str) -> Result<(), LoadError> {
    let suffix = unit.kind.type_name();
    let expected = from_path(path, suffix).unwrap_or_default();
    if expected == unit.name {
        return Ok(());
    }
    Err(invalid(
        unit,
        format!(
            "{directive}={path} means the unit must be named {expected}, but it is named {}, refusing",
            unit.name
        ),
    ))
}

/// systemd's load-time checks of a mount or swap unit (`mount_verify()`,
/// `swap_verify()`), then the synthesized service: commands, oneshot,
/// `RemainAfterExit=yes`, the timeout.
pub(super) fn verify(unit: &mut Unit) -> Result<(), LoadError> {
    let (start, stop) = match unit.kind {
        UnitKind::Mount => mount_commands(unit)?,
        UnitKind::Swap => swap_commands(unit)?,
        _ => return Ok(()),
    };
    let s = &mut unit.service;
    s.service_type = ServiceType::Oneshot;
    s.remain_after_exit = true;
    s.exec_start = vec![command(start)];
    s.exec_stop = vec![command(stop)];
    let default = Some(TimeSpan::Finite(DEFAULT_TIMEOUT));
    s.timeout_start = s.timeout_start.or(default);
    s.timeout_stop = s.timeout_stop.or(default);
    Ok(())
}

fn mount_commands(unit: &mut Unit) -> Result<(Vec<String>, Vec<String>), LoadError> {
    let m = &unit.mount;
    let where_ = match &m.where_ {
        Some(w) => {
            let w = w.to_string_lossy().into_owned();
            normalize_path(&w).ok_or_else(|| {
                invalid(
                    unit,
                    format!("Where={w} is not an absolute, normalized path, refusing"),
                )
            })?
        }
        // As systemd: the mount point follows from the name.
        None => super::name::unescape_path(unit.name.trim_end_matches(".mount")),
    };
    check_name(unit, "Where", &where_)?;
    let Some(what) = unit.mount.what.clone() else {
        return Err(invalid(
            unit,
            "What= setting is missing, refusing".to_string(),
        ));
    };
    let m = &mut unit.mount;
    m.where_ = Some(PathBuf::from(&where_));
    let mode = m.directory_mode.unwrap_or(DEFAULT_DIRECTORY_MODE);
    let mut start = vec![MOUNT.to_string(), format!("--mkdir={mode:04o}")];
    if let Some(t) = &m.fs_type {
        start.extend(["-t".to_string(), t.clone()]);
    }
    if let Some(o) = &m.options {
        start.extend(["-o".to_string(), o.clone()]);
    }
    start.extend([what, where_.clone()]);
    Ok((start, vec![UMOUNT.to_string(), where_]))
}

fn swap_commands(unit: &mut Unit) -> Result<(Vec<String>, Vec<String>), LoadError> {
    let Some(what) = unit.swap.what.clone() else {
        return Err(invalid(
            unit,
            "What= setting is missing, refusing".to_string(),
        ));
    };
    let Some(normalized) = normalize_path(&what) else {
        return Err(invalid(
            unit,
            format!("What={what} is not an absolute, normalized path, refusing"),
        ));
    };
    check_name(unit, "What", &normalized)?;
    let s = &unit.swap;
    let mut start = vec![SWAPON.to_string()];
    if let Some(p) = s.priority {
        start.extend(["-p".to_string(), p.to_string()]);
    }
    if let Some(o) = &s.options {
        start.extend(["-o".to_string(), o.clone()]);
    }
    start.push(what.clone());
    Ok((start, vec![SWAPOFF.to_string(), what]))
}

/// The mount unit names for `path` and each of its parents, deepest
/// first: `/var/data/x` → `var-data-x.mount`, `var-data.mount`,
/// `var.mount`, `-.mount`. Empty when `path` is not absolute.
pub fn mount_units_for(path: &Path) -> Vec<String> {
    let Some(p) = normalize_path(&path.to_string_lossy()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current = Some(Path::new(&p));
    while let Some(c) = current {
        out.extend(from_path(&c.to_string_lossy(), "mount"));
        current = c.parent();
    }
    out
}
