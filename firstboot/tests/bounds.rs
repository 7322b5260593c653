//! Bounds on what comes from outside, through the real binary and a real
//! HTTP server on the loopback: a gzip bomb (served, and as a `data:` URL)
//! stops at the limit with an error naming the JSON path, the source and
//! the limit, in a process whose address space is capped below what the
//! bomb inflates to; a lying `Content-Length` and an endless answer stop
//! at the limit too; a redirect loop is asked once, not retried; a 404's
//! reason is printed once.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_keel-firstboot");
const MIB: u64 = 1 << 20;
/// What the bomb inflates to.
const BOMB: u64 = 1 << 30;
/// The limit given to apply, below the bomb.
const LIMIT: u64 = 192 * MIB;
/// The child's address space, below the limit: before the bounds, the
/// inflated bytes were kept in memory, and the child died of it.
const ADDRESS_SPACE_KIB: u64 = 160 * 1024;

/// A gzip of `BOMB` zero bytes (about a thousandth of that).
fn bomb() -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; MIB as usize];
    for _ in 0..BOMB / MIB {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap()
}

/// What the server answers on one path.
#[derive(Clone)]
enum Answer {
    Body(Vec<u8>),
    /// A redirect to the path given.
    Redirect(String),
    /// `Content-Length` says more than comes.
    Liar(u64),
    /// Zeros until the client stops reading (at most a GiB).
    Endless,
}

/// A small HTTP/1.1 server on 127.0.0.1 that counts the requests per path.
struct Server {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(routes: Vec<(&str, Answer)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<Vec<(String, Answer)>> = Arc::new(
            routes
                .into_iter()
                .map(|(p, a)| (p.to_string(), a))
                .collect(),
        );
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (routes, hits) = (routes.clone(), h.clone());
                        std::thread::spawn(move || serve(stream, &routes, &hits));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server { port, hits, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, routes: &[(String, Answer)], hits: &Mutex<Vec<String>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    hits.lock().unwrap().push(path.clone());
    let mut out = stream;
    let head = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
    };
    let _ = match routes.iter().find(|(p, _)| *p == path).map(|(_, a)| a) {
        Some(Answer::Body(b)) => out
            .write_all(&head("200 OK", &format!("Content-Length: {}\r\n", b.len())))
            .and_then(|()| out.write_all(b)),
        Some(Answer::Redirect(to)) => out.write_all(&head(
            "302 Found",
            &format!("Location: {to}\r\nContent-Length: 0\r\n"),
        )),
        Some(Answer::Liar(len)) => out
            .write_all(&head("200 OK", &format!("Content-Length: {len}\r\n")))
            .and_then(|()| out.write_all(b"short")),
        Some(Answer::Endless) => out.write_all(&head("200 OK", "")).and_then(|()| {
            let zeros = vec![0u8; MIB as usize];
            (0..1024).try_for_each(|_| out.write_all(&zeros))
        }),
        None => out.write_all(&head("404 Not Found", "Content-Length: 0\r\n")),
    };
}

fn config_with(source: &str, gzip: bool) -> String {
    let compression = if gzip { r#","compression":"gzip""# } else { "" };
    format!(
        r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[
            {{"path":"/etc/small","contents":{{"source":"data:,fine"}}}},
            {{"path":"/var/big","contents":{{"source":"{source}"{compression}}}}}]}}}}"#
    )
}

/// `keel-firstboot apply --max-fetched LIMIT` of `config` to a new root,
/// its address space capped.
fn apply(dir: &Path, config: &str) -> Output {
    let cfg = dir.join("config.ign");
    std::fs::write(&cfg, config).unwrap();
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("var/tmp")).unwrap();
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" apply --root \"$1\" --config \"$2\" --max-fetched {LIMIT}"
        ))
        .arg(BIN)
        .arg(&root)
        .arg(&cfg)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Nothing was written below the root (the spool has no name).
fn untouched(dir: &Path) {
    let root = dir.join("root");
    let names: Vec<_> = walk(&root);
    assert_eq!(names, ["var", "var/tmp"], "written below the root");
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_gzip_bomb_stops_at_the_limit_in_bounded_memory() {
    let bomb = bomb();
    assert!(bomb.len() < 2 * MIB as usize, "{}", bomb.len());
    let srv = Server::start(vec![("/bomb.gz", Answer::Body(bomb.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let out = apply(dir.path(), &config_with(&srv.url("/bomb.gz"), true));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "$.storage.files.1.contents: {}: the decompressed contents are larger than the limit of {LIMIT} bytes (192.0 MiB) (the limit given for this apply; earlier resources took 4 bytes)",
            srv.url("/bomb.gz")
        )),
        "{t}"
    );
    assert_eq!(srv.hits("/bomb.gz"), 1, "a bomb was fetched again");
    untouched(dir.path());

    // The same bomb inline.
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bomb);
    let dir = tempfile::tempdir().unwrap();
    let out = apply(
        dir.path(),
        &config_with(&format!("data:;base64,{b64}"), true),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("$.storage.files.1.contents: data:;base64,")
            && t.contains(
                ": the decompressed contents are larger than the limit of 201326592 bytes"
            ),
        "{t}"
    );
    untouched(dir.path());
}

#[test]
fn downloads_stop_at_the_limit_whatever_the_server_says() {
    let srv = Server::start(vec![
        ("/liar", Answer::Liar(LIMIT + 1)),
        ("/endless", Answer::Endless),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = apply(dir.path(), &config_with(&srv.url("/liar"), false));
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "{}: the answer ({} bytes, its Content-Length) is larger than the limit of {LIMIT} bytes",
            srv.url("/liar"),
            LIMIT + 1
        )),
        "{t}"
    );
    assert_eq!(srv.hits("/liar"), 1);
    let dir = tempfile::tempdir().unwrap();
    let out = apply(dir.path(), &config_with(&srv.url("/endless"), false));
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "{}: the answer is larger than the limit of {LIMIT} bytes",
            srv.url("/endless")
        )),
        "{t}"
    );
    assert_eq!(
        srv.hits("/endless"),
        1,
        "a too large answer was fetched again"
    );
    untouched(dir.path());
}

#[test]
fn a_redirect_loop_is_final_and_a_404_is_said_once() {
    let srv = Server::start(vec![
        ("/loop", Answer::Redirect("/loop".into())),
        ("/a", Answer::Redirect("/b".into())),
        ("/b", Answer::Body(b"after a redirect\n".to_vec())),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = apply(dir.path(), &config_with(&srv.url("/loop"), false));
    let t = text(&out);
    assert!(
        t.contains(&format!("{}: stopped after 10 redirects", srv.url("/loop"))),
        "{t}"
    );
    assert!(!t.contains("retrying"), "{t}");
    // The first request and the 10 redirects it followed, once.
    assert_eq!(srv.hits("/loop"), 11, "{t}");

    let out = apply(dir.path(), &config_with(&srv.url("/missing"), false));
    let t = text(&out);
    assert_eq!(t.matches("server answered 404").count(), 1, "{t}");
    assert_eq!(srv.hits("/missing"), 1);

    // A redirect that ends somewhere is followed.
    let dir = tempfile::tempdir().unwrap();
    let out = apply(dir.path(), &config_with(&srv.url("/a"), false));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.path().join("root/var/big")).unwrap(),
        b"after a redirect\n"
    );
}

#[test]
fn large_contents_under_the_limit_are_written_whole() {
    // Bigger than what is kept in memory: spooled, then written.
    let mut data = Vec::new();
    let mut x: u32 = 1;
    while data.len() < 40 * MIB as usize {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.extend_from_slice(&x.to_le_bytes());
    }
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha512::digest(&data))
    };
    let srv = Server::start(vec![("/big", Answer::Body(data.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(&srv.url("/big"), false).replace(
        r#"/big"}"#,
        &format!(r#"/big","verification":{{"hash":"sha512-{hash}"}}}}"#),
    );
    assert!(cfg.contains("sha512-"), "{cfg}");
    let out = apply(dir.path(), &cfg);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read(dir.path().join("root/var/big")).unwrap();
    assert!(written == data, "the written file differs");
    // Nothing of the spool is left.
    assert_eq!(walk(&dir.path().join("root/var/tmp")), Vec::<String>::new());
}
