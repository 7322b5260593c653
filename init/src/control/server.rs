//! Both ends of the control socket: [`Server`] in init, [`request`] in
//! `keelctl`.
//!
//! Each connection carries one request line and one response line. Only
//! root may talk to init: the socket is mode 0600 in a 0700 directory, and
//! the server checks the peer's uid with `SO_PEERCRED` on top of that.
//!
//! The server never lets a client hold up init: one thread polls every
//! connection without blocking ([`super::connections`]), with a size limit
//! on requests, a deadline for each connection to send its request and to
//! take its answer, a limit on connections and on answers not yet taken.
//! Whoever answers through a [`Responder`] (init's main loop) only hands
//! the answer over; it never writes to a client.

use std::fmt;
use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::connections::{Connections, Note, Notifier};
use super::protocol::{Request, Response};

/// Longest request line accepted, without its newline.
pub const MAX_REQUEST: usize = 64 * 1024;

/// How long a client has to send its request after connecting, and to
/// take the whole response once it is ready.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections open at the same time (reading a request, waiting for the
/// answer or sending it); more are answered "busy" and closed at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Bytes of answers written to no client yet, over all connections. An
/// answer beyond it is replaced by a short error (unless it is the only
/// one), so clients that do not read cannot make init hold their answers.
pub const MAX_UNSENT: usize = 16 * 1024 * 1024;

/// Longest response line the client accepts (a status of every unit).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A bound control socket, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

/// The way back to the client of one request. [`Responder::send`] hands
/// the answer to the server, which writes it and closes the connection;
/// dropping the responder without sending closes the connection without
/// an answer (the client reports that). Neither ever blocks.
pub struct Responder {
    id: u64,
    notifier: Notifier,
    answered: bool,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Responder {
    pub(super) fn new(id: u64, notifier: Notifier) -> Self {
        Responder {
            id,
            notifier,
            answered: false,
        }
    }

    /// Hands `response` to the server, which writes it as one line (within
    /// [`CLIENT_TIMEOUT`]) and closes the connection. Fails only when the
    /// server has stopped; a client that is gone or does not read loses
    /// its answer without the caller waiting.
    pub fn send(mut self, response: Response) -> io::Result<()> {
        self.answered = true;
        self.deliver(Some(response))
    }

    fn deliver(&self, response: Option<Response>) -> io::Result<()> {
        let note = Note::Answer {
            id: self.id,
            response,
        };
        self.notifier.send(note).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "init's control server has stopped",
            )
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.deliver(None);
        }
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

    /// Starts serving. One thread polls every connection (reading
    /// requests, checking the peer, writing answers, with the limits of
    /// this module); `handle` runs on a dispatcher thread, one request at
    /// a time in arrival order, and must answer through the [`Responder`]
    /// (possibly later, from another thread). Requests wait in the server
    /// until `handle` returned for the one before: a handler that passes
    /// requests on should return once they are taken up, so that they do
    /// not pile up where a client's hang-up cannot withdraw them. Clients that are not root,
    /// bad JSON, oversized or missing requests get an [`Response::Error`]
    /// without reaching `handle`.
    ///
    /// Returns the polling thread, which runs until accept(2) fails for
    /// good. Should `handle` panic, later requests get an error reply.
    pub fn serve(
        self,
        handle: impl Fn(Request, Responder) + Send + 'static,
    ) -> io::Result<JoinHandle<()>> {
        let (tx, rx) = mpsc::channel::<(Request, Responder)>();
        let connections = Connections::new(self.listener, tx)?;
        let notifier = connections.notifier();
        thread::Builder::new()
            .name("control-dispatch".into())
            .spawn(move || {
                for (request, responder) in rx {
                    let id = responder.id;
                    handle(request, responder);
                    let _ = notifier.send(Note::Taken(id));
                }
            })?;
        thread::Builder::new()
            .name("control".into())
            .spawn(move || connections.run())
    }
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
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
