//! The one privileged operation of applying nodes, behind a trait so that
//! tests (and builds that do not run as root) can record it instead.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};

pub trait Sys {
    /// Sets the owner of `path` without following a final symlink.
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
}

/// The real thing.
pub struct RealSys;

impl Sys for RealSys {
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    }
}

/// Records ownership changes instead of making them.
#[derive(Default)]
pub struct RecordingSys {
    pub calls: RefCell<Vec<(PathBuf, u32, u32)>>,
}

impl Sys for RecordingSys {
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.calls.borrow_mut().push((path.to_path_buf(), uid, gid));
        Ok(())
    }
}
