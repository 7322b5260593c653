//! The end of a shutdown, after every unit stopped (mount and swap units
//! included, which unmount and swapoff their own): what is left gets TERM,
//! then KILL; every swap area still on is turned off (a swap file keeps
//! its file system busy); file systems are unmounted deepest first (the
//! ext4 /var cleanly, so the next boot needs no journal recovery); then
//! reboot(2).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mountinfo;
use crate::sys::power::{self, PowerAction};
use crate::sys::{calls, process, RealSys, Sys};

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
    swapoff_all(root, &RealSys, log);
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

/// Turns off every swap area `/proc/swaps` lists; a failure is a warning.
pub fn swapoff_all(root: &Path, sys: &dyn Sys, log: &mut dyn Write) {
    for swap in mountinfo::swaps(root) {
        let shown = swap.display();
        match sys.swapoff(&swap) {
            Ok(()) => {
                let _ = writeln!(log, "keel-init: turned off swap {shown}");
            }
            Err(e) => {
                let _ = writeln!(
                    log,
                    "keel-init: warning: turning off swap {shown}: {}",
                    crate::error::chain(&e)
                );
            }
        }
    }
}

/// Mount points to unmount, deepest (latest) first, from
/// `/proc/self/mountinfo`, without the root and the API file systems.
pub fn unmount_order(root: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo::mounts(root)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| !KEEP.iter().any(|k| m == Path::new(k)))
        .collect();
    points.reverse();
    let mut seen = std::collections::BTreeSet::new();
    points.retain(|p| seen.insert(p.clone()));
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSys;
    use std::fs;

    #[test]
    fn every_swap_area_is_turned_off_and_a_failure_is_a_warning() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(t.path().join("proc")).expect("mkdir");
        fs::write(
            t.path().join("proc/swaps"),
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
             /dev/vda7                               partition\t1048572\t\t0\t\t-2\n\
             /var/swapfile                           file\t\t65532\t\t0\t\t-3\n",
        )
        .expect("write");
        let sys = RecordingSys::new(t.path());
        sys.fail_on("swapoff /dev/vda7", libc::EINVAL);
        let mut log = Vec::new();
        swapoff_all(t.path(), &sys, &mut log);
        assert_eq!(sys.calls(), ["swapoff /dev/vda7", "swapoff /var/swapfile"]);
        let log = String::from_utf8(log).expect("utf-8");
        assert!(
            log.contains("warning: turning off swap /dev/vda7: Invalid argument"),
            "{log}"
        );
        assert!(
            log.contains("keel-init: turned off swap /var/swapfile"),
            "{log}"
        );
    }

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
