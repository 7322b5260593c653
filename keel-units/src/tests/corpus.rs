//! Real unit files from Debian packages (tests/data/units).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use super::super::*;
use super::{machine, LIB};

/// Copies the corpus into `<root>/usr/lib/systemd/system`, keeping symlinks.
fn install_corpus(root: &Path) -> usize {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/units");
    let dst = root.join(LIB);
    fs::create_dir_all(&dst).unwrap();
    let mut n = 0;
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_symlink() {
            symlink(fs::read_link(e.path()).unwrap(), to).unwrap();
        } else {
            fs::copy(e.path(), to).unwrap();
        }
        n += 1;
    }
    n
}

#[test]
fn debian_units_load_with_known_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    assert!(install_corpus(r) >= 20);
    symlink("/usr/lib/systemd/system/containerd.service", {
        fs::create_dir_all(r.join("etc/systemd/system/multi-user.target.wants")).unwrap();
        r.join("etc/systemd/system/multi-user.target.wants/containerd.service")
    })
    .unwrap();
    let l = load_units(r, &machine());
    assert!(l.errors.is_empty(), "{:#?}", l.errors);

    let c = &l.units["containerd.service"];
    assert_eq!(c.kind, UnitKind::Service);
    assert_eq!(
        c.unit.description.as_deref(),
        Some("containerd container runtime")
    );
    assert_eq!(c.unit.after, ["network.target", "local-fs.target"]);
    let s = &c.service;
    assert_eq!(s.service_type, ServiceType::Notify);
    assert_eq!(s.exec_start_pre.len(), 1);
    assert!(s.exec_start_pre[0].ignore_failure);
    assert_eq!(s.exec_start_pre[0].argv, ["/sbin/modprobe", "overlay"]);
    assert_eq!(s.exec_start[0].argv, ["/usr/bin/containerd"]);
    assert!(!s.exec_start[0].ignore_failure);
    assert_eq!(s.restart, Restart::Always);
    assert_eq!(
        s.restart_sec,
        Some(TimeSpan::Finite(Duration::from_secs(5)))
    );
    assert!(s.delegate);
    assert_eq!(s.kill_mode, KillMode::Process);
    let inf = Limit {
        soft: None,
        hard: None,
    };
    for r in ["RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_NOFILE"] {
        assert!(s.limits.contains(&(r, inf)), "{r}");
    }
    assert_eq!(s.tasks_max, Some(TasksMax::Infinity));
    assert_eq!(s.oom_score_adjust, Some(-999));
    assert_eq!(c.install.wanted_by, ["multi-user.target"]);
    assert!(l.units["multi-user.target"]
        .unit
        .wants
        .contains(&"containerd.service".to_string()));

    let ssh = &l.units["ssh.service"];
    let s = &ssh.service;
    assert_eq!(ssh.unit.after, ["network.target", "auditd.service"]);
    let cond = &ssh.unit.conditions[0];
    assert!(cond.negate && cond.path == Path::new("/etc/ssh/sshd_not_to_be_run"));
    assert_eq!(s.environment_files[0].path, Path::new("/etc/default/ssh"));
    assert!(s.environment_files[0].optional);
    assert_eq!(s.exec_start_pre[0].argv, ["/usr/sbin/sshd", "-t"]);
    assert_eq!(s.exec_start[0].argv, ["/usr/sbin/sshd", "-D", "$SSHD_OPTS"]);
    let env = [("SSHD_OPTS".to_string(), "-o Port=22".to_string())]
        .into_iter()
        .collect();
    assert_eq!(
        expand(&s.exec_start[0].argv, &env),
        ["/usr/sbin/sshd", "-D", "-o", "Port=22"]
    );
    assert_eq!(s.exec_reload.len(), 2);
    assert_eq!(s.kill_mode, KillMode::Process);
    assert_eq!(s.restart, Restart::OnFailure);
    assert_eq!(s.restart_prevent_exit_status.codes, [255]);
    assert_eq!(s.service_type, ServiceType::Notify);
    assert_eq!(s.runtime_directory.names, ["sshd"]);
    assert_eq!(s.runtime_directory.mode, Some(0o755));
    assert_eq!(ssh.install.alias, ["sshd.service"]);

    assert!(!l.units["systemd-udevd.service"].unit.default_dependencies);
    assert!(l.units["ssh.service"].unit.default_dependencies);
    // udev.service is a symlink: an alias of systemd-udevd.service.
    assert_eq!(l.aliases["udev.service"], "systemd-udevd.service");
    // getty@.service's quoting: '-p -- \\u' is one word.
    let (g, getty_warnings) = load_one(r, &machine(), "getty@tty1.service").unwrap();
    assert_eq!(
        g.service.exec_start[0].argv,
        ["/sbin/agetty", "-o", "-p -- \\u", "--noclear", "-", "$TERM"]
    );

    // Every warning names a directive present at that line of that file.
    let mut report = Vec::new();
    for w in l.warnings.iter().chain(&getty_warnings) {
        report.push(w.to_string());
        if w.directive.is_empty() {
            assert!(w.message.contains("unsupported unit type"), "{w}");
            continue;
        }
        let text = fs::read_to_string(&w.file).unwrap();
        let line = text.lines().nth(w.line - 1).unwrap();
        assert!(
            line.trim_start().starts_with(&format!("{}=", w.directive)),
            "{w}: {line}"
        );
    }
    let sshw: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.file.ends_with("ssh.service"))
        .collect();
    assert!(sshw.is_empty(), "{sshw:#?}");
    let cw: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.file.ends_with("containerd.service"))
        .collect();
    assert!(cw.is_empty(), "{cw:#?}");
    eprintln!("corpus warnings:\n{}", report.join("\n"));
}
