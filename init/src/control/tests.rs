//! The control socket over real sockets in a temporary directory.

use std::fs::{self, Permissions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::*;

const T: Duration = Duration::from_secs(10);

fn status_of(name: &str) -> UnitStatus {
    UnitStatus {
        name: name.into(),
        kind: name.rsplit('.').next().unwrap_or_default().into(),
        description: Some(format!("the {name}")),
        load: "loaded".into(),
        active: "active".into(),
        sub: "running".into(),
        main_pid: Some(42),
        since_unix_ms: Some(1_700_000_000_000),
        result: None,
        restarts: 1,
        enabled: Some(true),
        health: true,
        fragment: None,
    }
}

/// A server at `dir`/run/keel/control.sock that answers status requests
/// and counts the requests that reach the handler.
fn serve_status(dir: &Path) -> (PathBuf, Arc<AtomicUsize>) {
    let path = dir.join("run/keel/control.sock");
    let server = Server::bind(&path).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    server
        .serve(move |req, responder| {
            counter.fetch_add(1, Ordering::SeqCst);
            let response = match req {
                Request::Status { unit: Some(u) } => Response::Status {
                    units: vec![status_of(&u)],
                },
                Request::Status { unit: None } => Response::Status {
                    units: vec![status_of("a.service"), status_of("b.service")],
                },
                Request::Start { unit } if unit == "drop.service" => return drop(responder),
                Request::Start { unit } if unit == "later.service" => {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(100));
                        responder
                            .send(Response::Ok {
                                message: "started later".into(),
                            })
                            .unwrap();
                    });
                    return;
                }
                other => Response::Ok {
                    message: format!("{other:?}"),
                },
            };
            responder.send(response).unwrap();
        })
        .unwrap();
    (path, calls)
}

/// Sends raw bytes and returns the one response line.
fn raw(path: &Path, bytes: &[u8]) -> Response {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    // The server may close before taking everything: that is the point.
    let _ = s.write_all(bytes);
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn error_message(r: Response) -> String {
    match r {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn bind_makes_a_private_socket_and_serves_status() {
    let dir = tempfile::tempdir().unwrap();
    let (path, calls) = serve_status(dir.path());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir.path().join("run")), 0o700);
    assert_eq!(mode(&dir.path().join("run/keel")), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert!(fs::metadata(&path).unwrap().file_type().is_socket());

    let r = request(&path, &Request::Status { unit: None }, T).unwrap();
    assert_eq!(
        r,
        Response::Status {
            units: vec![status_of("a.service"), status_of("b.service")]
        }
    );
    let r = request(
        &path,
        &Request::Status {
            unit: Some("x.service".into()),
        },
        T,
    )
    .unwrap();
    assert_eq!(
        r,
        Response::Status {
            units: vec![status_of("x.service")]
        }
    );
    // The wire format is one JSON line each way.
    let r = raw(&path, b"{\"op\":\"reboot\"}\n");
    assert_eq!(
        r,
        Response::Ok {
            message: "Reboot".into()
        }
    );
    // Answering later, from another thread.
    let r = request(
        &path,
        &Request::Start {
            unit: "later.service".into(),
        },
        T,
    )
    .unwrap();
    assert_eq!(
        r,
        Response::Ok {
            message: "started later".into()
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn bad_requests_get_an_error_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (path, calls) = serve_status(dir.path());
    let m = error_message(raw(&path, b"{\"op\":\"status\"\n"));
    assert!(m.starts_with("bad request: "), "{m}");
    let m = error_message(raw(&path, b"{\"op\":\"frobnicate\"}\n"));
    assert!(m.contains("frobnicate"), "{m}");
    let m = error_message(raw(&path, b"{\"op\":\"start\"}\n"));
    assert!(m.contains("missing field `unit`"), "{m}");
    let m = error_message(raw(&path, b"\n"));
    assert_eq!(m, "empty request");
    // The client closing its side without a newline still counts.
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"{\"op\":\"poweroff\"}").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "{\"result\":\"ok\",\"message\":\"Poweroff\"}\n");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn oversized_requests_are_refused_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (path, calls) = serve_status(dir.path());
    // Exactly MAX_REQUEST bytes before the newline: accepted.
    let head = "{\"op\":\"start\",\"unit\":\"";
    let tail = "\"}";
    let fill = "x".repeat(server::MAX_REQUEST - head.len() - tail.len());
    let line = format!("{head}{fill}{tail}\n");
    assert_eq!(line.len(), server::MAX_REQUEST + 1);
    assert!(matches!(raw(&path, line.as_bytes()), Response::Ok { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // One byte more: refused, without reaching the handler.
    let line = format!("{head}x{fill}{tail}\n");
    let m = error_message(raw(&path, line.as_bytes()));
    assert_eq!(m, "request is longer than 65536 bytes");
    // A megabyte without a newline: same, and the client learns why.
    let big = vec![b'a'; 1 << 20];
    let m = error_message(raw(&path, &big));
    assert_eq!(m, "request is longer than 65536 bytes");
    let r = request(
        &path,
        &Request::Start {
            unit: "y".repeat(1 << 20),
        },
        T,
    )
    .unwrap();
    assert_eq!(error_message(r), "request is longer than 65536 bytes");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_dropped_responder_closes_without_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = serve_status(dir.path());
    let err = request(
        &path,
        &Request::Start {
            unit: "drop.service".into(),
        },
        T,
    )
    .unwrap_err();
    assert!(matches!(err, ClientError::NoAnswer), "{err:?}");
    assert_eq!(
        err.to_string(),
        "init closed the connection without answering"
    );
    // The server goes on serving.
    assert!(request(&path, &Request::Reboot, T).is_ok());
}

#[test]
fn a_silent_client_blocks_nobody_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = serve_status(dir.path());
    let silent = UnixStream::connect(&path).unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        assert!(request(&path, &Request::Reboot, T).is_ok());
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    silent.set_read_timeout(Some(T)).unwrap();
    let mut line = String::new();
    BufReader::new(&silent).read_line(&mut line).unwrap();
    let r: Response = serde_json::from_str(&line).unwrap();
    assert_eq!(error_message(r), "no complete request line within 5s");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(4), "{waited:?}");
}

#[test]
fn binding_replaces_stale_sockets_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    drop(Server::bind(&path).unwrap());
    // Left behind by a previous init: nobody listens, so it is replaced.
    assert!(path.exists());
    let server = Server::bind(&path).unwrap();
    let _running = server.serve(|_, r| drop(r)).unwrap();
    let err = Server::bind(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        err.to_string().contains("another process is listening"),
        "{err}"
    );

    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = Server::bind(&file).unwrap_err();
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn client_errors_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let err = request(&missing, &Request::Reboot, T).unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );

    // A socket file nobody listens on.
    let dead = dir.path().join("dead.sock");
    drop(UnixListener::bind(&dead).unwrap());
    let err = request(&dead, &Request::Reboot, T).unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");

    // A server that answers nonsense, or nothing in time.
    let odd = dir.path().join("odd.sock");
    let listener = UnixListener::bind(&odd).unwrap();
    let (tx, rx) = mpsc::channel::<UnixStream>();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        s.write_all(b"hello\n").unwrap();
        let (s, _) = listener.accept().unwrap();
        // Keep the second connection open without answering.
        tx.send(s).unwrap();
    });
    let err = request(&odd, &Request::Reboot, T).unwrap_err();
    assert!(matches!(err, ClientError::BadResponse { .. }), "{err:?}");
    let err = request(&odd, &Request::Reboot, Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert_eq!(err.to_string(), "init did not answer within 0.2s");
    drop(rx);
}

/// Environment variable that makes [`child_client`] run.
const CHILD_SOCKET: &str = "KEEL_CONTROL_TEST_SOCKET";

/// Not a test: the client half of [`non_root_callers_are_refused`], run in
/// a child process as uid 65534.
#[test]
#[ignore = "helper, run as another user by non_root_callers_are_refused"]
fn child_client() {
    let Some(path) = std::env::var_os(CHILD_SOCKET) else {
        return;
    };
    let result = request(Path::new(&path), &Request::Reboot, T);
    println!("RESULT: {result:?}");
    if let Err(e) = result {
        println!("MESSAGE: {e}");
    }
}

/// Runs [`child_client`] as nobody (uid/gid 65534) against `socket`.
fn as_nobody(socket: &Path) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "control::tests::child_client",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_SOCKET, socket)
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("RESULT: "),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Needs root (to switch the child to another user), as the tests of
/// keel-init generally do.
#[test]
fn non_root_callers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();

    // As bound: the 0700 directory keeps others from even connecting.
    let (path, calls) = serve_status(dir.path());
    let out = as_nobody(&path);
    assert!(out.contains("RESULT: Err(PermissionDenied)"), "{out}");
    assert!(
        out.contains("MESSAGE: permission denied: keelctl must run as root"),
        "{out}"
    );

    // With the file modes opened up, the peer credential check refuses.
    let open = dir.path().join("open.sock");
    let server = Server::bind(&open).unwrap();
    fs::set_permissions(&open, Permissions::from_mode(0o666)).unwrap();
    let open_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&open_calls);
    server
        .serve(move |_, r| {
            counter.fetch_add(1, Ordering::SeqCst);
            r.send(Response::Ok {
                message: "done".into(),
            })
            .unwrap();
        })
        .unwrap();
    let out = as_nobody(&open);
    assert!(
        out.contains(
            "RESULT: Ok(Error { message: \"permission denied: only root may control init \
             (caller is uid 65534)\" })"
        ),
        "{out}"
    );
    assert_eq!(open_calls.load(Ordering::SeqCst), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Root still gets through.
    assert!(matches!(
        request(&open, &Request::Reboot, T).unwrap(),
        Response::Ok { .. }
    ));
}

#[test]
fn a_client_that_never_reads_holds_up_neither_the_answerer_nor_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let server = Server::bind(&path).unwrap();
    // Far more than a socket buffer takes.
    let many: Vec<UnitStatus> = (0..10_000)
        .map(|i| status_of(&format!("u{i}.service")))
        .collect();
    let (took_tx, took) = mpsc::channel::<Duration>();
    server
        .serve(move |req, responder| {
            let response = match req {
                Request::Status { unit: None } => Response::Status {
                    units: many.clone(),
                },
                _ => Response::Ok {
                    message: "done".into(),
                },
            };
            let t = Instant::now();
            responder.send(response).unwrap();
            took_tx.send(t.elapsed()).unwrap();
        })
        .unwrap();
    let mut lazy = UnixStream::connect(&path).unwrap();
    lazy.write_all(b"{\"op\":\"status\"}\n").unwrap();
    let handed = took.recv_timeout(T).unwrap();
    assert!(handed < Duration::from_millis(500), "{handed:?}");
    let started = Instant::now();
    assert!(matches!(
        request(&path, &Request::Reboot, T).unwrap(),
        Response::Ok { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    // The lazy client gets the start of its answer, then is dropped
    // after the client timeout.
    lazy.set_read_timeout(Some(T)).unwrap();
    std::thread::sleep(server::CLIENT_TIMEOUT + Duration::from_secs(1));
    let mut got = Vec::new();
    let _ = lazy.read_to_end(&mut got);
    assert!(!got.is_empty());
    assert!(got.len() < 1 << 20, "{}", got.len());
    assert_ne!(got.last(), Some(&b'\n'));
}

#[test]
fn connections_beyond_the_limit_are_told_busy_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, calls) = serve_status(dir.path());
    let held: Vec<UnixStream> = (0..server::MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let started = Instant::now();
    let r = request(&path, &Request::Reboot, T).unwrap();
    assert_eq!(
        error_message(r),
        "init is busy: 256 clients are connected to its control socket; try again"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);
    // The places are free again once the server saw the hang-ups.
    let until = Instant::now() + T;
    loop {
        match request(&path, &Request::Reboot, T).unwrap() {
            Response::Ok { .. } => break,
            other if Instant::now() > until => panic!("{other:?}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn waiting_requests_of_gone_clients_are_dropped_and_equal_statuses_share_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let server = Server::bind(&path).unwrap();
    let (gate_tx, gate) = mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Request>::new()));
    let log = Arc::clone(&seen);
    server
        .serve(move |req, responder| {
            log.lock().unwrap().push(req.clone());
            if req
                == (Request::Start {
                    unit: "gate".into(),
                })
            {
                gate.lock().unwrap().recv().unwrap();
            }
            let n = log.lock().unwrap().len();
            responder
                .send(Response::Ok {
                    message: format!("answer {n}"),
                })
                .unwrap();
        })
        .unwrap();
    let ask = |req: Request| {
        let path = path.clone();
        std::thread::spawn(move || request(&path, &req, T).unwrap())
    };
    let start = |unit: &str| Request::Start { unit: unit.into() };
    let waits_for = |n: usize| {
        let until = Instant::now() + T;
        while seen.lock().unwrap().len() < n {
            assert!(Instant::now() < until, "{:?}", seen.lock().unwrap());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // The handler is stuck in the first request; the second is handed on
    // behind it; everything else waits in the server.
    let first = ask(start("gate"));
    waits_for(1);
    let second = ask(start("second"));
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let mut gone = UnixStream::connect(&path).unwrap();
        gone.write_all(b"{\"op\":\"start\",\"unit\":\"gone\"}\n")
            .unwrap();
    }
    let all = Request::Status { unit: None };
    let statuses: Vec<_> = (0..3).map(|_| ask(all.clone())).collect();
    let last = ask(start("last"));
    std::thread::sleep(Duration::from_millis(300));
    gate_tx.send(()).unwrap();
    let answers: Vec<Response> = statuses.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(matches!(first.join().unwrap(), Response::Ok { .. }));
    assert!(matches!(second.join().unwrap(), Response::Ok { .. }));
    assert!(matches!(last.join().unwrap(), Response::Ok { .. }));
    assert_eq!(
        *seen.lock().unwrap(),
        [start("gate"), start("second"), all, start("last")]
    );
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
}

#[test]
fn answers_nobody_reads_are_bounded_in_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let server = Server::bind(&path).unwrap();
    // About 2.4 MB as JSON.
    let many: Vec<UnitStatus> = (0..8_000)
        .map(|i| status_of(&format!("u{i}.service")))
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    server
        .serve(move |_, responder| {
            responder
                .send(Response::Status {
                    units: many.clone(),
                })
                .unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    // One after the other, so that they are not answered together.
    let mut lazy = Vec::new();
    for n in 1..=8 {
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"op\":\"status\"}\n").unwrap();
        lazy.push(s);
        let until = Instant::now() + T;
        while calls.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < until);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let m = error_message(request(&path, &Request::Status { unit: None }, T).unwrap());
    assert!(
        m.starts_with("init is busy: other clients have not read ") && m.ends_with("try again"),
        "{m}"
    );
    // Once the lazy clients are dropped after their timeout, the answer
    // comes whole.
    std::thread::sleep(server::CLIENT_TIMEOUT + Duration::from_secs(1));
    match request(&path, &Request::Status { unit: None }, T).unwrap() {
        Response::Status { units } => assert_eq!(units.len(), 8_000),
        other => panic!("{other:?}"),
    }
    drop(lazy);
}
