//! Supervisor tests: boot order, requests, health and shutdown over the
//! fake [`Procs`](super::Procs).

use std::time::{Duration, Instant};

use super::tests_service::{load, FakeProcs};
use super::*;
use crate::plan::MULTI_USER_TARGET;

const S: Duration = Duration::from_secs(1);

fn health(grace: u64, deadline: u64) -> HealthConfig {
    HealthConfig {
        grace: Duration::from_secs(grace),
        deadline: Duration::from_secs(deadline),
    }
}

fn wanted(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(n, t)| {
            (
                n.to_string(),
                format!("{t}\n[Install]\nWantedBy=multi-user.target\n"),
            )
        })
        .collect()
}

/// Loads units and links every one into multi-user.target.wants.
fn supervisor(files: &[(&str, &str)], h: HealthConfig, t0: Instant) -> Supervisor {
    let files = wanted(files);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("usr/lib/systemd/system");
    let wants = t.path().join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&wants).unwrap();
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).unwrap();
        std::os::unix::fs::symlink(dir.join(name), wants.join(name)).unwrap();
    }
    let loaded = crate::unit::load_units(t.path(), &crate::unit::MachineInfo::default());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    Supervisor::new(loaded, MULTI_USER_TARGET, h, t0).unwrap()
}

fn pid_of(p: &FakeProcs, program: &str) -> u32 {
    p.spawns
        .iter()
        .rev()
        .find(|s| s.2 == program)
        .map(|s| s.3)
        .unwrap_or_else(|| panic!("{program} not spawned: {:?}", p.spawns))
}

fn exit(sup: &mut Supervisor, p: &mut FakeProcs, pid: u32, st: ExitStatus, now: Instant) {
    p.exit(pid);
    sup.on_exit(p, pid, st, now);
}

#[test]
fn boot_starts_in_dependency_order_and_in_parallel() {
    let t0 = Instant::now();
    let mut sup = supervisor(
        &[
            ("a.service", "[Service]\nType=oneshot\nExecStart=/bin/a\n"),
            (
                "b.service",
                "[Unit]\nAfter=a.service\n[Service]\nExecStart=/bin/b\n",
            ),
            ("c.service", "[Service]\nExecStart=/bin/c\n"),
        ],
        health(1, 100),
        t0,
    );
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    // a and c start at once; b waits for a.
    assert_eq!(p.programs(), ["/bin/a", "/bin/c"]);
    let a = pid_of(&p, "/bin/a");
    exit(&mut sup, &mut p, a, ExitStatus::Exited(0), t0);
    assert_eq!(p.programs(), ["/bin/a", "/bin/c", "/bin/b"]);
    assert!(sup.boot_plan().is_complete());
    assert_eq!(sup.health_problems(), Vec::<String>::new());
    // Healthy after the grace period.
    sup.tick(&mut p, t0 + S);
    let actions = sup.take_actions();
    assert!(actions.contains(&Action::Healthy), "{actions:?}");
}

#[test]
fn a_failed_requirement_fails_its_dependents_and_the_boot_health() {
    let t0 = Instant::now();
    let mut sup = supervisor(
        &[
            ("db.service", "[Service]\nType=oneshot\nExecStart=/bin/db\n"),
            (
                "app.service",
                "[Unit]\nRequires=db.service\nAfter=db.service\n[Service]\nExecStart=/bin/app\n",
            ),
            (
                "extra.service",
                "[Unit]\nX-Keel-BootHealth=no\n[Service]\nExecStart=/bin/extra\n",
            ),
        ],
        health(1, 30),
        t0,
    );
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    let db = pid_of(&p, "/bin/db");
    exit(&mut sup, &mut p, db, ExitStatus::Exited(2), t0);
    assert!(!p.programs().contains(&"/bin/app".to_string()));
    let problems = sup.health_problems();
    assert!(
        problems
            .iter()
            .any(|l| l.starts_with("db.service: exit code 2")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|l| l.starts_with("app.service: dependency failed")),
        "{problems:?}"
    );
    // The opted-out unit does not count, even when it fails.
    let extra = pid_of(&p, "/bin/extra");
    exit(&mut sup, &mut p, extra, ExitStatus::Exited(1), t0);
    assert!(!sup.health_problems().iter().any(|l| l.contains("extra")));
    sup.tick(&mut p, t0 + 29 * S);
    assert!(!sup
        .take_actions()
        .iter()
        .any(|a| matches!(a, Action::Unhealthy(_) | Action::Healthy)));
    sup.tick(&mut p, t0 + 30 * S);
    let actions = sup.take_actions();
    let reasons = actions
        .iter()
        .find_map(|a| match a {
            Action::Unhealthy(r) => Some(r.clone()),
            _ => None,
        })
        .expect("unhealthy verdict");
    assert!(
        reasons.iter().any(|r| r.contains("db.service")),
        "{reasons:?}"
    );
}

#[test]
fn a_unit_in_auto_restart_is_not_healthy() {
    let t0 = Instant::now();
    let mut sup = supervisor(
        &[(
            "flaky.service",
            "[Service]\nExecStart=/bin/flaky\nRestart=always\nRestartSec=1\n",
        )],
        health(5, 60),
        t0,
    );
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    let pid = pid_of(&p, "/bin/flaky");
    exit(&mut sup, &mut p, pid, ExitStatus::Exited(1), t0 + S);
    let problems = sup.health_problems();
    assert_eq!(
        problems,
        ["flaky.service: activating (exit code 1)"],
        "{problems:?}"
    );
    // It comes back: the grace period counts from then.
    sup.tick(&mut p, t0 + 2 * S);
    assert_eq!(
        sup.service("flaky.service").unwrap().state,
        SubState::Running
    );
    sup.tick(&mut p, t0 + 6 * S);
    assert!(!sup.take_actions().contains(&Action::Healthy));
    sup.tick(&mut p, t0 + 7 * S);
    assert!(sup.take_actions().contains(&Action::Healthy));
}

#[test]
fn requests_start_stop_and_restart_reply_when_done() {
    use std::sync::{Arc, Mutex};
    let t0 = Instant::now();
    let mut sup = supervisor(
        &[("web.service", "[Service]\nExecStart=/bin/web\n")],
        health(1, 100),
        t0,
    );
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    let replies: Arc<Mutex<Vec<Result<String, String>>>> = Arc::default();
    let reply = |r: &Arc<Mutex<Vec<Result<String, String>>>>| -> Reply {
        let r = Arc::clone(r);
        Box::new(move |x| r.lock().unwrap().push(x))
    };
    let web = pid_of(&p, "/bin/web");
    sup.request_stop(&mut p, "web.service", reply(&replies), t0);
    assert!(replies.lock().unwrap().is_empty(), "waits for the process");
    exit(&mut sup, &mut p, web, ExitStatus::Exited(0), t0);
    assert_eq!(replies.lock().unwrap().pop(), Some(Ok("stopped".into())));
    assert_eq!(sup.service("web.service").unwrap().state, SubState::Dead);

    sup.request_start(&mut p, "web.service", reply(&replies), t0);
    assert_eq!(
        replies.lock().unwrap().pop(),
        Some(Ok("started web.service".into()))
    );
    let web2 = pid_of(&p, "/bin/web");
    assert_ne!(web, web2);

    sup.request_restart(&mut p, "web.service", reply(&replies), t0);
    exit(&mut sup, &mut p, web2, ExitStatus::Exited(0), t0);
    assert_eq!(
        replies.lock().unwrap().pop(),
        Some(Ok("started web.service".into()))
    );
    assert_ne!(pid_of(&p, "/bin/web"), web2);

    sup.request_start(&mut p, "nope.service", reply(&replies), t0);
    assert_eq!(
        replies.lock().unwrap().pop(),
        Some(Err("unit nope.service not found".into()))
    );
}

#[test]
fn shutdown_stops_in_reverse_order_then_reports_ready() {
    let t0 = Instant::now();
    let mut sup = supervisor(
        &[
            ("base.service", "[Service]\nExecStart=/bin/base\n"),
            (
                "top.service",
                "[Unit]\nAfter=base.service\n[Service]\nExecStart=/bin/top\n",
            ),
        ],
        health(1, 100),
        t0,
    );
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    let base = pid_of(&p, "/bin/base");
    let top = pid_of(&p, "/bin/top");
    p.signals.clear();
    sup.shutdown(&mut p, t0);
    // Only top is signalled first.
    assert_eq!(
        p.signals.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["top.service", "top.service"]
    );
    assert!(!sup.take_actions().contains(&Action::ShutdownReady));
    exit(&mut sup, &mut p, top, ExitStatus::Exited(0), t0);
    assert!(p.signals.iter().any(|s| s.0 == "base.service"));
    exit(&mut sup, &mut p, base, ExitStatus::Exited(0), t0);
    assert!(sup.take_actions().contains(&Action::ShutdownReady));
    // No restart, no start during shutdown.
    assert_eq!(sup.service("base.service").unwrap().state, SubState::Dead);
}

#[test]
fn status_lists_units_with_their_states() {
    let t0 = Instant::now();
    let mut sup = supervisor(
        &[(
            "a.service",
            "[Unit]\nDescription=The A\n[Service]\nExecStart=/bin/a\n",
        )],
        health(1, 100),
        t0,
    );
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    let all = sup.status(None, t0).unwrap();
    let a = all.iter().find(|u| u.name == "a.service").unwrap();
    assert_eq!((a.active, a.sub), ("active", "running"));
    assert_eq!(a.description.as_deref(), Some("The A"));
    assert_eq!(a.main_pid, Some(pid_of(&p, "/bin/a")));
    let mu = all.iter().find(|u| u.name == MULTI_USER_TARGET).unwrap();
    assert_eq!(mu.active, "active");
    assert!(sup.status(Some("zzz.service"), t0).is_err());
}

#[test]
fn units_written_after_boot_can_be_added_and_started() {
    use std::sync::{Arc, Mutex};
    let t0 = Instant::now();
    let mut sup = supervisor(&[], health(1, 100), t0);
    let mut p = FakeProcs::new();
    sup.boot(&mut p, t0);
    assert!(!sup.knows("late.service"));
    let loaded = load(&[("late.service", "[Service]\nExecStart=/bin/late\n")]);
    sup.add_unit(loaded.units["late.service"].clone());
    assert!(sup.knows("late.service"));
    let got: Arc<Mutex<Vec<Result<String, String>>>> = Arc::default();
    let g = Arc::clone(&got);
    sup.request_start(
        &mut p,
        "late.service",
        Box::new(move |r| g.lock().unwrap().push(r)),
        t0,
    );
    assert_eq!(
        got.lock().unwrap().pop(),
        Some(Ok("started late.service".into()))
    );
    assert_eq!(p.programs(), ["/bin/late"]);
}

#[test]
fn a_held_boot_starts_nothing_and_is_not_judged() {
    let t0 = Instant::now();
    let h = HealthConfig {
        grace: Duration::from_secs(1),
        deadline: Duration::from_secs(5),
    };
    let mut sup = supervisor(&[("a.service", "[Service]\nExecStart=/bin/a\n")], h, t0);
    sup.hold_boot();
    let mut p = FakeProcs::default();
    sup.boot(&mut p, t0);
    sup.tick(&mut p, t0 + Duration::from_secs(60));
    assert!(p.spawns.is_empty(), "{:?}", p.spawns);
    let actions = sup.take_actions();
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Healthy | Action::Unhealthy(_))),
        "{actions:?}"
    );
    let status = sup.status(None, t0).unwrap();
    assert!(!status.is_empty());
    assert!(status.iter().all(|u| u.active == "inactive"), "{status:?}");
}
