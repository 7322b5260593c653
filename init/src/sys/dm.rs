//! Device-mapper control ioctls (`linux/dm-ioctl.h`, interface version 4).
//!
//! The request buffers are built and decoded in safe code so the layout can
//! be unit-tested; only [`dm_ioctl`] talks to the kernel.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `sizeof(struct dm_ioctl)`.
pub const DM_IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
pub const DM_TARGET_SPEC_SIZE: usize = 40;
const DM_NAME_LEN: usize = 128;
const DM_MAX_TYPE_NAME: usize = 16;
const DM_VERSION: [u32; 3] = [4, 0, 0];

pub const DM_READONLY_FLAG: u32 = 1 << 0;
pub const DM_SUSPEND_FLAG: u32 = 1 << 1;

// Field offsets inside struct dm_ioctl.
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;

/// The device-mapper commands `keel-init` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmCmd {
    DevCreate = 3,
    DevSuspend = 6,
    TableLoad = 9,
}

impl DmCmd {
    pub fn name(self) -> &'static str {
        match self {
            DmCmd::DevCreate => "DM_DEV_CREATE",
            DmCmd::DevSuspend => "DM_DEV_SUSPEND",
            DmCmd::TableLoad => "DM_TABLE_LOAD",
        }
    }

    /// `_IOWR(DM_IOCTL, cmd, struct dm_ioctl)`.
    pub fn request(self) -> u64 {
        (3u64 << 30) | ((DM_IOCTL_SIZE as u64) << 16) | (0xfdu64 << 8) | self as u64
    }
}

/// One line of a device-mapper table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmTarget {
    /// First sector (512 bytes) covered by the target.
    pub start: u64,
    /// Length in 512-byte sectors.
    pub length: u64,
    pub target_type: String,
    pub params: String,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Builds the request buffer: a `struct dm_ioctl` naming the device, followed
/// by one `struct dm_target_spec` + NUL-terminated parameters per target,
/// each padded to 8 bytes.
pub fn encode(name: &str, flags: u32, targets: &[DmTarget]) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('/') || name.contains('\0') {
        return Err(invalid(format!("invalid device-mapper name {name:?}")));
    }
    let mut buf = vec![0u8; DM_IOCTL_SIZE];
    for (i, v) in DM_VERSION.iter().enumerate() {
        put_u32(&mut buf, i * 4, *v);
    }
    put_u32(&mut buf, OFF_DATA_START, DM_IOCTL_SIZE as u32);
    put_u32(&mut buf, OFF_TARGET_COUNT, targets.len() as u32);
    put_u32(&mut buf, OFF_FLAGS, flags);
    buf[OFF_NAME..OFF_NAME + name.len()].copy_from_slice(name.as_bytes());
    for t in targets {
        if t.target_type.is_empty() || t.target_type.len() >= DM_MAX_TYPE_NAME {
            return Err(invalid(format!("invalid target type {:?}", t.target_type)));
        }
        if t.params.contains('\0') {
            return Err(invalid("target parameters contain NUL".to_string()));
        }
        let spec_len = align8(DM_TARGET_SPEC_SIZE + t.params.len() + 1);
        let at = buf.len();
        buf.resize(at + spec_len, 0);
        put_u64(&mut buf, at, t.start);
        put_u64(&mut buf, at + 8, t.length);
        // status (at + 16) stays 0; next: offset from this spec to the next.
        put_u32(&mut buf, at + 20, spec_len as u32);
        buf[at + 24..at + 24 + t.target_type.len()].copy_from_slice(t.target_type.as_bytes());
        let p = at + DM_TARGET_SPEC_SIZE;
        buf[p..p + t.params.len()].copy_from_slice(t.params.as_bytes());
    }
    let size = buf.len() as u32;
    put_u32(&mut buf, OFF_DATA_SIZE, size);
    Ok(buf)
}

/// The device number the kernel reported back (`dev`, new_encode_dev format).
pub fn decode_dev(buf: &[u8]) -> (u32, u32) {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&buf[OFF_DEV..OFF_DEV + 8]);
    let dev = u64::from_ne_bytes(raw);
    let major = ((dev >> 8) & 0xfff) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff_ff00)) as u32;
    (major, minor)
}

/// Issues one device-mapper ioctl on the control device with `buf` as
/// built by [`encode`]; the kernel writes its reply into `buf`.
pub fn dm_ioctl(control: &File, cmd: DmCmd, buf: &mut [u8]) -> io::Result<()> {
    if buf.len() < DM_IOCTL_SIZE {
        return Err(invalid("device-mapper buffer too small".to_string()));
    }
    // SAFETY: `buf` is a live, writable allocation of at least data_size bytes
    // (encode() sets data_size to buf.len()); the kernel reads and writes
    // only within data_size. The fd is open for the duration of the call.
    let rc = unsafe { libc::ioctl(control.as_raw_fd(), cmd.request() as _, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn ioctl_numbers_match_header() {
        // Values from strace of dmsetup / the _IOWR macro on x86_64.
        assert_eq!(DmCmd::DevCreate.request(), 0xc138_fd03);
        assert_eq!(DmCmd::DevSuspend.request(), 0xc138_fd06);
        assert_eq!(DmCmd::TableLoad.request(), 0xc138_fd09);
    }

    #[test]
    fn encodes_create() {
        let b = encode("keel-root", DM_READONLY_FLAG, &[]).unwrap();
        assert_eq!(b.len(), 312);
        assert_eq!(&b[0..12], &[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(u32_at(&b, 12), 312);
        assert_eq!(u32_at(&b, 16), 312);
        assert_eq!(u32_at(&b, 20), 0);
        assert_eq!(u32_at(&b, 28), 1);
        assert_eq!(&b[48..57], b"keel-root");
        assert_eq!(b[57], 0);
    }

    #[test]
    fn encodes_table() {
        let params = "1 254:2 254:3 4096 4096 10 1 sha256 ab -".to_string();
        let t = DmTarget {
            start: 0,
            length: 80,
            target_type: "verity".into(),
            params: params.clone(),
        };
        let b = encode("keel-root", DM_READONLY_FLAG, &[t]).unwrap();
        let spec_len = (40 + params.len() + 1).div_ceil(8) * 8;
        assert_eq!(b.len(), 312 + spec_len);
        assert_eq!(b.len() % 8, 0);
        assert_eq!(u32_at(&b, 12) as usize, b.len());
        assert_eq!(u32_at(&b, 20), 1);
        let s = 312;
        assert_eq!(u64::from_ne_bytes(b[s..s + 8].try_into().unwrap()), 0);
        assert_eq!(u64::from_ne_bytes(b[s + 8..s + 16].try_into().unwrap()), 80);
        assert_eq!(u32_at(&b, s + 20) as usize, spec_len);
        assert_eq!(&b[s + 24..s + 31], b"verity\0");
        assert_eq!(&b[s + 40..s + 40 + params.len()], params.as_bytes());
        assert_eq!(b[s + 40 + params.len()], 0);
    }

    #[test]
    fn rejects_bad_names() {
        assert!(encode("", 0, &[]).is_err());
        assert!(encode("a/b", 0, &[]).is_err());
        assert!(encode(&"x".repeat(128), 0, &[]).is_err());
        assert!(encode(&"x".repeat(127), 0, &[]).is_ok());
    }

    #[test]
    fn decodes_dev() {
        let mut b = vec![0u8; 312];
        // major 254, minor 0x1234: (minor & 0xff) | major << 8 | (minor & !0xff) << 12
        let dev: u64 = 0x34 | (254 << 8) | (0x1200 << 12);
        b[40..48].copy_from_slice(&dev.to_ne_bytes());
        assert_eq!(decode_dev(&b), (254, 0x1234));
    }
}
