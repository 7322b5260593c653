//! Tests of [`super`]: real child processes (the suite runs as root).

use super::*;
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the keel-init tests must run as root (CI does)");
}

fn sh(script: &str) -> ExecSpec {
    let mut spec = ExecSpec::new("/bin/sh", vec!["sh".into(), "-c".into(), script.into()]);
    spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    spec
}

/// Runs `spec` with stdout and stderr into one pipe; returns what it wrote
/// (read to EOF, which also proves we kept no copy of the write end) and
/// how it ended.
fn run(mut spec: ExecSpec) -> (String, ExitStatus) {
    let (mut r, w) = io::pipe().unwrap();
    spec.output = OutputSpec::Fd(w.into());
    let pid = spawn(spec).unwrap();
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    (out, decode_status(wait_pid(pid).unwrap()))
}

fn run_ok(spec: ExecSpec) -> String {
    let (out, status) = run(spec);
    assert_eq!(status, ExitStatus::Exited(0), "output: {out}");
    out
}

#[test]
fn environment_is_exactly_the_given_one() {
    let mut spec = ExecSpec::new("/usr/bin/env", vec!["env".into()]);
    spec.env = vec![
        ("A".into(), "1 2".into()),
        ("NOTIFY_SOCKET".into(), "/old".into()),
        ("PATH".into(), "/bin".into()),
    ];
    spec.notify_socket = Some("/run/keel/notify".into());
    let out = run_ok(spec);
    let lines: BTreeSet<&str> = out.lines().collect();
    assert_eq!(
        lines,
        BTreeSet::from(["A=1 2", "NOTIFY_SOCKET=/run/keel/notify", "PATH=/bin"])
    );
}

#[test]
fn argv0_is_passed() {
    let mut spec = ExecSpec::new(
        "/bin/sh",
        vec!["my-name".into(), "-c".into(), "echo $0".into()],
    );
    spec.env = vec![];
    assert_eq!(run_ok(spec), "my-name\n");
}

#[test]
fn working_directory() {
    let t = tempfile::tempdir().unwrap();
    assert_eq!(run_ok(sh("pwd")), "/\n", "default");

    let mut spec = sh("pwd");
    spec.cwd = Some(t.path().to_path_buf());
    assert_eq!(run_ok(spec), format!("{}\n", t.path().display()));

    let missing = t.path().join("missing");
    let mut spec = sh("pwd");
    spec.cwd = Some(missing.clone());
    spec.cwd_optional = true;
    assert_eq!(run_ok(spec), "/\n", "optional and missing");

    let mut spec = sh("pwd");
    spec.cwd = Some(missing.clone());
    let e = spawn(spec).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!(
            "starting /bin/sh: changing directory to {}",
            missing.display()
        )
    );
    let inner = std::error::Error::source(&e).unwrap().to_string();
    assert!(inner.contains("os error 2"), "{inner}");
}

#[test]
fn umask_nice_oom_score_and_rlimits() {
    let mut spec =
        sh("umask; nice; cat /proc/self/oom_score_adj; ulimit -n; ulimit -Hn; ulimit -c");
    spec.umask = 0o027;
    spec.nice = Some(7);
    spec.oom_score_adjust = Some(500);
    spec.rlimits = vec![
        (RlimitResource::Nofile, 1234, 2048),
        (RlimitResource::Core, u64::MAX, u64::MAX),
    ];
    assert_eq!(run_ok(spec), "0027\n7\n500\n1234\n2048\nunlimited\n");
}

#[test]
fn bad_rlimit_is_named() {
    let mut spec = sh("true");
    spec.rlimits = vec![
        (RlimitResource::Core, 0, 0),
        (RlimitResource::Nofile, 10, 5),
    ];
    let e = spawn(spec).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        e.to_string(),
        "starting /bin/sh: setting RLIMIT_NOFILE to 10:5"
    );
}

#[test]
fn output_to_one_pipe_or_two() {
    let out = run_ok(sh("echo out; echo err >&2"));
    assert_eq!(out, "out\nerr\n");

    let (mut r1, w1) = io::pipe().unwrap();
    let (mut r2, w2) = io::pipe().unwrap();
    let mut spec = sh("echo out; echo err >&2");
    spec.output = OutputSpec::Split {
        stdout: w1.into(),
        stderr: w2.into(),
    };
    let pid = spawn(spec).unwrap();
    let (mut a, mut b) = (String::new(), String::new());
    r1.read_to_string(&mut a).unwrap();
    r2.read_to_string(&mut b).unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("out\n", "err\n"));
    assert!(decode_status(wait_pid(pid).unwrap()).success());

    // Null: nothing comes out, and stdin reads as empty.
    let mut spec = sh("cat; echo gone");
    spec.output = OutputSpec::Null;
    let pid = spawn(spec).unwrap();
    assert!(decode_status(wait_pid(pid).unwrap()).success());
}

#[test]
fn exec_failures_are_returned() {
    let e = spawn(ExecSpec::new("/nonexistent/prog", vec![])).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert_eq!(e.to_string(), "starting /nonexistent/prog: exec");

    let mut spec = sh("true");
    spec.env = vec![("A".into(), "nul\0byte".into())];
    let e = spawn(spec).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        e.to_string(),
        "starting /bin/sh: preparing arguments and environment"
    );

    let t = tempfile::tempdir().unwrap();
    let script = t.path().join("script");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let e = spawn(ExecSpec::new(&script, vec![])).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
}

#[test]
fn switches_user_and_groups() {
    assert_root();
    let mut spec = sh("id -u; id -g; id -G");
    spec.uid = Some(65534);
    spec.gid = Some(65534);
    assert_eq!(
        run_ok(spec),
        "65534\n65534\n65534\n",
        "root's groups dropped"
    );

    let mut spec = sh("id -u; id -g; id -G");
    spec.uid = Some(65534);
    spec.gid = Some(65534);
    spec.groups = vec![100, 200];
    assert_eq!(run_ok(spec), "65534\n65534\n65534 100 200\n");
}

#[test]
fn working_directory_is_entered_as_the_user() {
    assert_root();
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let mut spec = sh("pwd");
    spec.cwd = Some(t.path().to_path_buf());
    spec.uid = Some(65534);
    spec.gid = Some(65534);
    let e = spawn(spec).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("changing directory to"), "{e}");
}

#[test]
fn joins_the_cgroup_or_fails_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("x.service");
    let mut spec = sh("true");
    spec.cgroup = Some(missing.clone());
    let e = spawn(spec).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!("starting /bin/sh: joining cgroup {}", missing.display())
    );

    // A stand-in directory: the child writes "0" to its cgroup.procs.
    let dir = t.path().join("y.service");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("cgroup.procs"), "").unwrap();
    let mut spec = sh("true");
    spec.cgroup = Some(dir.clone());
    run_ok(spec);
    assert_eq!(fs::read_to_string(dir.join("cgroup.procs")).unwrap(), "0");
}

#[test]
fn decodes_exit_statuses_of_real_children() {
    let (_, status) = run(sh("exit 3"));
    assert_eq!(status, ExitStatus::Exited(3));
    assert_eq!(status.to_string(), "exited with status 3");

    let (_, status) = run(sh("kill -TERM $$"));
    assert_eq!(
        status,
        ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core: false
        }
    );
    assert_eq!(status.to_string(), "killed by signal TERM");

    let pid = spawn(ExecSpec::new(
        "/bin/sleep",
        vec!["sleep".into(), "60".into()],
    ))
    .unwrap();
    kill(pid, libc::SIGKILL).unwrap();
    assert_eq!(
        decode_status(wait_pid(pid).unwrap()),
        ExitStatus::Signaled {
            signal: libc::SIGKILL,
            core: false
        }
    );
    assert_eq!(
        decode_status(0x8b),
        ExitStatus::Signaled {
            signal: libc::SIGSEGV,
            core: true
        }
    );
}

#[test]
fn kill_refuses_group_pids_and_ignores_gone_processes() {
    assert_eq!(
        kill(0, libc::SIGTERM).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        kill(u32::MAX, libc::SIGTERM).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    // Above the largest possible pid_max: no such process.
    kill(4_194_305, libc::SIGTERM).unwrap();
}

#[test]
fn session_and_signal_dispositions_are_fresh() {
    // SIGWINCH is ignored by default anyway, so ignoring it explicitly in
    // this process changes nothing for the other tests.
    // SAFETY: SIG_IGN is a valid disposition for SIGWINCH.
    unsafe { libc::signal(libc::SIGWINCH, libc::SIG_IGN) };
    let out = run_ok(ExecSpec::new(
        "/bin/cat",
        vec![
            "cat".into(),
            "/proc/self/status".into(),
            "/proc/self/stat".into(),
        ],
    ));
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGWINCH, libc::SIG_DFL) };
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(field("SigIgn:"), "0000000000000000");
    assert_eq!(field("SigBlk:"), "0000000000000000");
    // /proc/self/stat: "pid (comm) state ppid pgrp session ...": a session
    // leader's session id is its pid.
    let stat = out.lines().last().unwrap();
    let pid = stat.split_whitespace().next().unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let session = after.split_whitespace().nth(3).unwrap();
    assert_eq!(session, pid);
}

#[test]
fn only_stdio_is_inherited() {
    // An fd without CLOEXEC, as a careless library would leave it.
    let file = fs::File::open("/dev/null").unwrap();
    // SAFETY: dup(2) of an open fd; the result is owned below.
    let raw = unsafe { libc::dup(file.as_raw_fd()) };
    assert!(raw > 2);
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let leaky = unsafe { OwnedFd::from_raw_fd(raw) };
    // ls opens the directory it lists as fd 3.
    let out = run_ok(ExecSpec::new(
        "/bin/ls",
        vec!["ls".into(), "/proc/self/fd".into()],
    ));
    assert_eq!(out, "0\n1\n2\n3\n", "fd {raw} leaked?");
    drop(leaky);
}

struct Pty {
    _master: OwnedFd,
    slave: PathBuf,
}

fn open_pty() -> Pty {
    // SAFETY: posix_openpt returns a new fd or -1.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    // SAFETY: `fd` is a fresh fd that nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: `fd` is a pty master; `name` is a writable buffer of the
    // length passed.
    unsafe {
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string into `name`.
    let slave = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Pty {
        _master: master,
        slave: PathBuf::from(slave.to_str().unwrap()),
    }
}

#[test]
fn tty_stdin_becomes_the_controlling_terminal() {
    let pty = open_pty();
    let mut spec = sh("tty && : >/dev/tty && echo has-ctty");
    spec.stdin = StdinSpec::Tty(pty.slave.clone());
    assert_eq!(run_ok(spec), format!("{}\nhas-ctty\n", pty.slave.display()));

    let mut spec = sh("tty");
    spec.stdin = StdinSpec::Tty("/nonexistent/tty".into());
    let e = spawn(spec).unwrap_err();
    assert_eq!(e.to_string(), "starting /bin/sh: opening /nonexistent/tty");
}

#[test]
fn rlimit_names() {
    assert_eq!(
        RlimitResource::from_rlimit_name("RLIMIT_NOFILE"),
        Some(RlimitResource::Nofile)
    );
    assert_eq!(
        RlimitResource::from_rlimit_name("RTTIME"),
        Some(RlimitResource::Rttime)
    );
    assert_eq!(RlimitResource::from_rlimit_name("RLIMIT_FOO"), None);
    assert_eq!(RlimitResource::from_rlimit_name("rlimit_nofile"), None);
    for (r, name) in RlimitResource::ALL {
        assert_eq!(r.rlimit_name(), name);
        assert_eq!(RlimitResource::from_rlimit_name(name), Some(r));
    }
}

#[test]
fn signal_names() {
    assert_eq!(signal_name(libc::SIGSEGV), "SEGV");
    assert_eq!(signal_name(15), "TERM");
    let rt = libc::SIGRTMIN();
    assert_eq!(signal_name(rt + 3), "RTMIN+3");
    assert_eq!(signal_name(rt), "RTMIN");
    assert_eq!(signal_name(0), "UNKNOWN");
    assert_eq!(signal_name(200), "UNKNOWN");

    for s in ["SIGTERM", "TERM", "15", "sigterm"] {
        assert_eq!(signal_from_name(s), Some(libc::SIGTERM), "{s}");
    }
    assert_eq!(signal_from_name("SIGRTMIN+4"), Some(rt + 4));
    assert_eq!(signal_from_name("RTMAX"), Some(libc::SIGRTMAX()));
    assert_eq!(signal_from_name("RTMAX-1"), Some(libc::SIGRTMAX() - 1));
    for bad in ["", "SIG", "FOO", "0", "65", "-1", "RTMIN+99", "RTMIN+x"] {
        assert_eq!(signal_from_name(bad), None, "{bad}");
    }
    for sig in 1..=libc::SIGRTMAX() {
        let name = signal_name(sig);
        if name != "UNKNOWN" {
            assert_eq!(signal_from_name(name), Some(sig), "{name}");
        }
    }
}
