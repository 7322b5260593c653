//! Errors of the boot stages, and printing them as one console line.

use std::io;
use std::path::{Path, PathBuf};

use keel_core::cmdline::CmdlineError;
use keel_core::verity::VerityError;

use crate::ext4::Ext4Error;
use crate::gpt_grow::GptError;
use crate::partitions::PartitionError;

/// A failed system call, named the way the kernel interface names it.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct OpError {
    pub op: String,
    #[source]
    pub source: io::Error,
}

impl OpError {
    pub fn new(op: impl Into<String>) -> impl FnOnce(io::Error) -> OpError {
        let op = op.into();
        move |source| OpError { op, source }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// An I/O step on a file or directory: `what` names the object.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A system call on a named object, e.g. a mount or a dm ioctl.
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: OpError,
    },
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    #[error("finding the partitions of the root")]
    Partitions(#[source] PartitionError),
    #[error("reading the verity superblock on {}", dev.display())]
    Verity {
        dev: PathBuf,
        #[source]
        source: VerityError,
    },
    #[error("growing partition {part} on {}", disk.display())]
    Gpt {
        part: String,
        disk: PathBuf,
        #[source]
        source: GptError,
    },
    #[error("checking the file system on {}", dev.display())]
    Ext4 {
        dev: PathBuf,
        #[source]
        source: Ext4Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl BootError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> BootError {
        let what = what.into();
        move |source| BootError::Io { what, source }
    }

    pub fn io_path(verb: &str, path: &Path) -> impl FnOnce(io::Error) -> BootError {
        BootError::io(format!("{verb} {}", path.display()))
    }

    /// `what`: the step; `op`: the call that failed inside it.
    pub fn sys(
        what: impl Into<String>,
        op: impl Into<String>,
    ) -> impl FnOnce(io::Error) -> BootError {
        let what = what.into();
        let op = op.into();
        move |source| BootError::Sys {
            what,
            source: OpError { op, source },
        }
    }
}

/// `outer: inner: innermost`, the whole chain on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_on_one_line() {
        let e = BootError::sys("creating dm-verity device keel-root", "DM_TABLE_LOAD")(
            io::Error::from_raw_os_error(22),
        );
        assert_eq!(
            chain(&e),
            "creating dm-verity device keel-root: DM_TABLE_LOAD: Invalid argument (os error 22)"
        );
    }
}
