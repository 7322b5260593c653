//! Blessing a good boot, as systemd-bless-boot does: the boot entry that
//! systemd-boot is counting tries on is renamed from
//! `keel-<v>+<left>-<done>.conf` to `keel-<v>.conf`.
//!
//! systemd-boot tells the OS which file it booted in the EFI variable
//! `LoaderBootCountPath` (a path on the ESP; set only when the entry has a
//! counter) and which ESP in `LoaderDevicePartUUID`. Keel mounts that ESP
//! (vfat) on a private directory, renames the file, syncs and unmounts.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use keel_core::entry::{EntryName, EntryNameError};
use keel_core::layout::ESP_LABEL;

use crate::stage1::at;
use crate::sys::{MountFlags, Sys};

/// systemd-boot's vendor GUID for its EFI variables.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// Where the ESP is mounted while blessing.
pub const ESP_MOUNT: &str = "/run/keel/esp";
/// Modules the vfat mount needs (the kernel's default codepage and
/// iocharset); missing ones are fine when built in.
pub const VFAT_MODULES: &[&str] = &["vfat", "nls_cp437", "nls_ascii", "nls_utf8"];

#[derive(Debug, thiserror::Error)]
pub enum BlessError {
    #[error("LoaderBootCountPath {path:?} is not a Keel boot entry")]
    Entry {
        path: String,
        #[source]
        source: EntryNameError,
    },
    #[error("no ESP found (LoaderDevicePartUUID {uuid:?}, or GPT label {ESP_LABEL:?})")]
    NoEsp { uuid: Option<String> },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What blessing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blessed {
    /// No boot counting (no EFI, or an entry without a counter).
    NotCounting,
    Renamed {
        from: String,
        to: String,
    },
}

impl fmt::Display for Blessed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blessed::NotCounting => f.write_str("boot entry not on trial; nothing to bless"),
            Blessed::Renamed { from, to } => write!(f, "blessed boot entry {from} -> {to}"),
        }
    }
}

/// Reads an EFI variable of systemd-boot holding a UTF-16LE string (after
/// the 4-byte attribute header), without the trailing NUL.
pub fn read_loader_var(root: &Path, name: &str) -> Option<String> {
    let path = at(root, &format!("{EFIVARS}/{name}-{LOADER_GUID}"));
    let raw = fs::read(path).ok()?;
    let body = raw.get(4..)?;
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

/// Mounts efivarfs when the machine booted with EFI and it is not there.
fn mount_efivars(sys: &dyn Sys, root: &Path) {
    let dir = at(root, EFIVARS);
    if !dir.is_dir() || fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return;
    }
    let _ = crate::early::modules::load_module(sys, root, "efivarfs");
    let _ = sys.mount(
        "efivarfs",
        &dir,
        "efivarfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "",
    );
}

/// The path systemd-boot booted, relative to the ESP (with `/`), when the
/// entry is counting tries.
pub fn boot_count_path(sys: &dyn Sys, root: &Path) -> Option<String> {
    mount_efivars(sys, root);
    let raw = read_loader_var(root, "LoaderBootCountPath")?;
    let path = raw.replace('\\', "/");
    let path = path.trim_start_matches('/').to_string();
    (!path.is_empty()).then_some(path)
}

/// Whether this boot is on trial (its entry has a boot counter). Mounts
/// efivarfs first when the machine booted with EFI and it is not there.
pub fn boot_counting(sys: &dyn Sys, root: &Path) -> bool {
    mount_efivars(sys, root);
    read_loader_var(root, "LoaderBootCountPath").is_some()
}

/// The ESP's device node: by `LoaderDevicePartUUID`, else by GPT label.
fn find_esp(root: &Path) -> Result<PathBuf, BlessError> {
    let uuid = read_loader_var(root, "LoaderDevicePartUUID").map(|u| u.to_ascii_lowercase());
    let class = at(root, "/sys/class/block");
    let entries = fs::read_dir(&class).map_err(|source| BlessError::Io {
        what: "reading",
        path: class.clone(),
        source,
    })?;
    let mut by_label = None;
    for e in entries.flatten() {
        let uevent = fs::read_to_string(e.path().join("uevent")).unwrap_or_default();
        let name = e.file_name().to_string_lossy().into_owned();
        for line in uevent.lines() {
            if let (Some(u), Some(want)) = (line.strip_prefix("PARTUUID="), &uuid) {
                if u.eq_ignore_ascii_case(want) {
                    return Ok(at(root, &format!("/dev/{name}")));
                }
            }
            if line.strip_prefix("PARTNAME=") == Some(ESP_LABEL) && by_label.is_none() {
                by_label = Some(at(root, &format!("/dev/{name}")));
            }
        }
    }
    by_label.ok_or(BlessError::NoEsp { uuid })
}

/// Finds the ESP the machine booted from (see [`find_esp`]) and mounts
/// it read-write at [`ESP_MOUNT`]; the caller unmounts it.
pub fn mount_esp(sys: &dyn Sys, root: &Path) -> Result<PathBuf, BlessError> {
    mount_efivars(sys, root);
    let device = find_esp(root)?;
    for m in VFAT_MODULES {
        let _ = crate::early::modules::load_module(sys, root, m);
    }
    let mnt = at(root, ESP_MOUNT);
    fs::create_dir_all(&mnt).map_err(|source| BlessError::Io {
        what: "creating",
        path: mnt.clone(),
        source,
    })?;
    sys.mount(
        &device.display().to_string(),
        &mnt,
        "vfat",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "",
    )
    .map_err(|source| BlessError::Io {
        what: "mounting the ESP",
        path: device.clone(),
        source,
    })?;
    Ok(mnt)
}

/// Renames the booted entry to its blessed name. Nothing to do without
/// boot counting.
pub fn bless(sys: &dyn Sys, root: &Path, log: &mut dyn Write) -> Result<Blessed, BlessError> {
    let Some(path) = boot_count_path(sys, root) else {
        return Ok(Blessed::NotCounting);
    };
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
    let entry = EntryName::parse(file).map_err(|source| BlessError::Entry {
        path: path.clone(),
        source,
    })?;
    let blessed = entry.blessed().to_string();
    let mnt = mount_esp(sys, root)?;
    let from = mnt.join(dir).join(file);
    let to = mnt.join(dir).join(&blessed);
    let renamed = fs::rename(&from, &to)
        .and_then(|()| fs::File::open(mnt.join(dir))?.sync_all())
        .map_err(|source| BlessError::Io {
            what: "renaming",
            path: from.clone(),
            source,
        });
    if let Err(e) = sys.umount(&mnt) {
        let _ = writeln!(log, "keel-init: warning: unmounting the ESP: {e}");
    }
    renamed?;
    Ok(Blessed::Renamed {
        from: format!("{dir}/{file}"),
        to: format!("{dir}/{blessed}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSys;

    fn efivar(root: &Path, name: &str, value: &str) {
        let dir = root.join(EFIVARS.trim_start_matches('/'));
        fs::create_dir_all(&dir).unwrap();
        let mut raw = vec![7, 0, 0, 0];
        for u in value.encode_utf16().chain([0]) {
            raw.extend(u.to_le_bytes());
        }
        fs::write(dir.join(format!("{name}-{LOADER_GUID}")), raw).unwrap();
    }

    fn block(root: &Path, name: &str, uevent: &str) {
        let dir = root.join("sys/class/block").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("uevent"), uevent).unwrap();
    }

    #[test]
    fn renames_the_counted_entry_on_the_esp() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        efivar(
            root,
            "LoaderBootCountPath",
            "\\loader\\entries\\keel-1.2.0+2-1.conf",
        );
        efivar(
            root,
            "LoaderDevicePartUUID",
            "9F1C0A55-0000-4000-8000-000000000001",
        );
        block(
            root,
            "vda1",
            "PARTN=1\nPARTNAME=esp\nPARTUUID=9f1c0a55-0000-4000-8000-000000000001\n",
        );
        block(root, "vda2", "PARTN=2\nPARTNAME=root-a\n");
        // The "mounted" ESP is just the directory.
        let entries = root.join("run/keel/esp/loader/entries");
        fs::create_dir_all(&entries).unwrap();
        fs::write(entries.join("keel-1.2.0+2-1.conf"), "title Keel\n").unwrap();
        let sys = RecordingSys::new(root);
        let mut log = Vec::new();
        let r = bless(&sys, root, &mut log).unwrap();
        assert_eq!(
            r,
            Blessed::Renamed {
                from: "loader/entries/keel-1.2.0+2-1.conf".into(),
                to: "loader/entries/keel-1.2.0.conf".into()
            }
        );
        assert!(entries.join("keel-1.2.0.conf").is_file());
        assert!(!entries.join("keel-1.2.0+2-1.conf").exists());
        let calls = sys.calls();
        assert!(
            calls.contains(
                &"mount -t vfat /dev/vda1 /run/keel/esp -o nosuid,nodev,noexec".to_string()
            ),
            "{calls:?}"
        );
        assert_eq!(
            calls.last().map(String::as_str),
            Some("umount /run/keel/esp")
        );
        assert!(boot_counting(&sys, root));
    }

    #[test]
    fn nothing_to_do_without_a_counter_and_clear_errors_otherwise() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let sys = RecordingSys::new(root);
        let mut log = Vec::new();
        assert_eq!(bless(&sys, root, &mut log).unwrap(), Blessed::NotCounting);
        assert!(!boot_counting(&sys, root));
        // An EFI boot whose efivarfs is not mounted yet: it is mounted
        // before the variable is read (this decides whether an unhealthy
        // boot reboots).
        fs::create_dir_all(root.join("sys/firmware/efi/efivars")).unwrap();
        assert!(!boot_counting(&sys, root));
        let calls = sys.calls();
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("mount -t efivarfs efivarfs ")
                    && c.contains("/sys/firmware/efi/efivars")),
            "{calls:?}"
        );
        fs::remove_dir(root.join("sys/firmware/efi/efivars")).unwrap();
        efivar(
            root,
            "LoaderBootCountPath",
            "\\loader\\entries\\other+1.conf",
        );
        let e = bless(&sys, root, &mut log).unwrap_err();
        assert!(e.to_string().contains("other+1.conf"), "{e}");
        efivar(
            root,
            "LoaderBootCountPath",
            "\\loader\\entries\\keel-1+1.conf",
        );
        fs::create_dir_all(root.join("sys/class/block")).unwrap();
        let e = bless(&sys, root, &mut log).unwrap_err();
        assert!(e.to_string().starts_with("no ESP found"), "{e}");
    }
}
