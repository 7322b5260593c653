//! Step 9 of stage 1: move the API file systems into /sysroot, free the
//! initramfs, and make /sysroot the root (what util-linux switch_root does).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::BootError;
use crate::stage1::{at, say, SYSROOT};
use crate::sys::{Sys, RAMFS_MAGIC, TMPFS_MAGIC};

const MOVED: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];

pub fn switch_root(sys: &dyn Sys, root: &Path, log: &mut dyn Write) -> Result<(), BootError> {
    let sysroot = root.join(SYSROOT);
    for dir in MOVED {
        let from = at(root, dir);
        let to = at(&sysroot, dir);
        if !to.is_dir() {
            return Err(BootError::Invalid(format!(
                "the root file system has no {dir} directory ({} is missing)",
                to.display()
            )));
        }
        sys.move_mount(&from, &to).map_err(BootError::sys(
            format!("moving {} to {}", from.display(), to.display()),
            "mount(MS_MOVE)",
        ))?;
    }

    match sys.fs_magic(root) {
        Ok(m) if m == RAMFS_MAGIC || m == TMPFS_MAGIC => {
            if let Err(e) = remove_initramfs(root) {
                say(log, &format!("warning: freeing the initramfs: {e}"));
            }
        }
        Ok(m) => say(
            log,
            &format!("root is not an initramfs (fs type {m:#x}), not freeing it"),
        ),
        Err(e) => say(log, &format!("warning: statfs {}: {e}", root.display())),
    }

    sys.chdir(&sysroot).map_err(BootError::sys(
        format!("changing directory to {}", sysroot.display()),
        "chdir",
    ))?;
    sys.move_mount(&sysroot, root).map_err(BootError::sys(
        format!("moving {} to {}", sysroot.display(), root.display()),
        "mount(MS_MOVE)",
    ))?;
    sys.chroot(Path::new("."))
        .map_err(BootError::sys("entering the new root", "chroot"))?;
    sys.chdir(Path::new("/"))
        .map_err(BootError::sys("entering the new root", "chdir"))?;
    say(log, &format!("switched root to /{SYSROOT}"));
    Ok(())
}

/// Deletes everything on the initramfs file system under `root`, except
/// /sysroot, never crossing into another file system.
pub fn remove_initramfs(root: &Path) -> io::Result<()> {
    let dev = fs::symlink_metadata(root)?.dev();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_name() == SYSROOT {
            continue;
        }
        remove_on_dev(&entry.path(), dev)?;
    }
    Ok(())
}

fn remove_on_dev(path: &Path, dev: u64) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    if md.dev() != dev {
        return Ok(());
    }
    if md.is_dir() {
        for entry in fs::read_dir(path)? {
            remove_on_dev(&entry?.path(), dev)?;
        }
        // A directory that held a mount point stays; that is fine.
        match fs::remove_dir(path) {
            Ok(()) => Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    } else {
        fs::remove_file(path)
    }
}
