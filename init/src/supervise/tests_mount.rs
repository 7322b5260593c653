//! Mount and swap units: the boot transaction and order they get (default
//! and implicit dependencies, Butane's files enabled the way Ignition does),
//! and how the supervisor runs, judges and stops them.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::tests_service::FakeProcs;
use super::*;
use crate::plan::{BASIC_TARGET, LOCAL_FS_TARGET, MULTI_USER_TARGET, SWAP_TARGET, SYSINIT_TARGET};
use crate::testutil::{
    BUTANE_FSCK_NAME, BUTANE_MOUNT, BUTANE_MOUNT_NAME, BUTANE_SWAP, BUTANE_SWAP_NAME, FSCK_TEMPLATE,
};
use crate::unit::{load_units, MachineInfo};

const ETC: &str = "etc/systemd/system";
const LIB: &str = "usr/lib/systemd/system";
const S: Duration = Duration::from_secs(1);

const CONTAINERD: &str = "[Service]\nExecStart=/usr/bin/containerd\n";
const NESTED: &str = "[Mount]\nWhat=/dev/vdc\nWhere=/var/data/sub\nType=ext4\n";
const APP: &str = "[Unit]\nRequiresMountsFor=/var/data/sub/x\n[Service]\nExecStart=/usr/bin/app\n";

/// Writes `files` (relative path, text) below a temporary root and links
/// (link directory, unit) pairs as `systemctl enable` would.
fn loaded(files: &[(&str, &str)], links: &[(&str, &str)]) -> Loaded {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    for (rel, text) in files {
        let p = r.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }
    for (dir, name) in links {
        let d = r.join(ETC).join(dir);
        fs::create_dir_all(&d).expect("mkdir");
        let target = [ETC, LIB]
            .iter()
            .map(|base| Path::new("/").join(base).join(name))
            .find(|p| r.join(p.strip_prefix("/").expect("absolute")).exists())
            .expect("unit file written");
        std::os::unix::fs::symlink(target, d.join(name)).expect("symlink");
    }
    load_units(r, &MachineInfo::default())
}

/// Butane's mount and swap units enabled, the fsck template, a nested
/// mount, containerd and a service with RequiresMountsFor=.
fn butane(with_fsck: bool) -> Loaded {
    let mut files = vec![
        (format!("{ETC}/{BUTANE_MOUNT_NAME}"), BUTANE_MOUNT),
        (format!("{ETC}/{BUTANE_SWAP_NAME}"), BUTANE_SWAP),
        (format!("{ETC}/var-data-sub.mount"), NESTED),
        (format!("{LIB}/containerd.service"), CONTAINERD),
        (format!("{ETC}/app.service"), APP),
    ];
    if with_fsck {
        files.push((format!("{LIB}/systemd-fsck@.service"), FSCK_TEMPLATE));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    let l = loaded(
        &files,
        &[
            ("local-fs.target.requires", BUTANE_MOUNT_NAME),
            ("local-fs.target.requires", "var-data-sub.mount"),
            ("swap.target.requires", BUTANE_SWAP_NAME),
            ("multi-user.target.wants", "containerd.service"),
            ("multi-user.target.wants", "app.service"),
        ],
    );
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    l
}

fn layer_of(layers: &[Vec<String>], name: &str) -> usize {
    layers
        .iter()
        .position(|l| l.iter().any(|n| n == name))
        .unwrap_or_else(|| panic!("{name} not in {layers:?}"))
}

/// Asserts that each unit starts in a later layer than the one before.
fn assert_ordered(layers: &[Vec<String>], names: &[&str]) {
    for pair in names.windows(2) {
        assert!(
            layer_of(layers, pair[0]) < layer_of(layers, pair[1]),
            "{} must start before {}: {layers:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn butane_units_are_in_the_boot_transaction_in_systemd_order() {
    let l = butane(true);
    let plan = Plan::new(&units_of(&l), MULTI_USER_TARGET).expect("plan");
    assert!(plan.cycles().is_empty(), "{:?}", plan.cycles());
    assert!(plan.failed().is_empty(), "{:?}", plan.failed());
    for name in [
        BUTANE_MOUNT_NAME,
        BUTANE_FSCK_NAME,
        BUTANE_SWAP_NAME,
        "var-data-sub.mount",
    ] {
        assert!(plan.units().iter().any(|u| u == name), "{name} missing");
    }
    let layers = plan.start_layers();
    assert_ordered(
        &layers,
        &[
            BUTANE_FSCK_NAME,
            BUTANE_MOUNT_NAME,
            "var-data-sub.mount",
            LOCAL_FS_TARGET,
            SYSINIT_TARGET,
            BASIC_TARGET,
            "containerd.service",
            MULTI_USER_TARGET,
        ],
    );
    assert_ordered(&layers, &[BUTANE_SWAP_NAME, SWAP_TARGET, SYSINIT_TARGET]);
    // RequiresMountsFor=/var/data/sub/x: after both mounts (through
    // basic.target too, so check the node itself).
    let units = units_of(&l);
    let app = units.get("app.service").expect("app");
    for m in ["var-data-sub.mount", BUTANE_MOUNT_NAME] {
        assert!(app.requires.iter().any(|r| r == m), "{app:?}");
        assert!(app.after.iter().any(|r| r == m), "{app:?}");
    }
    // The nested mount requires its parent; nothing for unloaded parents
    // (var.mount, -.mount).
    let nested = units.get("var-data-sub.mount").expect("nested");
    assert_eq!(nested.requires, [BUTANE_MOUNT_NAME]);
    assert_eq!(nested.after, [BUTANE_MOUNT_NAME]);
    assert_eq!(units.get(BUTANE_SWAP_NAME).expect("swap").requires.len(), 0);
}

#[test]
fn a_missing_fsck_template_fails_the_mount_as_any_missing_requirement() {
    let l = butane(false);
    let plan = Plan::new(&units_of(&l), MULTI_USER_TARGET).expect("plan");
    let failed: BTreeMap<String, String> = plan.failed().into_iter().collect();
    // The planner's rule for every missing Requires= unit: the requirer
    // fails with the chain that pulled it in; nothing fsck-specific.
    let reason = &failed[BUTANE_MOUNT_NAME];
    assert!(
        reason.starts_with(&format!("required unit {BUTANE_FSCK_NAME} not found (")),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!("-> {BUTANE_MOUNT_NAME} -> {BUTANE_FSCK_NAME})")),
        "{reason}"
    );
    // sysinit.target only wants local-fs.target: the boot goes on.
    assert!(!failed.contains_key(SYSINIT_TARGET), "{failed:?}");
    assert!(!failed.contains_key("containerd.service"), "{failed:?}");
}

fn pid_of(p: &FakeProcs, unit: &str) -> u32 {
    p.spawns
        .iter()
        .rev()
        .find(|s| s.0 == unit)
        .map(|s| s.3)
        .unwrap_or_else(|| panic!("{unit} not spawned: {:?}", p.spawns))
}

/// The last process of `unit` exits with `code`.
fn exit(sup: &mut Supervisor, p: &mut FakeProcs, unit: &str, code: i32, now: Instant) {
    let pid = pid_of(p, unit);
    p.exit(pid);
    sup.on_exit(p, pid, ExitStatus::Exited(code), now);
}

fn health() -> HealthConfig {
    HealthConfig {
        grace: S,
        deadline: 100 * S,
    }
}

fn spawned(p: &FakeProcs) -> Vec<(&str, &str)> {
    p.spawns
        .iter()
        .map(|s| (s.0.as_str(), s.2.as_str()))
        .collect()
}

#[test]
fn mounts_run_after_fsck_before_services_and_stop_after_them() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(butane(true), MULTI_USER_TARGET, health(), t0).expect("plan");
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    // fsck and swapon first; no mount before its fsck is done.
    assert_eq!(
        spawned(&p),
        [
            (BUTANE_SWAP_NAME, "/usr/sbin/swapon"),
            (BUTANE_FSCK_NAME, "/usr/sbin/fsck")
        ]
    );
    exit(&mut sup, &mut p, BUTANE_SWAP_NAME, 0, t0);
    exit(&mut sup, &mut p, BUTANE_FSCK_NAME, 0, t0);
    assert_eq!(spawned(&p)[2], (BUTANE_MOUNT_NAME, "/usr/bin/mount"));
    assert_eq!(p.spawns.len(), 3);
    exit(&mut sup, &mut p, BUTANE_MOUNT_NAME, 0, t0);
    assert_eq!(spawned(&p)[3], ("var-data-sub.mount", "/usr/bin/mount"));
    assert_eq!(p.spawns.len(), 4);
    exit(&mut sup, &mut p, "var-data-sub.mount", 0, t0);
    let programs: Vec<&str> = spawned(&p)[4..].iter().map(|s| s.1).collect();
    assert_eq!(programs, ["/usr/bin/app", "/usr/bin/containerd"]);
    assert_eq!(sup.health_problems(), Vec::<String>::new());
    let info = sup.status(Some(BUTANE_MOUNT_NAME), t0).expect("status");
    assert_eq!(
        (info[0].kind.as_str(), info[0].active, info[0].sub),
        ("mount", "active", "mounted")
    );
    let info = sup.status(Some(BUTANE_SWAP_NAME), t0).expect("status");
    assert_eq!((info[0].kind.as_str(), info[0].sub), ("swap", "active"));

    // Shutdown: the services stop first, then the nested mount, then its
    // parent; a failing umount is logged and does not hold anything up.
    sup.shutdown(&mut p, t0 + S);
    assert_eq!(p.spawns.len(), 6, "{:?}", p.spawns);
    for unit in ["app.service", "containerd.service"] {
        exit(&mut sup, &mut p, unit, 0, t0 + S);
    }
    // The swap is not ordered against the mounts: it goes in parallel.
    assert_eq!(
        spawned(&p)[6..],
        [
            (BUTANE_SWAP_NAME, "/usr/sbin/swapoff"),
            ("var-data-sub.mount", "/usr/bin/umount")
        ]
    );
    assert!(p.spawns[6..].iter().all(|s| s.1 == Phase::Stop));
    exit(&mut sup, &mut p, BUTANE_SWAP_NAME, 0, t0 + S);
    exit(&mut sup, &mut p, "var-data-sub.mount", 32, t0 + S);
    assert!(p.logged(
        "var-data-sub.mount",
        "ExecStop= /usr/bin/umount exited, code=exited, status=32/FAILURE"
    ));
    // The parent is unmounted only after the nested mount.
    assert_eq!(spawned(&p)[8..], [(BUTANE_MOUNT_NAME, "/usr/bin/umount")]);
    assert!(!sup.take_actions().contains(&Action::ShutdownReady));
    exit(&mut sup, &mut p, BUTANE_MOUNT_NAME, 0, t0 + S);
    assert_eq!(p.spawns.len(), 9, "fsck has nothing to run at stop");
    assert!(sup.take_actions().contains(&Action::ShutdownReady));
}

#[test]
fn a_failed_mount_fails_the_boot_health_and_its_dependents() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(butane(true), MULTI_USER_TARGET, health(), t0).expect("plan");
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    exit(&mut sup, &mut p, BUTANE_FSCK_NAME, 0, t0);
    exit(&mut sup, &mut p, BUTANE_MOUNT_NAME, 32, t0);
    assert!(p.logged(
        BUTANE_MOUNT_NAME,
        "Main process exited, code=exited, status=32/FAILURE"
    ));
    let problems = sup.health_problems();
    assert!(
        problems.contains(&format!("{BUTANE_MOUNT_NAME}: exit code 32")),
        "{problems:?}"
    );
    // The nested mount and the service that needs it never run.
    assert!(!spawned(&p)
        .iter()
        .any(|s| s.0 == "var-data-sub.mount" || s.0 == "app.service"));
    let info = sup.status(Some(BUTANE_MOUNT_NAME), t0).expect("status");
    assert_eq!((info[0].active, info[0].sub), ("failed", "failed"));
    assert_eq!(info[0].result.as_deref(), Some("exit code 32"));
}

#[test]
fn an_already_mounted_file_system_is_active_without_mounting_again() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(butane(true), MULTI_USER_TARGET, health(), t0).expect("plan");
    let mut p = FakeProcs::new();
    p.already_active.insert(BUTANE_MOUNT_NAME.to_string());
    sup.boot(&mut p, t0);
    exit(&mut sup, &mut p, BUTANE_FSCK_NAME, 0, t0);
    assert!(!spawned(&p).iter().any(|s| s.0 == BUTANE_MOUNT_NAME));
    assert!(p.logged(BUTANE_MOUNT_NAME, "already there, nothing to do."));
    let info = sup.status(Some(BUTANE_MOUNT_NAME), t0).expect("status");
    assert_eq!((info[0].active, info[0].sub), ("active", "mounted"));
    // The nested mount goes ahead.
    assert!(spawned(&p).contains(&("var-data-sub.mount", "/usr/bin/mount")));
}
