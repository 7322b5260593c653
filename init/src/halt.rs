//! What PID 1 does when it cannot go on: say why, then offer a shell (with
//! `keel.debug=shell`) or halt. PID 1 must never exit.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use keel_core::cmdline::{Cmdline, DEBUG_KEY};

use crate::stage1::{at, say};
use crate::stage2::find_shell;
use crate::sys::shell;

/// Whether the kernel command line under `root` asks for a debug shell.
pub fn debug_shell_requested(root: &Path) -> bool {
    std::fs::read_to_string(at(root, "/proc/cmdline"))
        .map(|t| Cmdline::parse(&t).get(DEBUG_KEY) == Some("shell"))
        .unwrap_or(false)
}

/// Prints `error: <message>`, then execs a shell if asked and possible,
/// else prints `halted` and sleeps forever.
pub fn fail(root: &Path, message: &str, log: &mut dyn Write) -> ! {
    say(log, &format!("error: {message}"));
    if debug_shell_requested(root) {
        match find_shell(root) {
            Some((prog, args)) => {
                say(
                    log,
                    &format!("{DEBUG_KEY}=shell: starting {}", prog.display()),
                );
                let e = shell::exec_inherited(&prog, &args);
                say(log, &format!("warning: starting {}: {e}", prog.display()));
            }
            None => say(
                log,
                &format!("{DEBUG_KEY}=shell: no shell in the initramfs"),
            ),
        }
    }
    halt(log)
}

/// Prints `halted` and sleeps forever.
pub fn halt(log: &mut dyn Write) -> ! {
    say(log, "halted");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_debug_shell_flag() {
        let t = tempfile::tempdir().unwrap();
        assert!(!debug_shell_requested(t.path()), "no /proc/cmdline");
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(t.path().join("proc/cmdline"), "quiet keel.debug=shell\n").unwrap();
        assert!(debug_shell_requested(t.path()));
        std::fs::write(t.path().join("proc/cmdline"), "keel.debug=other\n").unwrap();
        assert!(!debug_shell_requested(t.path()));
    }
}
