//! The unified cgroup hierarchy: mount cgroup2 and hand its controllers
//! down to services (`system.slice`) and delegated subtrees (containerd).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::Log;
use crate::stage1::at;
use crate::sys::{MountFlags, Sys};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub const SYSTEM_SLICE: &str = "/sys/fs/cgroup/system.slice";
pub const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Mount options systemd uses for the unified hierarchy.
pub const MOUNT_DATA: &str = "nsdelegate,memory_recursiveprot";

/// Writes one value to a cgroup control file.
type ControlWriter<'w> = dyn FnMut(&Path, &str) -> io::Result<()> + 'w;

fn write_control(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// (mount point, file system type) of every mount in `<root>/proc/self/mountinfo`.
pub fn mounts(root: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(at(root, MOUNTINFO)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let point = l.split_whitespace().nth(4)?;
            let (_, after) = l.split_once(" - ")?;
            let fstype = after.split_whitespace().next()?;
            Some((point.replace("\\040", " "), fstype.to_string()))
        })
        .collect()
}

/// Mounts cgroup2 at [`CGROUP_ROOT`] unless something is mounted there,
/// enables every available controller for the root's children and creates
/// [`SYSTEM_SLICE`] with the same controllers enabled below it.
pub fn setup(sys: &dyn Sys, root: &Path, log: &mut Log) {
    setup_with(sys, root, log, &mut write_control)
}

fn setup_with(sys: &dyn Sys, root: &Path, log: &mut Log, write: &mut ControlWriter<'_>) {
    let cgroot = at(root, CGROUP_ROOT);
    let target = cgroot.to_string_lossy().into_owned();
    match mounts(root).into_iter().rev().find(|(p, _)| *p == target) {
        Some((_, fstype)) if fstype == "cgroup2" => {}
        Some((_, fstype)) => {
            log.warn(&format!(
                "{CGROUP_ROOT} is already mounted as {fstype}, not cgroup2; leaving it alone"
            ));
            return;
        }
        None => {
            if let Err(e) = fs::create_dir_all(&cgroot) {
                log.warn(&format!("creating {CGROUP_ROOT}: {e}"));
                return;
            }
            let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
            if let Err(e) = sys.mount("cgroup2", &cgroot, "cgroup2", flags, MOUNT_DATA) {
                log.warn(&format!("mounting cgroup2 on {CGROUP_ROOT}: {e}"));
                return;
            }
            log.info(&format!("mounted cgroup2 on {CGROUP_ROOT}"));
        }
    }

    let list = cgroot.join("cgroup.controllers");
    let available: Vec<String> = match fs::read_to_string(&list) {
        Ok(t) => t.split_whitespace().map(str::to_string).collect(),
        Err(e) => {
            log.warn(&format!("reading {CGROUP_ROOT}/cgroup.controllers: {e}"));
            return;
        }
    };
    let enabled = enable(&cgroot, CGROUP_ROOT, &available, log, write);
    if !enabled.is_empty() {
        log.info(&format!(
            "enabled cgroup controllers: {}",
            enabled.join(" ")
        ));
    }

    let slice = at(root, SYSTEM_SLICE);
    if let Err(e) = fs::create_dir(&slice) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            log.warn(&format!("creating {SYSTEM_SLICE}: {e}"));
            return;
        }
    }
    enable(&slice, SYSTEM_SLICE, &enabled, log, write);
}

/// Enables `controllers` in `dir/cgroup.subtree_control` in one write; if
/// the kernel refuses it, one by one, warning for each refused controller.
/// Returns the controllers enabled.
fn enable(
    dir: &Path,
    shown: &str,
    controllers: &[String],
    log: &mut Log,
    write: &mut ControlWriter<'_>,
) -> Vec<String> {
    if controllers.is_empty() {
        return Vec::new();
    }
    let file = dir.join("cgroup.subtree_control");
    let all: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    if write(&file, &all.join(" ")).is_ok() {
        return controllers.to_vec();
    }
    let mut enabled = Vec::new();
    for c in controllers {
        match write(&file, &format!("+{c}")) {
            Ok(()) => enabled.push(c.clone()),
            Err(e) => log.warn(&format!(
                "enabling cgroup controller {c} in {shown}/cgroup.subtree_control: {e}"
            )),
        }
    }
    enabled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSys;

    fn cgroup_root(mountinfo: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("proc/self")).unwrap();
        fs::create_dir_all(root.join("sys/fs/cgroup")).unwrap();
        let r = root.display();
        fs::write(
            root.join("proc/self/mountinfo"),
            mountinfo.replace("ROOT", &r.to_string()),
        )
        .unwrap();
        fs::write(
            root.join("sys/fs/cgroup/cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        t
    }

    #[test]
    fn mounts_and_enables_all_controllers() {
        let t = cgroup_root("22 1 0:5 / ROOT/proc rw - proc proc rw\n");
        let root = t.path();
        let sys = RecordingSys::new(root);
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let mut writes = Vec::new();
        let mut w = |p: &Path, v: &str| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            writes.push(format!("{rel} <- {v}"));
            Ok(())
        };
        setup_with(&sys, root, &mut log, &mut w);
        assert!(log.warnings().is_empty());
        assert_eq!(
            sys.calls(),
            ["mount -t cgroup2 cgroup2 /sys/fs/cgroup -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot"]
        );
        assert_eq!(
            writes,
            [
                "sys/fs/cgroup/cgroup.subtree_control <- +cpuset +cpu +io +memory +pids",
                "sys/fs/cgroup/system.slice/cgroup.subtree_control <- +cpuset +cpu +io +memory +pids",
            ]
        );
        assert!(root.join("sys/fs/cgroup/system.slice").is_dir());
    }

    #[test]
    fn falls_back_to_one_by_one_and_warns_for_refused() {
        let t = cgroup_root("30 1 0:26 / ROOT/sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let root = t.path();
        let sys = RecordingSys::new(root);
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let mut writes = Vec::new();
        let mut w = |p: &Path, v: &str| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            writes.push(format!("{rel} <- {v}"));
            if v.contains("+cpuset") || v.contains("+io") {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            } else {
                Ok(())
            }
        };
        setup_with(&sys, root, &mut log, &mut w);
        // Already mounted: no mount call.
        assert!(sys.calls().is_empty());
        assert_eq!(
            writes,
            [
                "sys/fs/cgroup/cgroup.subtree_control <- +cpuset +cpu +io +memory +pids",
                "sys/fs/cgroup/cgroup.subtree_control <- +cpuset",
                "sys/fs/cgroup/cgroup.subtree_control <- +cpu",
                "sys/fs/cgroup/cgroup.subtree_control <- +io",
                "sys/fs/cgroup/cgroup.subtree_control <- +memory",
                "sys/fs/cgroup/cgroup.subtree_control <- +pids",
                "sys/fs/cgroup/system.slice/cgroup.subtree_control <- +cpu +memory +pids",
            ]
        );
        assert_eq!(log.warnings().len(), 2);
        assert!(log.warnings()[0]
            .contains("controller cpuset in /sys/fs/cgroup/cgroup.subtree_control"));
    }

    #[test]
    fn leaves_a_v1_hierarchy_and_mount_failures_alone() {
        let t = cgroup_root("30 1 0:26 / ROOT/sys/fs/cgroup rw - tmpfs tmpfs rw\n");
        let sys = RecordingSys::new(t.path());
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        setup(&sys, t.path(), &mut log);
        assert!(sys.calls().is_empty());
        assert!(log.warnings()[0].contains("already mounted as tmpfs"));
        assert!(!t.path().join("sys/fs/cgroup/system.slice").exists());

        let t = cgroup_root("");
        let sys = RecordingSys::new(t.path());
        sys.fail_on("mount -t cgroup2", libc::EPERM);
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        setup(&sys, t.path(), &mut log);
        assert_eq!(log.warnings().len(), 1);
        assert!(log.warnings()[0].starts_with("warning: mounting cgroup2 on /sys/fs/cgroup"));
    }

    #[test]
    fn writes_real_control_files() {
        let t = cgroup_root("");
        let root = t.path();
        fs::write(root.join("sys/fs/cgroup/cgroup.subtree_control"), "").unwrap();
        let sys = RecordingSys::new(root);
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        setup(&sys, root, &mut log);
        assert_eq!(
            fs::read_to_string(root.join("sys/fs/cgroup/cgroup.subtree_control")).unwrap(),
            "+cpuset +cpu +io +memory +pids"
        );
        // A temp dir has no kernel to create system.slice's control file.
        assert_eq!(log.warnings().len(), 5, "{:?}", log.warnings());
    }
}
