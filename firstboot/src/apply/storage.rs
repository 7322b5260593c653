//! `storage.disks` and `storage.filesystems` on a node: partition tables
//! on extra disks ([`super::disks`]), file systems made or reused, as
//! Ignition's disks stage does it; the file systems with a `path` mounted
//! below the root while the files are written (Ignition's mount stage),
//! and a mount unit for each of them, so that keel-init mounts it at
//! every boot.
//!
//! The block-device work goes through [`Storage`], passed in explicitly:
//! [`Tools`] runs util-linux, e2fsprogs, xfsprogs and dosfstools as
//! Ignition does; tests record instead.
//!
//! Unlike the files, a partition table or a file system once made is not
//! undone when a later step fails: the next boot starts over, and
//! Ignition's rules make that converge (a partition that matches is kept;
//! a file system is made again only where `wipeFilesystem` asks for it).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ignition_config::v3_6::{Config, Filesystem, Unit};

use super::ApplyError;
use crate::report::JsonPath;

/// What blkid found on a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsInfo {
    /// blkid's `TYPE`: `ext4`, `xfs`, `vfat`, `swap`, `crypto_LUKS`, …
    pub format: String,
    pub uuid: String,
    pub label: String,
}

/// The block-device operations of the disks and filesystems steps.
pub trait Storage {
    /// Runs `program` with `args`; `Err` carries what it printed.
    fn run(&self, program: &str, args: &[String]) -> Result<(), String>;
    /// The file system signature on `device` (`blkid -p`), `None` if
    /// there is none.
    fn probe(&self, device: &Path) -> Result<Option<FsInfo>, String>;
    /// The logical sector size of `disk`, in bytes.
    fn sector_size(&self, disk: &Path) -> Result<u64, String>;
    /// Why `disk` may not be partitioned (one of its partitions is
    /// mounted or held, e.g. the boot disk), or `None`.
    fn in_use(&self, disk: &Path) -> Option<String>;
    /// After `disk`'s partition table changed: the kernel re-reads it and
    /// the `/dev/disk` links are made again.
    fn table_changed(&self, disk: &Path) -> Result<(), String>;
    /// After a file system was made on `device`: its `/dev/disk` links
    /// (by-uuid, by-label) are made again.
    fn filesystem_changed(&self, device: &Path) -> Result<(), String>;
    /// Says what the step did (the console at first boot).
    fn log(&self, line: &str);
}

/// Mounts the step made below the root, deepest last.
#[derive(Debug, Default)]
pub struct Mounted {
    targets: Vec<PathBuf>,
}

impl Mounted {
    /// Unmounts everything, deepest first; what could not be unmounted.
    pub fn unmount(self, storage: &dyn Storage) -> Vec<String> {
        let mut left = Vec::new();
        for t in self.targets.iter().rev() {
            let arg = t.display().to_string();
            if let Err(e) = storage.run("umount", &[arg]) {
                left.push(format!("unmounting {}: {e}", t.display()));
            }
        }
        left
    }
}

fn filesystems(config: &Config) -> impl Iterator<Item = (JsonPath, &Filesystem)> {
    let at = JsonPath::root().key("storage").key("filesystems");
    config
        .storage
        .iter()
        .flat_map(|s| s.filesystems.iter().flatten())
        .enumerate()
        .map(move |(i, f)| (at.index(i), f))
}

/// Whether the config has disks or file systems for this step.
pub fn wanted(config: &Config) -> bool {
    config.storage.as_ref().is_some_and(|s| {
        s.disks.as_ref().is_some_and(|d| !d.is_empty())
            || s.filesystems.as_ref().is_some_and(|f| !f.is_empty())
    })
}

/// Checks that need no device: mount points that cannot be made. (Formats
/// Keel does not make and mount points it reserves are validation errors,
/// see `validate::keel`.) Run before anything is written.
pub fn check(root: &Path, config: &Config) -> Result<(), ApplyError> {
    for (at, f) in filesystems(config) {
        let Some(path) = mount_path(f) else { continue };
        // The root is read-only: a mount point must exist in the image or
        // be made on /var.
        let under_var = path.starts_with("/var/");
        let is_dir = keel_core::beneath::resolve(root, Path::new(path))
            .ok()
            .flatten()
            .is_some_and(|p| p.is_dir());
        if !under_var && !is_dir {
            return Err(ApplyError::Config {
                path: at.key("path"),
                message: format!(
                    "{path} is not a directory of the read-only root; mount points outside /var must exist in the image"
                ),
            });
        }
    }
    Ok(())
}

/// The path a file system is mounted on, if any (swap and `none` have
/// none).
fn mount_path(f: &Filesystem) -> Option<&str> {
    let format = f.format.as_deref().unwrap_or("");
    if format.is_empty() || format == "swap" || format == "none" {
        return None;
    }
    f.path.as_deref().filter(|p| !p.is_empty())
}

/// Ignition's comparison form of a file system UUID: lower case, and a
/// FAT volume ID without its dash.
fn canonical_uuid(format: &str, uuid: &str) -> String {
    let mut u = uuid.to_ascii_lowercase();
    if format == "vfat" && u.len() >= 5 && u.as_bytes()[4] == b'-' {
        u.remove(4);
    }
    u
}

/// What to do with one file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsAction {
    /// It is there as asked (format, and label and UUID where given).
    Reuse,
    /// Run this mkfs command line.
    Create { program: String, args: Vec<String> },
}

/// Ignition's rule: without `wipeFilesystem`, a file system that matches
/// is kept, and any other signature on the device is an error; otherwise
/// (or on an empty device) the file system is made.
pub fn decide(f: &Filesystem, found: Option<&FsInfo>) -> Result<FsAction, String> {
    let format = f.format.as_deref().unwrap_or("");
    if f.wipe_filesystem != Some(true) {
        if let Some(info) = found {
            let label_ok = f.label.as_ref().is_none_or(|l| *l == info.label);
            let uuid_ok = f.uuid.as_ref().is_none_or(|u| {
                canonical_uuid(&info.format, &info.uuid) == canonical_uuid(format, u)
            });
            if info.format == format && label_ok && uuid_ok {
                return Ok(FsAction::Reuse);
            }
            return Err(format!(
                "{} holds a {} file system (label {:?}, UUID {}) that does not match, and wipeFilesystem is not set",
                f.device,
                if info.format.is_empty() { "unknown" } else { &info.format },
                info.label,
                if info.uuid.is_empty() { "none" } else { &info.uuid },
            ));
        }
    }
    // Ignition's mkfs command lines: program, force flag, how the UUID
    // and the label are given. (mkfs.vfat has no force flag: it always
    // writes.)
    let (program, force, uuid_flag, label_flag) = match format {
        "ext4" => ("mkfs.ext4", Some("-F"), "-U", "-L"),
        "xfs" => ("mkfs.xfs", Some("-f"), "-m", "-L"),
        "swap" => ("mkswap", Some("-f"), "-U", "-L"),
        "vfat" => ("mkfs.vfat", None, "-i", "-n"),
        other => return Err(format!("unsupported filesystem format: {other:?}")),
    };
    let mut args: Vec<String> = f.options.iter().flatten().cloned().collect();
    args.extend(force.map(String::from));
    if let Some(u) = f.uuid.as_deref().map(|u| canonical_uuid(format, u)) {
        let value = if format == "xfs" {
            format!("uuid={u}")
        } else {
            u
        };
        args.extend([uuid_flag.to_string(), value]);
    }
    if let Some(l) = &f.label {
        args.extend([label_flag.to_string(), l.clone()]);
    }
    args.push(f.device.clone());
    Ok(FsAction::Create {
        program: program.into(),
        args,
    })
}

/// Partitions the disks, then makes or reuses the file systems, then
/// mounts those with a `path` below `root` (parents first). Returns the
/// mounts, for [`Mounted::unmount`] once the files are written.
pub fn apply(root: &Path, config: &Config, storage: &dyn Storage) -> Result<Mounted, ApplyError> {
    let log = |line: &str| storage.log(line);
    let storage_err = |path: JsonPath| move |message: String| ApplyError::Storage { path, message };
    let dat = JsonPath::root().key("storage").key("disks");
    for (i, d) in config
        .storage
        .iter()
        .flat_map(|s| s.disks.iter().flatten())
        .enumerate()
    {
        let at = dat.index(i);
        let device = Path::new(&d.device);
        if let Some(why) = storage.in_use(device) {
            return Err(ApplyError::Storage {
                path: at.key("device"),
                message: format!("{} cannot be partitioned: {why}", d.device),
            });
        }
        let outcome =
            super::disks::partition_disk(device, d, &at).map_err(|e| ApplyError::Storage {
                path: at.clone(),
                message: e.to_string(),
            })?;
        if outcome.changed() {
            log(&format!("{}: {}", d.device, outcome.summary()));
            storage
                .table_changed(device)
                .map_err(storage_err(at.key("device")))?;
        } else {
            log(&format!("{}: partition table as asked, kept", d.device));
        }
    }

    for (at, f) in filesystems(config) {
        let format = f.format.as_deref().unwrap_or("");
        if format.is_empty() || format == "none" {
            continue;
        }
        let device = Path::new(&f.device);
        let found = storage
            .probe(device)
            .map_err(storage_err(at.key("device")))?;
        match decide(f, found.as_ref()).map_err(storage_err(at.clone()))? {
            FsAction::Reuse => log(&format!("{}: {format} file system kept", f.device)),
            FsAction::Create { program, args } => {
                log(&format!("{}: making the {format} file system", f.device));
                storage
                    .run(&program, &args)
                    .map_err(|e| ApplyError::Storage {
                        path: at.clone(),
                        message: format!("{program} failed: {e}"),
                    })?;
                storage
                    .filesystem_changed(device)
                    .map_err(storage_err(at.key("device")))?;
            }
        }
    }

    let mut to_mount: Vec<(JsonPath, &Filesystem, &str)> = filesystems(config)
        .filter_map(|(at, f)| mount_path(f).map(|p| (at, f, p)))
        .collect();
    to_mount.sort_by_key(|(_, _, p)| Path::new(p).components().count());
    let mut mounted = Mounted::default();
    for (at, f, path) in to_mount {
        // The mount point where it is inside the root (a symlink on the
        // way is followed there, never out), made if missing; like the
        // file systems, it stays.
        let target = match keel_core::beneath::make_dirs(root, Path::new(path), &mut |_| Ok(())) {
            Ok(t) => t,
            Err(e) => {
                let mut message = format!("making the mount point {path}: {e}");
                let left = mounted.unmount(storage);
                if !left.is_empty() {
                    message.push_str(&format!("; {}", left.join("; ")));
                }
                return Err(ApplyError::Storage {
                    path: at.key("path"),
                    message,
                });
            }
        };
        let mut args = vec!["--mkdir=0755".to_string()];
        args.extend(["-t".into(), f.format.clone().unwrap_or_default()]);
        if let Some(o) = f.mount_options.as_ref().filter(|o| !o.is_empty()) {
            args.extend(["-o".into(), o.join(",")]);
        }
        args.extend([f.device.clone(), target.display().to_string()]);
        if let Err(e) = storage.run("mount", &args) {
            let left = mounted.unmount(storage);
            let mut message = format!("mounting {} on {path}: {e}", f.device);
            if !left.is_empty() {
                message.push_str(&format!("; {}", left.join("; ")));
            }
            return Err(ApplyError::Storage { path: at, message });
        }
        mounted.targets.push(target);
    }
    Ok(mounted)
}

/// `systemd-escape --path` (keel-init's, so the names are the ones it
/// loads); validation made the paths absolute and normalized.
fn escape_path(path: &str) -> String {
    keel_units::name::escape_path(path).unwrap_or_else(|| path.to_string())
}

/// The mount units Keel writes for file systems with a `path`, as
/// Butane's `with_mount_unit` writes them (fsck first, required by
/// local-fs.target) — unless the config has a unit of that name, or a
/// file at its path, itself.
pub fn mount_units(config: &Config) -> Vec<(JsonPath, Unit)> {
    let taken: BTreeSet<String> = config
        .systemd
        .iter()
        .flat_map(|s| s.units.iter().flatten())
        .map(|u| u.name.clone())
        .chain(
            config
                .storage
                .iter()
                .flat_map(|s| s.files.iter().flatten())
                .filter_map(|f| {
                    f.path
                        .strip_prefix("/etc/systemd/system/")
                        .map(str::to_owned)
                }),
        )
        .collect();
    let mut out = Vec::new();
    for (at, f) in filesystems(config) {
        let Some(path) = mount_path(f) else { continue };
        let name = format!("{}.mount", escape_path(path));
        if taken.contains(&name) {
            continue;
        }
        let dev = escape_path(&f.device);
        let mut text = format!(
            "# Written by keel-firstboot for {at}\n\
             [Unit]\n\
             Requires=systemd-fsck@{dev}.service\n\
             After=systemd-fsck@{dev}.service\n\
             \n\
             [Mount]\n\
             Where={path}\n\
             What={}\n\
             Type={}\n",
            f.device,
            f.format.as_deref().unwrap_or_default(),
        );
        if let Some(o) = f.mount_options.as_ref().filter(|o| !o.is_empty()) {
            text.push_str(&format!("Options={}\n", o.join(",")));
        }
        text.push_str("\n[Install]\nRequiredBy=local-fs.target\n");
        let mut unit = Unit::new(name);
        unit.contents = Some(text);
        unit.enabled = Some(true);
        out.push((at, unit));
    }
    out
}

/// The real thing: the tools of util-linux, e2fsprogs, xfsprogs and
/// dosfstools, found on `PATH`.
pub struct Tools {
    /// Where the node's `/dev` and `/sys` are (`/`).
    pub root: PathBuf,
    /// How long to wait for a device that is not there (yet).
    pub device_wait: Duration,
}

impl Tools {
    /// The tools on the node at `root`, waiting up to 10 s for devices.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Tools {
            root: root.into(),
            device_wait: Duration::from_secs(10),
        }
    }
}

fn run_tool(program: &str, args: &[String]) -> Result<std::process::Output, String> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("running {program}: {e}"))
}

fn failed(program: &str, out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim();
    let text = if text.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        text.to_string()
    };
    format!("{program} exited with {}: {text}", out.status)
}

impl Tools {
    /// The kernel name of a block device (`/dev/disk/by-…/x` → `vdb`).
    fn kernel_name(&self, device: &Path) -> Result<String, String> {
        let real = fs::canonicalize(device).map_err(|e| format!("{}: {e}", device.display()))?;
        real.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{}: not a device", device.display()))
    }

    /// The partitions sysfs lists for disk `name`.
    fn partitions(&self, name: &str) -> Vec<String> {
        let dir = self.root.join("sys/class/block").join(name);
        let mut out: Vec<String> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("partition").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    /// Removes the `/dev/disk` links to `names` and makes the links of
    /// every device present again.
    fn relink(&self, names: &BTreeSet<String>) {
        let disk_dir = self.root.join("dev/disk");
        for d in fs::read_dir(&disk_dir).into_iter().flatten().flatten() {
            for l in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                let stale = fs::read_link(l.path()).is_ok_and(|t| {
                    t.file_name()
                        .is_some_and(|n| names.contains(&*n.to_string_lossy()))
                });
                if stale {
                    let _ = fs::remove_file(l.path());
                }
            }
        }
        let mut sink = Vec::new();
        let mut log = keel_init::early::Log::new(&mut sink);
        keel_init::early::disklinks::make(&self.root, &mut log);
    }
}

impl Storage for Tools {
    fn log(&self, line: &str) {
        println!("keel-firstboot: {line}");
    }

    fn run(&self, program: &str, args: &[String]) -> Result<(), String> {
        let out = run_tool(program, args)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failed(program, &out))
        }
    }

    fn probe(&self, device: &Path) -> Result<Option<FsInfo>, String> {
        // Devices present at boot are there; a partition the config just
        // made appears within moments. (blkid says "nothing found" of a
        // path that does not exist, which must not lead to mkfs.)
        let deadline = Instant::now() + self.device_wait;
        while !device.exists() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} does not exist (waited {:.1} s)",
                    device.display(),
                    self.device_wait.as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let dev = device.display().to_string();
        let out = run_tool("blkid", &["-p".into(), "-o".into(), "export".into(), dev])?;
        match out.status.code() {
            Some(0) => {}
            // Nothing found.
            Some(2) => return Ok(None),
            _ => return Err(failed("blkid", &out)),
        }
        let mut info = FsInfo::default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            match line.split_once('=') {
                Some(("TYPE", v)) => info.format = v.into(),
                Some(("UUID", v)) => info.uuid = v.into(),
                Some(("LABEL", v)) => info.label = v.into(),
                _ => {}
            }
        }
        // A partition table alone is no file system (as for Ignition).
        Ok((!info.format.is_empty()).then_some(info))
    }

    fn sector_size(&self, disk: &Path) -> Result<u64, String> {
        let name = self.kernel_name(disk)?;
        let p = self
            .root
            .join("sys/class/block")
            .join(&name)
            .join("queue/logical_block_size");
        let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        text.trim()
            .parse()
            .map_err(|_| format!("{}: not a number: {text:?}", p.display()))
    }

    fn in_use(&self, disk: &Path) -> Option<String> {
        let name = match self.kernel_name(disk) {
            Ok(n) => n,
            Err(e) => return Some(e),
        };
        let mounts = keel_init::mountinfo::mounts(&self.root);
        for part in std::iter::once(name.clone()).chain(self.partitions(&name)) {
            let node = format!("/dev/{part}");
            let devno =
                fs::read_to_string(self.root.join("sys/class/block").join(&part).join("dev"))
                    .ok()
                    .and_then(|d| {
                        let (major, minor) = d.trim().split_once(':')?;
                        Some((major.parse().ok()?, minor.parse().ok()?))
                    });
            if mounts
                .iter()
                .any(|m| m.source == node || Some(m.device) == devno)
            {
                return Some(format!("{node} is mounted"));
            }
            let holders = self
                .root
                .join("sys/class/block")
                .join(&part)
                .join("holders");
            if fs::read_dir(holders).is_ok_and(|mut d| d.next().is_some()) {
                return Some(format!(
                    "{node} is in use by device-mapper (the boot disk?)"
                ));
            }
        }
        None
    }

    fn table_changed(&self, disk: &Path) -> Result<(), String> {
        let name = self.kernel_name(disk)?;
        let mut names: BTreeSet<String> = self.partitions(&name).into_iter().collect();
        self.run(
            "blockdev",
            &["--rereadpt".into(), disk.display().to_string()],
        )?;
        // The kernel announces the new partitions at once; devtmpfs makes
        // their nodes a moment later.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.partitions(&name);
            let ready = now.iter().all(|p| self.root.join("dev").join(p).exists());
            if ready || Instant::now() > deadline {
                names.extend(now);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        names.insert(name);
        self.relink(&names);
        Ok(())
    }

    fn filesystem_changed(&self, device: &Path) -> Result<(), String> {
        let name = self.kernel_name(device)?;
        self.relink(&BTreeSet::from([name]));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_entry(json: &str) -> Filesystem {
        serde_json::from_str(json).expect("filesystem JSON")
    }

    #[test]
    fn mkfs_command_lines_are_ignitions() {
        let f = fs_entry(
            r#"{"device":"/dev/vdb1","format":"ext4","label":"data","uuid":"9E6C4D5E-0000-4000-8000-000000000001","options":["-E","lazy_itable_init=0"]}"#,
        );
        assert_eq!(
            decide(&f, None),
            Ok(FsAction::Create {
                program: "mkfs.ext4".into(),
                args: [
                    "-E",
                    "lazy_itable_init=0",
                    "-F",
                    "-U",
                    "9e6c4d5e-0000-4000-8000-000000000001",
                    "-L",
                    "data",
                    "/dev/vdb1"
                ]
                .map(String::from)
                .to_vec(),
            })
        );
        let f = fs_entry(
            r#"{"device":"/dev/vdc","format":"xfs","uuid":"9e6c4d5e-0000-4000-8000-000000000002"}"#,
        );
        assert_eq!(
            decide(&f, None),
            Ok(FsAction::Create {
                program: "mkfs.xfs".into(),
                args: [
                    "-f",
                    "-m",
                    "uuid=9e6c4d5e-0000-4000-8000-000000000002",
                    "/dev/vdc"
                ]
                .map(String::from)
                .to_vec(),
            })
        );
        let f =
            fs_entry(r#"{"device":"/dev/vdd","format":"vfat","uuid":"A1B2-C3D4","label":"EFI"}"#);
        assert_eq!(
            decide(&f, None),
            Ok(FsAction::Create {
                program: "mkfs.vfat".into(),
                args: ["-i", "a1b2c3d4", "-n", "EFI", "/dev/vdd"]
                    .map(String::from)
                    .to_vec(),
            })
        );
        let f = fs_entry(r#"{"device":"/dev/vde","format":"swap","label":"swap"}"#);
        assert_eq!(
            decide(&f, None),
            Ok(FsAction::Create {
                program: "mkswap".into(),
                args: ["-f", "-L", "swap", "/dev/vde"].map(String::from).to_vec(),
            })
        );
    }

    #[test]
    fn a_matching_file_system_is_kept_and_another_one_refused_without_wipe() {
        let found = FsInfo {
            format: "vfat".into(),
            uuid: "A1B2-C3D4".into(),
            label: "EFI".into(),
        };
        let keep =
            fs_entry(r#"{"device":"/dev/vdd","format":"vfat","uuid":"a1b2c3d4","label":"EFI"}"#);
        assert_eq!(decide(&keep, Some(&found)), Ok(FsAction::Reuse));
        // No label or UUID asked for: any vfat will do.
        let any = fs_entry(r#"{"device":"/dev/vdd","format":"vfat"}"#);
        assert_eq!(decide(&any, Some(&found)), Ok(FsAction::Reuse));
        let other_label = fs_entry(r#"{"device":"/dev/vdd","format":"vfat","label":"DATA"}"#);
        let e = decide(&other_label, Some(&found)).expect_err("label differs");
        assert!(
            e.contains("does not match, and wipeFilesystem is not set"),
            "{e}"
        );
        assert!(e.contains("/dev/vdd holds a vfat file system"), "{e}");
        let other_format = fs_entry(r#"{"device":"/dev/vdd","format":"ext4"}"#);
        assert!(decide(&other_format, Some(&found)).is_err());
        // wipeFilesystem makes it anew whatever is there.
        let wipe = fs_entry(r#"{"device":"/dev/vdd","format":"ext4","wipeFilesystem":true}"#);
        assert!(matches!(
            decide(&wipe, Some(&found)),
            Ok(FsAction::Create { .. })
        ));
    }

    #[test]
    fn paths_escape_as_systemd_escape_does() {
        assert_eq!(escape_path("/var/data"), "var-data");
        assert_eq!(escape_path("/var/lib/my-data/"), "var-lib-my\\x2ddata");
        assert_eq!(
            escape_path("/dev/disk/by-partlabel/data"),
            "dev-disk-by\\x2dpartlabel-data"
        );
        assert_eq!(escape_path("/var/.hidden"), "var-.hidden");
        assert_eq!(escape_path("/.x"), "\\x2ex");
        assert_eq!(escape_path("/"), "-");
    }

    #[test]
    fn mount_units_are_butanes_unless_the_config_has_one() {
        let config = crate::config::parse(
            br#"{"ignition":{"version":"3.4.0"},
              "storage":{"filesystems":[
                {"device":"/dev/disk/by-partlabel/data","format":"ext4","path":"/var/data","mountOptions":["noatime","discard"]},
                {"device":"/dev/vdc","format":"xfs","path":"/var/own"},
                {"device":"/dev/vdd","format":"swap"}]},
              "systemd":{"units":[{"name":"var-own.mount","contents":"[Mount]\nWhat=/dev/vdc\nWhere=/var/own\n"}]}}"#,
        )
        .expect("config")
        .config;
        let units = mount_units(&config);
        assert_eq!(units.len(), 1, "{units:?}");
        let (at, u) = &units[0];
        assert_eq!(at.to_string(), "$.storage.filesystems.0");
        assert_eq!(u.name, "var-data.mount");
        assert_eq!(u.enabled, Some(true));
        assert_eq!(
            u.contents.as_deref(),
            Some(
                "# Written by keel-firstboot for $.storage.filesystems.0\n\
                 [Unit]\n\
                 Requires=systemd-fsck@dev-disk-by\\x2dpartlabel-data.service\n\
                 After=systemd-fsck@dev-disk-by\\x2dpartlabel-data.service\n\
                 \n\
                 [Mount]\n\
                 Where=/var/data\n\
                 What=/dev/disk/by-partlabel/data\n\
                 Type=ext4\n\
                 Options=noatime,discard\n\
                 \n\
                 [Install]\n\
                 RequiredBy=local-fs.target\n"
            )
        );
    }

    #[test]
    fn mount_points_outside_var_must_exist() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(t.path().join("srv")).expect("mkdir");
        let parse = |fs: &str| {
            crate::config::parse(
                format!(
                    r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"filesystems":[{fs}]}}}}"#
                )
                .as_bytes(),
            )
            .expect("config")
            .config
        };
        assert!(check(
            t.path(),
            &parse(r#"{"device":"/dev/vdb","format":"ext4","path":"/var/x"}"#)
        )
        .is_ok());
        assert!(check(
            t.path(),
            &parse(r#"{"device":"/dev/vdb","format":"ext4","path":"/srv"}"#)
        )
        .is_ok());
        let e = check(
            t.path(),
            &parse(r#"{"device":"/dev/vdb","format":"ext4","path":"/opt/x"}"#),
        )
        .expect_err("not on /var");
        assert_eq!(
            e.to_string(),
            "$.storage.filesystems.0.path: /opt/x is not a directory of the read-only root; mount points outside /var must exist in the image"
        );
    }

    /// Records the block-device work; `mount` makes the target with a
    /// marker in it, `umount` notes what the target held at that time.
    #[derive(Default)]
    struct Fake {
        calls: std::cell::RefCell<Vec<String>>,
    }

    impl Storage for Fake {
        fn run(&self, program: &str, args: &[String]) -> Result<(), String> {
            let mut line = format!("{program} {}", args.join(" "));
            match program {
                "mount" => {
                    let target = Path::new(args.last().expect("target"));
                    fs::create_dir_all(target).map_err(|e| e.to_string())?;
                    fs::write(target.join("mounted"), "").map_err(|e| e.to_string())?;
                }
                "umount" => {
                    let mut held: Vec<String> = fs::read_dir(&args[0])
                        .map_err(|e| e.to_string())?
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    held.sort();
                    line.push_str(&format!(" (held {})", held.join(",")));
                }
                _ => {}
            }
            self.calls.borrow_mut().push(line);
            Ok(())
        }
        fn probe(&self, device: &Path) -> Result<Option<FsInfo>, String> {
            self.calls
                .borrow_mut()
                .push(format!("probe {}", device.display()));
            Ok(None)
        }
        fn in_use(&self, _disk: &Path) -> Option<String> {
            None
        }
        fn sector_size(&self, _disk: &Path) -> Result<u64, String> {
            Ok(512)
        }
        fn table_changed(&self, disk: &Path) -> Result<(), String> {
            let name = disk.file_name().unwrap_or_default().to_string_lossy();
            self.calls
                .borrow_mut()
                .push(format!("table_changed {name}"));
            Ok(())
        }
        fn filesystem_changed(&self, device: &Path) -> Result<(), String> {
            self.calls
                .borrow_mut()
                .push(format!("filesystem_changed {}", device.display()));
            Ok(())
        }
        fn log(&self, _line: &str) {}
    }

    fn node_config(disk: &Path, owner: &str) -> Config {
        crate::config::parse(
            format!(
                r#"{{"ignition":{{"version":"3.4.0"}},
                  "storage":{{
                    "disks":[{{"device":"{}","wipeTable":true,"partitions":[{{"label":"data","sizeMiB":8}}]}}],
                    "filesystems":[{{"device":"/dev/disk/by-partlabel/data","format":"ext4","path":"/var/data","label":"data"}}],
                    "files":[{{"path":"/var/data/hello","contents":{{"source":"data:,hi"}},"user":{{"name":"{owner}"}}}}]}}}}"#,
                disk.display()
            )
            .as_bytes(),
        )
        .expect("config")
        .config
    }

    /// The whole step on a node, with the block devices faked: partition,
    /// mkfs, mount, files onto the mount, mount unit, unmount — in that
    /// order.
    #[test]
    fn disks_then_filesystems_then_files_on_the_mount() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("root");
        fs::create_dir_all(root.join("etc")).expect("etc");
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
        fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
        let disk = t.path().join("vdb.img");
        fs::File::create(&disk)
            .and_then(|f| f.set_len(64 << 20))
            .expect("disk");
        let fake = Fake::default();
        let node = super::super::Node {
            boot_entry: Err("none"),
            storage: Some(&fake),
        };
        let changed = super::super::apply_node(
            &root,
            &node_config(&disk, "root"),
            &super::super::InlineOnly,
            &super::super::RecordingSys::default(),
            node,
        )
        .expect("applied");
        assert!(!changed);
        let target = root.join("var/data").display().to_string();
        assert_eq!(
            *fake.calls.borrow(),
            [
                "table_changed vdb.img".to_string(),
                "probe /dev/disk/by-partlabel/data".into(),
                "mkfs.ext4 -F -L data /dev/disk/by-partlabel/data".into(),
                "filesystem_changed /dev/disk/by-partlabel/data".into(),
                format!("mount --mkdir=0755 -t ext4 /dev/disk/by-partlabel/data {target}"),
                format!("umount {target} (held hello,mounted)"),
            ]
        );
        let unit =
            fs::read_to_string(root.join("etc/systemd/system/var-data.mount")).expect("unit");
        assert!(
            unit.contains("What=/dev/disk/by-partlabel/data\n"),
            "{unit}"
        );
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/local-fs.target.requires/var-data.mount"))
                .expect("enabled"),
            Path::new("/etc/systemd/system/var-data.mount")
        );
        // The table on the disk is what was asked for.
        let out = Command::new("sgdisk")
            .arg("-p")
            .arg(&disk)
            .output()
            .expect("sgdisk (gdisk)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(" 8.0 MiB ") && text.contains("data"),
            "{text}"
        );

        // A failure after the mount: the files go, the mount goes, and
        // the unit is not written; the partition table and the file
        // system stay.
        let root2 = t.path().join("root2");
        fs::create_dir_all(root2.join("etc")).expect("etc");
        fs::write(root2.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
        fs::write(root2.join("etc/group"), "root:x:0:\n").expect("group");
        let fake = Fake::default();
        let e = super::super::apply_node(
            &root2,
            &node_config(&disk, "nobody-here"),
            &super::super::InlineOnly,
            &super::super::RecordingSys::default(),
            super::super::Node {
                boot_entry: Err("none"),
                storage: Some(&fake),
            },
        )
        .expect_err("unknown owner");
        assert!(e.to_string().contains("nobody-here"), "{e}");
        let calls = fake.calls.borrow();
        assert!(
            calls.iter().any(|c| c.starts_with("mkfs.ext4 ")),
            "{calls:?}"
        );
        assert!(
            calls.last().is_some_and(|c| c.starts_with("umount ")),
            "{calls:?}"
        );
        assert!(!root2.join("var/data/hello").exists());
        assert!(!root2.join("etc/systemd/system/var-data.mount").exists());
    }

    /// A sysfs and /dev below a temp root: `vda` with a partition held by
    /// device-mapper and one mounted, `vdb` with a free partition.
    #[test]
    fn the_boot_disk_is_in_use_and_an_extra_disk_is_not() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        let mkdir = |p: &str| fs::create_dir_all(root.join(p)).expect("mkdir");
        let touch = |p: &str| fs::write(root.join(p), "").expect("write");
        mkdir("dev");
        mkdir("proc/self");
        for d in ["vda", "vdb"] {
            touch(&format!("dev/{d}"));
            mkdir(&format!("sys/class/block/{d}/queue"));
            fs::write(
                root.join(format!("sys/class/block/{d}/queue/logical_block_size")),
                "4096\n",
            )
            .expect("write");
        }
        for p in ["vda/vda2", "vda/vda6", "vdb/vdb1"] {
            mkdir(&format!("sys/class/block/{p}/holders"));
            touch(&format!("sys/class/block/{p}/partition"));
        }
        for p in ["vda2", "vda6", "vdb1"] {
            mkdir(&format!("sys/class/block/{p}"));
        }
        mkdir("sys/class/block/vda2/holders/dm-0");
        let tools = Tools::new(root);
        let vda = root.join("dev/vda");
        let vdb = root.join("dev/vdb");
        assert_eq!(
            tools.in_use(&vda).as_deref(),
            Some("/dev/vda2 is in use by device-mapper (the boot disk?)")
        );
        // Mounted by its by-label link: found by device number.
        fs::write(root.join("sys/class/block/vda6/dev"), "254:6\n").expect("dev");
        fs::write(
            root.join("proc/self/mountinfo"),
            "30 1 254:6 / /var rw,relatime - ext4 /dev/disk/by-label/var rw\n",
        )
        .expect("mountinfo");
        fs::remove_dir(root.join("sys/class/block/vda2/holders/dm-0")).expect("rmdir");
        assert_eq!(tools.in_use(&vda).as_deref(), Some("/dev/vda6 is mounted"));
        assert_eq!(tools.in_use(&vdb), None);
        assert_eq!(tools.sector_size(&vdb), Ok(4096));
    }

    /// blkid and the mkfs tools on sparse files: what `Tools` reads back
    /// is what mkfs made, so a second run keeps it; a device that is not
    /// there is an error, not an empty device.
    #[test]
    fn tools_probe_what_mkfs_made() {
        let t = tempfile::tempdir().expect("tempdir");
        let tools = Tools {
            device_wait: Duration::from_millis(300),
            ..Tools::new(t.path())
        };
        let gone = t.path().join("vdz");
        let e = tools.probe(&gone).expect_err("no such device");
        assert_eq!(
            e,
            format!("{} does not exist (waited 0.3 s)", gone.display())
        );
        for (format, size) in [
            ("ext4", 32u64 << 20),
            ("vfat", 32 << 20),
            ("swap", 16 << 20),
            ("xfs", 320 << 20),
        ] {
            let dev = t.path().join(format!("{format}.img"));
            fs::File::create(&dev)
                .and_then(|f| f.set_len(size))
                .expect("sparse file");
            assert_eq!(tools.probe(&dev), Ok(None), "{format}: empty");
            let label = if format == "vfat" { "DATA" } else { "data" };
            let f = fs_entry(&format!(
                r#"{{"device":"{}","format":"{format}","label":"{label}"}}"#,
                dev.display()
            ));
            let FsAction::Create { program, args } = decide(&f, None).expect("create") else {
                panic!("{format}: expected create");
            };
            tools.run(&program, &args).unwrap_or_else(|e| {
                panic!("{format}: {e} (install e2fsprogs, xfsprogs, dosfstools)")
            });
            let found = tools.probe(&dev).expect("probe").expect("a file system");
            assert_eq!(found.format, format);
            assert_eq!(found.label, label);
            assert!(!found.uuid.is_empty(), "{format}: {found:?}");
            assert_eq!(decide(&f, Some(&found)), Ok(FsAction::Reuse), "{format}");
        }
    }
}
