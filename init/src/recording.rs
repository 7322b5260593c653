//! A [`Sys`] that records calls instead of making them, for tests.
//!
//! Paths under the test root are recorded relative to it (`/sysroot`, not
//! `/tmp/.tmpXYZ/sysroot`), so expected call sequences read like the real
//! ones. Any call can be made to fail with an errno.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::sys::{DmTarget, MountFlags, NodeKind, Sys};

#[derive(Debug)]
pub struct RecordingSys {
    root: PathBuf,
    calls: RefCell<Vec<String>>,
    failures: RefCell<Vec<(String, i32)>>,
    /// What DM_DEV_CREATE reports.
    pub dm_dev: (u32, u32),
    /// What statfs reports for every path.
    pub fs_magic: i64,
}

impl RecordingSys {
    pub fn new(root: &Path) -> Self {
        RecordingSys {
            root: root.to_path_buf(),
            calls: RefCell::new(Vec::new()),
            failures: RefCell::new(Vec::new()),
            dm_dev: (254, 0),
            fs_magic: crate::sys::TMPFS_MAGIC,
        }
    }

    /// The first recorded call starting with `prefix` fails with `errno`.
    pub fn fail_on(&self, prefix: &str, errno: i32) {
        self.failures.borrow_mut().push((prefix.to_string(), errno));
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn rel(&self, p: &Path) -> String {
        match p.strip_prefix(&self.root) {
            Ok(r) => format!("/{}", r.display()),
            Err(_) => p.display().to_string(),
        }
    }

    fn record(&self, line: String) -> io::Result<()> {
        let mut failures = self.failures.borrow_mut();
        let hit = failures
            .iter()
            .position(|(p, _)| line.starts_with(p.as_str()));
        self.calls.borrow_mut().push(line);
        match hit {
            Some(i) => Err(io::Error::from_raw_os_error(failures.remove(i).1)),
            None => Ok(()),
        }
    }
}

impl Sys for RecordingSys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        let source = self.rel(Path::new(source));
        let mut line = format!("mount -t {fstype} {source} {} -o {flags}", self.rel(target));
        if !data.is_empty() {
            let root = format!("{}", self.root.display());
            line.push_str(&format!(",{}", data.replace(&root, "")));
        }
        self.record(line)
    }

    fn umount(&self, target: &Path) -> io::Result<()> {
        self.record(format!("umount {}", self.rel(target)))
    }

    fn swapoff(&self, path: &Path) -> io::Result<()> {
        self.record(format!("swapoff {}", self.rel(path)))
    }

    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(format!("mount --move {} {}", self.rel(from), self.rel(to)))
    }

    fn mknod(&self, path: &Path, kind: NodeKind, major: u32, minor: u32) -> io::Result<()> {
        let t = match kind {
            NodeKind::Block => "b",
            NodeKind::Char => "c",
        };
        self.record(format!("mknod {} {t} {major} {minor}", self.rel(path)))
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chdir {}", self.rel(path)))
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chroot {}", self.rel(path)))
    }

    fn finit_module(&self, module: &File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let target = std::fs::read_link(format!("/proc/self/fd/{}", module.as_raw_fd()))?;
        self.record(format!("finit_module {}", self.rel(&target)))
    }

    fn dm_create(&self, control: &Path, name: &str, readonly: bool) -> io::Result<(u32, u32)> {
        let ro = if readonly { " ro" } else { "" };
        self.record(format!(
            "DM_DEV_CREATE {name}{ro} via {}",
            self.rel(control)
        ))?;
        Ok(self.dm_dev)
    }

    fn dm_load_table(
        &self,
        control: &Path,
        name: &str,
        readonly: bool,
        targets: &[DmTarget],
    ) -> io::Result<()> {
        let ro = if readonly { " ro" } else { "" };
        let table: Vec<String> = targets
            .iter()
            .map(|t| format!("{} {} {} {}", t.start, t.length, t.target_type, t.params))
            .collect();
        self.record(format!(
            "DM_TABLE_LOAD {name}{ro} via {}: {}",
            self.rel(control),
            table.join("; ")
        ))
    }

    fn dm_resume(&self, control: &Path, name: &str) -> io::Result<()> {
        self.record(format!(
            "DM_DEV_SUSPEND(resume) {name} via {}",
            self.rel(control)
        ))
    }

    fn blkpg_resize_partition(
        &self,
        disk: &Path,
        partno: u32,
        start: u64,
        length: u64,
    ) -> io::Result<()> {
        self.record(format!(
            "BLKPG_RESIZE_PARTITION {} {partno} {start} {length}",
            self.rel(disk)
        ))
    }

    fn ext4_resize(&self, mountpoint: &Path, blocks: u64) -> io::Result<()> {
        self.record(format!(
            "EXT4_IOC_RESIZE_FS {} {blocks}",
            self.rel(mountpoint)
        ))
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"))
    }

    fn link_up(&self, name: &str) -> io::Result<bool> {
        self.record(format!("link up {name}")).map(|()| true)
    }

    fn fs_magic(&self, _path: &Path) -> io::Result<i64> {
        Ok(self.fs_magic)
    }

    fn exec(&self, path: &Path, args: &[&str]) -> io::Result<()> {
        let mut line = format!("exec {}", path.display());
        for a in args {
            line.push(' ');
            line.push_str(a);
        }
        self.record(line)
    }
}
