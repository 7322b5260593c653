//! [`Guest`]: a running QEMU, its temporary directory and its serial console.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::command::{CmdOutput, Markers};
use crate::console::{
    clean_for_display, find_text, line_around, rescan_from, Console, Wait, TAIL_LINES,
};
use crate::{host, HarnessError};

const SERIAL_LOG: &str = "serial.log";
const STDERR_LOG: &str = "qemu-stderr.log";

/// Where a needle was found on the serial console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleMatch {
    /// The whole line containing the needle, cleaned of `\r` and escape sequences.
    pub line: String,
    /// Byte offset of the needle in the serial output.
    pub start: usize,
    /// Byte offset just after the needle: pass it to the next wait to look only
    /// at what came later.
    pub end: usize,
}

/// One QEMU process and its pipes.
struct Running {
    child: Child,
    stdin: Mutex<ChildStdin>,
    readers: Vec<JoinHandle<()>>,
}

/// A booted (or booting) QEMU guest. Dropping it kills QEMU and removes its
/// temporary directory; if the thread is panicking (a failed test), the whole
/// serial log is printed to stderr first.
///
/// All timeouts given to its methods are multiplied by `KEEL_QEMU_TIMEOUT_SCALE`.
pub struct Guest {
    name: String,
    dir: Option<TempDir>,
    args: Vec<OsString>,
    serial: Arc<Console>,
    stderr: Arc<Console>,
    running: Option<Running>,
    exit: Option<ExitStatus>,
    run_lock: Mutex<()>,
    ports: Vec<(u16, u16)>,
    scale: f64,
}

impl Guest {
    pub(crate) fn start(
        name: String,
        dir: TempDir,
        args: Vec<OsString>,
        ports: Vec<(u16, u16)>,
        scale: f64,
    ) -> Result<Self, HarnessError> {
        let mut guest = Guest {
            name,
            dir: Some(dir),
            args,
            serial: Arc::default(),
            stderr: Arc::default(),
            running: None,
            exit: None,
            run_lock: Mutex::new(()),
            ports,
            scale,
        };
        guest.spawn()?;
        Ok(guest)
    }

    fn dir_path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), |d| d.path())
    }

    fn open_log(&self, file: &str) -> Result<File, HarnessError> {
        let path = self.dir_path().join(file);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| HarnessError::SerialLog { path, source })
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let serial_log = self.open_log(SERIAL_LOG)?;
        let stderr_log = self.open_log(STDERR_LOG)?;
        let mut child = Command::new(host::QEMU_SYSTEM)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: host::QEMU_SYSTEM.to_string(),
                source,
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::Spawn {
                program: host::QEMU_SYSTEM.to_string(),
                source: std::io::Error::other("pipes to qemu were not set up"),
            });
        };
        let readers = vec![
            self.serial.spawn_reader(stdout, serial_log),
            self.stderr.spawn_reader(stderr, stderr_log),
        ];
        self.running = Some(Running {
            child,
            stdin: Mutex::new(stdin),
            readers,
        });
        self.exit = None;
        Ok(())
    }

    /// Kill QEMU (SIGKILL, like pulling the power cord) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            self.exit = running.child.wait().ok();
            drop(running.stdin);
            for reader in running.readers {
                let _ = reader.join();
            }
        }
    }

    /// Pull the power cord and boot again from the same disks and firmware
    /// variables. Serial output continues in the same log, after a note line;
    /// take [`Guest::serial_offset`] before to wait for lines of the new boot.
    pub fn power_cycle(&mut self) -> Result<(), HarnessError> {
        self.kill();
        self.serial
            .append(b"\r\n[keel-qemu-tests: power cycle, qemu restarted]\r\n");
        self.spawn()
    }

    fn scaled(&self, timeout: Duration) -> Duration {
        timeout.mul_f64(self.scale)
    }

    fn timeout_error(&self, what: String, waited: Duration) -> HarnessError {
        HarnessError::Timeout {
            guest: self.name.clone(),
            what,
            waited,
            tail: self.serial.tail(TAIL_LINES),
        }
    }

    fn exited_error(&self, what: String) -> HarnessError {
        HarnessError::QemuExited {
            guest: self.name.clone(),
            what,
            stderr: self.stderr.tail(TAIL_LINES),
            tail: self.serial.tail(TAIL_LINES),
        }
    }

    /// Process id of the running QEMU, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    /// Bytes of serial output so far: an offset for [`Guest::wait_for_line_after`].
    pub fn serial_offset(&self) -> usize {
        self.serial.len()
    }

    /// Wait until `needle` appears anywhere in the serial output; returns its line.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String, HarnessError> {
        self.wait_for_line_after(needle, 0, timeout)
    }

    /// Like [`Guest::wait_for_line`], but only output from byte `after_offset`
    /// on counts (e.g. the second boot's login prompt after a reboot).
    pub fn wait_for_line_after(
        &self,
        needle: &str,
        after_offset: usize,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        self.wait_for_match(needle, after_offset, timeout)
            .map(|m| m.line)
    }

    /// Wait for `needle` at or after byte `after_offset`; returns where it is.
    pub fn wait_for_match(
        &self,
        needle: &str,
        after_offset: usize,
        timeout: Duration,
    ) -> Result<ConsoleMatch, HarnessError> {
        let timeout = self.scaled(timeout);
        let deadline = Instant::now() + timeout;
        let needle_bytes = needle.as_bytes();
        // Only rescan what may contain a needle that was not there before.
        let mut scan_from = after_offset;
        let found = self.serial.wait_until(deadline, |buf| {
            let hit = find_text(buf, needle_bytes, scan_from);
            scan_from = scan_from.max(rescan_from(buf, needle_bytes.len()));
            hit.map(|(start, end)| ConsoleMatch {
                line: line_around(buf, start),
                start,
                end,
            })
        });
        let what = || format!("{needle:?} on the serial console");
        match found {
            Wait::Found(m) => Ok(m),
            Wait::Closed => Err(self.exited_error(what())),
            Wait::TimedOut => Err(self.timeout_error(what(), timeout)),
        }
    }

    /// Type `text` into the serial console as is (add `\n` to end a line).
    pub fn send(&self, text: &str) -> Result<(), HarnessError> {
        let running = self.running.as_ref().ok_or(HarnessError::NotRunning {
            guest: self.name.clone(),
        })?;
        let mut stdin = running.stdin.lock().unwrap_or_else(|e| e.into_inner());
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|source| HarnessError::ConsoleWrite {
                guest: self.name.clone(),
                source,
            })
    }

    /// Run one line of shell in the shell on the serial console and return its
    /// output and exit code. The shell must be at its prompt (wait for a line
    /// that says so first). `cmd` must be one line; it runs in the console
    /// shell itself, so `cd` and variables persist and `exit` ends that shell.
    pub fn run(&self, cmd: &str, timeout: Duration) -> Result<CmdOutput, HarnessError> {
        if cmd.contains(['\n', '\r']) {
            return Err(HarnessError::MultiLineCommand {
                guest: self.name.clone(),
                cmd: cmd.to_string(),
            });
        }
        let _one_at_a_time = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let markers = Markers::new();
        let from = self.serial_offset();
        self.send(&markers.wrap(cmd))?;
        let timeout = self.scaled(timeout);
        let deadline = Instant::now() + timeout;
        let what = || format!("command {cmd:?} to finish");
        match self
            .serial
            .wait_until(deadline, |buf| markers.parse(buf, from))
        {
            Wait::Found(out) => Ok(out),
            Wait::Closed => Err(self.exited_error(what())),
            Wait::TimedOut => Err(self.timeout_error(what(), timeout)),
        }
    }

    /// [`Guest::run`], and an error with the output unless the exit code is 0.
    pub fn run_ok(&self, cmd: &str, timeout: Duration) -> Result<String, HarnessError> {
        let out = self.run(cmd, timeout)?;
        if out.success() {
            return Ok(out.output);
        }
        Err(HarnessError::CommandFailed {
            guest: self.name.clone(),
            cmd: cmd.to_string(),
            exit_code: out.exit_code,
            output: out.output,
        })
    }

    /// The whole serial output so far (raw, invalid UTF-8 replaced).
    pub fn serial_log(&self) -> String {
        self.serial.contents()
    }

    /// The file the serial output is also written to.
    pub fn serial_log_path(&self) -> PathBuf {
        self.dir_path().join(SERIAL_LOG)
    }

    /// The guest's temporary directory (disks, firmware variables, logs).
    pub fn temp_dir(&self) -> &Path {
        self.dir_path()
    }

    /// The 127.0.0.1 port forwarded to TCP `guest_port`, if it was requested.
    pub fn host_port(&self, guest_port: u16) -> Option<u16> {
        self.ports
            .iter()
            .find(|(guest, _)| *guest == guest_port)
            .map(|&(_, host)| host)
    }

    /// Wait for QEMU to exit by itself (the guest powered off).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.exit {
            if self.running.is_none() {
                return Ok(status);
            }
        }
        let timeout = self.scaled(timeout);
        let deadline = Instant::now() + timeout;
        // QEMU's stdout (the serial console) closes when QEMU exits.
        if let Wait::TimedOut = self.serial.wait_until(deadline, |_| None::<()>) {
            return Err(self.timeout_error("qemu to exit".to_string(), timeout));
        }
        let Some(mut running) = self.running.take() else {
            return Err(HarnessError::NotRunning {
                guest: self.name.clone(),
            });
        };
        let status = running.child.wait().map_err(|source| HarnessError::Wait {
            guest: self.name.clone(),
            source,
        })?;
        for reader in running.readers {
            let _ = reader.join();
        }
        self.exit = Some(status);
        Ok(status)
    }

    fn print_failure_log(&self) {
        let test = std::thread::current()
            .name()
            .unwrap_or("<unnamed thread>")
            .to_string();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "\n===== serial console of guest {} (test {test}), {} =====",
            self.name,
            self.serial_log_path().display()
        );
        let _ = writeln!(err, "{}", clean_for_display(self.serial_log().as_bytes()));
        let stderr = self.stderr.contents();
        if !stderr.trim().is_empty() {
            let _ = writeln!(
                err,
                "===== qemu stderr of guest {} =====\n{stderr}",
                self.name
            );
        }
        let _ = writeln!(err, "===== qemu arguments of guest {} =====", self.name);
        let args: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
        let _ = writeln!(err, "{} {}", host::QEMU_SYSTEM, args.join(" "));
        let _ = writeln!(err, "===== end of guest {} =====", self.name);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            self.print_failure_log();
        }
        if host::keep_tempdirs() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "keeping guest {} files in {}",
                    self.name,
                    dir.keep().display()
                );
            }
        }
    }
}
