//! Both ends of the control socket: [`Server`] in init, [`request`] in
//! `keelctl`.
//!
//! Each connection carries one request line and one response line. Only
//! root may talk to init: the socket is mode 0600 in a 0700 directory, and
//! the server checks the peer's uid with `SO_PEERCRED` on top of that.

use std::fmt;
use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::protocol::{Request, Response};
use crate::sys::creds::peer_uid;

/// Longest request line accepted, without its newline.
pub const MAX_REQUEST: usize = 64 * 1024;

/// How long the server waits for a client to send its request, and for a
/// client to take the response.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest response line the client accepts (a status of every unit).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Connections read at the same time; more are refused with an error.
const MAX_CONNECTIONS: usize = 32;

/// Pause after a failed accept(2), so that e.g. EMFILE does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound control socket, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

/// The way back to the client of one request. [`Responder::send`] answers
/// and closes the connection; dropping it without sending closes the
/// connection without an answer (the client reports that).
pub struct Responder {
    stream: UnixStream,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    /// Writes `response` as one line and closes the connection. Fails when
    /// the client is gone or does not read within [`CLIENT_TIMEOUT`].
    pub fn send(self, response: Response) -> io::Result<()> {
        write_line(&self.stream, &response)?;
        // The client may have hung up already; the answer is written.
        let _ = self.stream.shutdown(Shutdown::Both);
        Ok(())
    }
}

fn write_line(mut stream: &UnixStream, message: &impl serde::Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.flush()
}

impl Server {
    /// Binds the socket at `path`: creates its parent directory (mode 0700)
    /// when missing, replaces a stale socket file nobody listens on, and
    /// makes the socket mode 0600. Fails when another process is listening
    /// there, or when `path` exists and is not a socket.
    pub fn bind(path: &Path) -> io::Result<Server> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| annotate(e, "creating", parent))?;
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another process is listening on {}", path.display()),
                    ));
                }
                fs::remove_file(path).map_err(|e| annotate(e, "removing stale", path))?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate(e, "inspecting", path)),
        }
        let listener = UnixListener::bind(path).map_err(|e| annotate(e, "binding", path))?;
        fs::set_permissions(path, Permissions::from_mode(0o600))
            .map_err(|e| annotate(e, "setting the mode of", path))?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts serving. An accept thread takes connections and reads each
    /// request on a thread of its own (with [`CLIENT_TIMEOUT`], so a slow or
    /// silent client delays nobody); `handle` runs on one dispatcher
    /// thread, one request at a time in arrival order, and must answer
    /// through the [`Responder`] (possibly later, from another thread).
    /// Clients that are not root, bad JSON, oversized or missing requests
    /// get an [`Response::Error`] without reaching `handle`.
    ///
    /// Returns the accept thread, which runs until accept(2) fails for
    /// good. Should `handle` panic, later requests get an error reply.
    pub fn serve(
        self,
        handle: impl Fn(Request, Responder) + Send + 'static,
    ) -> io::Result<JoinHandle<()>> {
        let (tx, rx) = mpsc::channel::<(Request, Responder)>();
        thread::Builder::new()
            .name("control-dispatch".into())
            .spawn(move || {
                for (request, responder) in rx {
                    handle(request, responder);
                }
            })?;
        let listener = self.listener;
        thread::Builder::new()
            .name("control-accept".into())
            .spawn(move || accept_loop(&listener, &tx))
    }
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn accept_loop(listener: &UnixListener, tx: &mpsc::Sender<(Request, Responder)>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) if is_fatal_accept_error(&e) => return,
            Err(_) => {
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            refuse(
                &stream,
                "too many connections to init's control socket, try again",
            );
            continue;
        }
        let tx = tx.clone();
        let counter = Arc::clone(&active);
        let spawned = thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                let _guard = Decrement(counter);
                if let Some(request) = receive(&stream) {
                    let responder = Responder { stream };
                    if let Err(mpsc::SendError((_, responder))) = tx.send((request, responder)) {
                        let _ = responder.send(Response::Error {
                            message: "init's control handler has stopped".into(),
                        });
                    }
                }
            });
        if spawned.is_err() {
            // The closure (and with it the stream and the guard) is gone.
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Lowers the connection count when a connection thread ends.
struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn is_fatal_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP)
    )
}

fn refuse(stream: &UnixStream, message: &str) {
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let _ = write_line(
        stream,
        &Response::Error {
            message: message.to_string(),
        },
    );
    let _ = stream.shutdown(Shutdown::Both);
}

/// Checks the peer and reads its request; answers the errors itself.
fn receive(stream: &UnixStream) -> Option<Request> {
    let result = check_peer(stream).and_then(|()| read_request(stream));
    match result {
        Ok(r) => Some(r),
        Err(message) => {
            refuse(stream, &message);
            None
        }
    }
}

fn check_peer(stream: &UnixStream) -> Result<(), String> {
    match peer_uid(stream) {
        Ok(0) => Ok(()),
        Ok(uid) => Err(format!(
            "permission denied: only root may control init (caller is uid {uid})"
        )),
        Err(e) => Err(format!(
            "permission denied: cannot read the caller's credentials: {e}"
        )),
    }
}

fn read_request(stream: &UnixStream) -> Result<Request, String> {
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CLIENT_TIMEOUT)))
        .map_err(|e| format!("setting socket timeouts: {e}"))?;
    let line = read_line(stream, MAX_REQUEST).map_err(|e| match e {
        LineError::TooLong => format!("request is longer than {MAX_REQUEST} bytes"),
        LineError::Io(e) if is_timeout(&e) => format!(
            "no complete request line within {}s",
            CLIENT_TIMEOUT.as_secs()
        ),
        LineError::Io(e) => format!("reading the request: {e}"),
    })?;
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty request".to_string());
    }
    serde_json::from_slice(&line).map_err(|e| format!("bad request: {e}"))
}

enum LineError {
    TooLong,
    Io(io::Error),
}

/// Reads up to a newline (dropped) or the end of the stream, at most `max`
/// bytes besides the newline.
fn read_line(stream: &UnixStream, max: usize) -> Result<Vec<u8>, LineError> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut reader = BufReader::new(stream.take(limit));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).map_err(LineError::Io)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(LineError::TooLong);
    }
    Ok(line)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Why [`request`] got no response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// connect(2) failed with EACCES or EPERM.
    #[error("permission denied: keelctl must run as root")]
    PermissionDenied,
    /// Nothing listens on the socket (it is missing or refuses).
    #[error("init is not listening on {}", socket.display())]
    NotRunning {
        /// The socket path.
        socket: PathBuf,
        /// The connect(2) error.
        #[source]
        source: io::Error,
    },
    /// Another connect(2) failure.
    #[error("connecting to {}", socket.display())]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Sending the request or reading the response failed.
    #[error("{what} on {}", socket.display())]
    Io {
        /// The step that failed.
        what: &'static str,
        /// The socket path.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No response within the timeout.
    #[error("init did not answer within {}s", after.as_secs_f64())]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// Init closed the connection without a response.
    #[error("init closed the connection without answering")]
    NoAnswer,
    /// The response is longer than the client accepts.
    #[error("init's answer is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The response is not a [`Response`].
    #[error("init sent an answer keelctl does not understand")]
    BadResponse {
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Sends `req` to the control socket at `path` and waits up to `timeout`
/// (for each read and write) for the response.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(path).map_err(|source| match source.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => ClientError::PermissionDenied,
        Some(libc::ENOENT | libc::ECONNREFUSED) => ClientError::NotRunning {
            socket: path.to_path_buf(),
            source,
        },
        _ => ClientError::Connect {
            socket: path.to_path_buf(),
            source,
        },
    })?;
    let io_err = |what: &'static str| {
        move |source: io::Error| ClientError::Io {
            what,
            socket: path.to_path_buf(),
            source,
        }
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io_err("setting socket timeouts"))?;
    match write_line(&stream, req) {
        Ok(()) => {
            // Done sending; the server may already have closed its side.
            let _ = stream.shutdown(Shutdown::Write);
        }
        // The server refused before reading everything: read why.
        Err(e) if is_hangup(&e) => {}
        Err(e) if is_timeout(&e) => return Err(ClientError::Timeout { after: timeout }),
        Err(e) => return Err(io_err("sending the request")(e)),
    }
    let line = match read_line(&stream, MAX_RESPONSE) {
        Ok(line) => line,
        Err(LineError::TooLong) => return Err(ClientError::TooLong { max: MAX_RESPONSE }),
        Err(LineError::Io(e)) if is_timeout(&e) => {
            return Err(ClientError::Timeout { after: timeout })
        }
        Err(LineError::Io(e)) if is_hangup(&e) => return Err(ClientError::NoAnswer),
        Err(LineError::Io(e)) => return Err(io_err("reading the answer")(e)),
    };
    if line.is_empty() {
        return Err(ClientError::NoAnswer);
    }
    serde_json::from_slice(&line).map_err(|source| ClientError::BadResponse { source })
}

fn is_hangup(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}
