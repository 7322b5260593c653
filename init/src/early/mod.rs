//! Early system setup: what systemd's early boot services do on a Debian
//! system, done by stage 2 before it starts any unit.
//!
//! [`run`] mounts cgroup2 and enables its controllers, makes sure there is
//! a machine ID, sets the host name, loads the drivers of the devices
//! present and the modules of modules-load.d,
//! applies sysctl.d and tmpfiles.d and leaves a writable resolv.conf.
//! Every step works below `root` (`/` for real, a temporary directory in
//! tests) and reports problems as warnings: the boot always goes on.

pub mod accounts;
pub mod cgroup;
pub mod disklinks;
pub mod glob;
pub mod hostname;
pub mod machine_id;
pub mod modules;
pub mod resolv;
pub mod sysctl;
pub mod tmpfiles;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use keel_core::cmdline::Cmdline;

use crate::stage1::{at, say};
use crate::sys::Sys;

/// The running kernel's release, as `uname -r` prints it.
pub const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
/// The boot ID the kernel picked for this boot (a UUID with dashes).
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Where the early steps report: console lines through [`say`], with the
/// warnings kept for the caller.
pub struct Log<'a> {
    out: &'a mut dyn Write,
    warnings: Vec<String>,
}

impl<'a> Log<'a> {
    pub fn new(out: &'a mut dyn Write) -> Self {
        Log {
            out,
            warnings: Vec::new(),
        }
    }

    /// Prints `keel-init: MSG`.
    pub fn info(&mut self, msg: &str) {
        say(self.out, msg);
    }

    /// Prints `keel-init: warning: MSG` and keeps `warning: MSG`.
    pub fn warn(&mut self, msg: &str) {
        let line = format!("warning: {msg}");
        say(self.out, &line);
        self.warnings.push(line);
    }

    /// The warnings printed so far, each as printed after `keel-init: `.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn into_warnings(self) -> Vec<String> {
        self.warnings
    }
}

/// Runs every early-setup step in order; returns the warnings it printed.
///
/// Order: cgroup2, machine-id, hostname, loopback, device drivers
/// (coldplug), `/dev/disk` links, modules-load.d, sysctl.d, tmpfiles.d,
/// resolv.conf.
pub fn run(sys: &dyn Sys, root: &Path, cmdline: &Cmdline, log: &mut dyn Write) -> Vec<String> {
    let mut log = Log::new(log);
    cgroup::setup(sys, root, &mut log);
    let machine_id = machine_id::ensure(root, &mut log);
    let hostname = hostname::set(sys, root, &mut log);
    loopback(sys, &mut log);
    modules::load_device_drivers(sys, root, &mut log);
    disklinks::make(root, &mut log);
    configure(sys, root, cmdline, machine_id, hostname, &mut log);
    resolv::ensure(root, &mut log);
    log.into_warnings()
}

/// Sets the loopback interface up, as systemd does first thing: the
/// kernel then gives it 127.0.0.1 and ::1, and services that listen on
/// them (containerd's CRI streaming server, say) find them.
fn loopback(sys: &dyn Sys, log: &mut Log) {
    match sys.link_up("lo") {
        Ok(true) => log.info("loopback lo up"),
        Ok(false) => {}
        Err(e) => log.warn(&format!("setting the loopback interface lo up: {e}")),
    }
}

/// Runs again what reads /etc, after a first boot's config may have
/// changed it (`/etc/hostname`, modules-load.d, sysctl.d, tmpfiles.d):
/// on Fedora CoreOS Ignition runs before these services, and configs
/// are written expecting that. Returns the warnings it printed.
pub fn after_first_boot(
    sys: &dyn Sys,
    root: &Path,
    cmdline: &Cmdline,
    log: &mut dyn Write,
) -> Vec<String> {
    let mut log = Log::new(log);
    let machine_id = machine_id::ensure(root, &mut log);
    let hostname = hostname::set(sys, root, &mut log);
    configure(sys, root, cmdline, machine_id, hostname, &mut log);
    log.into_warnings()
}

/// modules-load.d, sysctl.d and tmpfiles.d.
fn configure(
    sys: &dyn Sys,
    root: &Path,
    cmdline: &Cmdline,
    machine_id: Option<String>,
    hostname: String,
    log: &mut Log,
) {
    modules::load_configured(sys, root, cmdline, log);
    sysctl::apply(root, log);
    let specifiers = tmpfiles::Specifiers {
        machine_id,
        boot_id: boot_id(root),
        hostname,
        kernel_release: kernel_release(root).ok(),
    };
    tmpfiles::apply(root, &specifiers, log);
}

/// The running kernel's release from `<root>/proc/sys/kernel/osrelease`.
pub fn kernel_release(root: &Path) -> io::Result<String> {
    let text = fs::read_to_string(at(root, OSRELEASE))?;
    let release = text.trim();
    if release.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{OSRELEASE} is empty"),
        ));
    }
    Ok(release.to_string())
}

/// This boot's ID as 32 hex digits (systemd's `%b`), when the kernel has one.
pub fn boot_id(root: &Path) -> Option<String> {
    let text = fs::read_to_string(at(root, BOOT_ID)).ok()?;
    let id: String = text.trim().chars().filter(|c| *c != '-').collect();
    (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_lowercase())
}

/// Follows symbolic links at `path` the way they would resolve if `root`
/// were `/`: absolute targets are taken inside `root`. Gives up after 32
/// links and returns the last path reached.
pub fn follow_in_root(root: &Path, path: &Path) -> PathBuf {
    let mut cur = path.to_path_buf();
    for _ in 0..32 {
        let Ok(target) = fs::read_link(&cur) else {
            return cur;
        };
        cur = if target.is_absolute() {
            at(root, &target.to_string_lossy())
        } else {
            match cur.parent() {
                Some(dir) => dir.join(target),
                None => target,
            }
        };
    }
    cur
}

/// The surviving files of the `*.d` configuration `name` (for example
/// `sysctl.d`) below `root`, with systemd's precedence
/// ([`keel_units::confdirs`]); unreadable directories are logged.
pub fn conf_files(root: &Path, name: &str, log: &mut Log) -> Vec<keel_units::confdirs::ConfFile> {
    use keel_units::confdirs;
    let (files, warnings) = confdirs::list(root, &confdirs::dirs(name), ".conf");
    for w in warnings {
        log.warn(&w);
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSys;
    use std::os::unix::fs::symlink;

    #[test]
    fn log_prints_and_keeps_warnings() {
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        log.info("hello");
        log.warn("careful");
        assert_eq!(log.warnings(), ["warning: careful"]);
        drop(log);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "keel-init: hello\nkeel-init: warning: careful\n"
        );
    }

    #[test]
    fn reads_kernel_facts() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        assert!(kernel_release(root).is_err());
        assert_eq!(boot_id(root), None);
        fs::create_dir_all(root.join("proc/sys/kernel/random")).unwrap();
        fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-18-amd64\n").unwrap();
        fs::write(
            root.join("proc/sys/kernel/random/boot_id"),
            "9A1D4F2C-0B6E-4E8A-9F3D-1C2B3A4D5E6F\n",
        )
        .unwrap();
        assert_eq!(kernel_release(root).unwrap(), "6.1.0-18-amd64");
        assert_eq!(
            boot_id(root).as_deref(),
            Some("9a1d4f2c0b6e4e8a9f3d1c2b3a4d5e6f")
        );
    }

    #[test]
    fn follows_links_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("run/x")).unwrap();
        symlink("/run/x/real", root.join("etc/abs")).unwrap();
        symlink("abs", root.join("etc/rel")).unwrap();
        assert_eq!(
            follow_in_root(root, &root.join("etc/rel")),
            root.join("run/x/real")
        );
        symlink("loop", root.join("etc/loop")).unwrap();
        assert_eq!(
            follow_in_root(root, &root.join("etc/loop")),
            root.join("etc/loop")
        );
    }

    #[test]
    fn runs_every_step_in_order() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in [
            "proc/self",
            "proc/sys/kernel/random",
            "proc/sys/net/ipv4",
            "sys/fs/cgroup/system.slice",
            "dev",
            "etc/sysctl.d",
            "etc/tmpfiles.d",
            "run",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("proc/self/mountinfo"), "").unwrap();
        fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0\n").unwrap();
        fs::write(root.join("proc/sys/net/ipv4/ip_forward"), "0\n").unwrap();
        fs::write(root.join("sys/fs/cgroup/cgroup.controllers"), "cpu pids\n").unwrap();
        fs::write(root.join("sys/fs/cgroup/cgroup.subtree_control"), "").unwrap();
        fs::write(
            root.join("sys/fs/cgroup/system.slice/cgroup.subtree_control"),
            "",
        )
        .unwrap();
        fs::write(root.join("dev/urandom"), [7u8; 64]).unwrap();
        fs::write(root.join("etc/hostname"), "node-1\n").unwrap();
        fs::write(
            root.join("etc/sysctl.d/ip.conf"),
            "net.ipv4.ip_forward = 1\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/tmpfiles.d/x.conf"),
            "d /run/%H 0700 - - -\nf /run/id - - - - %m\n",
        )
        .unwrap();
        let sys = RecordingSys::new(root);
        let mut out = Vec::new();
        let warnings = run(&sys, root, &Cmdline::parse(""), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(warnings.is_empty(), "{text}");
        assert_eq!(
            sys.calls(),
            [
                "mount -t cgroup2 cgroup2 /sys/fs/cgroup -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot",
                "sethostname node-1",
                "link up lo",
            ]
        );
        let id = fs::read_to_string(root.join("etc/machine-id")).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("run/id")).unwrap(),
            id.trim_end()
        );
        assert!(root.join("run/node-1").is_dir());
        assert_eq!(
            fs::read_to_string(root.join("proc/sys/net/ipv4/ip_forward")).unwrap(),
            "1\n"
        );
        assert!(root.join("etc/resolv.conf").is_file());
        let steps: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("keel-init: "))
            .collect();
        let pos = |p: &str| steps.iter().position(|l| l.starts_with(p)).unwrap();
        assert!(pos("mounted cgroup2") < pos("generated machine-id"));
        assert!(pos("generated machine-id") < pos("hostname node-1"));
        assert!(pos("hostname node-1") < pos("loopback lo up"));
        assert!(pos("loopback lo up") < pos("sysctl:"));
        assert!(pos("sysctl:") < pos("tmpfiles:"));
        assert!(pos("tmpfiles:") < pos("created empty /etc/resolv.conf"));
    }
}
