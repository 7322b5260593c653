//! The one error type of the harness.

use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while preparing, booting or talking to a guest.
///
/// Errors about the guest's behaviour (a timeout, QEMU exiting early) carry the
/// last lines of the serial console, so a failing test shows what the guest did.
///
/// `Debug` shows the same text as `Display` plus the source chain, so that
/// `unwrap()` in a test and `-> Result<(), HarnessError>` print readable
/// console excerpts rather than an escaped struct dump.
#[derive(thiserror::Error)]
pub enum HarnessError {
    #[error("creating temporary directory for guest {guest}")]
    TempDir {
        guest: String,
        #[source]
        source: std::io::Error,
    },

    #[error("reading disk image {}", path.display())]
    ReadImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("copying firmware variables {} to {}", from.display(), to.display())]
    CopyFirmwareVars {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("opening serial log {}", path.display())]
    SerialLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("starting {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{program} failed to create {} ({status}): {stderr}", path.display())]
    CreateDisk {
        program: String,
        path: PathBuf,
        status: ExitStatus,
        stderr: String,
    },

    #[error("picking a free port on 127.0.0.1")]
    PickPort(#[source] std::io::Error),

    #[error("preparing a test disk: {what}")]
    Fixture { what: String },

    #[error("running the test HTTP server on 127.0.0.1")]
    HttpServer(#[source] std::io::Error),

    #[error("invalid value {value:?} in environment variable {var}: {reason}")]
    BadEnv {
        var: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("writing to the serial console of guest {guest}")]
    ConsoleWrite {
        guest: String,
        #[source]
        source: std::io::Error,
    },

    #[error("guest {guest}: timed out after {}s waiting for {what}\n--- last serial lines ---\n{tail}", waited.as_secs())]
    Timeout {
        guest: String,
        what: String,
        waited: Duration,
        tail: String,
    },

    #[error("guest {guest}: qemu exited while waiting for {what}\n--- qemu stderr ---\n{stderr}\n--- last serial lines ---\n{tail}")]
    QemuExited {
        guest: String,
        what: String,
        stderr: String,
        tail: String,
    },

    #[error("guest {guest}: qemu is not running")]
    NotRunning { guest: String },

    #[error("waiting for qemu of guest {guest}")]
    Wait {
        guest: String,
        #[source]
        source: std::io::Error,
    },

    #[error("guest {guest}: command {cmd:?} exited with {exit_code}, output:\n{output}")]
    CommandFailed {
        guest: String,
        cmd: String,
        exit_code: i32,
        output: String,
    },

    #[error("guest {guest}: command {cmd:?} contains a line break; run() takes one shell line")]
    MultiLineCommand { guest: String, cmd: String },

    #[error("reading image directory {}", dir.display())]
    ReadImageDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no image {name}-*.qcow2 in {}: run `make image` first (or set KEEL_OUT)", dir.display())]
    ImageMissing { name: String, dir: PathBuf },
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = self.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::HarnessError;
    use std::path::PathBuf;

    #[test]
    fn debug_is_readable_with_sources() {
        let err = HarnessError::ReadImage {
            path: PathBuf::from("/x.qcow2"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            format!("{err:?}"),
            "reading disk image /x.qcow2: entity not found"
        );
    }
}
