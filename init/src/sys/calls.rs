//! Thin safe wrappers around libc calls that have no std equivalent.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains NUL"))
}

fn cpath(p: &Path) -> io::Result<CString> {
    cstr(p.as_os_str().as_bytes())
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// mount(2). An empty `data` passes NULL.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: u64,
    data: &str,
) -> io::Result<()> {
    let source = cstr(source.as_bytes())?;
    let target = cpath(target)?;
    let fstype = fstype.map(|f| cstr(f.as_bytes())).transpose()?;
    let data = if data.is_empty() {
        None
    } else {
        Some(cstr(data.as_bytes())?)
    };
    // SAFETY: all pointers are NUL-terminated strings owned by this frame or
    // NULL, valid for the duration of the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags as libc::c_ulong,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    check(rc)
}

/// swapoff(2) of the swap device or file at `path`.
pub fn swapoff(path: &Path) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is a valid NUL-terminated path for the duration of the call.
    check(unsafe { libc::swapoff(p.as_ptr()) })
}

/// mknod(2); `mode` includes the file type bits.
pub fn mknod(path: &Path, mode: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let p = cpath(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: `p` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mknod(p.as_ptr(), mode, dev) };
    check(rc)
}

/// finit_module(2) with no parameters.
pub fn finit_module(module: &File) -> io::Result<()> {
    let params = c"";
    // SAFETY: the fd is open for the duration of the call and the parameter
    // string is a static NUL-terminated empty string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            module.as_raw_fd(),
            params.as_ptr(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer/length pair describes `name`'s bytes, which live
    // for the duration of the call; the kernel only reads them.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check(rc)
}

/// Sets interface `name` up with SIOCGIFFLAGS/SIOCSIFFLAGS on an
/// AF_INET datagram socket; returns whether it was down.
pub fn link_up(name: &str) -> io::Result<bool> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    // SAFETY: `fd` was just returned by socket(2) and is owned only here.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name (the
    // name is shorter than IFNAMSIZ and the rest is zero); the kernel
    // reads the name and writes the flags into the union.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: SIOCGIFFLAGS filled the union's flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let up = libc::IFF_UP as libc::c_short;
    if flags & up != 0 {
        return Ok(false);
    }
    req.ifr_ifru.ifru_flags = flags | up;
    // SAFETY: as above; the kernel reads the name and the new flags.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(true)
}

/// The `f_type` magic of the file system holding `path` (statfs(2)).
pub fn statfs_magic(path: &Path) -> io::Result<i64> {
    let p = cpath(path)?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `p` is a valid path and `st` a writable statfs buffer; the
    // kernel fills it completely on success.
    let rc = unsafe { libc::statfs(p.as_ptr(), st.as_mut_ptr()) };
    check(rc)?;
    // SAFETY: statfs succeeded, so the structure is initialised (it was also
    // zeroed beforehand).
    let st = unsafe { st.assume_init() };
    Ok(st.f_type)
}

/// Reaps one exited child without blocking when `block` is false.
/// Returns its pid and raw wait status (see
/// [`super::process::decode_status`]), or `Ok(None)` when there is nothing
/// to reap.
pub fn wait_any(block: bool) -> io::Result<Option<(u32, i32)>> {
    let mut status: libc::c_int = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: `status` is a valid writable int for the duration of the call.
    let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
    if pid < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ECHILD) {
            return Ok(None);
        }
        return Err(e);
    }
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some((pid as u32, status)))
}

/// Makes the calling process a session leader with `fd` as its controlling
/// terminal. Only async-signal-safe calls: usable between fork and exec.
pub fn become_session_leader_on(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions.
    let rc = unsafe { libc::setsid() };
    check(rc)?;
    // SAFETY: TIOCSCTTY takes an int argument by value; the fd is the
    // terminal the caller opened.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 1 as libc::c_int) };
    check(rc)
}

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn an_up_link_stays_up_and_bad_names_are_refused() {
        // The host's loopback is up; asking again changes nothing.
        assert!(!link_up("lo").unwrap());
        assert_eq!(link_up("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            link_up("a-name-longer-than-ifnamsiz").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(link_up("keel-nosuch0").is_err());
    }
}
