//! Tests of [`super`]: real sockets in temporary directories.

use super::*;
use crate::sys::process::{self, ExecSpec, OutputSpec};
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn creds(pid: i32, uid: u32) -> Option<libc::ucred> {
    Some(libc::ucred { pid, uid, gid: 0 })
}

#[test]
fn parses_fields() {
    let m = message(
        b"READY=1\nSTATUS=Up: 3 workers\n\nnoequals\n=x\nA=b=c",
        creds(7, 0),
    )
    .unwrap();
    assert_eq!(
        m,
        NotifyMessage {
            pid: 7,
            uid: 0,
            fields: fields(&[("READY", "1"), ("STATUS", "Up: 3 workers"), ("A", "b=c")]),
        }
    );
    assert_eq!(m.get("READY"), Some("1"));
    assert_eq!(m.get("MAINPID"), None);
    let e = message(b"READY=1", None).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn round_trip_with_credentials() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("notify");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
    let sock = bind(&path).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    assert_eq!(sock.path(), path);

    notify(&path, "READY=1\nMAINPID=42\n").unwrap();
    let m = sock.recv().unwrap();
    assert_eq!(m.pid, std::process::id());
    // SAFETY: getuid has no preconditions.
    assert_eq!(m.uid, unsafe { libc::getuid() });
    assert_eq!(m.fields, fields(&[("READY", "1"), ("MAINPID", "42")]));
}

#[test]
fn refuses_oversized_messages_and_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("notify");
    let sock = bind(&path).unwrap();
    notify(&path, &format!("STATUS={}", "x".repeat(MAX_MESSAGE))).unwrap();
    notify(&path, &format!("STATUS={}", "y".repeat(MAX_MESSAGE - 7))).unwrap();
    let e = sock.recv().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("larger than 4096 bytes"), "{e}");
    let m = sock.recv().unwrap();
    assert_eq!(m.get("STATUS").map(str::len), Some(MAX_MESSAGE - 7));
}

#[test]
fn bind_names_the_path() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("no-such-dir/notify");
    let e = bind(&path).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert_eq!(e.to_string(), format!("binding {}", path.display()));
}

/// Sends `text` with `fd` attached (SCM_RIGHTS).
fn send_with_fd(path: &Path, text: &str, fd: &OwnedFd) {
    let sock = UnixDatagram::unbound().unwrap();
    sock.connect(path).unwrap();
    let raw = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: text.as_ptr() as *mut libc::c_void,
        iov_len: text.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below point at
    // live buffers of the given lengths, and CMSG_* stay within `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), raw);
        assert!(
            libc::sendmsg(sock.as_raw_fd(), &msg, 0) >= 0,
            "{}",
            io::Error::last_os_error()
        );
    }
}

#[test]
fn passed_fds_are_closed() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("notify");
    let sock = bind(&path).unwrap();
    let (mut r, w) = io::pipe().unwrap();
    let w: OwnedFd = w.into();
    send_with_fd(&path, "FDSTORE=1", &w);
    drop(w);
    let m = sock.recv().unwrap();
    assert_eq!(m.fields, fields(&[("FDSTORE", "1")]));
    // The only write end left was the received copy: EOF means it was
    // closed; a leaked copy makes this non-blocking read fail WouldBlock.
    // SAFETY: F_SETFL on an fd owned by `r`.
    assert_eq!(
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) },
        0
    );
    let mut buf = [0u8; 1];
    assert_eq!(r.read(&mut buf).unwrap(), 0);
}

const SENDER_ENV: &str = "KEEL_TEST_NOTIFY_SOCKET";

/// A service running as another user can notify: the test binary runs
/// `sender_helper` as uid 65534, and the message carries its pid and uid.
#[test]
fn notification_from_another_user() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the tests run as root");
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let path = t.path().join("notify");
    let sock = bind(&path).unwrap();
    // No message (the helper did not run) fails instead of hanging.
    sock.sock
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut spec = ExecSpec::new(
        &exe,
        [
            "test",
            "--exact",
            "sys::notify::tests::sender_helper",
            "--ignored",
            "--test-threads=1",
        ]
        .map(String::from)
        .to_vec(),
    );
    spec.env = vec![(SENDER_ENV.into(), path.display().to_string())];
    spec.uid = Some(65534);
    spec.gid = Some(65534);
    let (mut r, w) = io::pipe().unwrap();
    spec.output = OutputSpec::Fd(w.into());
    let pid = process::spawn(spec).unwrap();
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    let status = process::decode_status(process::wait_pid(pid).unwrap());
    assert!(status.success(), "{status}: {out}");
    let m = sock.recv().unwrap();
    assert_eq!((m.pid, m.uid), (pid, 65534), "{out}");
    assert_eq!(m.fields, fields(&[("READY", "1"), ("STATUS", "as nobody")]));
}

/// Helper of `notification_from_another_user`; does nothing unless run by it.
#[test]
#[ignore = "run in a subprocess by notification_from_another_user"]
fn sender_helper() {
    let Some(path) = std::env::var_os(SENDER_ENV) else {
        return;
    };
    notify(Path::new(&path), "READY=1\nSTATUS=as nobody").unwrap();
}
