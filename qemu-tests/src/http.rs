//! A small HTTP/1.1 server on the host's loopback for guests to fetch from
//! (the guest reaches 127.0.0.1 as 10.0.2.2 through QEMU's user network).
//!
//! It serves fixed bodies by path (or a sequence of answers, e.g. 503s
//! before a 200), answers every request with `Connection: close`, records
//! each request line and its headers, and stops when dropped.
//! Every connection has a read and write timeout, so a stuck client cannot
//! hold a thread forever.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::HarnessError;

/// How the guest addresses the host's loopback.
pub const HOST_FROM_GUEST: &str = "10.0.2.2";

const IO_TIMEOUT: Duration = Duration::from_secs(30);
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// Request heads larger than this are refused (431).
const MAX_HEAD: usize = 16 * 1024;

/// What the server answers for one path.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            body: body.into(),
        }
    }
}

/// Per path, the answers still to give; the last one is repeated.
type Heads = Arc<Mutex<Vec<Vec<String>>>>;
type Routes = Arc<Mutex<BTreeMap<String, Vec<Response>>>>;

/// A running server; see the module documentation.
pub struct HttpServer {
    port: u16,
    routes: Routes,
    requests: Arc<Mutex<Vec<String>>>,
    headers: Heads,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts a server on a free port of 127.0.0.1 with no routes; every
    /// path is 404 until [`HttpServer::route`] sets it.
    pub fn start() -> Result<Self, HarnessError> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(HarnessError::HttpServer)?;
        let port = listener
            .local_addr()
            .map_err(HarnessError::HttpServer)?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(HarnessError::HttpServer)?;
        let routes: Routes = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let headers: Heads = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, requests, heads, stop) = (
                routes.clone(),
                requests.clone(),
                headers.clone(),
                stop.clone(),
            );
            thread::Builder::new()
                .name(format!("http-{port}"))
                .spawn(move || accept_loop(&listener, &routes, &requests, &heads, &stop))
                .map_err(HarnessError::HttpServer)?
        };
        Ok(Self {
            port,
            routes,
            requests,
            headers,
            stop,
            thread: Some(thread),
        })
    }

    /// Serves `response` for GET and HEAD of `path` (which starts with `/`).
    pub fn route(&self, path: &str, response: Response) {
        lock(&self.routes).insert(path.to_string(), vec![response]);
    }

    /// Serves `responses` in turn for `path`, then the last one for every
    /// later request (a server that fails a few times, then works).
    pub fn route_sequence(&self, path: &str, responses: Vec<Response>) {
        lock(&self.routes).insert(path.to_string(), responses);
    }

    /// The header lines of every request so far (`Name: value`), in order.
    pub fn request_headers(&self) -> Vec<Vec<String>> {
        lock(&self.headers).clone()
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `path` as the guest sees it (`http://10.0.2.2:PORT/path`).
    pub fn guest_url(&self, path: &str) -> String {
        format!("http://{HOST_FROM_GUEST}:{}{path}", self.port)
    }

    /// The request lines received so far (`GET /path HTTP/1.1`), in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn accept_loop(
    listener: &TcpListener,
    routes: &Routes,
    requests: &Arc<Mutex<Vec<String>>>,
    heads: &Heads,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (routes, requests, heads) = (routes.clone(), requests.clone(), heads.clone());
                // One short-lived thread per connection; a failed spawn
                // drops the connection, which the client sees as a reset.
                let _ = thread::Builder::new()
                    .name("http-conn".into())
                    .spawn(move || {
                        let _ = serve(stream, &routes, &requests, &heads);
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

fn serve(
    stream: TcpStream,
    routes: &Routes,
    requests: &Mutex<Vec<String>>,
    heads: &Mutex<Vec<Vec<String>>>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request_line = line.trim_end().to_string();
    // The header lines, up to the blank line.
    let mut head = request_line.len();
    let mut header_lines = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        head += h.len();
        if head > MAX_HEAD {
            return respond(stream, 431, b"request head too large\n", false);
        }
        header_lines.push(h.trim_end().to_string());
    }
    lock(requests).push(request_line.clone());
    lock(heads).push(header_lines);
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(stream, 405, b"only GET and HEAD\n", false);
    }
    let found = {
        let mut routes = lock(routes);
        match routes.get_mut(path) {
            Some(queue) if queue.len() > 1 => Some(queue.remove(0)),
            Some(queue) => queue.first().cloned(),
            None => None,
        }
    };
    match found {
        Some(r) => respond(stream, r.status, &r.body, head_only),
        None => respond(stream, 404, b"not found\n", head_only),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn respond(mut stream: TcpStream, status: u16, body: &[u8], head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(port: u16, request: &str) -> String {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_routes_and_records_requests() {
        let srv = HttpServer::start().unwrap();
        srv.route("/a", Response::ok("hello"));
        srv.route(
            "/busy",
            Response {
                status: 503,
                body: b"later".to_vec(),
            },
        );
        let a = get(srv.port(), "GET /a?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.contains("Content-Length: 5\r\n") && a.ends_with("\r\n\r\nhello"));
        let h = get(srv.port(), "HEAD /a HTTP/1.1\r\n\r\n");
        assert!(
            h.contains("Content-Length: 5\r\n") && h.ends_with("\r\n\r\n"),
            "{h}"
        );
        assert!(get(srv.port(), "GET /busy HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 503 "));
        assert!(get(srv.port(), "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(get(srv.port(), "POST /a HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert_eq!(
            srv.requests(),
            [
                "GET /a?x=1 HTTP/1.1",
                "HEAD /a HTTP/1.1",
                "GET /busy HTTP/1.0",
                "GET /nope HTTP/1.1",
                "POST /a HTTP/1.1"
            ]
        );
        assert_eq!(
            srv.guest_url("/a"),
            format!("http://10.0.2.2:{}/a", srv.port())
        );
    }
}
