//! Credentials of the process at the other end of a unix socket.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// The uid of the process that connected `stream`, from `SO_PEERCRED`
/// (the credentials it had when it called connect(2)).
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is open for the lifetime of `stream`; `cred` is a
    // properly aligned `ucred` owned by this frame and `len` holds its size,
    // so the kernel writes at most `len` bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("SO_PEERCRED returned {len} bytes"),
        ));
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_pair_peer_is_this_process() {
        let (a, b) = UnixStream::pair().unwrap();
        // SAFETY: getuid(2) cannot fail and has no preconditions.
        let me = unsafe { libc::getuid() };
        assert_eq!(peer_uid(&a).unwrap(), me);
        assert_eq!(peer_uid(&b).unwrap(), me);
    }

    #[test]
    fn a_non_socket_fails() {
        let f = std::fs::File::open("/dev/null").unwrap();
        // Any fd will do: give it to UnixStream without closing it twice.
        let s = UnixStream::from(std::os::fd::OwnedFd::from(f));
        assert!(peer_uid(&s).is_err());
    }
}
