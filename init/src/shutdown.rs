//! The end of a shutdown, after every unit stopped: what is left gets
//! TERM, then KILL; file systems are unmounted (the ext4 /var cleanly, so
//! the next boot needs no journal recovery); then reboot(2).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::stage1::at;
use crate::sys::power::{self, PowerAction};
use crate::sys::{calls, process};

/// How long leftover processes get between TERM and KILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// Mount points left alone: the root and the API file systems.
const KEEP: &[&str] = &["/", "/proc", "/sys", "/dev", "/run", "/dev/pts", "/dev/shm"];

/// Kills what is left, unmounts, syncs and reboots. Never returns.
pub fn finish(root: &Path, action: PowerAction, log: &mut dyn Write) -> ! {
    let _ = writeln!(log, "keel-init: sending SIGTERM to remaining processes");
    let _ = process::kill_all(libc::SIGTERM);
    let _ = process::kill_all(libc::SIGCONT);
    if !reap_until_gone(TERM_GRACE) {
        let _ = writeln!(log, "keel-init: sending SIGKILL to remaining processes");
        let _ = process::kill_all(libc::SIGKILL);
        reap_until_gone(Duration::from_secs(2));
    }
    power::sync();
    for target in unmount_order(root) {
        let shown = target.display().to_string();
        match umount_retrying(&target) {
            Ok(()) => {
                let _ = writeln!(log, "keel-init: unmounted {shown}");
            }
            Err(e) => {
                let ro = power::remount_readonly(&target);
                let _ = writeln!(
                    log,
                    "keel-init: warning: {}; remounted read-only: {}",
                    crate::error::chain(&e),
                    if ro.is_ok() { "yes" } else { "no" }
                );
                let _ = power::umount(&target, true);
            }
        }
    }
    power::sync();
    let _ = writeln!(
        log,
        "keel-init: {}",
        match action {
            PowerAction::Reboot => "rebooting",
            PowerAction::Poweroff => "powering off",
            PowerAction::Halt => "halting",
        }
    );
    let _ = log.flush();
    let e = power::reboot(action);
    crate::halt::fail(root, &format!("reboot(2): {e}"), log)
}

/// Unmounts `target`, retrying on EBUSY for up to a second: output pumps
/// of killed services may still be closing their log files.
fn umount_retrying(target: &Path) -> std::io::Result<()> {
    let end = Instant::now() + Duration::from_secs(1);
    loop {
        match power::umount(target, false) {
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Reaps children until none is left (true) or `limit` passed (false).
fn reap_until_gone(limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        match calls::wait_any(false) {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(_) => return true, // ECHILD: nothing left
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mount points to unmount, deepest (latest) first, from
/// `/proc/self/mountinfo`, without the root and the API file systems.
pub fn unmount_order(root: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string(at(root, "/proc/self/mountinfo")).unwrap_or_default();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| !KEEP.contains(&m.as_str()))
        .collect();
    points.reverse();
    let mut seen = std::collections::BTreeSet::new();
    points.retain(|p| seen.insert(p.clone()));
    points.into_iter().map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmounts_in_reverse_mount_order_keeping_api_file_systems() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("proc/self")).unwrap();
        fs::write(
            t.path().join("proc/self/mountinfo"),
            "1 0 254:0 / / ro - erofs /dev/mapper/keel-root ro\n\
             2 1 0:5 / /proc rw - proc proc rw\n\
             3 1 0:6 / /sys rw - sysfs sysfs rw\n\
             4 1 253:3 / /var rw - ext4 /dev/vda6 rw\n\
             5 1 0:30 / /etc rw - overlay overlay rw\n\
             6 3 0:31 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
             7 4 0:32 / /var/lib/my\\040dir rw - tmpfs tmpfs rw\n",
        )
        .unwrap();
        assert_eq!(
            unmount_order(t.path()),
            [
                PathBuf::from("/var/lib/my dir"),
                PathBuf::from("/sys/fs/cgroup"),
                PathBuf::from("/etc"),
                PathBuf::from("/var"),
            ]
        );
    }
}
