//! PID 1 under hostile clients of its control socket: a unit that crashes
//! in a loop keeps being restarted on time, and `keelctl status` keeps
//! being answered, while the socket is flooded.
//!
//! The real stage-2 loop ([`keel_init::runtime::supervise`]) runs in a
//! child process (this binary again) on a temporary root: real control
//! and notify sockets below it, the real supervisor, real processes. Only
//! the cgroup file system is a stand-in (`cgroup.procs` is `/dev/null`),
//! because the machine running the tests need not have cgroup v2 there.
//! The parent floods the socket with one client that never reads or
//! writes, 200 clients at once (half of them ask for the status of 1000
//! units and never read it), a 64 MiB request line and a client that asks
//! and never reads, and meanwhile asks `keelctl status` (the real binary)
//! every half second. Then it checks the times at which the unit was
//! started, the answer times, the child's peak memory and open files, and
//! that `keelctl poweroff` still shuts the loop down.
//!
//! No libtest harness (`harness = false`): the child must block signals
//! in its main thread before any other thread exists, which libtest's
//! main does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use keel_init::control::{request, Request, Response, UnitStatus};
use keel_init::recording::RecordingSys;
use keel_init::runtime;
use keel_init::sys::signals;

/// Set in the child: the root it supervises.
const CHILD_ROOT: &str = "KEEL_CONTROL_FLOOD_ROOT";

/// `RestartSec=` of the crashing unit. Its restart delay doubles with each
/// restart in a row (capped at 60 s), so restart k comes
/// `RESTART_SEC * 2^(k-1)` after start k-1.
const RESTART_SEC: Duration = Duration::from_millis(10);
/// Restarts the test waits for: the 10th is due 10.23 s after the start.
const RESTARTS: usize = 10;
/// How late one restart may be, on a loaded 2-core machine. A loop that
/// blocks on a client that does not read is late by the client timeout
/// (5 s) for each such client.
const LATE: Duration = Duration::from_secs(2);
/// How long one `keelctl status` may take while the socket is flooded.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// Units besides the crashing one: their status makes an answer far larger
/// than a socket buffer.
const PADDING_UNITS: usize = 1000;
/// Clients of the crowd, connected at the same time.
const CROWD: usize = 200;
/// Size of the oversized request line.
const BIG_LINE: usize = 64 << 20;
/// Peak resident memory the child may reach (less than one big line).
const MAX_PEAK_RSS_KIB: u64 = 48 * 1024;

fn main() {
    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        child(Path::new(&root));
    }
    parent();
    println!("test control_flood ... ok");
}

/// The "init": the real loop on `root` until a shutdown, then exit 0.
fn child(root: &Path) -> ! {
    if let Err(e) = signals::block_all() {
        eprintln!("child: blocking signals: {e}");
        std::process::exit(1);
    }
    let sys = RecordingSys::new(root);
    match runtime::supervise(&sys, root, "flood.target") {
        Ok(action) => {
            println!("child: shut down for {action:?}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("child: {e}");
            std::process::exit(1)
        }
    }
}

/// The child; killed when the test fails half way.
struct Init {
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Init {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if thread::panicking() {
                eprintln!(
                    "--- output of the supervising child ---\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        }
    }
}

impl Init {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// A field of `/proc/PID/status`, in kB.
    fn status_kib(&self, field: &str) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"));
        line.trim_start_matches(':')
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }

    fn open_files(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

fn write_units(root: &Path) {
    let dir = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("flood.target"),
        "[Unit]\nDescription=the test's goal, with nothing in it\n",
    )
    .unwrap();
    let starts = root.join("starts");
    fs::write(
        dir.join("crash.service"),
        format!(
            "[Unit]\nDescription=crashes at once, forever\nStartLimitIntervalSec=0\n\
             [Service]\nExecStart=/bin/sh -c 'cat /proc/uptime >> {}; exit 1'\n\
             Restart=always\nRestartSec={}ms\n",
            starts.display(),
            RESTART_SEC.as_millis()
        ),
    )
    .unwrap();
    let words = "padding for a status answer larger than any socket buffer ".repeat(4);
    for i in 0..PADDING_UNITS {
        fs::write(
            dir.join(format!("pad{i:04}.service")),
            format!("[Unit]\nDescription={i} {words}\n[Service]\nExecStart=/bin/true\n"),
        )
        .unwrap();
    }
    // The stand-in for the unit's cgroup: joining it writes to /dev/null,
    // listing it finds nobody.
    let cgroup = root.join("sys/fs/cgroup/system.slice/crash.service");
    fs::create_dir_all(&cgroup).unwrap();
    symlink("/dev/null", cgroup.join("cgroup.procs")).unwrap();
}

fn start_init(root: &Path, log: &Path) -> Init {
    let out = fs::File::create(log).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ROOT, root)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Init {
        child: Some(child),
        log: log.to_path_buf(),
    }
}

/// Runs the real `keelctl` against `socket`.
fn keelctl(keelctl: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new(keelctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn status_of(keelctl_bin: &Path, socket: &Path, unit: &str) -> UnitStatus {
    let out = keelctl(keelctl_bin, socket, &["status", unit, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "keelctl status {unit}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Waits (bounded) until init answers on `socket`.
fn wait_for_socket(socket: &Path) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = request(socket, &Request::Status { unit: None }, ANSWER_WITHIN);
        match r {
            Ok(Response::Status { units }) if units.len() > PADDING_UNITS => return,
            other if Instant::now() > until => panic!("init is not answering: {other:?}"),
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One kind of flooding client: the socket, the stop flag, the counts.
type Client = fn(PathBuf, Arc<AtomicBool>, Arc<Counts>);

/// What the flood did, for the report.
#[derive(Default)]
struct Counts {
    idle: AtomicUsize,
    crowd_waves: AtomicUsize,
    big_refused: AtomicUsize,
    unread: AtomicUsize,
}

fn status_line() -> Vec<u8> {
    b"{\"op\":\"status\"}\n".to_vec()
}

/// Clients that connect and never read or write, one after the other
/// (init closes each after its timeout).
fn idle_client(socket: PathBuf, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(s) = UnixStream::connect(&socket) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        // Longer than init's client timeout.
        let until = Instant::now() + Duration::from_secs(6);
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        counts.idle.fetch_add(1, Ordering::SeqCst);
        drop(s);
    }
}

/// 200 clients at once, again and again: half ask for every unit's status
/// and never read it, half never send anything.
fn crowd(socket: PathBuf, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::SeqCst) {
        let mut held = Vec::new();
        for i in 0..CROWD {
            if let Ok(mut s) = UnixStream::connect(&socket) {
                if i % 2 == 0 {
                    let _ = s.write_all(&status_line());
                }
                held.push(s);
            }
        }
        let until = Instant::now() + Duration::from_secs(1);
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        drop(held);
        counts.crowd_waves.fetch_add(1, Ordering::SeqCst);
    }
}

/// A 64 MiB request line, again and again; init must refuse it at its
/// limit and say so.
fn big_line(socket: PathBuf, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut line = vec![b'x'; BIG_LINE];
    line[..8].copy_from_slice(b"{\"op\":\"s");
    line[BIG_LINE - 1] = b'\n';
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut s) = UnixStream::connect(&socket) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Init stops reading at its limit: the write fails half way.
        let _ = s.write_all(&line);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.contains("request is longer than"),
            "answer to a 64 MiB line: {answer:?}"
        );
        counts.big_refused.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(200));
    }
}

/// Asks for every unit's status and never reads the answer, again and
/// again.
fn unread(socket: PathBuf, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut s) = UnixStream::connect(&socket) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = s.write_all(&status_line());
        let until = Instant::now() + Duration::from_secs(8);
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        counts.unread.fetch_add(1, Ordering::SeqCst);
    }
}

/// Seconds since boot, as `/proc/uptime` has them.
fn uptime() -> f64 {
    let text = fs::read_to_string("/proc/uptime").unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// The times (seconds since boot) the crashing unit was started at.
fn starts(root: &Path) -> Vec<f64> {
    fs::read_to_string(root.join("starts"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The longest delay before restart `k` (1-based) that the supervisor's
/// backoff allows.
fn restart_delay(k: usize) -> Duration {
    let shift = u32::try_from(k - 1).unwrap().min(20);
    RESTART_SEC
        .saturating_mul(1 << shift)
        .min(RESTART_SEC.max(Duration::from_secs(60)))
}

fn parent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    write_units(&root);
    let keelctl_bin = tmp.path().join("keelctl");
    symlink(env!("CARGO_BIN_EXE_keel-init"), &keelctl_bin).unwrap();
    let socket = root.join("run/keel/control.sock");

    let init = start_init(&root, &tmp.path().join("init.log"));
    wait_for_socket(&socket);
    let rss_before = init.status_kib("VmRSS");
    let files_before = init.open_files();

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut flood = Vec::new();
    let clients: [Client; 4] = [idle_client, crowd, big_line, unread];
    for client in clients {
        let (socket, stop, counts) = (socket.clone(), Arc::clone(&stop), Arc::clone(&counts));
        flood.push(thread::spawn(move || client(socket, stop, counts)));
    }
    // Let the flood get going before the unit starts crashing.
    thread::sleep(Duration::from_secs(2));

    let started = Instant::now();
    let out = keelctl(&keelctl_bin, &socket, &["start", "crash.service"]);
    assert!(
        out.status.success(),
        "keelctl start under the flood: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let start_answer = started.elapsed();

    // The 10th restart is due 10.23 s after the start; allow for each
    // restart being late.
    let due: Duration = (1..=RESTARTS).map(restart_delay).sum();
    let deadline = started + due + LATE * 2;
    let mut slowest = start_answer;
    let mut answers = 0;
    let mut last = None;
    while Instant::now() < deadline {
        let asked = Instant::now();
        let s = status_of(&keelctl_bin, &socket, "crash.service");
        let took = asked.elapsed();
        slowest = slowest.max(took);
        answers += 1;
        assert!(
            took <= ANSWER_WITHIN,
            "keelctl status took {took:?} under the flood"
        );
        last = Some(s);
        if starts(&root).len() > RESTARTS {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    let seen = last.unwrap();
    let peak_kib = init.status_kib("VmHWM");
    stop.store(true, Ordering::SeqCst);
    for t in flood {
        t.join().unwrap();
    }

    let times = starts(&root);
    let mut gaps = Vec::new();
    for (k, pair) in times.windows(2).enumerate() {
        let gap = Duration::from_secs_f64(pair[1] - pair[0]);
        let allowed = restart_delay(k + 1) + LATE;
        assert!(
            gap <= allowed,
            "restart {} came {gap:?} after the previous start, allowed {allowed:?} \
             (starts at {times:?})",
            k + 1
        );
        gaps.push(gap);
    }
    assert!(
        seen.restarts as usize >= RESTARTS && times.len() > RESTARTS,
        "{} restarts ({} starts) within {:?} of the start, expected {RESTARTS}: {seen:?}",
        seen.restarts,
        times.len(),
        started.elapsed()
    );
    let flood_ended = uptime();
    assert!(
        peak_kib <= MAX_PEAK_RSS_KIB,
        "init's peak memory reached {peak_kib} KiB (before the flood: {rss_before} KiB)"
    );

    // Every flood connection is closed again (init drops silent ones
    // after its 5 s timeout).
    let until = Instant::now() + Duration::from_secs(20);
    let mut files = init.open_files();
    while files > files_before + 2 && Instant::now() < until {
        thread::sleep(Duration::from_millis(200));
        files = init.open_files();
    }
    assert!(
        files <= files_before + 2,
        "init has {files} open files after the flood, {files_before} before"
    );

    let out = keelctl(&keelctl_bin, &socket, &["poweroff"]);
    assert!(
        out.status.success(),
        "keelctl poweroff: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut init = init;
    let mut child = init.child.take().unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            init.child = Some(child);
            panic!("init did not shut down within 60 s of keelctl poweroff");
        }
        thread::sleep(Duration::from_millis(100));
    };
    let log = fs::read_to_string(&init.log).unwrap_or_default();
    assert!(
        status.success() && log.contains("shut down for Poweroff"),
        "init ended with {status}: {log}"
    );
    println!(
        "control_flood: {} restarts, gaps {gaps:?}; {answers} status answers, slowest {slowest:?} \
         (start: {start_answer:?}); peak RSS {peak_kib} KiB (before {rss_before} KiB); \
         {} idle clients, {} waves of {CROWD}, {} 64 MiB lines refused, {} unread answers; \
         flood ended at uptime {flood_ended:.1}",
        seen.restarts,
        counts.idle.load(Ordering::SeqCst),
        counts.crowd_waves.load(Ordering::SeqCst),
        counts.big_refused.load(Ordering::SeqCst),
        counts.unread.load(Ordering::SeqCst),
    );
}
