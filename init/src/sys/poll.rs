//! poll(2) over borrowed file descriptors, for the control socket server.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Readable (`POLLIN`).
pub const READABLE: i16 = libc::POLLIN;
/// Writable (`POLLOUT`).
pub const WRITABLE: i16 = libc::POLLOUT;
/// The peer closed or the descriptor failed (`POLLHUP`, `POLLERR`,
/// `POLLNVAL`); reported whether asked for or not.
pub const GONE: i16 = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;

/// One descriptor to watch and, after [`poll`], what happened to it.
#[derive(Debug)]
pub struct Watch<'fd> {
    fd: BorrowedFd<'fd>,
    /// What to wait for: [`READABLE`], [`WRITABLE`], both or nothing (then
    /// only [`GONE`] is reported).
    pub events: i16,
    /// What happened, set by [`poll`].
    pub revents: i16,
}

impl<'fd> Watch<'fd> {
    /// Watches `fd` for `events`.
    pub fn new(fd: BorrowedFd<'fd>, events: i16) -> Watch<'fd> {
        Watch {
            fd,
            events,
            revents: 0,
        }
    }
}

/// Waits until one of `watches` is ready or `timeout` passed (`None`: no
/// timeout); sets each `revents` and returns how many are ready. A signal
/// interrupting the wait counts as a timeout (0 ready).
pub fn poll(watches: &mut [Watch<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let mut fds: Vec<libc::pollfd> = watches
        .iter()
        .map(|w| libc::pollfd {
            fd: w.fd.as_raw_fd(),
            events: w.events,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| {
        // Round up, so that a deadline 0.3 ms away is not a busy loop.
        let ms = t.as_micros().div_ceil(1000);
        libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
    });
    let n = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"))?;
    // SAFETY: `fds` is a valid, initialised array of `n` pollfd structs
    // owned by this frame; the kernel writes only their `revents`. Every
    // fd is borrowed from `watches`, so it stays open during the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    for (w, fd) in watches.iter_mut().zip(&fds) {
        w.revents = fd.revents;
    }
    Ok(usize::try_from(rc).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn reports_readable_writable_and_hangup() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut w = [Watch::new(b.as_fd(), READABLE)];
        assert_eq!(poll(&mut w, Some(Duration::from_millis(10))).unwrap(), 0);
        assert_eq!(w[0].revents, 0);
        a.write_all(b"x").unwrap();
        let mut w = [Watch::new(b.as_fd(), READABLE | WRITABLE)];
        assert_eq!(poll(&mut w, None).unwrap(), 1);
        assert_eq!(w[0].revents, READABLE | WRITABLE);
        // Half closed is not gone; closed is.
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let mut w = [Watch::new(b.as_fd(), 0)];
        assert_eq!(poll(&mut w, Some(Duration::from_millis(10))).unwrap(), 0);
        drop(a);
        let mut w = [Watch::new(b.as_fd(), 0)];
        assert_eq!(poll(&mut w, Some(Duration::from_millis(10))).unwrap(), 1);
        assert_ne!(w[0].revents & GONE, 0);
    }
}
