//! Stage 2's main loop: PID 1 of the real root.
//!
//! Threads feed one channel: the signal waiter, the sd_notify socket, the
//! control socket. The loop reaps children, hands everything to the
//! [`Supervisor`], and carries out what it asks for: console messages,
//! blessing a healthy boot, rebooting an unhealthy one, and the final
//! steps of a shutdown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keel_core::cmdline::Cmdline;

use crate::boottime::{self, Stage1Times, Startup};
use crate::control::{self, Request, Responder, Response, UnitStatus};
use crate::firstboot::{self, FirstBoot};
use crate::logs::{self, Rotation, UnitLog};
use crate::plan::MULTI_USER_TARGET;
use crate::stage1::at;
use crate::stage2::{self, BootInfo};
use crate::supervise::exec::RealProcs;
use crate::supervise::{Action, HealthConfig, Supervisor, UnitInfo};
use crate::sys::notify::NotifyMessage;
use crate::sys::power::PowerAction;
use crate::sys::{calls, process, signals, Sys};
use crate::{bless, early, shutdown, unit};

/// The sd_notify socket services get in `$NOTIFY_SOCKET`.
pub const NOTIFY_SOCKET: &str = "/run/keel/notify";

/// What the main loop waits for.
enum Event {
    Signal(i32),
    /// The message and the unit whose cgroup its sender was in.
    Notify(NotifyMessage, Option<String>),
    /// A control request; the sender waits until the loop took it up.
    Control(Request, Responder, SyncSender<()>),
}

/// Console and init's own log.
struct Out {
    console: Arc<Mutex<dyn Write + Send>>,
    log: Option<UnitLog>,
}

impl Out {
    /// `keel-init: MESSAGE` on the console, MESSAGE in the log.
    fn say(&self, message: &str) {
        let _ = writeln!(lock(&self.console), "keel-init: {message}");
        if let Some(log) = &self.log {
            let _ = log.line(None, message);
        }
    }

    /// A line of another program's (keel-firstboot's), as it is.
    fn line(&self, line: &str) {
        let _ = writeln!(lock(&self.console), "{line}");
        if let Some(log) = &self.log {
            let _ = log.line(None, line);
        }
    }

    /// Text that already has `keel-init: ` prefixes (from early setup):
    /// to the console as it is, to the log without the prefixes.
    fn echo(&self, text: &[u8]) {
        let _ = lock(&self.console).write_all(text);
        if let Some(log) = &self.log {
            for line in String::from_utf8_lossy(text).lines() {
                let _ = log.line(None, line.trim_start_matches("keel-init: "));
            }
        }
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the system. Never returns: the end is reboot(2).
pub fn run(sys: &dyn Sys, root: &Path) -> ! {
    let console: Arc<Mutex<dyn Write + Send>> = Arc::new(Mutex::new(std::io::stderr()));
    let mut boot_log: Vec<u8> = Vec::new();
    if let Err(e) = signals::block_all() {
        let _ = writeln!(boot_log, "keel-init: warning: blocking signals: {e}");
    }
    if let Err(e) = signals::cad_to_sigint() {
        let _ = writeln!(boot_log, "keel-init: warning: ctrl-alt-del: {e}");
    }
    stage2::mount_missing(sys, root, &mut boot_log);
    let cmdline =
        Cmdline::parse(&std::fs::read_to_string(at(root, "/proc/cmdline")).unwrap_or_default());
    early::run(sys, root, &cmdline, &mut boot_log);
    let out = Out {
        console: Arc::clone(&console),
        log: UnitLog::open(&at(root, logs::LOG_DIR), "keel-init", Rotation::default()).ok(),
    };
    out.echo(&boot_log);

    let first_boot = first_boot(sys, root, &cmdline, &out);
    if first_boot == FirstBoot::Reboot {
        out.say("first boot: the kernel command line changed; rebooting to use it");
        shutdown::finish(root, PowerAction::Reboot, &mut ConsoleWriter(&out.console));
    }
    // A failed first boot starts nothing: the node must not run half
    // configured. The console shell stays, and so does keelctl (reboot
    // tries again).
    let emergency = matches!(first_boot, FirstBoot::Failed(_));
    if let FirstBoot::Failed(how) = &first_boot {
        out.say(&format!(
            "first boot failed ({how}): no units started; the reason is above. \
             The emergency shell is on the console; fix the config and reboot to try again"
        ));
    }
    let load = |machine: &unit::MachineInfo| {
        if emergency {
            unit::Loaded::default()
        } else {
            unit::load_units(root, machine)
        }
    };

    let machine = machine_info(root);
    let loaded = load(&machine);
    let (health, warnings) = HealthConfig::from_cmdline(&cmdline);
    for w in warnings {
        out.say(&format!("warning: {w}"));
    }
    let started = Instant::now();
    let goal = match cmdline.get("keel.unit") {
        Some(unit) if !emergency => unit,
        _ => MULTI_USER_TARGET,
    }
    .to_string();
    let sup = match Supervisor::new(loaded, &goal, health, started) {
        Ok(s) => s,
        Err(e) => {
            out.say(&format!(
                "error: planning {goal}: {e}; starting {MULTI_USER_TARGET}"
            ));
            let loaded = load(&machine);
            match Supervisor::new(loaded, MULTI_USER_TARGET, health, started) {
                Ok(s) => s,
                Err(e) => crate::halt::fail(
                    root,
                    &format!("planning the boot: {e}"),
                    &mut std::io::stderr(),
                ),
            }
        }
    };

    let shell = cmdline.get("keel.console") == Some("shell");
    let mode = Mode {
        emergency,
        console_shell: emergency || shell,
    };
    if !mode.console_shell {
        out.say(
            "no shell on the console (keel.console=shell adds one for debugging); \
             log in over SSH",
        );
    }
    let action = main_loop(sys, root, sup, out, &machine, mode);
    shutdown::finish(root, action, &mut ConsoleWriter(&console))
}

/// Runs the units of `root` for `goal` as stage 2 does once its PID 1
/// setup is done (no mounts, early setup, first boot or console shell):
/// the signal thread, the sd_notify and control sockets below `root`, and
/// the supervisor's loop, which reaps every child of this process. Returns
/// the power action once a shutdown (`keelctl reboot|poweroff`, SIGTERM,
/// ...) has stopped every unit; carrying it out is the caller's.
///
/// Signals must be blocked in every thread of the process
/// ([`signals::block_all`] before any thread starts), and the process
/// must run nothing else that waits for its children. This is how tests
/// run the real loop on a temporary root.
pub fn supervise(sys: &dyn Sys, root: &Path, goal: &str) -> Result<PowerAction, String> {
    let console: Arc<Mutex<dyn Write + Send>> = Arc::new(Mutex::new(std::io::stderr()));
    let out = Out {
        console,
        log: UnitLog::open(&at(root, logs::LOG_DIR), "keel-init", Rotation::default()).ok(),
    };
    let machine = machine_info(root);
    let loaded = unit::load_units(root, &machine);
    let sup = Supervisor::new(loaded, goal, HealthConfig::default(), Instant::now())
        .map_err(|e| format!("planning {goal}: {e}"))?;
    let mode = Mode {
        emergency: false,
        console_shell: false,
    };
    Ok(main_loop(sys, root, sup, out, &machine, mode))
}

/// How stage 2 was started.
#[derive(Clone, Copy)]
struct Mode {
    /// The first boot failed: nothing is judged.
    emergency: bool,
    /// Keep a root shell on the console.
    console_shell: bool,
}

fn machine_info(root: &Path) -> unit::MachineInfo {
    unit::MachineInfo {
        hostname: std::fs::read_to_string(at(root, "/proc/sys/kernel/hostname"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        machine_id: std::fs::read_to_string(at(root, "/etc/machine-id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// The event loop: boots `sup`'s goal and supervises until a shutdown has
/// stopped everything; returns the power action asked for.
fn main_loop(
    sys: &dyn Sys,
    root: &Path,
    mut sup: Supervisor,
    mut out: Out,
    machine: &unit::MachineInfo,
    mode: Mode,
) -> PowerAction {
    let (tx, rx) = mpsc::channel::<Event>();
    start_threads(root, &tx, &mut out);
    let notify_path = at(root, NOTIFY_SOCKET);
    let mut procs = RealProcs::new(
        root,
        &at(root, early::cgroup::SYSTEM_SLICE),
        &notify_path,
        Arc::clone(&out.console),
    );
    let info = stage2::boot_info(root);
    let mut shell = ConsoleShell::new(root, mode.console_shell);
    shell.ensure(&mut out);

    if mode.emergency {
        sup.hold_boot();
    }
    sup.boot(&mut procs, Instant::now());
    let mut power: Option<PowerAction> = None;
    // After a failed first boot there is nothing to judge: blessing would
    // keep a broken node, rebooting would hide why.
    let mut health_done = mode.emergency;
    loop {
        for action in sup.take_actions() {
            match action {
                Action::Say(m) => out.say(&m),
                Action::Healthy if !health_done => {
                    health_done = true;
                    let startup = startup(root, sup.healthy_since(), Instant::now());
                    healthy(sys, root, &info, &mut out);
                    if let Some(startup) = startup {
                        out.say(&startup.to_string());
                    }
                }
                Action::Unhealthy(reasons) if !health_done => {
                    health_done = true;
                    if unhealthy(sys, root, &reasons, &mut out) {
                        power = Some(PowerAction::Reboot);
                        sup.shutdown(&mut procs, Instant::now());
                    }
                }
                Action::ShutdownReady => {
                    // Close every log file on /var so it can be unmounted
                    // (output pumps close theirs when their pipes end).
                    drop(procs);
                    out.log = None;
                    return power.unwrap_or(PowerAction::Reboot);
                }
                _ => {}
            }
        }
        let now = Instant::now();
        let timeout = sup.next_deadline(now).map_or(Duration::from_secs(60), |d| {
            d.saturating_duration_since(now)
        });
        match rx.recv_timeout(timeout) {
            Ok(Event::Signal(sig)) => match signal_action(sig) {
                SignalAction::Reap => reap(&mut sup, &mut procs, &mut shell, &mut out),
                SignalAction::Power(action) => {
                    if power.is_none() {
                        out.say(&format!(
                            "received signal {}: {}",
                            process::signal_name(sig),
                            action_word(action)
                        ));
                        power = Some(action);
                        shell.disable();
                        sup.shutdown(&mut procs, Instant::now());
                    }
                }
                SignalAction::Ignore => {}
            },
            Ok(Event::Notify(msg, unit)) => sup.on_notify(
                &mut procs,
                msg.pid,
                unit.as_deref(),
                &msg.fields,
                Instant::now(),
            ),
            Ok(Event::Control(req, responder, taken)) => {
                // The server may hand on the next request now.
                let _ = taken.try_send(());
                // Whatever exited or fell due while the request waited
                // comes first: clients must not delay supervision.
                reap(&mut sup, &mut procs, &mut shell, &mut out);
                sup.tick(&mut procs, Instant::now());
                if let Some(action) =
                    handle_request(root, &mut sup, &mut procs, req, responder, machine)
                {
                    if power.is_none() {
                        out.say(&format!("{} requested", action_word(action)));
                        power = Some(action);
                        shell.disable();
                        sup.shutdown(&mut procs, Instant::now());
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(100)),
        }
        sup.tick(&mut procs, Instant::now());
        shell.ensure(&mut out);
    }
}

/// Runs the first boot if this is one; its lines go to the console and
/// init's log. After a config was applied, what reads /etc runs again.
fn first_boot(sys: &dyn Sys, root: &Path, cmdline: &Cmdline, out: &Out) -> FirstBoot {
    if !firstboot::pending(root) {
        return FirstBoot::Provisioned;
    }
    let result = firstboot::run(
        sys,
        root,
        &mut firstboot::ChildRunner,
        &mut |m| out.say(m),
        &mut |l| out.line(l),
    );
    if result == FirstBoot::Done {
        let mut text = Vec::new();
        early::after_first_boot(sys, root, cmdline, &mut text);
        out.echo(&text);
    }
    result
}

struct ConsoleWriter<'a>(&'a Mutex<dyn Write + Send>);

impl Write for ConsoleWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        lock(self.0).flush()
    }
}

fn action_word(a: PowerAction) -> &'static str {
    match a {
        PowerAction::Reboot => "reboot",
        PowerAction::Poweroff => "power off",
        PowerAction::Halt => "halt",
    }
}

enum SignalAction {
    Reap,
    Power(PowerAction),
    Ignore,
}

/// systemd's and busybox init's meanings: SIGINT (ctrl-alt-del) and
/// SIGTERM reboot, SIGUSR2 and SIGRTMIN+4 power off, SIGUSR1 and
/// SIGRTMIN+3 halt, SIGRTMIN+5 reboots.
fn signal_action(sig: i32) -> SignalAction {
    let rt = signals::sigrtmin();
    match sig {
        libc::SIGCHLD => SignalAction::Reap,
        libc::SIGINT | libc::SIGTERM => SignalAction::Power(PowerAction::Reboot),
        libc::SIGUSR2 | libc::SIGPWR => SignalAction::Power(PowerAction::Poweroff),
        libc::SIGUSR1 => SignalAction::Power(PowerAction::Halt),
        s if s == rt + 4 => SignalAction::Power(PowerAction::Poweroff),
        s if s == rt + 3 => SignalAction::Power(PowerAction::Halt),
        s if s == rt + 5 => SignalAction::Power(PowerAction::Reboot),
        _ => SignalAction::Ignore,
    }
}

fn start_threads(root: &Path, tx: &Sender<Event>, out: &mut Out) {
    let sig_tx = tx.clone();
    if let Err(e) = signals::spawn_waiter(move |sig| {
        let _ = sig_tx.send(Event::Signal(sig));
    }) {
        out.say(&format!("error: starting the signal thread: {e}"));
    }
    let notify_path = at(root, NOTIFY_SOCKET);
    if let Some(dir) = notify_path.parent() {
        // Services of any user send to the notify socket: the directory
        // is world-searchable; the control socket in it is 0600.
        if let Err(e) = std::fs::create_dir_all(dir) {
            out.say(&format!("error: creating {}: {e}", dir.display()));
        }
    }
    match crate::sys::notify::bind(&notify_path) {
        Ok(sock) => {
            let ntx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name("notify".into())
                .stack_size(64 * 1024)
                .spawn(move || loop {
                    match sock.recv() {
                        Ok(msg) => {
                            // Attribute the sender now: a helper such as
                            // `keelctl notify` exits right after sending.
                            let unit = unit_of_pid(msg.pid);
                            if ntx.send(Event::Notify(msg, unit)).is_err() {
                                return;
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                });
            if let Err(e) = spawned {
                out.say(&format!("error: starting the notify thread: {e}"));
            }
        }
        Err(e) => out.say(&format!(
            "error: {}; Type=notify services will time out",
            crate::error::chain(&e)
        )),
    }
    let control_path = at(root, control::SOCKET);
    match control::server::Server::bind(&control_path) {
        Ok(server) => {
            let ctx = Mutex::new(tx.clone());
            if let Err(e) = server.serve(move |req, responder| {
                // Return once the main loop took the request up: until
                // then the server keeps the next ones, and drops those
                // whose clients hang up, instead of queueing them here.
                let (taken_tx, taken) = mpsc::sync_channel(1);
                if lock(&ctx)
                    .send(Event::Control(req, responder, taken_tx))
                    .is_ok()
                {
                    let _ = taken.recv();
                }
            }) {
                out.say(&format!("error: serving {}: {e}", control_path.display()));
            }
        }
        Err(e) => out.say(&format!(
            "error: {}; keelctl will not work",
            crate::error::chain(&e)
        )),
    }
}

/// The unit whose cgroup `pid` is in (`0::/system.slice/<unit>/...` in
/// `/proc/<pid>/cgroup`).
fn unit_of_pid(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    path.strip_prefix("/system.slice/")?
        .split('/')
        .next()
        .map(str::to_string)
}

fn reap(sup: &mut Supervisor, procs: &mut RealProcs, shell: &mut ConsoleShell, out: &mut Out) {
    loop {
        match calls::wait_any(false) {
            Ok(Some((pid, raw))) => {
                if shell.exited(pid) {
                    out.say("console shell exited; starting a new one");
                    continue;
                }
                sup.on_exit(procs, pid, process::decode_status(raw), Instant::now());
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// The root shell on the console (`keel.console=shell`), restarted when
/// it exits.
struct ConsoleShell {
    root: PathBuf,
    enabled: bool,
    pid: Option<u32>,
    next_try: Instant,
}

impl ConsoleShell {
    fn new(root: &Path, enabled: bool) -> ConsoleShell {
        ConsoleShell {
            root: root.to_path_buf(),
            enabled,
            pid: None,
            next_try: Instant::now(),
        }
    }

    fn disable(&mut self) {
        self.enabled = false;
    }

    fn exited(&mut self, pid: u32) -> bool {
        if self.pid == Some(pid) {
            self.pid = None;
            self.next_try = Instant::now() + Duration::from_secs(1);
            true
        } else {
            false
        }
    }

    fn ensure(&mut self, out: &mut Out) {
        if !self.enabled || self.pid.is_some() || Instant::now() < self.next_try {
            return;
        }
        let mut buf = Vec::new();
        self.pid = stage2::start_console_shell(&self.root, &mut buf);
        if self.pid.is_none() {
            self.next_try = Instant::now() + Duration::from_secs(5);
        }
        for line in String::from_utf8_lossy(&buf).lines() {
            out.say(line.trim_start_matches("keel-init: "));
        }
    }
}

/// The `startup:` line's figures, read when the verdict is reached.
fn startup(root: &Path, units_up: Option<Instant>, now: Instant) -> Option<Startup> {
    let complete = boottime::uptime(root)?;
    let since_up = units_up.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
    Some(Startup {
        stage1: Stage1Times::read(root),
        units_up: complete.saturating_sub(since_up),
        complete,
    })
}

fn healthy(sys: &dyn Sys, root: &Path, info: &BootInfo, out: &mut Out) {
    let mut buf = Vec::new();
    match bless::bless(sys, root, &mut buf) {
        Ok(outcome) => out.say(&outcome.to_string()),
        Err(e) => out.say(&format!(
            "warning: blessing the boot entry: {}",
            crate::error::chain(&e)
        )),
    }
    for line in String::from_utf8_lossy(&buf).lines() {
        out.say(line.trim_start_matches("keel-init: "));
    }
    out.say(&info.complete_line());
}

/// Reports an unhealthy boot; returns whether to reboot (only when boot
/// counting can fall back to another entry).
fn unhealthy(sys: &dyn Sys, root: &Path, reasons: &[String], out: &mut Out) -> bool {
    out.say("boot unhealthy:");
    for r in reasons {
        out.say(&format!("  {r}"));
    }
    if bless::boot_counting(sys, root) {
        out.say("rebooting: boot counting falls back to the previous entry");
        true
    } else {
        out.say("not rebooting: this boot entry is not on trial (no boot counter)");
        false
    }
}

fn unix_ms(at: Instant, now: Instant, wall: SystemTime) -> Option<u64> {
    let ago = now.checked_duration_since(at)?;
    let t = wall.checked_sub(ago)?;
    t.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

fn to_status(root: &Path, sup: &Supervisor, info: UnitInfo, now: Instant) -> UnitStatus {
    let wall = SystemTime::now();
    let enabled = if sup.loaded().units.contains_key(&info.name) {
        unit::is_enabled(root, sup.loaded(), &info.name)
    } else {
        None
    };
    UnitStatus {
        since_unix_ms: info.since.and_then(|s| unix_ms(s, now, wall)),
        name: info.name,
        kind: info.kind,
        description: info.description,
        load: info.load.to_string(),
        active: info.active.to_string(),
        sub: info.sub.to_string(),
        main_pid: info.main_pid,
        result: info.result,
        restarts: info.restarts,
        enabled,
        health: info.health,
        fragment: info.fragment,
    }
}

/// Serves one control request; returns a power action to begin.
fn handle_request(
    root: &Path,
    sup: &mut Supervisor,
    procs: &mut RealProcs,
    req: Request,
    responder: Responder,
    machine: &unit::MachineInfo,
) -> Option<PowerAction> {
    let now = Instant::now();
    let named = match &req {
        Request::Start { unit }
        | Request::Restart { unit }
        | Request::Enable { unit }
        | Request::Disable { unit } => Some(unit.clone()),
        Request::Status { unit } => unit.clone(),
        _ => None,
    };
    if let Some(name) = named.filter(|n| !sup.knows(n)) {
        // A unit file written after boot: load it, as systemd does on
        // first reference.
        if let Ok((unit, _warnings)) = unit::load_one(root, machine, &name) {
            sup.add_unit(unit);
        }
    }
    let reply = |responder: Responder| -> crate::supervise::Reply {
        Box::new(move |r: Result<String, String>| {
            let _ = responder.send(match r {
                Ok(message) => Response::Ok { message },
                Err(message) => Response::Error { message },
            });
        })
    };
    match req {
        Request::Status { unit } => {
            let response = match sup.status(unit.as_deref(), now) {
                Ok(list) => Response::Status {
                    units: list
                        .into_iter()
                        .map(|i| to_status(root, sup, i, now))
                        .collect(),
                },
                Err(message) => Response::Error { message },
            };
            let _ = responder.send(response);
        }
        Request::Start { unit } => sup.request_start(procs, &unit, reply(responder), now),
        Request::Stop { unit } => sup.request_stop(procs, &unit, reply(responder), now),
        Request::Restart { unit } => sup.request_restart(procs, &unit, reply(responder), now),
        Request::Enable { unit } | Request::Disable { unit }
            if sup.loaded().get(&unit).is_none() =>
        {
            let _ = responder.send(Response::Error {
                message: format!("unit {unit} not found"),
            });
        }
        Request::Enable { unit } => {
            let r = unit::enable(root, sup.loaded(), &unit);
            let _ = responder.send(install_response(r, "enabled", &unit));
        }
        Request::Disable { unit } => {
            let r = unit::disable(root, sup.loaded(), &unit);
            let _ = responder.send(install_response(r, "disabled", &unit));
        }
        Request::Reboot => {
            let _ = responder.send(Response::Ok {
                message: "rebooting".into(),
            });
            return Some(PowerAction::Reboot);
        }
        Request::Poweroff => {
            let _ = responder.send(Response::Ok {
                message: "powering off".into(),
            });
            return Some(PowerAction::Poweroff);
        }
    }
    None
}

fn install_response(
    r: Result<Vec<unit::InstallChange>, unit::InstallError>,
    what: &str,
    name: &str,
) -> Response {
    match r {
        Ok(changes) => {
            let mut lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
            lines.push(format!("{name} {what}; takes effect at the next boot"));
            Response::Ok {
                message: lines.join("\n"),
            }
        }
        Err(e) => Response::Error {
            message: crate::error::chain(&e),
        },
    }
}
