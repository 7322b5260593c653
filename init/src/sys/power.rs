//! The end of shutdown: flushing, unmounting and the reboot(2) call.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::OpError;

/// What to do once everything is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Restart the machine.
    Reboot,
    /// Switch the machine off.
    Poweroff,
    /// Stop the CPU, leaving the machine on.
    Halt,
}

impl PowerAction {
    fn reboot_cmd(self) -> libc::c_int {
        match self {
            PowerAction::Reboot => libc::LINUX_REBOOT_CMD_RESTART,
            PowerAction::Poweroff => libc::LINUX_REBOOT_CMD_POWER_OFF,
            PowerAction::Halt => libc::LINUX_REBOOT_CMD_HALT,
        }
    }
}

fn op_err(op: &str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let op = format!("{op} {}", path.display());
    move |source| io::Error::new(source.kind(), OpError { op, source })
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path contains a NUL byte: {}", path.display()),
        )
    })
}

/// Flushes every file system's dirty data to disk (sync(2)).
pub fn sync() {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Unmounts `target` (umount2(2)); `detach`: lazily (MNT_DETACH), so a
/// busy file system goes away once its last user does.
pub fn umount(target: &Path, detach: bool) -> io::Result<()> {
    let c = cpath(target)?;
    let flags = if detach { libc::MNT_DETACH } else { 0 };
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } < 0 {
        return Err(op_err("unmounting", target)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Remounts the file system mounted at `target` read-only
/// (MS_REMOUNT|MS_RDONLY), which flushes it and leaves it clean.
pub fn remount_readonly(target: &Path) -> io::Result<()> {
    let c = cpath(target)?;
    // SAFETY: `c` is a NUL-terminated path; source, type and data may be
    // NULL for a remount.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        return Err(op_err("remounting read-only", target)(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Reboots, powers off or halts the machine at once (reboot(2)); the
/// caller has stopped everything and synced. Returns only on failure
/// (e.g. without CAP_SYS_BOOT), with the error.
pub fn reboot(action: PowerAction) -> io::Error {
    // SAFETY: reboot(2) takes a command constant; on success it does not
    // return.
    unsafe { libc::reboot(action.reboot_cmd()) };
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{calls, TMPFS_MAGIC};
    use std::fs;

    #[test]
    fn maps_actions_to_reboot_commands() {
        assert_eq!(PowerAction::Reboot.reboot_cmd(), 0x0123_4567);
        assert_eq!(PowerAction::Poweroff.reboot_cmd(), 0x4321_fedc);
        assert_eq!(PowerAction::Halt.reboot_cmd(), 0xcdef_0123_u32 as i32);
    }

    /// Real mounts, in a mount namespace private to this test's thread
    /// (threads can unshare CLONE_NEWNS; it ends with the thread).
    #[test]
    fn remounts_read_only_and_unmounts() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "the tests run as root");
        std::thread::spawn(|| {
            // SAFETY: unshare(2) of the mount namespace (and fs struct)
            // affects only this thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNS) }, 0);
            // Nothing mounted here may propagate to the real namespace.
            calls::mount(
                "none",
                Path::new("/"),
                None,
                libc::MS_REC | libc::MS_PRIVATE,
                "",
            )
            .unwrap();
            let t = tempfile::tempdir().unwrap();
            let mnt = t.path().join("mnt");
            fs::create_dir(&mnt).unwrap();
            calls::mount("tmpfs", &mnt, Some("tmpfs"), 0, "size=1m").unwrap();
            assert_eq!(calls::statfs_magic(&mnt).unwrap(), TMPFS_MAGIC);
            fs::write(mnt.join("a"), "x").unwrap();

            remount_readonly(&mnt).unwrap();
            let e = fs::write(mnt.join("b"), "x").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ReadOnlyFilesystem);
            assert_eq!(fs::read_to_string(mnt.join("a")).unwrap(), "x");

            // Busy: only a lazy unmount works.
            let busy = fs::File::open(mnt.join("a")).unwrap();
            let e = umount(&mnt, false).unwrap_err();
            assert_eq!(e.raw_os_error(), None);
            assert!(e.to_string().contains(&mnt.display().to_string()), "{e}");
            assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
            umount(&mnt, true).unwrap();
            assert!(!mnt.join("a").exists(), "tmpfs still mounted");
            drop(busy);

            let e = umount(&mnt, false).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "not a mount point");
            let e = remount_readonly(&t.path().join("missing")).unwrap_err();
            assert!(e.to_string().contains("missing"), "{e}");
        })
        .join()
        .unwrap();
    }
}
