//! Signals of PID 1: all blocked in every thread and taken synchronously by
//! one waiter thread, which turns them into events.
//!
//! [`block_all`] must run first thing in `main`, before any thread exists,
//! so that every thread inherits the mask: a process-directed signal then
//! stays pending until the waiter's `sigwaitinfo` takes it.

use std::io;
use std::mem::MaybeUninit;
use std::thread::JoinHandle;

/// Signals left unblocked: faults the kernel must be able to deliver.
const FAULTS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// libc's `SIGRTMIN` (34 with glibc): systemd numbers its real-time
/// signals from it (`SIGRTMIN+4` is "power off").
pub fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

/// The signals the waiter of [`spawn_waiter`] reports: SIGCHLD, SIGTERM,
/// SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPWR and SIGRTMIN+3, +4, +5, +13,
/// +14, +15 (systemd's halt/poweroff/reboot requests).
pub fn waited_signals() -> Vec<i32> {
    let rt = sigrtmin();
    let mut v = vec![
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPWR,
    ];
    v.extend([3, 4, 5, 13, 14, 15].map(|n| rt + n));
    v
}

fn sigset(signals: &[i32]) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set.
    if unsafe { libc::sigemptyset(set.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by sigemptyset above.
    let mut set = unsafe { set.assume_init() };
    for &sig in signals {
        // SAFETY: `set` is an initialised sigset_t.
        if unsafe { libc::sigaddset(&mut set, sig) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(set)
}

fn set_mask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: `set` is an initialised sigset_t; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(how, set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Blocks every signal except SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT
/// in the calling thread; threads created afterwards inherit the mask.
/// Async-signal-safe (usable between fork and exec).
pub fn block_all() -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the whole set.
    if unsafe { libc::sigfillset(set.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by sigfillset above.
    let mut set = unsafe { set.assume_init() };
    for sig in FAULTS {
        // SAFETY: `set` is an initialised sigset_t.
        unsafe { libc::sigdelset(&mut set, sig) };
    }
    set_mask(libc::SIG_SETMASK, &set)
}

/// Starts a thread that takes the [`waited_signals`] with `sigwaitinfo`
/// and calls `on_signal(signo)` for each. The thread blocks those signals
/// itself; for process-directed signals to reach it, every other thread
/// must block them too ([`block_all`] before any thread exists).
pub fn spawn_waiter(on_signal: impl Fn(i32) + Send + 'static) -> io::Result<JoinHandle<()>> {
    let set = sigset(&waited_signals())?;
    std::thread::Builder::new()
        .name("keel-signals".into())
        .spawn(move || {
            if set_mask(libc::SIG_BLOCK, &set).is_err() {
                // Cannot happen with a valid set; without the block,
                // sigwaitinfo would miss signals, so there is nothing to do.
                return;
            }
            loop {
                // SAFETY: `set` is an initialised sigset_t; the info
                // pointer may be NULL.
                let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
                if sig > 0 {
                    on_signal(sig);
                }
                // sig < 0: EINTR (a stop/continue); wait again.
            }
        })
}

/// Makes Ctrl-Alt-Del send SIGINT to PID 1 instead of rebooting at once
/// (reboot(2) with `LINUX_REBOOT_CMD_CAD_OFF`). Needs CAP_SYS_BOOT and
/// changes the whole machine: PID 1 only.
pub fn cad_to_sigint() -> io::Result<()> {
    // SAFETY: reboot(2) with CAD_OFF only flips a kernel flag.
    if unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_CAD_OFF) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::os::unix::thread::JoinHandleExt;
    use std::process::Command;
    use std::sync::mpsc;
    use std::time::Duration;

    /// The blocked-signal mask of the calling thread, from procfs.
    fn blocked_mask() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .unwrap();
        u64::from_str_radix(line.trim(), 16).unwrap()
    }

    fn bit(sig: i32) -> u64 {
        1 << (sig - 1)
    }

    #[test]
    fn block_all_blocks_all_but_faults() {
        std::thread::spawn(|| {
            assert_eq!(blocked_mask() & bit(libc::SIGTERM), 0);
            block_all().unwrap();
            let mask = blocked_mask();
            for sig in waited_signals() {
                assert_ne!(mask & bit(sig), 0, "signal {sig} not blocked");
            }
            for sig in FAULTS {
                assert_eq!(mask & bit(sig), 0, "fault signal {sig} blocked");
            }
            // Inherited by threads created afterwards.
            let child_mask = std::thread::spawn(blocked_mask).join().unwrap();
            assert_eq!(child_mask, mask);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn names_real_time_signals_from_sigrtmin() {
        let rt = sigrtmin();
        assert!(rt >= 32, "{rt}");
        assert_eq!(waited_signals().len(), 13);
        assert!(waited_signals().contains(&(rt + 4)));
    }

    /// Thread-directed signals (pthread_kill) reach the waiter in this
    /// multi-threaded test process without disturbing other threads.
    #[test]
    fn waiter_reports_signals_sent_to_its_thread() {
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            block_all().unwrap();
            spawn_waiter(move |sig| {
                let _ = tx.send(sig);
            })
            .unwrap()
        })
        .join()
        .unwrap();
        let thread = waiter.as_pthread_t();
        for sig in [libc::SIGUSR1, sigrtmin() + 13, libc::SIGHUP] {
            // SAFETY: the waiter thread runs forever, so its pthread_t is
            // valid; the signal is blocked there and taken by sigwaitinfo.
            assert_eq!(
                unsafe { libc::pthread_kill(thread as libc::pthread_t, sig) },
                0
            );
            // A SIGCHLD of another test's child could be routed here.
            let got = loop {
                let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                if got != libc::SIGCHLD {
                    break got;
                }
            };
            assert_eq!(got, sig);
        }
    }

    const SCENARIO_ENV: &str = "KEEL_TEST_SIGNALS_SCENARIO";
    const SCENARIO_OK: &str = "signals-scenario-ok";

    /// Process-directed signals, as PID 1 gets them: the test binary runs
    /// `process_directed_scenario` in a child that starts with every signal
    /// blocked (as after `block_all` first thing in `main`).
    #[test]
    fn waiter_takes_process_directed_signals() {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "sys::signals::tests::process_directed_scenario",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO_ENV, "1");
        // SAFETY: block_all only calls sigfillset/sigdelset/pthread_sigmask,
        // which are async-signal-safe.
        unsafe {
            cmd.pre_exec(block_all);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains(SCENARIO_OK), "{stdout}\n{stderr}");
    }

    /// Helper of `waiter_takes_process_directed_signals`; does nothing
    /// unless run by it.
    #[test]
    #[ignore = "run in a subprocess by waiter_takes_process_directed_signals"]
    fn process_directed_scenario() {
        if std::env::var_os(SCENARIO_ENV).is_none() {
            return;
        }
        assert_ne!(
            blocked_mask() & bit(libc::SIGTERM),
            0,
            "scenario must start with signals blocked"
        );
        let (tx, rx) = mpsc::channel();
        spawn_waiter(move |sig| {
            let _ = tx.send(sig);
        })
        .unwrap();
        let me = std::process::id();
        let expect = |sig: i32| {
            let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(got, sig, "expected {sig}, got {got}");
        };
        for sig in [libc::SIGTERM, libc::SIGINT, sigrtmin() + 4, libc::SIGPWR] {
            crate::sys::process::kill(me, sig).unwrap();
            expect(sig);
        }
        // A child's exit raises SIGCHLD.
        let status = Command::new("/bin/true").status().unwrap();
        assert!(status.success());
        expect(libc::SIGCHLD);
        println!("{SCENARIO_OK}");
    }
}
