//! Stage 2 helpers: mounting what stage 1 left out, what the
//! boot-complete line reports, and the console shell. The main loop is
//! [`crate::runtime`]; early system setup is [`crate::early`].

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use keel_core::cmdline::Cmdline;
use keel_core::osrelease::OsRelease;

use crate::stage1::{at, say};
use crate::sys::{shell, MountFlags, Sys};

/// What the boot-complete line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub version: String,
    pub slot: String,
}

impl BootInfo {
    /// The line tests wait for; keep its wording.
    pub fn complete_line(&self) -> String {
        format!(
            "boot complete: version {}, slot {}",
            self.version, self.slot
        )
    }
}

fn mounted_points(root: &Path) -> Vec<String> {
    let text = fs::read_to_string(at(root, "/proc/self/mountinfo")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|m| m.replace("\\040", " "))
        .collect()
}

/// Mounts the API and scratch file systems that are not mounted yet.
pub fn mount_missing(sys: &dyn Sys, root: &Path, log: &mut dyn Write) {
    let nsnd = MountFlags::NOSUID | MountFlags::NODEV;
    let table: [(&str, &str, MountFlags, &str); 7] = [
        ("proc", "/proc", nsnd | MountFlags::NOEXEC, ""),
        ("sysfs", "/sys", nsnd | MountFlags::NOEXEC, ""),
        ("devtmpfs", "/dev", MountFlags::NOSUID, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            "gid=5,mode=620,ptmxmode=000",
        ),
        ("tmpfs", "/dev/shm", nsnd, "mode=1777"),
        ("tmpfs", "/run", nsnd, "mode=0755"),
        ("tmpfs", "/tmp", nsnd, "mode=1777"),
    ];
    for (fstype, dir, flags, data) in table {
        // Re-read every time: /proc may just have been mounted.
        let target = at(root, dir);
        let target_str = target.to_string_lossy().into_owned();
        if mounted_points(root).contains(&target_str) {
            continue;
        }
        if let Err(e) = fs::create_dir_all(&target) {
            say(log, &format!("warning: creating {}: {e}", target.display()));
            continue;
        }
        match sys.mount(fstype, &target, fstype, flags, data) {
            Ok(()) => say(log, &format!("mounted {fstype} on {dir}")),
            Err(e) => say(
                log,
                &format!("warning: mounting {fstype} on {}: {e}", target.display()),
            ),
        }
    }
}

/// Version from `/usr/lib/os-release`, slot from `/proc/cmdline`.
pub fn boot_info(root: &Path) -> BootInfo {
    let text = fs::read_to_string(at(root, "/usr/lib/os-release")).unwrap_or_default();
    let version = OsRelease::parse(&text).map(|r| r.version).or_else(|| {
        text.lines()
            .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
            .map(|v| v.trim().trim_matches('"').to_string())
    });
    let cmdline = fs::read_to_string(at(root, "/proc/cmdline")).unwrap_or_default();
    let slot = Cmdline::parse(&cmdline).slot().ok().map(|s| s.to_string());
    BootInfo {
        version: version.unwrap_or_else(|| "unknown".into()),
        slot: slot.unwrap_or_else(|| "unknown".into()),
    }
}

/// The shell to offer, as (program, args).
pub fn find_shell(root: &Path) -> Option<(PathBuf, Vec<&'static str>)> {
    for sh in ["/bin/sh", "/usr/bin/sh"] {
        if at(root, sh).exists() {
            return Some((PathBuf::from(sh), vec![]));
        }
    }
    let bb = "/usr/bin/busybox";
    at(root, bb)
        .exists()
        .then(|| (PathBuf::from(bb), vec!["sh"]))
}

/// The device of the primary console (`/sys/class/tty/console/active`
/// lists it last), e.g. `/dev/ttyS0`.
pub fn console_tty(root: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(at(root, "/sys/class/tty/console/active")).ok()?;
    let name = text.split_whitespace().last()?;
    Some(at(root, &format!("/dev/{name}")))
}

/// Starts a root shell on the console (`keel.console=shell`); returns its
/// pid. The caller reaps it and starts a new one when it exits.
pub fn start_console_shell(root: &Path, log: &mut dyn Write) -> Option<u32> {
    let Some((prog, args)) = find_shell(root) else {
        say(
            log,
            "no shell found (/bin/sh, /usr/bin/sh, /usr/bin/busybox) for the console",
        );
        return None;
    };
    let tty = console_tty(root).and_then(|p| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(p)
            .ok()
    });
    let spawned = match &tty {
        Some(t) => shell::spawn_on_tty(&prog, &args, t),
        None => shell::spawn_inherited(&prog, &args),
    };
    match spawned {
        Ok(c) => Some(c.id()),
        Err(e) => {
            say(
                log,
                &format!("warning: starting shell {}: {e}", prog.display()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSys;

    #[test]
    fn mounts_what_is_missing_and_reads_the_boot_info() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("proc/self")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        let r = root.display();
        fs::write(
            root.join("proc/self/mountinfo"),
            format!(
                "22 1 0:5 / {r}/proc rw - proc proc rw\n23 1 0:6 / {r}/sys rw - sysfs sysfs rw\n\
                 24 1 0:7 / {r}/dev rw - devtmpfs dev rw\n25 1 0:8 / {r}/run rw - tmpfs run rw\n"
            ),
        )
        .unwrap();
        fs::write(
            root.join("proc/cmdline"),
            "console=ttyS0 keel.slot=b keel.roothash=00\n",
        )
        .unwrap();
        let rel = OsRelease {
            image_id: "minimal".into(),
            version: "1.2.3".into(),
        };
        fs::write(root.join("usr/lib/os-release"), rel.render()).unwrap();
        let sys = RecordingSys::new(root);
        let mut log = Vec::new();
        mount_missing(&sys, root, &mut log);
        let info = boot_info(root);
        assert_eq!(
            sys.calls(),
            [
                "mount -t devpts devpts /dev/pts -o nosuid,noexec,gid=5,mode=620,ptmxmode=000",
                "mount -t tmpfs tmpfs /dev/shm -o nosuid,nodev,mode=1777",
                "mount -t tmpfs tmpfs /tmp -o nosuid,nodev,mode=1777",
            ]
        );
        assert_eq!(info.complete_line(), "boot complete: version 1.2.3, slot b");
    }

    #[test]
    fn reports_unknowns_instead_of_failing() {
        let t = tempfile::tempdir().unwrap();
        let info = boot_info(t.path());
        assert_eq!(
            info.complete_line(),
            "boot complete: version unknown, slot unknown"
        );
        assert_eq!(find_shell(t.path()), None);
        fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        fs::write(t.path().join("usr/bin/busybox"), "").unwrap();
        assert_eq!(
            find_shell(t.path()),
            Some((PathBuf::from("/usr/bin/busybox"), vec!["sh"]))
        );
    }
}
