//! Block-device and ext4 ioctls: BLKPG partition resize and online ext4 growth.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `_IO(0x12, 105)` from linux/fs.h.
pub const BLKPG: u64 = 0x1269;
/// `blkpg_ioctl_arg.op` for resizing a partition.
pub const BLKPG_RESIZE_PARTITION: i32 = 3;
/// `_IOW('f', 16, __u64)` from fs/ext4/ext4.h.
pub const EXT4_IOC_RESIZE_FS: u64 = 0x4008_6610;

/// `struct blkpg_partition` (linux/blkpg.h).
#[repr(C)]
pub struct BlkpgPartition {
    /// Start in bytes.
    pub start: i64,
    /// Length in bytes.
    pub length: i64,
    pub pno: i32,
    pub devname: [u8; 64],
    pub volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg` (linux/blkpg.h).
#[repr(C)]
pub struct BlkpgIoctlArg {
    pub op: i32,
    pub flags: i32,
    pub datalen: i32,
    pub data: *mut libc::c_void,
}

fn to_i64(v: u64, what: &str) -> io::Result<i64> {
    i64::try_from(v)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} out of range")))
}

/// Tells the kernel that partition `pno` of `disk` now spans
/// `start..start+length` bytes (the start must not change).
pub fn blkpg_resize(disk: &File, pno: u32, start: u64, length: u64) -> io::Result<()> {
    let mut part = BlkpgPartition {
        start: to_i64(start, "partition start")?,
        length: to_i64(length, "partition length")?,
        pno: i32::try_from(pno).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "partition number out of range")
        })?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg` and the `part` it points to live on this stack frame for
    // the whole call and have the kernel's struct layouts (repr(C), sizes
    // checked in tests); the kernel only reads them.
    let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG as _, &mut arg as *mut BlkpgIoctlArg) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Grows the mounted ext4 file system that `mountpoint` (an open directory
/// on it) belongs to, to `blocks` file-system blocks.
pub fn ext4_resize(mountpoint: &File, blocks: u64) -> io::Result<()> {
    let n: u64 = blocks;
    // SAFETY: the ioctl reads one u64 through the pointer, which points to a
    // live local; the fd is open for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            mountpoint.as_raw_fd(),
            EXT4_IOC_RESIZE_FS as _,
            &n as *const u64,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_match_kernel() {
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
        assert_eq!(std::mem::offset_of!(BlkpgPartition, pno), 16);
        assert_eq!(std::mem::offset_of!(BlkpgPartition, devname), 20);
        assert_eq!(std::mem::offset_of!(BlkpgIoctlArg, data), 16);
    }
}
