//! The receiving end of sd_notify: services send `READY=1`, `STATUS=…`,
//! `MAINPID=…` as datagrams to the socket in their `NOTIFY_SOCKET`, and the
//! kernel attaches the sender's pid and uid.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::error::OpError;

/// The largest notification accepted, in bytes.
pub const MAX_MESSAGE: usize = 4096;
/// Receive buffer asked for (systemd uses the same), so bursts of
/// notifications are not dropped while the supervisor is busy.
const RECEIVE_BUFFER: libc::c_int = 8 << 20;
/// The most fds one message can carry (the kernel's SCM_MAX_FD).
const MAX_FDS: usize = 253;

fn op_err(op: String) -> impl FnOnce(io::Error) -> io::Error {
    move |source| io::Error::new(source.kind(), OpError { op, source })
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A bound notification socket.
#[derive(Debug)]
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyMessage {
    /// The sender's pid (0 when it is in a PID namespace we cannot see).
    pub pid: u32,
    /// The sender's uid.
    pub uid: u32,
    /// The `KEY=VALUE` lines in order; lines without `=` are dropped.
    pub fields: Vec<(String, String)>,
}

impl NotifyMessage {
    /// The value of the last `key=` line, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn setsockopt(sock: &UnixDatagram, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a c_int on this stack frame and its size is passed;
    // the socket is open for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds a datagram socket at `path` (the parent directory must exist): a
/// stale file there is removed, the socket is made world-writable (0666)
/// so services running as other users can notify, and SO_PASSCRED is set
/// so every message carries its sender's credentials. The fd is CLOEXEC.
pub fn bind(path: &Path) -> io::Result<NotifySocket> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(op_err(format!("removing stale {}", path.display()))(e));
        }
        _ => {}
    }
    let sock = UnixDatagram::bind(path).map_err(op_err(format!("binding {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(op_err(format!("making {} world-writable", path.display())))?;
    setsockopt(&sock, libc::SO_PASSCRED, 1)
        .map_err(op_err(format!("setting SO_PASSCRED on {}", path.display())))?;
    // A larger buffer is best effort: FORCE needs CAP_NET_ADMIN, the plain
    // option is capped by net.core.rmem_max.
    if setsockopt(&sock, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(&sock, libc::SO_RCVBUF, RECEIVE_BUFFER);
    }
    Ok(NotifySocket {
        sock,
        path: path.to_path_buf(),
    })
}

impl NotifySocket {
    /// Where the socket is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next notification. Fds passed along (SCM_RIGHTS) are
    /// closed at once. A message over [`MAX_MESSAGE`] bytes or without
    /// credentials is an error of kind [`io::ErrorKind::InvalidData`]
    /// (it has been consumed: call again); other errors are the socket's.
    pub fn recv(&self) -> io::Result<NotifyMessage> {
        let mut data = [0u8; MAX_MESSAGE];
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe {
            libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32)
                + libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<libc::c_int>()) as u32)
        } as usize;
        // u64 words keep the control buffer aligned for cmsghdr.
        let mut control = vec![0u64; space.div_ceil(8)];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: an all-zero msghdr is valid (no name, no buffers).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = (control.len() * 8) as _;
        let n = loop {
            // SAFETY: `msg` points at `iov` → `data` and at `control`, all
            // alive and exclusively borrowed for the call; their lengths
            // are set above.
            let n =
                unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        // SAFETY: `msg` was filled by recvmsg and its control buffer is
        // still alive.
        let creds = unsafe { take_control(&msg) };
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(invalid(format!(
                "notification from pid {} is larger than {MAX_MESSAGE} bytes",
                creds.map_or(0, |c| c.pid)
            )));
        }
        message(&data[..n], creds)
    }
}

/// Walks the control messages of `msg`: returns the credentials and closes
/// every passed fd.
///
/// # Safety
/// `msg` must come from a successful recvmsg whose control buffer is alive.
unsafe fn take_control(msg: &libc::msghdr) -> Option<libc::ucred> {
    let mut creds = None;
    // SAFETY: the caller guarantees `msg` and its control buffer are valid.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers returned by CMSG_FIRSTHDR/NXTHDR lie
        // within the control buffer, as does the data of their cmsg_len.
        unsafe {
            let hdr = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let payload = hdr.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            if hdr.cmsg_level == libc::SOL_SOCKET {
                if hdr.cmsg_type == libc::SCM_CREDENTIALS
                    && payload >= std::mem::size_of::<libc::ucred>()
                {
                    creds = Some(std::ptr::read_unaligned(data.cast::<libc::ucred>()));
                } else if hdr.cmsg_type == libc::SCM_RIGHTS {
                    let count = payload / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                        libc::close(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    creds
}

/// Parses one datagram: newline-separated `KEY=VALUE` lines.
fn message(data: &[u8], creds: Option<libc::ucred>) -> io::Result<NotifyMessage> {
    let creds = creds.ok_or_else(|| invalid("notification without sender credentials".into()))?;
    let text = String::from_utf8_lossy(data);
    let fields = text
        .split('\n')
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(NotifyMessage {
        pid: u32::try_from(creds.pid).unwrap_or(0),
        uid: creds.uid,
        fields,
    })
}

/// Sends `text` to the notification socket at `path` (what sd_notify does).
pub fn notify(path: &Path, text: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.send_to(text.as_bytes(), path)
        .map_err(op_err(format!("sending to {}", path.display())))?;
    Ok(())
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
