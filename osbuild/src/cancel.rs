//! Stopping a build on SIGINT or SIGTERM without leaving anything behind.
//!
//! A thread of osbuild's own receives the signals (`signal-hook`'s
//! iterator: the real handler only writes to a pipe). What it does depends
//! on how far the build got:
//!
//! - Until the build has a work tree (while it checks its inputs,
//!   resolves and downloads packages — inside `debrepo`, with no place to
//!   look for a signal), the only thing osbuild has in the output
//!   directory is its lock file: the thread removes it and ends the
//!   process at once.
//! - From then on ([`Cancel::set_immediate`] `(false)`), the thread only
//!   records the signal. The build looks at the record between its steps,
//!   between packages and while it waits for a tool (a running mkfs.erofs
//!   or qemu-img is killed), and returns [`Interrupted`]; the guards of the
//!   work tree and of the partial outputs remove them on the way out, and
//!   `osbuild` exits with 128 + the signal number. Cleaning up in the
//!   build's own thread means nothing removes a directory the build is
//!   still writing into.
//!
//! Both modes switch under one mutex, so a signal is handled by exactly
//! one of them. A build commits its outputs after its last check; a signal
//! during those few renames is ignored and the build completes.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The build was stopped by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {} (the work tree and partial outputs were removed)", signal_name(*.signal))]
pub struct Interrupted {
    /// The signal's number.
    pub signal: i32,
}

impl Interrupted {
    /// The conventional exit status of a process a signal stopped.
    pub fn exit_code(&self) -> u8 {
        exit_code(self.signal)
    }
}

fn exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

fn signal_name(signal: i32) -> String {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT".into(),
        signal_hook::consts::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The signal number, 0 while none came.
    signal: AtomicI32,
    mode: Mutex<Mode>,
}

#[derive(Debug, Default)]
struct Mode {
    /// A signal ends the process at once.
    immediate: bool,
    /// Removed when it does.
    remove_on_exit: Option<PathBuf>,
}

/// Whether (and by which signal) the build was asked to stop. Clones
/// share the record.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

impl Cancel {
    /// A record no signal writes to (for library use and tests; see
    /// [`Cancel::with_signal_handlers`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A record that SIGINT and SIGTERM write to, from a thread started
    /// here. Starts in immediate mode.
    pub fn with_signal_handlers() -> io::Result<Self> {
        let c = Cancel::new();
        c.mode().immediate = true;
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        let handler = c.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    handler.inner.signal.store(sig, Ordering::SeqCst);
                    let mode = handler.mode();
                    if mode.immediate {
                        if let Some(p) = &mode.remove_on_exit {
                            let _ = fs::remove_file(p);
                        }
                        eprintln!("osbuild: interrupted by {}", signal_name(sig));
                        // The mutex stays held: nothing switches modes now.
                        std::process::exit(i32::from(exit_code(sig)));
                    }
                }
            })?;
        Ok(c)
    }

    fn mode(&self) -> MutexGuard<'_, Mode> {
        self.inner
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a signal ends the process at once (nothing to clean up) or
    /// is only recorded for the build to act on.
    pub fn set_immediate(&self, on: bool) {
        self.mode().immediate = on;
    }

    /// The file to remove when a signal ends the process at once (the
    /// output lock); `None` forgets it. `before` runs under the same
    /// mutex, so no signal is handled between the two.
    pub fn set_remove_on_exit(&self, path: Option<PathBuf>, before: impl FnOnce()) {
        let mut mode = self.mode();
        before();
        mode.remove_on_exit = path;
    }

    /// Records `signal` as if it had arrived (in the mode that is not
    /// immediate).
    pub fn cancel(&self, signal: i32) {
        self.inner.signal.store(signal, Ordering::SeqCst);
    }

    /// `Err` once a signal came.
    pub fn check(&self) -> Result<(), Interrupted> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => Ok(()),
            signal => Err(Interrupted { signal }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_signal_is_reported_with_its_exit_code() {
        let c = Cancel::new();
        assert_eq!(c.check(), Ok(()));
        let shared = c.clone();
        shared.cancel(signal_hook::consts::SIGTERM);
        let e = c.check().unwrap_err();
        assert_eq!(e.exit_code(), 143);
        assert!(e.to_string().contains("SIGTERM"), "{e}");
    }
}
