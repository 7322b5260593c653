//! How processes end: decoding wait statuses, and signal names.

use std::fmt;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit with this status.
    Exited(i32),
    /// A signal killed it; `core`: it dumped core.
    Signaled { signal: i32, core: bool },
}

impl ExitStatus {
    /// Exited with status 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exited with status {code}"),
            ExitStatus::Signaled { signal, core } => {
                write!(f, "killed by signal {}", signal_name(signal))?;
                if core {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Decodes a raw `waitpid` status. (Stop and continue statuses, which
/// `waitpid` only reports when asked, decode as `Exited` of their high byte.)
pub fn decode_status(raw: i32) -> ExitStatus {
    if libc::WIFSIGNALED(raw) {
        ExitStatus::Signaled {
            signal: libc::WTERMSIG(raw),
            core: libc::WCOREDUMP(raw),
        }
    } else {
        ExitStatus::Exited(libc::WEXITSTATUS(raw))
    }
}

const SIGNAL_NAMES: [(i32, &str); 31] = [
    (libc::SIGHUP, "HUP"),
    (libc::SIGINT, "INT"),
    (libc::SIGQUIT, "QUIT"),
    (libc::SIGILL, "ILL"),
    (libc::SIGTRAP, "TRAP"),
    (libc::SIGABRT, "ABRT"),
    (libc::SIGBUS, "BUS"),
    (libc::SIGFPE, "FPE"),
    (libc::SIGKILL, "KILL"),
    (libc::SIGUSR1, "USR1"),
    (libc::SIGSEGV, "SEGV"),
    (libc::SIGUSR2, "USR2"),
    (libc::SIGPIPE, "PIPE"),
    (libc::SIGALRM, "ALRM"),
    (libc::SIGTERM, "TERM"),
    (libc::SIGSTKFLT, "STKFLT"),
    (libc::SIGCHLD, "CHLD"),
    (libc::SIGCONT, "CONT"),
    (libc::SIGSTOP, "STOP"),
    (libc::SIGTSTP, "TSTP"),
    (libc::SIGTTIN, "TTIN"),
    (libc::SIGTTOU, "TTOU"),
    (libc::SIGURG, "URG"),
    (libc::SIGXCPU, "XCPU"),
    (libc::SIGXFSZ, "XFSZ"),
    (libc::SIGVTALRM, "VTALRM"),
    (libc::SIGPROF, "PROF"),
    (libc::SIGWINCH, "WINCH"),
    (libc::SIGIO, "IO"),
    (libc::SIGPWR, "PWR"),
    (libc::SIGSYS, "SYS"),
];

const RT_NAMES: [&str; 31] = [
    "RTMIN", "RTMIN+1", "RTMIN+2", "RTMIN+3", "RTMIN+4", "RTMIN+5", "RTMIN+6", "RTMIN+7",
    "RTMIN+8", "RTMIN+9", "RTMIN+10", "RTMIN+11", "RTMIN+12", "RTMIN+13", "RTMIN+14", "RTMIN+15",
    "RTMIN+16", "RTMIN+17", "RTMIN+18", "RTMIN+19", "RTMIN+20", "RTMIN+21", "RTMIN+22", "RTMIN+23",
    "RTMIN+24", "RTMIN+25", "RTMIN+26", "RTMIN+27", "RTMIN+28", "RTMIN+29", "RTMIN+30",
];

/// The name of a signal without `SIG`: `SEGV`, `TERM`, `RTMIN+3` (relative
/// to libc's `SIGRTMIN`, like systemd); `UNKNOWN` when there is none.
pub fn signal_name(sig: i32) -> &'static str {
    if let Some((_, name)) = SIGNAL_NAMES.iter().find(|(s, _)| *s == sig) {
        return name;
    }
    let rtmin = libc::SIGRTMIN();
    if (rtmin..=libc::SIGRTMAX()).contains(&sig) {
        if let Some(name) = RT_NAMES.get((sig - rtmin) as usize) {
            return name;
        }
    }
    "UNKNOWN"
}

/// The signal `name` names: `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`
/// (case-insensitive). Numbers must be valid signals.
pub fn signal_from_name(name: &str) -> Option<i32> {
    let max = libc::SIGRTMAX();
    if let Ok(n) = name.parse::<i32>() {
        return (1..=max).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, sig)) = SIGNAL_NAMES
        .iter()
        .map(|(s, n)| (n, s))
        .find(|(n, _)| **n == bare)
    {
        return Some(*sig);
    }
    let rtmin = libc::SIGRTMIN();
    let sig = if bare == "RTMIN" {
        rtmin
    } else if let Some(off) = bare.strip_prefix("RTMIN+") {
        rtmin + off.parse::<i32>().ok()?
    } else if bare == "RTMAX" {
        max
    } else if let Some(off) = bare.strip_prefix("RTMAX-") {
        max - off.parse::<i32>().ok()?
    } else {
        return None;
    };
    (rtmin..=max).contains(&sig).then_some(sig)
}
