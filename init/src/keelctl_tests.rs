//! keelctl against a fake init on a real socket.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::Parser;

use super::*;
use crate::control::Server;

/// 2023-11-14 22:13:20 UTC
const SINCE: u64 = 1_700_000_000_000;

fn unit(name: &str, active: &str, sub: &str, description: Option<&str>) -> UnitStatus {
    UnitStatus {
        name: name.into(),
        kind: name.rsplit('.').next().unwrap_or_default().into(),
        description: description.map(String::from),
        load: "loaded".into(),
        active: active.into(),
        sub: sub.into(),
        main_pid: None,
        since_unix_ms: Some(SINCE),
        result: None,
        restarts: 0,
        enabled: None,
        health: true,
        fragment: None,
    }
}

fn ssh() -> UnitStatus {
    UnitStatus {
        main_pid: Some(412),
        enabled: Some(true),
        fragment: Some("/usr/lib/systemd/system/ssh.service".into()),
        ..unit(
            "ssh.service",
            "active",
            "running",
            Some("OpenBSD Secure Shell server"),
        )
    }
}

fn broken() -> UnitStatus {
    UnitStatus {
        result: Some("exit code 1".into()),
        restarts: 5,
        enabled: Some(false),
        health: false,
        fragment: Some("/etc/systemd/system/bluetooth-long.service".into()),
        ..unit("bluetooth-long.service", "failed", "failed", Some("Broken"))
    }
}

fn missing() -> UnitStatus {
    UnitStatus {
        load: "not-found".into(),
        since_unix_ms: None,
        ..unit("c.target", "inactive", "dead", None)
    }
}

fn all() -> Vec<UnitStatus> {
    vec![ssh(), broken(), missing()]
}

/// A fake init: records requests, answers with `answer`.
struct Fake {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    logs: PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
}

fn fake(answer: fn(&Request) -> Option<Response>) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/keel/control.sock");
    let logs = dir.path().join("log");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    Server::bind(&socket)
        .unwrap()
        .serve(move |req, responder| {
            let reply = answer(&req);
            record.lock().unwrap().push(req);
            if let Some(r) = reply {
                responder.send(r).unwrap();
            }
        })
        .unwrap();
    Fake {
        _dir: dir,
        socket,
        logs,
        seen,
    }
}

/// Status requests get `all()` (or the one unit asked for); others `Ok`
/// with a message naming the request; units named `err*` fail.
fn standard(req: &Request) -> Option<Response> {
    Some(match req {
        Request::Status { unit: None } => Response::Status { units: all() },
        Request::Status { unit: Some(u) } => Response::Status {
            units: all().into_iter().filter(|s| &s.name == u).collect(),
        },
        Request::Start { unit } if unit.starts_with("err") => Response::Error {
            message: format!("unit {unit} not found"),
        },
        Request::Enable { unit } => Response::Ok {
            message: format!(
                "Created symlink /etc/systemd/system/multi-user.target.wants/{unit} → \
                 /usr/lib/systemd/system/{unit}.\n"
            ),
        },
        Request::Stop { .. } => Response::Ok {
            message: String::new(),
        },
        other => Response::Ok {
            message: format!("{other:?}"),
        },
    })
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Fake {
    fn run(&self, args: &[&str]) -> Run {
        let mut argv: Vec<OsString> = vec!["keelctl".into(), "--socket".into()];
        argv.push(self.socket.clone().into());
        argv.push("--log-dir".into());
        argv.push(self.logs.clone().into());
        argv.extend(args.iter().map(OsString::from));
        run_argv(argv)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn run_argv(argv: Vec<OsString>) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // Two hours, five minutes and three seconds after SINCE.
    let now = SINCE + (2 * 3600 + 5 * 60 + 3) * 1000;
    let code = execute(argv, &mut out, &mut err, now);
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn bare(args: &[&str]) -> Run {
    let mut argv = vec![OsString::from("keelctl")];
    argv.extend(args.iter().map(OsString::from));
    run_argv(argv)
}

#[test]
fn commands_send_their_requests_with_normalised_names() {
    let f = fake(standard);
    for args in [
        &["start", "ssh"][..],
        &["stop", "getty@tty1"],
        &["restart", "multi-user.target"],
        &["enable", "ssh.service"],
        &["disable", "containerd"],
        &["reboot"],
        &["poweroff"],
    ] {
        let r = f.run(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.err);
    }
    assert_eq!(
        f.requests(),
        [
            Request::Start {
                unit: "ssh.service".into()
            },
            Request::Stop {
                unit: "getty@tty1.service".into()
            },
            Request::Restart {
                unit: "multi-user.target".into()
            },
            Request::Enable {
                unit: "ssh.service".into()
            },
            Request::Disable {
                unit: "containerd.service".into()
            },
            Request::Reboot,
            Request::Poweroff,
        ]
    );
}

#[test]
fn answers_are_printed_and_errors_exit_1() {
    let f = fake(standard);
    let r = f.run(&["enable", "ssh"]);
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    assert_eq!(
        r.out,
        "Created symlink /etc/systemd/system/multi-user.target.wants/ssh.service → \
         /usr/lib/systemd/system/ssh.service.\n"
    );
    let r = f.run(&["reboot"]);
    assert_eq!(r.out, "Reboot\n");
    // An empty message prints nothing.
    let r = f.run(&["stop", "ssh"]);
    assert_eq!((r.code, r.out.as_str()), (0, ""));

    let r = f.run(&["start", "errant"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "");
    assert_eq!(r.err, "keelctl: error: unit errant.service not found\n");

    // Bad names never reach init.
    let before = f.requests().len();
    let r = f.run(&["start", "a/b"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (1, "keelctl: error: invalid unit name \"a/b\"\n")
    );
    let r = f.run(&["start", "x.nope"]);
    assert_eq!(r.err, "keelctl: error: invalid unit name \"x.nope\"\n");
    assert_eq!(f.requests().len(), before);
}

#[test]
fn a_missing_init_or_a_dropped_request_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let r = bare(&["--socket", sock.to_str().unwrap(), "status"]);
    assert_eq!(r.code, 1);
    assert!(
        r.err
            .starts_with("keelctl: error: init is not listening on "),
        "{}",
        r.err
    );
    assert!(r.err.contains(sock.to_str().unwrap()), "{}", r.err);

    let f = fake(|_| None);
    let r = f.run(&["restart", "ssh"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        "keelctl: error: init closed the connection without answering\n"
    );
}

#[test]
fn status_lists_units_as_a_table() {
    let f = fake(standard);
    let r = f.run(&["status"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "  UNIT                   LOAD      ACTIVE   SUB     DESCRIPTION\n\
         \x20 ssh.service            loaded    active   running OpenBSD Secure Shell server\n\
         ● bluetooth-long.service loaded    failed   failed  Broken\n\
         \x20 c.target               not-found inactive dead\n\
         \n\
         3 units listed, 1 failed\n"
    );
    assert_eq!(f.requests(), [Request::Status { unit: None }]);

    let f = fake(|_| Some(Response::Status { units: vec![] }));
    let r = f.run(&["status"]);
    assert_eq!(
        r.out,
        "  UNIT LOAD ACTIVE SUB DESCRIPTION\n\n0 units listed, 0 failed\n"
    );
    let f = fake(|_| Some(Response::Status { units: vec![ssh()] }));
    assert!(f
        .run(&["status"])
        .out
        .ends_with("\n1 unit listed, 0 failed\n"));
}

#[test]
fn status_of_one_unit_is_a_block_and_exit_3_when_not_active() {
    let f = fake(standard);
    let r = f.run(&["status", "ssh"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "● ssh.service - OpenBSD Secure Shell server\n\
         \x20    Loaded: loaded (/usr/lib/systemd/system/ssh.service; enabled)\n\
         \x20    Active: active (running) since Tue 2023-11-14 22:13:20 UTC; 2h 5min ago\n\
         \x20  Main PID: 412\n\
         \x20  Restarts: 0\n"
    );
    assert_eq!(
        f.requests(),
        [Request::Status {
            unit: Some("ssh.service".into())
        }]
    );

    let r = f.run(&["status", "bluetooth-long"]);
    assert_eq!(r.code, EXIT_NOT_ACTIVE);
    assert_eq!(
        r.out,
        "● bluetooth-long.service - Broken\n\
         \x20    Loaded: loaded (/etc/systemd/system/bluetooth-long.service; disabled)\n\
         \x20    Active: failed (Result: exit code 1) since Tue 2023-11-14 22:13:20 UTC; \
         2h 5min ago\n\
         \x20  Restarts: 5\n\
         \x20    Health: not part of the boot health check\n"
    );

    let r = f.run(&["status", "c.target"]);
    assert_eq!(r.code, EXIT_NOT_ACTIVE);
    assert_eq!(
        r.out,
        "○ c.target\n\
         \x20    Loaded: not-found\n\
         \x20    Active: inactive (dead)\n\
         \x20  Restarts: 0\n"
    );

    let r = f.run(&["status", "other"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        "keelctl: error: init sent no status for other.service\n"
    );
}

#[test]
fn status_json_is_the_protocol_type() {
    let f = fake(standard);
    let r = f.run(&["status", "--json"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let back: Vec<UnitStatus> = serde_json::from_str(&r.out).unwrap();
    assert_eq!(back, all());
    assert!(
        r.out
            .starts_with("[\n  {\n    \"name\": \"ssh.service\",\n"),
        "{}",
        r.out
    );

    let r = f.run(&["status", "--json", "bluetooth-long"]);
    assert_eq!(r.code, EXIT_NOT_ACTIVE);
    let back: UnitStatus = serde_json::from_str(&r.out).unwrap();
    assert_eq!(back, broken());
    assert!(
        r.out.contains("\n  \"result\": \"exit code 1\",\n"),
        "{}",
        r.out
    );
}

#[test]
fn help_is_complete_and_usage_errors_exit_2() {
    let r = bare(&["--help"]);
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    for word in [
        "Control Keel's init",
        "status",
        "start",
        "stop",
        "restart",
        "enable",
        "disable",
        "reboot",
        "poweroff",
        "logs",
        "Exit status",
        "ssh = ssh.service",
    ] {
        assert!(r.out.contains(word), "{word} missing in:\n{}", r.out);
    }
    // The test hooks stay hidden.
    assert!(
        !r.out.contains("--socket") && !r.out.contains("--log-dir"),
        "{}",
        r.out
    );

    let r = bare(&["status", "--help"]);
    assert!(
        r.out.contains("--json") && r.out.contains("The unit to show in detail"),
        "{}",
        r.out
    );
    let r = bare(&["logs", "--help"]);
    for word in [
        "-f, --follow",
        "-n, --lines <N>",
        "[default: 50]",
        "The unit whose log",
    ] {
        assert!(r.out.contains(word), "{word} missing in:\n{}", r.out);
    }

    let r = bare(&["frobnicate"]);
    assert_eq!(r.code, 2);
    assert!(
        r.err.contains("unrecognized subcommand 'frobnicate'"),
        "{}",
        r.err
    );
    let r = bare(&["start"]);
    assert_eq!(r.code, 2);
    assert!(r.err.contains("<UNIT>"), "{}", r.err);
    assert_eq!(bare(&[]).code, 2);
}

#[test]
fn logs_arguments() {
    let parse = |args: &[&str]| {
        let mut argv = vec!["keelctl"];
        argv.extend(args);
        Cli::try_parse_from(argv).unwrap()
    };
    let cli = parse(&["logs", "ssh"]);
    assert_eq!(cli.socket, Path::new(control::SOCKET));
    assert_eq!(cli.log_dir, Path::new(logs::LOG_DIR));
    match cli.command {
        Command::Logs {
            unit,
            follow,
            lines,
        } => assert_eq!((unit.as_str(), follow, lines), ("ssh", false, 50)),
        other => panic!("{other:?}"),
    }
    match parse(&["logs", "-f", "-n", "7", "x.service"]).command {
        Command::Logs { follow, lines, .. } => assert_eq!((follow, lines), (true, 7)),
        other => panic!("{other:?}"),
    }
    match parse(&["logs", "--follow", "--lines=0", "x"]).command {
        Command::Logs { follow, lines, .. } => assert_eq!((follow, lines), (true, 0)),
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["keelctl", "logs", "-n", "many", "x"]).is_err());
    let r = bare(&["logs", "a/b"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (1, "keelctl: error: invalid unit name \"a/b\"\n")
    );
}

#[test]
fn times_are_printed_like_systemd() {
    assert_eq!(utc(0), "Thu 1970-01-01 00:00:00 UTC");
    assert_eq!(utc(SINCE + 999), "Tue 2023-11-14 22:13:20 UTC");
    assert_eq!(utc(951_782_400_000), "Tue 2000-02-29 00:00:00 UTC");
    for (ms, text) in [
        (0, "0ms"),
        (999, "999ms"),
        (1000, "1s"),
        (61_000, "1min 1s"),
        (3_600_000, "1h"),
        (3_660_000, "1h 1min"),
        (86_400_000, "1 day"),
        (2 * 86_400_000 + 3_600_000, "2 days 1h"),
        (86_400_000 + 60_000, "1 day"),
        (8 * 86_400_000, "1 week 1 day"),
        (400 * 86_400_000, "1 year 1 month"),
    ] {
        assert_eq!(span(ms), text, "{ms}");
    }
}
