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
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use ignition_config::v3_6::{Systemd, Unit};
use keel_init::unit::{self, InstallChange, InstallError, MachineInfo};

use super::journal::Journal;
use super::nodes::make_parents;
use super::sys::Sys;
use crate::report::JsonPath;

/// Where the config's units go, inside the root.
pub const UNIT_DIR: &str = "/etc/systemd/system";

fn write_file(
    root: &Path,
    path: &str,
    data: &[u8],
    journal: &mut Journal,
    sys: &dyn Sys,
) -> io::Result<()> {
    let p = Path::new(path);
    let dir = make_parents(root, p.parent().unwrap_or(Path::new("/")), journal, sys)?;
    let target = dir.join(p.file_name().unwrap_or_default());
    if fs::symlink_metadata(&target).is_ok() {
        journal.move_aside(&target)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)?;
    journal.created(&target);
    f.write_all(data)?;
    f.sync_all()?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
    sys.lchown(&target, 0, 0)
}

/// Every symlink below etc/systemd/system (one level of `*.wants` and
/// `*.requires` directories): path inside the root → target.
fn links(root: &Path) -> BTreeMap<PathBuf, PathBuf> {
    let mut out = BTreeMap::new();
    let base = root.join(UNIT_DIR.trim_start_matches('/'));
    let mut dirs = vec![base.clone()];
    if let Ok(rd) = fs::read_dir(&base) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
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

fn record(
    root: &Path,
    changes: &[InstallChange],
    before: &BTreeMap<PathBuf, PathBuf>,
    j: &mut Journal,
) {
    for c in changes {
        match c {
            InstallChange::Created { link, .. } => {
                let full = root.join(link.strip_prefix("/").unwrap_or(link));
                // A link that was replaced: put the old one back on undo.
                if let Some(old) = before.get(&full) {
                    j.removed_link(&full, old);
                }
                j.created(&full);
            }
            InstallChange::Removed { link } => {
                let full = root.join(link.strip_prefix("/").unwrap_or(link));
                if let Some(old) = before.get(&full) {
                    j.removed_link(&full, old);
                }
            }
        }
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
    for (p, u) in &units {
        let p = p.clone();
        let path = format!("{UNIT_DIR}/{}", u.name);
        if u.mask == Some(true) {
            let dir = make_parents(root, Path::new(UNIT_DIR), journal, sys)
                .map_err(|e| (p.clone(), e.to_string()))?;
            let target = dir.join(&u.name);
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
            let target = root.join(path.trim_start_matches('/'));
            if fs::read_link(&target).is_ok_and(|t| t == Path::new("/dev/null")) {
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
            unit::enable(root, &loaded, &u.name)
        } else {
            unit::disable(root, &loaded, &u.name)
        };
        match result {
            Ok(changes) => record(root, &changes, &before, journal),
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
