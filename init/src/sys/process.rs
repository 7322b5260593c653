//! Starting service processes with the execution environment of a unit,
//! and naming and decoding what becomes of them.
//!
//! [`spawn`] forks with [`std::process::Command`] (which reports exec
//! failures back to the parent) and sets the child up in a `pre_exec`
//! closure that only makes system calls: everything it needs (C strings,
//! the formatted oom score) is prepared before the fork. The caller reaps
//! the child with `waitpid(-1)` ([`super::calls::wait_any`]) and decodes the
//! status with [`decode_status`].

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod status;
pub use status::{decode_status, signal_from_name, signal_name, ExitStatus};

/// Where the kernel takes a process's oom score adjustment.
const OOM_SCORE_ADJ: &std::ffi::CStr = c"/proc/self/oom_score_adj";

/// Everything about how to start one process.
#[derive(Debug)]
pub struct ExecSpec {
    /// Absolute path of the executable, as resolved by the caller.
    pub program: PathBuf,
    /// The arguments, `argv[0]` included (empty: `argv[0]` is the program).
    pub argv: Vec<String>,
    /// The complete environment: the child starts with exactly this.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` is `/`.
    pub cwd: Option<PathBuf>,
    /// A missing `cwd` is not an error (`WorkingDirectory=-…`): the child
    /// starts in `/` instead.
    pub cwd_optional: bool,
    /// User to switch to.
    pub uid: Option<u32>,
    /// Primary group to switch to.
    pub gid: Option<u32>,
    /// Supplementary groups. Set whenever `uid` or `gid` is (an empty list
    /// drops ours), otherwise only when not empty.
    pub groups: Vec<u32>,
    /// File mode creation mask (systemd's default is 0o022).
    pub umask: u32,
    /// Scheduling priority (`Nice=`), -20..=19.
    pub nice: Option<i32>,
    /// `/proc/self/oom_score_adj`, -1000..=1000.
    pub oom_score_adjust: Option<i32>,
    /// `(resource, soft, hard)`; `u64::MAX` is infinity.
    pub rlimits: Vec<(RlimitResource, u64, u64)>,
    /// A cgroup v2 directory the child joins before exec (it writes "0" to
    /// its `cgroup.procs`); failing to join fails the spawn.
    pub cgroup: Option<PathBuf>,
    /// Standard input.
    pub stdin: StdinSpec,
    /// Standard output and error.
    pub output: OutputSpec,
    /// Sets `NOTIFY_SOCKET` in the child's environment (replacing any value
    /// in `env`).
    pub notify_socket: Option<PathBuf>,
}

impl ExecSpec {
    /// A spec for `program argv` with systemd's defaults: empty
    /// environment, `/`, no user switch, umask 0o022, stdin from
    /// `/dev/null`, stdout and stderr inherited.
    pub fn new(program: impl Into<PathBuf>, argv: Vec<String>) -> ExecSpec {
        ExecSpec {
            program: program.into(),
            argv,
            env: Vec::new(),
            cwd: None,
            cwd_optional: false,
            uid: None,
            gid: None,
            groups: Vec::new(),
            umask: 0o022,
            nice: None,
            oom_score_adjust: None,
            rlimits: Vec::new(),
            cgroup: None,
            stdin: StdinSpec::Null,
            output: OutputSpec::Inherit,
            notify_socket: None,
        }
    }
}

/// Standard input of a started process.
#[derive(Debug)]
pub enum StdinSpec {
    /// `/dev/null`.
    Null,
    /// A terminal device, opened read-write; it also becomes the
    /// controlling terminal of the child's new session unless another
    /// session already holds it.
    Tty(PathBuf),
}

/// Standard output and error of a started process.
#[derive(Debug)]
pub enum OutputSpec {
    /// Both to `/dev/null`.
    Null,
    /// Both shared with `keel-init`.
    Inherit,
    /// Both to one file descriptor (e.g. the write end of a log pipe).
    Fd(OwnedFd),
    /// Each to its own file descriptor.
    Split { stdout: OwnedFd, stderr: OwnedFd },
}

#[cfg(target_env = "gnu")]
type RawResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RawResource = libc::c_int;

/// A resource limit (setrlimit(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RlimitResource {
    Nofile,
    Nproc,
    Core,
    Memlock,
    As,
    Fsize,
    Cpu,
    Data,
    Stack,
    Rss,
    Locks,
    Sigpending,
    Msgqueue,
    Nice,
    Rtprio,
    Rttime,
}

impl RlimitResource {
    const ALL: [(RlimitResource, &'static str); 16] = [
        (RlimitResource::Nofile, "RLIMIT_NOFILE"),
        (RlimitResource::Nproc, "RLIMIT_NPROC"),
        (RlimitResource::Core, "RLIMIT_CORE"),
        (RlimitResource::Memlock, "RLIMIT_MEMLOCK"),
        (RlimitResource::As, "RLIMIT_AS"),
        (RlimitResource::Fsize, "RLIMIT_FSIZE"),
        (RlimitResource::Cpu, "RLIMIT_CPU"),
        (RlimitResource::Data, "RLIMIT_DATA"),
        (RlimitResource::Stack, "RLIMIT_STACK"),
        (RlimitResource::Rss, "RLIMIT_RSS"),
        (RlimitResource::Locks, "RLIMIT_LOCKS"),
        (RlimitResource::Sigpending, "RLIMIT_SIGPENDING"),
        (RlimitResource::Msgqueue, "RLIMIT_MSGQUEUE"),
        (RlimitResource::Nice, "RLIMIT_NICE"),
        (RlimitResource::Rtprio, "RLIMIT_RTPRIO"),
        (RlimitResource::Rttime, "RLIMIT_RTTIME"),
    ];

    /// The resource called `name`: `RLIMIT_NOFILE` (or `NOFILE`) is
    /// [`RlimitResource::Nofile`].
    pub fn from_rlimit_name(name: &str) -> Option<Self> {
        let bare = name.strip_prefix("RLIMIT_").unwrap_or(name);
        Self::ALL
            .iter()
            .find(|(_, n)| n.strip_prefix("RLIMIT_") == Some(bare))
            .map(|(r, _)| *r)
    }

    /// The kernel's name, e.g. `RLIMIT_NOFILE`.
    pub fn rlimit_name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("RLIMIT_?", |(_, n)| n)
    }

    fn raw(self) -> RawResource {
        match self {
            RlimitResource::Nofile => libc::RLIMIT_NOFILE,
            RlimitResource::Nproc => libc::RLIMIT_NPROC,
            RlimitResource::Core => libc::RLIMIT_CORE,
            RlimitResource::Memlock => libc::RLIMIT_MEMLOCK,
            RlimitResource::As => libc::RLIMIT_AS,
            RlimitResource::Fsize => libc::RLIMIT_FSIZE,
            RlimitResource::Cpu => libc::RLIMIT_CPU,
            RlimitResource::Data => libc::RLIMIT_DATA,
            RlimitResource::Stack => libc::RLIMIT_STACK,
            RlimitResource::Rss => libc::RLIMIT_RSS,
            RlimitResource::Locks => libc::RLIMIT_LOCKS,
            RlimitResource::Sigpending => libc::RLIMIT_SIGPENDING,
            RlimitResource::Msgqueue => libc::RLIMIT_MSGQUEUE,
            RlimitResource::Nice => libc::RLIMIT_NICE,
            RlimitResource::Rtprio => libc::RLIMIT_RTPRIO,
            RlimitResource::Rttime => libc::RLIMIT_RTTIME,
        }
    }
}

/// Why [`spawn`] failed. It travels inside the returned [`io::Error`]
/// (whose kind is the cause's), so the error chain reads e.g.
/// `starting /usr/bin/x: joining cgroup /sys/fs/cgroup/x.service: No such
/// file or directory (os error 2)`.
#[derive(Debug, thiserror::Error)]
#[error("starting {}: {step}", program.display())]
pub struct SpawnError {
    /// The program that was to run.
    pub program: PathBuf,
    /// The step that failed, naming its object.
    pub step: String,
    #[source]
    pub source: io::Error,
}

/// The setup steps in the child, reported back to the parent as one byte
/// (plus an index) when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    CloseFds = 1,
    Setsid,
    Signals,
    Cgroup,
    Rlimit,
    OomScore,
    Nice,
    Groups,
    Gid,
    Uid,
    Chdir,
}

impl Step {
    const ALL: [Step; 11] = [
        Step::CloseFds,
        Step::Setsid,
        Step::Signals,
        Step::Cgroup,
        Step::Rlimit,
        Step::OomScore,
        Step::Nice,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::Chdir,
    ];

    fn from_byte(b: u8) -> Option<Step> {
        Self::ALL.into_iter().find(|s| *s as u8 == b)
    }
}

/// What the child does between fork and exec, prepared before the fork so
/// that running it allocates nothing.
struct ChildPlan {
    /// Write end of the pipe the failed step is reported on (CLOEXEC).
    step_fd: RawFd,
    ctty: bool,
    cgroup_procs: Option<CString>,
    rlimits: Vec<(RawResource, libc::rlimit)>,
    oom_score: Option<Vec<u8>>,
    nice: Option<i32>,
    umask: libc::mode_t,
    groups: Option<Vec<libc::gid_t>>,
    gid: Option<libc::gid_t>,
    uid: Option<libc::uid_t>,
    cwd: CString,
    cwd_optional: bool,
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path contains a NUL byte: {}", p.display()),
        )
    })
}

impl ChildPlan {
    fn new(spec: &ExecSpec, step_fd: RawFd) -> io::Result<ChildPlan> {
        let cgroup_procs = spec
            .cgroup
            .as_ref()
            .map(|c| cpath(&c.join("cgroup.procs")))
            .transpose()?;
        let rlimits = spec
            .rlimits
            .iter()
            .map(|&(r, soft, hard)| {
                (
                    r.raw(),
                    libc::rlimit {
                        rlim_cur: soft as libc::rlim_t,
                        rlim_max: hard as libc::rlim_t,
                    },
                )
            })
            .collect();
        let switching = spec.uid.is_some() || spec.gid.is_some();
        let groups = (switching || !spec.groups.is_empty()).then(|| spec.groups.clone());
        Ok(ChildPlan {
            step_fd,
            ctty: matches!(spec.stdin, StdinSpec::Tty(_)),
            cgroup_procs,
            rlimits,
            oom_score: spec.oom_score_adjust.map(|s| s.to_string().into_bytes()),
            nice: spec.nice,
            umask: spec.umask as libc::mode_t,
            groups,
            gid: spec.gid,
            uid: spec.uid,
            cwd: cpath(spec.cwd.as_deref().unwrap_or(Path::new("/")))?,
            cwd_optional: spec.cwd_optional,
        })
    }

    /// Reports `step` (and `index`) to the parent and returns `errno` as
    /// the error std's `Command` passes on.
    fn fail(&self, step: Step, index: usize, errno: i32) -> io::Error {
        let msg = [step as u8, u8::try_from(index).unwrap_or(u8::MAX)];
        // SAFETY: `msg` is a 2-byte buffer on this stack frame; write(2) on
        // a pipe fd is async-signal-safe. A failed report only loses detail.
        unsafe { libc::write(self.step_fd, msg.as_ptr().cast(), msg.len()) };
        io::Error::from_raw_os_error(errno)
    }

    /// Runs in the child between fork and exec: system calls only.
    fn run(&self) -> io::Result<()> {
        self.steps()
            .map_err(|(step, index, errno)| self.fail(step, index, errno))
    }

    fn steps(&self) -> Result<(), (Step, usize, i32)> {
        let at = |step: Step| move |errno: i32| (step, 0, errno);
        mark_fds_cloexec().map_err(at(Step::CloseFds))?;
        // SAFETY: setsid has no memory-safety preconditions.
        check(unsafe { libc::setsid() }).map_err(at(Step::Setsid))?;
        if self.ctty {
            // SAFETY: TIOCSCTTY takes an int by value; fd 0 is the terminal.
            // Without `force` it fails harmlessly when another session owns
            // the terminal, which is the documented behaviour.
            unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0 as libc::c_int) };
        }
        reset_signals().map_err(at(Step::Signals))?;
        if let Some(procs) = &self.cgroup_procs {
            write_file(procs, b"0").map_err(at(Step::Cgroup))?;
        }
        for (i, (res, lim)) in self.rlimits.iter().enumerate() {
            // SAFETY: `lim` is a valid rlimit that lives in the plan.
            check(unsafe { libc::setrlimit(*res, lim) }).map_err(|e| (Step::Rlimit, i, e))?;
        }
        if let Some(score) = &self.oom_score {
            write_file(OOM_SCORE_ADJ, score).map_err(at(Step::OomScore))?;
        }
        if let Some(nice) = self.nice {
            // SAFETY: plain syscall on the calling process (who = 0).
            check(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) })
                .map_err(at(Step::Nice))?;
        }
        // SAFETY: umask cannot fail and has no preconditions.
        unsafe { libc::umask(self.umask) };
        if let Some(groups) = &self.groups {
            // SAFETY: pointer and length describe `groups`, owned by the plan.
            check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })
                .map_err(at(Step::Groups))?;
        }
        if let Some(gid) = self.gid {
            // SAFETY: plain syscall; the child is single-threaded.
            check(unsafe { libc::setgid(gid) }).map_err(at(Step::Gid))?;
        }
        if let Some(uid) = self.uid {
            // SAFETY: plain syscall; the child is single-threaded.
            check(unsafe { libc::setuid(uid) }).map_err(at(Step::Uid))?;
        }
        // SAFETY: `cwd` is a NUL-terminated string owned by the plan.
        match check(unsafe { libc::chdir(self.cwd.as_ptr()) }) {
            Err(libc::ENOENT) if self.cwd_optional => {
                // SAFETY: a static NUL-terminated path.
                check(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(at(Step::Chdir))
            }
            other => other.map_err(at(Step::Chdir)),
        }
    }
}

/// errno of the last failed call.
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A libc return value: negative is failure with errno.
fn check(rc: libc::c_int) -> Result<(), i32> {
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Marks every fd above 2 close-on-exec, so nothing opened without CLOEXEC
/// (by a library, or inherited by PID 1) leaks into services.
fn mark_fds_cloexec() -> Result<(), i32> {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: mark each possible fd.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a writable rlimit on this stack frame.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    let max = lim.rlim_cur.min(1 << 20) as RawFd;
    for fd in 3..max {
        // SAFETY: fcntl on an fd that may not be open: EBADF at worst.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Empties the signal mask and sets every disposition to the default (an
/// ignored signal would otherwise stay ignored across exec).
fn reset_signals() -> Result<(), i32> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; pthread_sigmask reads it.
    let rc = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(rc);
    }
    // The raw system call, because libc's sigaction refuses the signals it
    // reserves (32 and 33 with glibc), and those can arrive ignored:
    // glibc's posix_spawn leaves them SIG_IGN in the programs it starts.
    // An all-zero kernel `struct sigaction` is SIG_DFL with no flags and an
    // empty mask whatever the architecture's field order; the buffer is
    // larger than any of them.
    let dfl = [0u64; 8];
    for sig in 1..=KERNEL_NSIG {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `dfl` is a readable all-zero kernel sigaction; the old
        // action is not asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                KERNEL_NSIG as usize / 8,
            )
        };
    }
    Ok(())
}

/// The kernel's number of signals (`_NSIG`, 128 only on MIPS, which Keel
/// does not target).
const KERNEL_NSIG: libc::c_int = 64;

/// open(2) + write(2) + close(2): async-signal-safe.
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check(fd)?;
    // SAFETY: `data` is a valid buffer of `data.len()` bytes.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let result = if n < 0 {
        Err(errno())
    } else if n as usize != data.len() {
        Err(libc::EIO)
    } else {
        Ok(())
    };
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    result
}

/// Describes the child's failed setup step for the error message.
fn step_text(spec: &ExecSpec, step: Step, index: u8) -> String {
    let opt = |p: &Option<PathBuf>| p.as_deref().unwrap_or(Path::new("/")).display().to_string();
    match step {
        Step::CloseFds => "marking inherited file descriptors close-on-exec".into(),
        Step::Setsid => "creating a session (setsid)".into(),
        Step::Signals => "resetting the signal mask".into(),
        Step::Cgroup => format!("joining cgroup {}", opt(&spec.cgroup)),
        Step::Rlimit => match spec.rlimits.get(index as usize) {
            Some((r, soft, hard)) => format!("setting {} to {soft}:{hard}", r.rlimit_name()),
            None => "setting a resource limit".into(),
        },
        Step::OomScore => format!(
            "setting oom_score_adj to {}",
            spec.oom_score_adjust.unwrap_or_default()
        ),
        Step::Nice => format!("setting nice to {}", spec.nice.unwrap_or_default()),
        Step::Groups => format!("setting supplementary groups {:?}", spec.groups),
        Step::Gid => format!("switching to group {}", spec.gid.unwrap_or_default()),
        Step::Uid => format!("switching to user {}", spec.uid.unwrap_or_default()),
        Step::Chdir => format!("changing directory to {}", opt(&spec.cwd)),
    }
}

fn spawn_error(spec: &ExecSpec, step: String, source: io::Error) -> io::Error {
    io::Error::new(
        source.kind(),
        SpawnError {
            program: spec.program.clone(),
            step,
            source,
        },
    )
}

/// Starts a process as `spec` describes and returns its pid. The caller
/// reaps it (`waitpid(-1)`); nothing here waits for or kills it.
///
/// In the child, in this order: all fds above 2 marked close-on-exec,
/// `setsid()`, the terminal made the controlling one ([`StdinSpec::Tty`]),
/// signal mask and dispositions reset, the cgroup joined, resource limits,
/// oom score, nice, umask, supplementary groups, gid, uid, and last the
/// working directory (so it is checked with the user's permissions).
/// Failures of any step, and of exec itself, are returned as an error
/// naming the program and the step, whose kind is the cause's.
pub fn spawn(spec: ExecSpec) -> io::Result<u32> {
    let (mut step_r, step_w) = io::pipe()?;
    let plan = ChildPlan::new(&spec, step_w.as_raw_fd())?;

    let mut cmd = Command::new(&spec.program);
    match spec.argv.split_first() {
        Some((arg0, rest)) => {
            cmd.arg0(arg0).args(rest);
        }
        None => {
            cmd.arg0(&spec.program);
        }
    }
    cmd.env_clear();
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(sock) = &spec.notify_socket {
        cmd.env("NOTIFY_SOCKET", sock);
    }
    match &spec.stdin {
        StdinSpec::Null => cmd.stdin(Stdio::null()),
        StdinSpec::Tty(path) => {
            let tty = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(path)
                .map_err(|e| spawn_error(&spec, format!("opening {}", path.display()), e))?;
            cmd.stdin(Stdio::from(tty))
        }
    };
    let (stdout, stderr) = match &spec.output {
        OutputSpec::Null => (Stdio::null(), Stdio::null()),
        OutputSpec::Inherit => (Stdio::inherit(), Stdio::inherit()),
        OutputSpec::Fd(fd) => (Stdio::from(fd.try_clone()?), Stdio::from(fd.try_clone()?)),
        OutputSpec::Split { stdout, stderr } => (
            Stdio::from(stdout.try_clone()?),
            Stdio::from(stderr.try_clone()?),
        ),
    };
    cmd.stdout(stdout).stderr(stderr);
    // SAFETY: the closure runs between fork and exec; `ChildPlan::run` only
    // makes system calls (no allocation, no locks) on data prepared before
    // the fork.
    unsafe {
        cmd.pre_exec(move || plan.run());
    }

    let result = cmd.spawn();
    // Close our copies now: the child's ends are in `cmd`'s Stdio and the
    // child itself; a failed child has already exited (spawn waited).
    drop(cmd);
    drop(step_w);
    match result {
        // Dropping a std `Child` neither waits for nor kills the process.
        Ok(child) => Ok(child.id()),
        Err(e) => {
            let mut report = Vec::new();
            let _ = step_r.read_to_end(&mut report);
            let step = match report.as_slice() {
                [s, i, ..] => Step::from_byte(*s).map(|s| step_text(&spec, s, *i)),
                _ => None,
            };
            let step = step.unwrap_or_else(|| match e.raw_os_error() {
                Some(_) => "exec".to_string(),
                // std refused before forking, e.g. a NUL byte in an argument.
                None => "preparing arguments and environment".to_string(),
            });
            Err(spawn_error(&spec, step, e))
        }
    }
}

/// Blocks until child `pid` changes state and returns its raw wait status
/// (for [`decode_status`]). For one-off commands and tests; the supervisor
/// reaps everything with [`super::calls::wait_any`].
pub fn wait_pid(pid: u32) -> io::Result<i32> {
    let pid = to_pid(pid)?;
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid writable int for the duration of the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn to_pid(pid: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(pid) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid pid {pid}"),
        )),
    }
}

/// Sends `sig` to process `pid`. A process that is already gone (ESRCH)
/// is not an error. Pid 0 and values above `i32::MAX` (which kill(2) would
/// take for process groups) are refused.
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let pid = to_pid(pid)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// Sends `sig` to every process except PID 1 itself and kernel threads
/// (kill(-1, sig)), as the last step of a shutdown. Nothing left (ESRCH)
/// is success.
pub fn kill_all(sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(-1, sig) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
