//! A unit's cgroup (v2): creating it, listing, signalling and killing its
//! processes, removing it, and its task limit.
//!
//! Only file operations on a directory given by the caller, so tests run on
//! a temporary tree that mimics `/sys/fs/cgroup`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::OpError;
use crate::sys::process;

fn op_err(op: &str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let op = format!("{op} {}", path.display());
    move |source| io::Error::new(source.kind(), OpError { op, source })
}

/// One cgroup directory, e.g. `/sys/fs/cgroup/system.slice/containerd.service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// The cgroup of `unit` under `slice_dir`. `unit` is a unit name as the
    /// unit loader validated it (no `/`).
    pub fn for_unit(slice_dir: &Path, unit: &str) -> Cgroup {
        Cgroup {
            path: slice_dir.join(unit),
        }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory and any missing parents; an existing one is
    /// fine.
    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(&self.path).map_err(op_err("creating cgroup", &self.path))
    }

    /// The pids in `cgroup.procs` of this cgroup and all its descendants.
    /// A cgroup that does not exist (any more) has none.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut pids = Vec::new();
        collect_pids(&self.path, &mut pids)?;
        Ok(pids)
    }

    /// Whether any process is left in the subtree (`populated 1` in
    /// `cgroup.events`). A missing cgroup is not populated.
    pub fn is_populated(&self) -> io::Result<bool> {
        let events = self.path.join("cgroup.events");
        let text = match fs::read_to_string(&events) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.path.exists() => {
                return Ok(false)
            }
            Err(e) => return Err(op_err("reading", &events)(e)),
        };
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("populated "))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("no \"populated\" line in {}", events.display()),
                )
            })?;
        Ok(value.trim() != "0")
    }

    /// SIGKILLs every process in the subtree by writing `1` to
    /// `cgroup.kill`. Without `cgroup.kill` (kernels before 5.14) it
    /// SIGKILLs each listed pid instead, which can miss processes forked
    /// meanwhile: repeat until [`Cgroup::is_populated`] is false. A missing
    /// cgroup has nothing to kill.
    pub fn kill_all(&self) -> io::Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        let kill = self.path.join("cgroup.kill");
        match write_existing(&kill, b"1") {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.signal_all(libc::SIGKILL),
            other => other.map_err(op_err("writing 1 to", &kill)),
        }
    }

    /// Sends `sig` to every process in the subtree (one pass over
    /// [`Cgroup::pids`]). Processes already gone are skipped; the first
    /// other failure is returned after trying them all.
    pub fn signal_all(&self, sig: i32) -> io::Result<()> {
        let mut first_err = None;
        for pid in self.pids()? {
            if let Err(source) = process::kill(pid, sig) {
                first_err.get_or_insert_with(|| {
                    let op = format!("sending SIG{} to pid {pid}", process::signal_name(sig));
                    io::Error::new(source.kind(), OpError { op, source })
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Removes the cgroup: child cgroups depth-first, then itself. A cgroup
    /// that still has processes fails with EBUSY, naming the directory. An
    /// already removed cgroup is fine.
    pub fn remove(&self) -> io::Result<()> {
        remove_tree(&self.path)
    }

    /// Sets `pids.max` (`TasksMax=`): a number, or `max` for `None`.
    /// Without the file (the pids controller is not enabled for the
    /// parent) this does nothing; a missing cgroup is an error.
    pub fn set_tasks_max(&self, max: Option<u64>) -> io::Result<()> {
        if !self.path.is_dir() {
            return Err(op_err("setting pids.max in", &self.path)(io::Error::from(
                io::ErrorKind::NotFound,
            )));
        }
        let value = max.map_or_else(|| "max".to_string(), |m| m.to_string());
        let file = self.path.join("pids.max");
        match write_existing(&file, value.as_bytes()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(op_err(&format!("writing {value} to"), &file)),
        }
    }
}

/// Writes `data` to an existing file in one write (never creates it: in
/// cgroupfs a missing file means a missing feature).
fn write_existing(path: &Path, data: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?
        .write_all(data)
}

fn collect_pids(dir: &Path, pids: &mut Vec<u32>) -> io::Result<()> {
    let procs = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&procs) {
        Ok(t) => t,
        // Removed meanwhile, or no cgroup at all.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(op_err("reading", &procs)(e)),
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let pid = line.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:{}: not a pid: {line:?}", procs.display(), i + 1),
            )
        })?;
        pids.push(pid);
    }
    for entry in read_dir_if_exists(dir)? {
        let entry = entry.map_err(op_err("listing", dir))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// The entries of `dir`; none when it does not exist.
fn read_dir_if_exists(dir: &Path) -> io::Result<Vec<io::Result<fs::DirEntry>>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd.collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(op_err("listing", dir)(e)),
    }
}

fn remove_tree(dir: &Path) -> io::Result<()> {
    for entry in read_dir_if_exists(dir)? {
        let entry = entry.map_err(op_err("listing", dir))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(op_err("removing cgroup", dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::process::{decode_status, spawn, wait_pid, ExecSpec, ExitStatus};

    fn tree() -> (tempfile::TempDir, Cgroup) {
        let t = tempfile::tempdir().unwrap();
        let cg = Cgroup::for_unit(&t.path().join("system.slice"), "app.service");
        (t, cg)
    }

    fn sleeper() -> u32 {
        spawn(ExecSpec::new(
            "/bin/sleep",
            vec!["sleep".into(), "60".into()],
        ))
        .unwrap()
    }

    fn assert_killed_by(pid: u32, signal: i32) {
        let status = decode_status(wait_pid(pid).unwrap());
        assert_eq!(
            status,
            ExitStatus::Signaled {
                signal,
                core: false
            }
        );
    }

    #[test]
    fn creates_and_removes_nested_cgroups() {
        let (t, cg) = tree();
        assert_eq!(cg.path(), t.path().join("system.slice/app.service"));
        cg.create().unwrap();
        cg.create().unwrap();
        fs::create_dir_all(cg.path().join("a/b")).unwrap();
        fs::create_dir_all(cg.path().join("c")).unwrap();
        cg.remove().unwrap();
        assert!(!cg.path().exists());
        assert!(t.path().join("system.slice").is_dir());
        cg.remove().unwrap();
    }

    #[test]
    fn remove_fails_naming_the_busy_directory() {
        let (_t, cg) = tree();
        // In a real cgroup, rmdir of one with processes fails (EBUSY); a
        // plain directory with a file fails the same way (ENOTEMPTY).
        fs::create_dir_all(cg.path().join("inner")).unwrap();
        fs::write(cg.path().join("inner/cgroup.procs"), "1\n").unwrap();
        let e = cg.remove().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::DirectoryNotEmpty);
        let msg = e.to_string();
        assert!(msg.ends_with("app.service/inner"), "{msg}");
        assert!(cg.path().exists());
    }

    #[test]
    fn lists_pids_of_the_subtree() {
        let (_t, cg) = tree();
        assert_eq!(cg.pids().unwrap(), Vec::<u32>::new(), "missing cgroup");
        fs::create_dir_all(cg.path().join("child/grand")).unwrap();
        fs::write(cg.path().join("cgroup.procs"), "10\n20\n").unwrap();
        fs::write(cg.path().join("child/cgroup.procs"), "").unwrap();
        fs::write(cg.path().join("child/grand/cgroup.procs"), "30\n").unwrap();
        let mut pids = cg.pids().unwrap();
        pids.sort();
        assert_eq!(pids, [10, 20, 30]);

        fs::write(cg.path().join("child/cgroup.procs"), "40\nforty\n").unwrap();
        let msg = cg.pids().unwrap_err().to_string();
        assert!(
            msg.ends_with("child/cgroup.procs:2: not a pid: \"forty\""),
            "{msg}"
        );
    }

    #[test]
    fn reads_populated_from_cgroup_events() {
        let (_t, cg) = tree();
        assert!(!cg.is_populated().unwrap(), "missing cgroup");
        cg.create().unwrap();
        let e = cg.is_populated().unwrap_err();
        assert!(e.to_string().contains("cgroup.events"), "{e}");
        let events = cg.path().join("cgroup.events");
        fs::write(&events, "populated 1\nfrozen 0\n").unwrap();
        assert!(cg.is_populated().unwrap());
        fs::write(&events, "populated 0\nfrozen 0\n").unwrap();
        assert!(!cg.is_populated().unwrap());
        fs::write(&events, "frozen 0\n").unwrap();
        let e = cg.is_populated().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn kill_all_writes_cgroup_kill() {
        let (_t, cg) = tree();
        cg.kill_all().unwrap();
        assert!(!cg.path().exists(), "missing cgroup: nothing done");
        cg.create().unwrap();
        fs::write(cg.path().join("cgroup.kill"), "").unwrap();
        cg.kill_all().unwrap();
        assert_eq!(
            fs::read_to_string(cg.path().join("cgroup.kill")).unwrap(),
            "1"
        );
    }

    #[test]
    fn kill_all_without_cgroup_kill_signals_each_pid() {
        let (_t, cg) = tree();
        fs::create_dir_all(cg.path().join("sub")).unwrap();
        let (a, b) = (sleeper(), sleeper());
        fs::write(cg.path().join("cgroup.procs"), format!("{a}\n")).unwrap();
        fs::write(cg.path().join("sub/cgroup.procs"), format!("{b}\n")).unwrap();
        cg.kill_all().unwrap();
        assert!(!cg.path().join("cgroup.kill").exists());
        assert_killed_by(a, libc::SIGKILL);
        assert_killed_by(b, libc::SIGKILL);
    }

    #[test]
    fn signal_all_reaches_every_process() {
        let (_t, cg) = tree();
        fs::create_dir_all(cg.path().join("sub")).unwrap();
        let (a, b) = (sleeper(), sleeper());
        fs::write(cg.path().join("cgroup.procs"), format!("{a}\n")).unwrap();
        fs::write(cg.path().join("sub/cgroup.procs"), format!("{b}\n")).unwrap();
        cg.signal_all(libc::SIGTERM).unwrap();
        assert_killed_by(a, libc::SIGTERM);
        assert_killed_by(b, libc::SIGTERM);
        // Gone processes are no error (a pid above pid_max cannot exist).
        fs::write(cg.path().join("cgroup.procs"), "4194305\n").unwrap();
        fs::write(cg.path().join("sub/cgroup.procs"), "").unwrap();
        cg.signal_all(libc::SIGTERM).unwrap();
    }

    #[test]
    fn sets_tasks_max_when_the_controller_is_there() {
        let (_t, cg) = tree();
        assert_eq!(
            cg.set_tasks_max(Some(5)).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        cg.create().unwrap();
        cg.set_tasks_max(Some(100)).unwrap();
        assert!(!cg.path().join("pids.max").exists(), "never created");
        fs::write(cg.path().join("pids.max"), "max\n").unwrap();
        cg.set_tasks_max(Some(100)).unwrap();
        assert_eq!(
            fs::read_to_string(cg.path().join("pids.max")).unwrap(),
            "100"
        );
        cg.set_tasks_max(None).unwrap();
        assert_eq!(
            fs::read_to_string(cg.path().join("pids.max")).unwrap(),
            "max"
        );
    }
}
