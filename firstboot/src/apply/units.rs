//! `systemd.units` applied to a root: unit files and dropins written to
//! `/etc/systemd/system`, masks (a link to /dev/null) and unmasks, and
//! enablement the way `systemctl enable` does it — the links the unit's
//! `[Install]` section asks for, made by keel-init's own installer, so a
//! unit enabled here is enabled exactly as `keelctl enable` would do it.
//! (Ignition writes a systemd preset instead and leaves the links to
//! systemd's first boot; Keel has no presets, so it makes them.)

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use ignition_config::v3_6::{Systemd, Unit};
use keel_core::beneath;
use keel_units::{self as unit, InstallError, MachineInfo};

use super::journal::Journal;
use super::nodes::{make_place, place};
use super::sys::Sys;
use crate::report::JsonPath;
use crate::validate::systemd as systemd_names;

/// Where the config's units go, inside the root.
pub const UNIT_DIR: &str = "/etc/systemd/system";

fn write_file(
    root: &Path,
    path: &str,
    data: &[u8],
    journal: &mut Journal,
    sys: &dyn Sys,
) -> io::Result<()> {
    let target = make_place(root, Path::new(path), journal, sys)?;
    if fs::symlink_metadata(&target).is_ok() {
        journal.move_aside(&target)?;
    }
    let mut f = beneath::create_new(&target, 0o644)?;
    journal.created(&target);
    f.write_all(data)?;
    f.sync_all()?;
    sys.lchown(&target, 0, 0)
}

/// Every symlink in etc/systemd/system and one level of directories below
/// it (`*.wants`, `*.requires`), where they really are below `root`
/// (directories resolved inside the root) → their targets.
fn links(root: &Path) -> BTreeMap<PathBuf, PathBuf> {
    let mut out = BTreeMap::new();
    let Ok(Some(base)) = beneath::resolve(root, Path::new(UNIT_DIR)) else {
        return out;
    };
    let mut dirs = vec![base.clone()];
    if let Ok(rd) = fs::read_dir(&base) {
        for e in rd.flatten() {
            let inner = Path::new(UNIT_DIR).join(e.file_name());
            if let Ok(Some(d)) = beneath::resolve(root, &inner) {
                if d.is_dir() && d.starts_with(root) && !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
    }
    for d in dirs {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                out.insert(e.path(), t);
            }
        }
    }
    out
}

/// Records what enabling or disabling changed among the links: the
/// difference between `before` and now (so that a call that failed part
/// way is undone too).
fn record(root: &Path, before: &BTreeMap<PathBuf, PathBuf>, j: &mut Journal) {
    let after = links(root);
    for (path, old) in before {
        match after.get(path) {
            Some(now) if now == old => {}
            // Replaced or removed: put the old one back on undo.
            Some(_) => {
                j.removed_link(path, old);
                j.created(path);
            }
            None => j.removed_link(path, old),
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        j.created(path);
    }
}

/// Writes, masks and enables the config's units, then the `extra` units
/// Keel makes for the config (mount units, each with the JSON path it was
/// made for); `Err` names the unit.
pub fn apply(
    root: &Path,
    s: Option<&Systemd>,
    extra: &[(JsonPath, Unit)],
    journal: &mut Journal,
    sys: &dyn Sys,
) -> Result<(), (JsonPath, String)> {
    let at = JsonPath::root().key("systemd").key("units");
    let units: Vec<(JsonPath, &Unit)> = s
        .and_then(|s| s.units.as_deref())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, u)| (at.index(i), u))
        .chain(extra.iter().map(|(p, u)| (p.clone(), u)))
        .collect();
    // Validation refuses these already; a name that is a path must never
    // reach a file system call.
    for (p, u) in &units {
        if let Some(why) = systemd_names::bad_unit_name(&u.name) {
            return Err((p.key("name"), why));
        }
        for (j, d) in u.dropins.iter().flatten().enumerate() {
            if let Some(why) = systemd_names::bad_dropin_name(&d.name) {
                return Err((p.key("dropins").index(j).key("name"), why));
            }
        }
    }
    for (p, u) in &units {
        let p = p.clone();
        let path = format!("{UNIT_DIR}/{}", u.name);
        if u.mask == Some(true) {
            let target = make_place(root, Path::new(&path), journal, sys)
                .map_err(|e| (p.clone(), e.to_string()))?;
            if fs::symlink_metadata(&target).is_ok() {
                journal
                    .move_aside(&target)
                    .map_err(|e| (p.clone(), format!("moving {} aside: {e}", target.display())))?;
            }
            symlink("/dev/null", &target)
                .map_err(|e| (p.clone(), format!("masking {}: {e}", u.name)))?;
            journal.created(&target);
        } else if let Some(text) = u.contents.as_deref() {
            write_file(root, &path, text.as_bytes(), journal, sys)
                .map_err(|e| (p.key("contents"), format!("writing {path}: {e}")))?;
        } else if u.mask == Some(false) {
            // Unmask: only a mask link is removed.
            let target = place(root, Path::new(&path))
                .map_err(|e| (p.key("mask"), format!("unmasking {}: {e}", u.name)))?;
            if let Some(target) =
                target.filter(|t| fs::read_link(t).is_ok_and(|t| t == Path::new("/dev/null")))
            {
                journal
                    .move_aside(&target)
                    .map_err(|e| (p.key("mask"), format!("unmasking {}: {e}", u.name)))?;
            }
        }
        for (j, d) in u.dropins.iter().flatten().enumerate() {
            if let Some(text) = d.contents.as_deref() {
                let dpath = format!("{UNIT_DIR}/{}.d/{}", u.name, d.name);
                write_file(root, &dpath, text.as_bytes(), journal, sys)
                    .map_err(|e| (p.key("dropins").index(j), format!("writing {dpath}: {e}")))?;
            }
        }
    }
    // Enablement reads the unit files as the root now has them.
    let loaded = unit::load_units(root, &MachineInfo::default());
    for (p, u) in &units {
        let Some(enabled) = u.enabled else { continue };
        let before = links(root);
        let result = if enabled {
            // Directories made for the links are recorded as they are made.
            unit::enable_recording(root, &loaded, &u.name, &mut |made| {
                journal.created_dir(made);
                sys.lchown(made, 0, 0)
            })
        } else {
            unit::disable(root, &loaded, &u.name)
        };
        record(root, &before, journal);
        match result {
            Ok(_) => {}
            // Validation warned; as with systemd, enabling does nothing.
            Err(InstallError::NoInstallSection { .. }) => {}
            Err(InstallError::NotFound { .. }) if !enabled => {}
            Err(e) => {
                let verb = if enabled { "enabling" } else { "disabling" };
                return Err((p.key("enabled"), format!("{verb} {}: {e}", u.name)));
            }
        }
    }
    Ok(())
}
