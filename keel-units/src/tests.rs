//! Tests of directive handling and loading against real directory trees.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use super::*;

mod corpus;
mod load;
mod mount;

pub(super) fn machine() -> MachineInfo {
    MachineInfo {
        hostname: "node1".into(),
        machine_id: "0123456789abcdef0123456789abcdef".into(),
    }
}

pub(super) fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

pub(super) fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

pub(super) const LIB: &str = "usr/lib/systemd/system";
pub(super) const ETC: &str = "etc/systemd/system";

/// Loads one unit file given as text; returns the unit and its warnings.
fn one(name: &str, text: &str) -> (Unit, Vec<Warning>) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &format!("{LIB}/{name}"), text);
    load_one(dir.path(), &machine(), name).unwrap()
}

fn warned(w: &[Warning]) -> Vec<(usize, &str)> {
    w.iter().map(|w| (w.line, w.directive.as_str())).collect()
}

#[test]
fn unit_section_directives() {
    let (u, w) = one(
        "a.service",
        "[Unit]\nDescription=Thing %n\nDocumentation=man:a(8) https://x\n\
         After=b.service c.target\nBefore=d.service\nRequires=e.service\nWants=f.service\n\
         Requisite=g.service\nBindsTo=h.service\nPartOf=i.service\nConflicts=j.service\n\
         DefaultDependencies=no\nConditionPathExists=!/etc/x\nConditionPathIsDirectory=|/d\n\
         ConditionFileNotEmpty=/f\nAssertPathExists=/a\nStartLimitIntervalSec=10s\n\
         StartLimitBurst=3\nAfter=bad/name\nDefaultDependencies=\n[Service]\nExecStart=/bin/true\n",
    );
    let s = &u.unit;
    assert_eq!(s.description.as_deref(), Some("Thing a.service"));
    assert_eq!(s.documentation, ["man:a(8)", "https://x"]);
    assert_eq!(s.after, ["b.service", "c.target"]);
    assert_eq!(s.requires, ["e.service", "h.service"]);
    assert_eq!(s.binds_to, ["h.service"]);
    assert_eq!(
        (
            &s.before[..],
            &s.wants[..],
            &s.requisite[..],
            &s.part_of[..],
            &s.conflicts[..]
        ),
        (
            &["d.service".to_string()][..],
            &["f.service".to_string()][..],
            &["g.service".to_string()][..],
            &["i.service".to_string()][..],
            &["j.service".to_string()][..]
        )
    );
    // DefaultDependencies=no, then reset to the default by `DefaultDependencies=`.
    assert!(s.default_dependencies);
    assert_eq!(s.conditions.len(), 3);
    assert!(s.conditions[0].negate && !s.conditions[0].trigger);
    assert_eq!(s.conditions[0].path, Path::new("/etc/x"));
    assert!(s.conditions[1].trigger && s.conditions[1].kind == ConditionKind::PathIsDirectory);
    assert_eq!(s.asserts[0].path, Path::new("/a"));
    assert_eq!(
        s.start_limit_interval,
        Some(TimeSpan::Finite(Duration::from_secs(10)))
    );
    assert_eq!(s.start_limit_burst, Some(3));
    assert_eq!(warned(&w), [(9, "BindsTo"), (19, "After")]);
}

#[test]
fn service_directives() {
    let (u, w) = one(
        "x@inst.service",
        "[Service]\nType=notify\nExecStartPre=-/sbin/modprobe overlay\n\
         ExecStart=/usr/sbin/sshd -D $SSHD_OPTS --id=%i\nExecStartPost=/bin/post\n\
         ExecReload=/bin/kill -HUP $MAINPID\nExecStop=/bin/stop\nExecStopPost=/bin/stoppost\n\
         Restart=on-abnormal\nRestartSec=500ms\nRestartPreventExitStatus=255 SIGABRT\n\
         SuccessExitStatus=1 2\nStartLimitInterval=1min\nRemainAfterExit=yes\n\
         Environment=\"A=1 2\" B=%t/x\nEnvironmentFile=-/etc/default/x\nWorkingDirectory=-~\n\
         User=u\nGroup=g\nSupplementaryGroups=a b\nRuntimeDirectory=%p %p/sub\n\
         RuntimeDirectoryMode=0750\nRuntimeDirectoryPreserve=restart\nStateDirectory=s\n\
         LogsDirectory=l\nCacheDirectory=c\nCacheDirectoryMode=700\nLimitNOFILE=1024:4096\n\
         LimitCORE=infinity\nLimitMEMLOCK=64K\nTimeoutSec=1min 30s\nTimeoutStopSec=infinity\n\
         KillMode=mixed\nKillSignal=SIGINT\nSendSIGKILL=no\nDelegate=yes\nTasksMax=50%\n\
         OOMScoreAdjust=-999\nPIDFile=x.pid\nNotifyAccess=all\nStandardOutput=journal+console\n\
         StandardError=append:/var/log/x\nUMask=0027\nNice=5\n",
    );
    assert!(w.is_empty(), "{w:#?}");
    let s = &u.service;
    assert_eq!(s.service_type, ServiceType::Notify);
    assert!(s.exec_start_pre[0].ignore_failure);
    assert_eq!(
        s.exec_start[0].argv,
        ["/usr/sbin/sshd", "-D", "$SSHD_OPTS", "--id=inst"]
    );
    assert_eq!(s.exec_reload[0].argv[2], "$MAINPID");
    assert_eq!(
        (
            s.exec_start_post.len(),
            s.exec_stop.len(),
            s.exec_stop_post.len()
        ),
        (1, 1, 1)
    );
    assert_eq!(s.restart, Restart::OnAbnormal);
    assert_eq!(
        s.restart_sec,
        Some(TimeSpan::Finite(Duration::from_millis(500)))
    );
    assert_eq!(s.restart_prevent_exit_status.codes, [255]);
    assert_eq!(s.restart_prevent_exit_status.signals, [6]);
    assert_eq!(s.success_exit_status.codes, [1, 2]);
    assert_eq!(
        u.unit.start_limit_interval,
        Some(TimeSpan::Finite(Duration::from_secs(60)))
    );
    assert!(s.remain_after_exit);
    assert_eq!(
        s.environment,
        [("A".into(), "1 2".into()), ("B".into(), "/run/x".into())]
    );
    assert!(s.environment_files[0].optional);
    assert_eq!(
        s.working_directory,
        Some(WorkingDirectory {
            path: None,
            optional: true
        })
    );
    assert_eq!(
        (s.user.as_deref(), s.group.as_deref()),
        (Some("u"), Some("g"))
    );
    assert_eq!(s.supplementary_groups, ["a", "b"]);
    assert_eq!(s.runtime_directory.names, ["x", "x/sub"]);
    assert_eq!(s.runtime_directory.mode, Some(0o750));
    assert_eq!(s.runtime_directory_preserve, Preserve::Restart);
    assert_eq!(s.cache_directory.mode, Some(0o700));
    assert_eq!(
        (&s.state_directory.names[..], &s.logs_directory.names[..]),
        (&["s".to_string()][..], &["l".to_string()][..])
    );
    let limit = |n: &str| s.limits.iter().find(|(r, _)| *r == n).map(|(_, l)| *l);
    assert_eq!(
        limit("RLIMIT_NOFILE"),
        Some(Limit {
            soft: Some(1024),
            hard: Some(4096)
        })
    );
    assert_eq!(
        limit("RLIMIT_CORE"),
        Some(Limit {
            soft: None,
            hard: None
        })
    );
    assert_eq!(limit("RLIMIT_MEMLOCK").unwrap().soft, Some(65536));
    assert_eq!(
        s.timeout_start,
        Some(TimeSpan::Finite(Duration::from_secs(90)))
    );
    assert_eq!(s.timeout_stop, Some(TimeSpan::Infinity));
    assert_eq!(
        (s.kill_mode, s.kill_signal, s.send_sigkill),
        (KillMode::Mixed, Some(2), false)
    );
    assert!(s.delegate);
    assert_eq!(s.tasks_max, Some(TasksMax::Percent(50)));
    assert_eq!(s.oom_score_adjust, Some(-999));
    assert_eq!(s.pid_file.as_deref(), Some(Path::new("/run/x.pid")));
    assert_eq!(s.notify_access, Some(NotifyAccess::All));
    assert_eq!(s.standard_output, Some(Output::JournalConsole));
    assert_eq!(s.standard_error, Some(Output::Append("/var/log/x".into())));
    assert_eq!((s.umask, s.nice), (Some(0o027), Some(5)));
}

#[test]
fn unsupported_directives_warn_once_each_with_location() {
    let (u, w) = one(
        "w.service",
        "[Unit]\nDescription=d\nIgnoreOnIsolate=yes\n[Service]\nProtectSystem=full\n\
         PrivateTmp=yes\nType=idle\nFrobnicate=1\nExecStart=!/bin/x\nRestart=sometimes\n\
         LimitNOFILE=lots\nTimeoutStartSec=5x\nKillMode=all\nStandardOutput=fd:x\n\
         ExecStart=/bin/a ; /bin/b\nX-Custom=ok\nEnvironment=1A=b 2B=c\nUser=%q%z\n[X-Ext]\nA=b\n\
         [Socket]\nListenStream=22\n[Install]\nWantedBy=multi-user.target\nBogus=1\n",
    );
    assert_eq!(
        warned(&w),
        [
            (3, "IgnoreOnIsolate"),
            (5, "ProtectSystem"),
            (6, "PrivateTmp"),
            (7, "Type"),
            (8, "Frobnicate"),
            (10, "Restart"),
            (11, "LimitNOFILE"),
            (12, "TimeoutStartSec"),
            (13, "KillMode"),
            (14, "StandardOutput"),
            (15, "ExecStart"),
            (17, "Environment"),
            (18, "User"),
            (22, "ListenStream"),
            (25, "Bogus"),
        ]
    );
    assert!(w.iter().all(|w| w.file.ends_with("w.service")));
    assert_eq!(w[1].message, "sandboxing directive not supported, ignored");
    // Several problems in one line: still one warning.
    assert_eq!(
        w[12].message,
        "unknown specifier %q, left as is; unknown specifier %z, left as is"
    );
    assert_eq!(
        w[11]
            .message
            .matches("invalid environment assignment")
            .count(),
        2
    );
    assert_eq!(w[1].section, "Service");
    assert!(w[1].to_string().ends_with(
        "w.service:5: [Service] ProtectSystem=: sandboxing directive not supported, ignored"
    ));
    // Type=idle is run as simple; '!' is parsed and kept.
    assert_eq!(u.service.service_type, ServiceType::Simple);
    assert!(u.service.exec_start[0].elevated);
    assert_eq!(u.service.exec_start.len(), 1);
    assert_eq!(u.install.wanted_by, ["multi-user.target"]);
}

#[test]
fn unsupported_unit_type_is_reported() {
    let (u, w) = one(
        "s.socket",
        "[Unit]\nDescription=s\n[Socket]\nListenStream=22\n",
    );
    assert_eq!(u.kind, UnitKind::Unsupported("socket".into()));
    assert_eq!(w.len(), 2);
    assert!(w[0].message.contains("unsupported unit type socket"));
    assert_eq!((w[1].line, w[1].directive.as_str()), (4, "ListenStream"));
}
