//! The root-only system calls `keel-init` makes, behind the [`Sys`] trait.
//!
//! [`RealSys`] calls the kernel; [`crate::recording::RecordingSys`] records
//! the calls so the stage logic can be tested in a temporary directory. The
//! caller picks one explicitly. This module is the only place with `unsafe`.
#![allow(unsafe_code)]

pub mod blk;
pub mod calls;
pub mod creds;
pub mod dm;
pub mod notify;
pub mod poll;
pub mod power;
pub mod process;
pub mod shell;
pub mod signals;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

pub use dm::DmTarget;

/// mount(2) flags, a subset of `MS_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags(pub u64);

impl MountFlags {
    pub const NONE: MountFlags = MountFlags(0);
    pub const RDONLY: MountFlags = MountFlags(libc::MS_RDONLY);
    pub const NOSUID: MountFlags = MountFlags(libc::MS_NOSUID);
    pub const NODEV: MountFlags = MountFlags(libc::MS_NODEV);
    pub const NOEXEC: MountFlags = MountFlags(libc::MS_NOEXEC);

    pub fn contains(self, other: MountFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for MountFlags {
    type Output = MountFlags;
    fn bitor(self, rhs: MountFlags) -> MountFlags {
        MountFlags(self.0 | rhs.0)
    }
}

impl fmt::Display for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (MountFlags::RDONLY, "ro"),
            (MountFlags::NOSUID, "nosuid"),
            (MountFlags::NODEV, "nodev"),
            (MountFlags::NOEXEC, "noexec"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, n)| *n)
            .collect();
        if set.is_empty() {
            f.write_str("rw")
        } else {
            f.write_str(&set.join(","))
        }
    }
}

/// The type of a device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Block,
    Char,
}

/// System calls that need privileges or change the whole process.
pub trait Sys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()>;
    /// umount(2) without flags.
    fn umount(&self, target: &Path) -> io::Result<()>;
    /// swapoff(2): stops paging to the swap device or file at `path`.
    fn swapoff(&self, path: &Path) -> io::Result<()>;
    /// `mount --move from to`.
    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// mknod(2) with mode 0600.
    fn mknod(&self, path: &Path, kind: NodeKind, major: u32, minor: u32) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> io::Result<()>;
    fn chroot(&self, path: &Path) -> io::Result<()>;
    /// Loads a kernel module from an open `.ko` file.
    fn finit_module(&self, module: &File) -> io::Result<()>;
    /// DM_DEV_CREATE through `control`; returns the device's (major, minor).
    fn dm_create(&self, control: &Path, name: &str, readonly: bool) -> io::Result<(u32, u32)>;
    /// DM_TABLE_LOAD of `targets` into the inactive table of `name`.
    fn dm_load_table(
        &self,
        control: &Path,
        name: &str,
        readonly: bool,
        targets: &[DmTarget],
    ) -> io::Result<()>;
    /// DM_DEV_SUSPEND without the suspend flag: activates the loaded table.
    fn dm_resume(&self, control: &Path, name: &str) -> io::Result<()>;
    /// BLKPG_RESIZE_PARTITION on the whole-disk device `disk`.
    fn blkpg_resize_partition(
        &self,
        disk: &Path,
        partno: u32,
        start: u64,
        length: u64,
    ) -> io::Result<()>;
    /// EXT4_IOC_RESIZE_FS on the file system mounted at `mountpoint`.
    fn ext4_resize(&self, mountpoint: &Path, blocks: u64) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Sets network interface `name` up (IFF_UP), as `ip link set up`;
    /// returns whether it was down.
    fn link_up(&self, name: &str) -> io::Result<bool>;
    /// statfs(2) `f_type` of the file system holding `path`.
    fn fs_magic(&self, path: &Path) -> io::Result<i64>;
    /// Replaces the process image; returns only on failure (the real one).
    fn exec(&self, path: &Path, args: &[&str]) -> io::Result<()>;
}

/// The kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

fn open_control(control: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(control)
}

fn dm_call(
    control: &Path,
    cmd: dm::DmCmd,
    name: &str,
    flags: u32,
    targets: &[DmTarget],
) -> io::Result<Vec<u8>> {
    let ctl = open_control(control)?;
    let mut buf = dm::encode(name, flags, targets)?;
    dm::dm_ioctl(&ctl, cmd, &mut buf)?;
    Ok(buf)
}

fn ro_flag(readonly: bool) -> u32 {
    if readonly {
        dm::DM_READONLY_FLAG
    } else {
        0
    }
}

impl Sys for RealSys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        calls::mount(source, target, Some(fstype), flags.0, data)
    }

    fn umount(&self, target: &Path) -> io::Result<()> {
        power::umount(target, false)
    }

    fn swapoff(&self, path: &Path) -> io::Result<()> {
        calls::swapoff(path)
    }

    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
        let from = from
            .to_str()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path is not UTF-8"))?;
        calls::mount(from, to, None, libc::MS_MOVE, "")
    }

    fn mknod(&self, path: &Path, kind: NodeKind, major: u32, minor: u32) -> io::Result<()> {
        let mode = match kind {
            NodeKind::Block => libc::S_IFBLK,
            NodeKind::Char => libc::S_IFCHR,
        };
        calls::mknod(path, mode | 0o600, major, minor)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        std::os::unix::fs::chroot(path)
    }

    fn finit_module(&self, module: &File) -> io::Result<()> {
        calls::finit_module(module)
    }

    fn dm_create(&self, control: &Path, name: &str, readonly: bool) -> io::Result<(u32, u32)> {
        let buf = dm_call(control, dm::DmCmd::DevCreate, name, ro_flag(readonly), &[])?;
        Ok(dm::decode_dev(&buf))
    }

    fn dm_load_table(
        &self,
        control: &Path,
        name: &str,
        readonly: bool,
        targets: &[DmTarget],
    ) -> io::Result<()> {
        dm_call(
            control,
            dm::DmCmd::TableLoad,
            name,
            ro_flag(readonly),
            targets,
        )
        .map(drop)
    }

    fn dm_resume(&self, control: &Path, name: &str) -> io::Result<()> {
        dm_call(control, dm::DmCmd::DevSuspend, name, 0, &[]).map(drop)
    }

    fn blkpg_resize_partition(
        &self,
        disk: &Path,
        partno: u32,
        start: u64,
        length: u64,
    ) -> io::Result<()> {
        let f = File::open(disk)?;
        blk::blkpg_resize(&f, partno, start, length)
    }

    fn ext4_resize(&self, mountpoint: &Path, blocks: u64) -> io::Result<()> {
        let f = File::open(mountpoint)?;
        blk::ext4_resize(&f, blocks)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        calls::sethostname(name)
    }

    fn link_up(&self, name: &str) -> io::Result<bool> {
        calls::link_up(name)
    }

    fn fs_magic(&self, path: &Path) -> io::Result<i64> {
        calls::statfs_magic(path)
    }

    fn exec(&self, path: &Path, args: &[&str]) -> io::Result<()> {
        Err(shell::exec_inherited(path, args))
    }
}

/// `f_type` of ramfs and tmpfs (linux/magic.h): what an initramfs root is.
pub const RAMFS_MAGIC: i64 = 0x8584_58f6;
pub const TMPFS_MAGIC: i64 = 0x0102_1994;
