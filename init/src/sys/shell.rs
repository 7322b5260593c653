//! Starting an interactive shell on a terminal.

use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use std::os::unix::process::CommandExt;

/// Environment every shell and program started by `keel-init` gets.
pub const BASE_ENV: [(&str, &str); 4] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("TERM", "linux"),
    ("SHELL", "/bin/sh"),
];

pub(crate) fn base_command(program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().current_dir("/");
    for (k, v) in BASE_ENV {
        cmd.env(k, v);
    }
    cmd
}

/// Spawns `program args` with `tty` (an opened terminal device) as stdin,
/// stdout, stderr and controlling terminal, so job control and ^C work.
pub fn spawn_on_tty(program: &Path, args: &[&str], tty: &File) -> io::Result<Child> {
    let mut cmd = base_command(program, args);
    cmd.stdin(Stdio::from(tty.try_clone()?))
        .stdout(Stdio::from(tty.try_clone()?))
        .stderr(Stdio::from(tty.try_clone()?));
    // SAFETY: the closure runs between fork and exec and only calls
    // setsid(2) and ioctl(2), which are async-signal-safe; it allocates
    // nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| super::calls::become_session_leader_on(0));
    }
    cmd.spawn()
}

/// Spawns `program args` sharing our own stdin/stdout/stderr.
pub fn spawn_inherited(program: &Path, args: &[&str]) -> io::Result<Child> {
    base_command(program, args).spawn()
}

/// Replaces this process with `program args` (the shell used when stage 1
/// fails with keel.debug=shell). Returns only on failure.
pub fn exec_inherited(program: &Path, args: &[&str]) -> io::Error {
    base_command(program, args).exec()
}
