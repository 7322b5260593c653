//! The server's side of every connection, on one thread that never blocks
//! on a client.
//!
//! All sockets are non-blocking and watched with poll(2). A connection
//! reads its request (at most [`MAX_REQUEST`] bytes, within
//! [`CLIENT_TIMEOUT`] of connecting), queues it, waits for its answer
//! (handed over by a [`Responder`], which wakes this thread), and writes it
//! (within [`CLIENT_TIMEOUT`] of the answer being ready); then it is
//! closed. At most [`MAX_CONNECTIONS`] are open; more are answered "busy"
//! and closed at once. Answers not yet written are bounded by
//! [`MAX_UNSENT`].
//!
//! The handler gets requests in the order they were complete, and at most
//! [`MAX_HANDLED`] that it has not taken up yet (init's handler returns
//! once its main loop took the request); the others wait here, where a
//! client that hangs up costs nothing more. Equal status requests waiting
//! together are handed on once and get the same answer, which was made
//! after each of them arrived: a crowd asking for every unit's status
//! costs init one answer, not one per client.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{Request, Response};
use super::server::{Responder, CLIENT_TIMEOUT, MAX_CONNECTIONS, MAX_REQUEST, MAX_UNSENT};
use crate::sys::creds::peer_uid;
use crate::sys::poll::{poll, Watch, GONE, READABLE, WRITABLE};

/// Pause after a failed accept(2), so that e.g. EMFILE does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Pause after a failed poll(2) (only ENOMEM can happen).
const POLL_BACKOFF: Duration = Duration::from_millis(100);

/// Bytes read from a client at a time.
const CHUNK: usize = 8 * 1024;

/// Requests (or groups of equal status requests) handed to the handler
/// and not yet taken up by it (its `handle` has not returned).
pub const MAX_HANDLED: usize = 2;

/// What the other threads tell the connections.
pub(super) enum Note {
    /// The handler took up the request of this group (`handle` returned).
    Taken(u64),
    /// The answer for this group, or `None` to close without one.
    Answer { id: u64, response: Option<Response> },
}

/// The way to send [`Note`]s, waking the polling thread.
#[derive(Clone)]
pub(super) struct Notifier {
    tx: Sender<Note>,
    wake: Arc<UnixStream>,
}

impl Notifier {
    /// Never blocks; fails when the polling thread has ended.
    pub fn send(&self, note: Note) -> Result<(), mpsc::SendError<Note>> {
        self.tx.send(note)?;
        // Non-blocking: when the wake-up socket is full, the polling
        // thread has wake-ups pending already.
        let _ = (&*self.wake).write(&[1]);
        Ok(())
    }
}

enum State {
    /// Reading the request line until `deadline`.
    Reading { line: Vec<u8>, deadline: Instant },
    /// The request waits for its turn.
    Queued(Request),
    /// The request is with the handler, in this group.
    Waiting(u64),
    /// Writing `bytes[sent..]` until `deadline`.
    Writing {
        bytes: Arc<Vec<u8>>,
        sent: usize,
        deadline: Instant,
    },
}

struct Conn {
    stream: UnixStream,
    state: State,
}

impl Conn {
    fn interest(&self) -> i16 {
        match self.state {
            State::Reading { .. } => READABLE,
            State::Queued(_) | State::Waiting(_) => 0,
            State::Writing { .. } => WRITABLE,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Reading { deadline, .. } | State::Writing { deadline, .. } => Some(deadline),
            State::Queued(_) | State::Waiting(_) => None,
        }
    }
}

/// Every connection of one server.
pub(super) struct Connections {
    listener: UnixListener,
    /// Readable when a [`Note`] was sent.
    wake: UnixStream,
    notifier: Notifier,
    notes: Receiver<Note>,
    requests: Sender<(Request, Responder)>,
    conns: BTreeMap<u64, Conn>,
    next_id: u64,
    /// `Queued` connections, in the order their requests were complete
    /// (some may have hung up since).
    queue: VecDeque<u64>,
    /// The connections of each request handed on and not answered yet, by
    /// the id its [`Responder`] has.
    groups: BTreeMap<u64, Vec<u64>>,
    /// Groups handed on that the handler has not taken up yet.
    untaken: BTreeSet<u64>,
    next_group: u64,
    /// Bytes of all distinct `Writing` buffers.
    unsent: usize,
    accept_paused_until: Option<Instant>,
}

/// How a step ended for the connection.
enum Next {
    Keep,
    Close,
}

impl Connections {
    /// Takes over `listener`; requests go to `requests`.
    pub fn new(
        listener: UnixListener,
        requests: Sender<(Request, Responder)>,
    ) -> io::Result<Connections> {
        listener.set_nonblocking(true)?;
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let (tx, notes) = mpsc::channel();
        Ok(Connections {
            listener,
            wake,
            notifier: Notifier {
                tx,
                wake: Arc::new(wake_tx),
            },
            notes,
            requests,
            conns: BTreeMap::new(),
            next_id: 0,
            queue: VecDeque::new(),
            groups: BTreeMap::new(),
            untaken: BTreeSet::new(),
            next_group: 0,
            unsent: 0,
            accept_paused_until: None,
        })
    }

    /// How the dispatcher and [`Responder`]s reach these connections.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// Serves until accept(2) fails for good.
    pub fn run(mut self) {
        loop {
            let now = Instant::now();
            let listening = self.accept_paused_until.is_none_or(|t| now >= t);
            if listening {
                self.accept_paused_until = None;
            }
            let timeout = self.next_timeout(now);
            let (ready, accept) = match self.wait(listening, timeout) {
                Ok(r) => r,
                Err(_) => {
                    std::thread::sleep(POLL_BACKOFF);
                    continue;
                }
            };
            self.drain_wake();
            self.take_notes();
            for (id, revents) in ready {
                self.on_ready(id, revents);
            }
            if accept && !self.accept_all() {
                return;
            }
            self.expire(Instant::now());
            self.hand_on();
        }
    }

    /// How long until the next deadline (`None`: none).
    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.conns
            .values()
            .filter_map(Conn::deadline)
            .chain(self.accept_paused_until)
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    /// Polls; returns the connections with events and whether the
    /// listener is readable.
    fn wait(
        &self,
        listening: bool,
        timeout: Option<Duration>,
    ) -> io::Result<(Vec<(u64, i16)>, bool)> {
        let mut watches = Vec::with_capacity(self.conns.len() + 2);
        watches.push(Watch::new(self.wake.as_fd(), READABLE));
        if listening {
            watches.push(Watch::new(self.listener.as_fd(), READABLE));
        }
        let first_conn = watches.len();
        for c in self.conns.values() {
            watches.push(Watch::new(c.stream.as_fd(), c.interest()));
        }
        poll(&mut watches, timeout)?;
        let accept = listening && watches[1].revents != 0;
        let ready = self
            .conns
            .keys()
            .zip(&watches[first_conn..])
            .filter(|(_, w)| w.revents != 0)
            .map(|(id, w)| (*id, w.revents))
            .collect();
        Ok((ready, accept))
    }

    /// Takes note of the clients that hung up since the last poll (a
    /// request sent before hanging up is still read).
    fn sweep(&mut self) {
        if let Ok((ready, _)) = self.wait(false, Some(Duration::ZERO)) {
            for (id, revents) in ready {
                if revents & GONE != 0 {
                    self.on_ready(id, revents);
                }
            }
        }
    }

    fn drain_wake(&self) {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }

    fn take_notes(&mut self) {
        while let Ok(note) = self.notes.try_recv() {
            let (id, response) = match note {
                Note::Taken(id) => {
                    self.untaken.remove(&id);
                    continue;
                }
                Note::Answer { id, response } => (id, response),
            };
            self.untaken.remove(&id);
            let Some(members) = self.groups.remove(&id) else {
                continue;
            };
            let bytes = response.map(|r| self.budget(line_of(&r)));
            for conn in members {
                // Clients that hung up meanwhile are gone already.
                let waiting = self
                    .conns
                    .get(&conn)
                    .is_some_and(|c| matches!(c.state, State::Waiting(g) if g == id));
                match &bytes {
                    Some(b) if waiting => self.write_out(conn, Arc::clone(b)),
                    None if waiting => self.close(conn),
                    _ => {}
                }
            }
            if let Some(b) = bytes {
                self.release(&b);
            }
        }
    }

    /// Counts `line` as unsent, or replaces it with a short error when the
    /// answers that other clients have not read are too many already.
    fn budget(&mut self, line: Vec<u8>) -> Arc<Vec<u8>> {
        let line = if self.unsent > 0 && self.unsent + line.len() > MAX_UNSENT {
            line_of(&Response::Error {
                message: format!(
                    "init is busy: other clients have not read {} bytes of answers; try again",
                    self.unsent
                ),
            })
        } else {
            line
        };
        self.unsent += line.len();
        Arc::new(line)
    }

    /// Drops this thread's hold on `bytes`; the last one uncounts them.
    fn release(&mut self, bytes: &Arc<Vec<u8>>) {
        if Arc::strong_count(bytes) == 1 {
            self.unsent -= bytes.len();
        }
    }

    /// Hands queued requests to the handler while it has taken up the
    /// earlier ones; equal status requests go as one.
    fn hand_on(&mut self) {
        while self.untaken.len() < MAX_HANDLED {
            let Some(first) = self.queue.pop_front() else {
                return;
            };
            let request = match self.conns.get(&first).map(|c| &c.state) {
                Some(State::Queued(r)) => r.clone(),
                _ => continue,
            };
            let mut members = vec![first];
            if matches!(request, Request::Status { .. }) {
                let conns = &self.conns;
                self.queue.retain(|id| {
                    let same = conns
                        .get(id)
                        .is_some_and(|c| matches!(&c.state, State::Queued(r) if *r == request));
                    if same {
                        members.push(*id);
                    }
                    !same
                });
            }
            let group = self.next_group;
            self.next_group += 1;
            for id in &members {
                if let Some(c) = self.conns.get_mut(id) {
                    c.state = State::Waiting(group);
                }
            }
            self.groups.insert(group, members);
            self.untaken.insert(group);
            let responder = Responder::new(group, self.notifier.clone());
            if let Err(mpsc::SendError((_, responder))) = self.requests.send((request, responder)) {
                let _ = responder.send(Response::Error {
                    message: "init's control handler has stopped".into(),
                });
            }
        }
    }

    fn on_ready(&mut self, id: u64, revents: i16) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match conn.state {
            State::Reading { .. } if revents & (READABLE | GONE) != 0 => self.read(id),
            State::Queued(_) | State::Waiting(_) if revents & GONE != 0 => self.close(id),
            State::Writing { .. } if revents & (WRITABLE | GONE) != 0 => self.write(id),
            _ => {}
        }
    }

    /// Reads what the client sent; hands a complete request on.
    fn read(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let State::Reading { line, .. } = &mut conn.state else {
            return;
        };
        let mut chunk = [0u8; CHUNK];
        let outcome = loop {
            // One byte beyond the limit tells a line that is too long.
            let room = (MAX_REQUEST + 1 - line.len()).min(CHUNK);
            match (&conn.stream).read(&mut chunk[..room]) {
                Ok(0) => break Ok(std::mem::take(line)),
                Ok(n) => {
                    let new = &chunk[..n];
                    if let Some(pos) = new.iter().position(|b| *b == b'\n') {
                        line.extend_from_slice(&new[..pos]);
                        break Ok(std::mem::take(line));
                    }
                    line.extend_from_slice(new);
                    if line.len() > MAX_REQUEST {
                        break Err(format!("request is longer than {MAX_REQUEST} bytes"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(format!("reading the request: {e}")),
            }
        };
        match outcome.and_then(|line| parse(&line)) {
            Ok(request) => self.dispatch(id, request),
            Err(message) => self.refuse(id, message),
        }
    }

    fn dispatch(&mut self, id: u64, request: Request) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.state = State::Queued(request);
            self.queue.push_back(id);
        }
    }

    fn refuse(&mut self, id: u64, message: String) {
        self.answer(id, &Response::Error { message });
    }

    /// Starts writing `response`; most answers go out at once.
    fn answer(&mut self, id: u64, response: &Response) {
        let bytes = self.budget(line_of(response));
        self.write_out(id, Arc::clone(&bytes));
        self.release(&bytes);
    }

    /// Starts writing `bytes` to connection `id`.
    fn write_out(&mut self, id: u64, bytes: Arc<Vec<u8>>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(
            &mut conn.state,
            State::Writing {
                bytes,
                sent: 0,
                deadline: Instant::now() + CLIENT_TIMEOUT,
            },
        );
        if let State::Writing { bytes, .. } = old {
            self.release(&bytes);
        }
        self.write(id);
    }

    fn write(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let State::Writing { bytes, sent, .. } = &mut conn.state else {
            return;
        };
        let next = loop {
            match (&conn.stream).write(&bytes[*sent..]) {
                Ok(0) => break Next::Close,
                Ok(n) => {
                    *sent += n;
                    if *sent == bytes.len() {
                        // The client may have hung up already; the answer
                        // is written.
                        let _ = conn.stream.shutdown(Shutdown::Both);
                        break Next::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break Next::Close,
            }
        };
        if let Next::Close = next {
            self.close(id);
        }
    }

    fn close(&mut self, id: u64) {
        if let Some(conn) = self.conns.remove(&id) {
            if let State::Writing { bytes, .. } = conn.state {
                self.release(&bytes);
            }
        }
    }

    /// Accepts every pending connection; `false` when accept(2) failed
    /// for good.
    fn accept_all(&mut self) -> bool {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) if is_fatal_accept_error(&e) => return false,
                Err(_) => {
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return true;
                }
            }
        }
    }

    fn admit(&mut self, stream: UnixStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            // Places of clients gone since the last poll count as free.
            self.sweep();
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            // One non-blocking write into the empty socket buffer; a
            // client that cannot take even that learns nothing.
            let bytes = line_of(&Response::Error {
                message: format!(
                    "init is busy: {MAX_CONNECTIONS} clients are connected to its \
                     control socket; try again"
                ),
            });
            let _ = (&stream).write(&bytes);
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let peer = check_peer(&stream);
        self.conns.insert(
            id,
            Conn {
                stream,
                state: State::Reading {
                    line: Vec::new(),
                    deadline: Instant::now() + CLIENT_TIMEOUT,
                },
            },
        );
        match peer {
            Ok(()) => self.read(id),
            Err(message) => self.refuse(id, message),
        }
    }

    /// Refuses requests not complete in time; drops clients that do not
    /// take their answer in time.
    fn expire(&mut self, now: Instant) {
        let late: Vec<(u64, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|d| d <= now))
            .map(|(id, c)| (*id, matches!(c.state, State::Reading { .. })))
            .collect();
        for (id, reading) in late {
            if reading {
                self.refuse(
                    id,
                    format!(
                        "no complete request line within {}s",
                        CLIENT_TIMEOUT.as_secs()
                    ),
                );
            } else {
                self.close(id);
            }
        }
    }
}

fn line_of(response: &Response) -> Vec<u8> {
    // Strings and numbers only: encoding cannot fail, but if it did the
    // client should hear of it rather than get nothing.
    let mut line = serde_json::to_vec(response).unwrap_or_else(|_| {
        b"{\"result\":\"error\",\"message\":\"init could not encode its answer\"}".to_vec()
    });
    line.push(b'\n');
    line
}

fn parse(line: &[u8]) -> Result<Request, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty request".to_string());
    }
    serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
}

fn is_fatal_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP)
    )
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
