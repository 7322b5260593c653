//! Service life-cycle tests against a fake [`Procs`], and the fake itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use super::service::{Note, Phase, Procs, Service, StartResult, SubState};
use super::status::{ExitStatus, ServiceResult};
use crate::unit::{load_units, Command, Condition, Loaded, MachineInfo, Unit};

/// Records what a service asked for; processes are just pids.
#[derive(Default)]
pub(super) struct FakeProcs {
    next_pid: u32,
    /// (unit, phase, program, pid)
    pub spawns: Vec<(String, Phase, String, u32)>,
    /// Live pids per unit (the "cgroup").
    pub live: BTreeMap<String, BTreeSet<u32>>,
    /// (pid or 0 for the whole unit, signal)
    pub signals: Vec<(String, u32, i32)>,
    /// Programs whose spawn fails.
    pub missing: BTreeSet<String>,
    /// Paths that exist, for conditions.
    pub paths: BTreeSet<String>,
    /// Units whose mount or swap is already there.
    pub already_active: BTreeSet<String>,
    pub pid_file: Option<u32>,
    pub log: Vec<(String, String)>,
    pub cleanups: Vec<(String, bool)>,
}

impl FakeProcs {
    pub fn new() -> FakeProcs {
        FakeProcs {
            next_pid: 100,
            ..FakeProcs::default()
        }
    }

    pub fn last_pid(&self) -> u32 {
        self.spawns.last().map(|s| s.3).unwrap_or(0)
    }

    pub fn programs(&self) -> Vec<String> {
        self.spawns.iter().map(|s| s.2.clone()).collect()
    }

    /// A process of `unit` that the fake pretends the service forked.
    pub fn add_live(&mut self, unit: &str, pid: u32) {
        self.live.entry(unit.to_string()).or_default().insert(pid);
    }

    /// Marks `pid` dead (the caller then reports the exit).
    pub fn exit(&mut self, pid: u32) {
        for pids in self.live.values_mut() {
            pids.remove(&pid);
        }
    }

    pub fn logged(&self, unit: &str, needle: &str) -> bool {
        self.log
            .iter()
            .any(|(u, m)| u == unit && m.contains(needle))
    }
}

impl Procs for FakeProcs {
    fn prepare(&mut self, _unit: &Unit) -> Result<(), String> {
        Ok(())
    }
    fn spawn(
        &mut self,
        unit: &Unit,
        cmd: &Command,
        phase: Phase,
        _main_pid: Option<u32>,
    ) -> Result<u32, String> {
        if self.missing.contains(&cmd.path) {
            return Err(format!("{}: No such file or directory", cmd.path));
        }
        self.next_pid += 1;
        let pid = self.next_pid;
        self.spawns
            .push((unit.name.clone(), phase, cmd.path.clone(), pid));
        self.add_live(&unit.name, pid);
        Ok(pid)
    }
    fn signal(&mut self, pid: u32, signal: i32) {
        let unit = self
            .live
            .iter()
            .find(|(_, p)| p.contains(&pid))
            .map(|(u, _)| u.clone())
            .unwrap_or_default();
        self.signals.push((unit, pid, signal));
    }
    fn signal_unit(&mut self, unit: &Unit, signal: i32) {
        self.signals.push((unit.name.clone(), 0, signal));
    }
    fn unit_populated(&mut self, unit: &Unit) -> bool {
        self.live.get(&unit.name).is_some_and(|p| !p.is_empty())
    }
    fn unit_pids(&mut self, unit: &Unit) -> Vec<u32> {
        self.live
            .get(&unit.name)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
    fn read_pid_file(&mut self, _unit: &Unit) -> Option<u32> {
        self.pid_file
    }
    fn condition(&mut self, c: &Condition) -> bool {
        self.paths.contains(&c.path.display().to_string())
    }
    fn already_active(&mut self, unit: &Unit) -> Option<String> {
        self.already_active
            .contains(&unit.name)
            .then(|| format!("{} is already there", unit.name))
    }
    fn cleanup(&mut self, unit: &Unit, final_stop: bool) {
        self.cleanups.push((unit.name.clone(), final_stop));
    }
    fn log(&mut self, unit: &Unit, message: &str) {
        self.log.push((unit.name.clone(), message.to_string()));
    }
}

/// Loads unit files given as (name, text) from a temporary root.
pub(super) fn load(files: &[(&str, &str)]) -> Loaded {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    let loaded = load_units(t.path(), &MachineInfo::default());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded
}

fn service(text: &str) -> Service {
    let loaded = load(&[("t.service", text)]);
    Service::new(loaded.units["t.service"].clone())
}

const S: Duration = Duration::from_secs(1);
const EXIT0: ExitStatus = ExitStatus::Exited(0);
const EXIT1: ExitStatus = ExitStatus::Exited(1);
const KILLED_TERM: ExitStatus = ExitStatus::Signaled {
    signal: 15,
    core: false,
};
const SEGV: ExitStatus = ExitStatus::Signaled {
    signal: 11,
    core: true,
};

fn exit(s: &mut Service, p: &mut FakeProcs, pid: u32, st: ExitStatus, now: Instant) -> Vec<Note> {
    p.exit(pid);
    s.on_exit(p, pid, st, now)
        .expect("pid belongs to the service")
}

fn active() -> Vec<Note> {
    vec![Note::Started(StartResult::Active)]
}

#[test]
fn simple_service_runs_pre_main_post_and_stops_with_term() {
    let mut s = service(
        "[Service]\nExecStartPre=/bin/pre\nExecStart=/bin/main\nExecStartPost=/bin/post\n\
         ExecStop=/bin/stop\n",
    );
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    assert_eq!(s.start(&mut p, t0), vec![]);
    assert_eq!(s.state, SubState::StartPre);
    let pre = p.last_pid();
    assert_eq!(exit(&mut s, &mut p, pre, EXIT0, t0), vec![]);
    assert_eq!(s.state, SubState::StartPost);
    let post = p.last_pid();
    assert_eq!(exit(&mut s, &mut p, post, EXIT0, t0), active());
    assert_eq!(s.state, SubState::Running);
    assert_eq!(p.programs(), ["/bin/pre", "/bin/main", "/bin/post"]);
    let main = s.main_pid.unwrap();

    assert_eq!(s.stop(&mut p, t0 + S), vec![]);
    assert_eq!(s.state, SubState::Stop);
    let stop = p.last_pid();
    exit(&mut s, &mut p, stop, EXIT0, t0 + S);
    assert_eq!(s.state, SubState::StopSigterm);
    assert!(p.signals.contains(&("t.service".into(), 0, 15)));
    assert_eq!(
        exit(&mut s, &mut p, main, KILLED_TERM, t0 + S),
        vec![Note::Stopped]
    );
    assert_eq!(s.state, SubState::Dead);
    assert!(s.result.is_success(), "{:?}", s.result);
    assert_eq!(p.cleanups.last(), Some(&("t.service".to_string(), true)));
}

#[test]
fn a_failing_pre_command_fails_the_start_unless_prefixed_with_dash() {
    let mut s = service("[Service]\nExecStartPre=/bin/check\nExecStart=/bin/main\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let pre = p.last_pid();
    let notes = exit(&mut s, &mut p, pre, EXIT1, t0);
    assert_eq!(
        notes,
        vec![
            Note::Started(StartResult::Failed("exit code 1".into())),
            Note::Stopped
        ]
    );
    assert_eq!(s.state, SubState::Failed);
    assert!(p.logged(
        "t.service",
        "ExecStartPre= /bin/check exited, code=exited, status=1/FAILURE"
    ));

    let mut s = service("[Service]\nExecStartPre=-/bin/check\nExecStart=/bin/main\n");
    let mut p = FakeProcs::new();
    s.start(&mut p, t0);
    let pre = p.last_pid();
    assert_eq!(exit(&mut s, &mut p, pre, EXIT1, t0), active());
    assert_eq!(s.state, SubState::Running);
}

#[test]
fn a_missing_program_is_a_failed_start_with_the_reason() {
    let mut s = service("[Service]\nExecStart=/bin/nothere\n");
    let mut p = FakeProcs::new();
    p.missing.insert("/bin/nothere".into());
    let notes = s.start(&mut p, Instant::now());
    assert_eq!(s.state, SubState::Failed);
    match &notes[0] {
        Note::Started(StartResult::Failed(r)) => {
            assert!(
                r.contains("ExecStart= /bin/nothere: /bin/nothere: No such file"),
                "{r}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn oneshot_runs_commands_in_sequence_and_remains_after_exit() {
    let mut s = service(
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/a\nExecStart=/bin/b\n",
    );
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    assert_eq!(s.state, SubState::Start);
    let a = p.last_pid();
    assert_eq!(exit(&mut s, &mut p, a, EXIT0, t0), vec![]);
    let b = p.last_pid();
    assert_ne!(a, b);
    assert_eq!(exit(&mut s, &mut p, b, EXIT0, t0), active());
    assert_eq!(s.state, SubState::Exited);
    assert_eq!(s.state.active_state(), "active");
}

#[test]
fn oneshot_failure_marks_it_failed_and_later_commands_do_not_run() {
    let mut s = service("[Service]\nType=oneshot\nExecStart=/bin/a\nExecStart=/bin/b\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let a = p.last_pid();
    let notes = exit(&mut s, &mut p, a, EXIT1, t0);
    assert_eq!(
        notes,
        vec![
            Note::Started(StartResult::Failed("exit code 1".into())),
            Note::Stopped
        ]
    );
    assert_eq!(s.state, SubState::Failed);
    assert_eq!(p.programs(), ["/bin/a"]);
    // A oneshot without RemainAfterExit that succeeds ends dead, and its
    // start succeeded.
    let mut s = service("[Service]\nType=oneshot\nExecStart=/bin/a\n");
    s.start(&mut p, t0);
    let a = p.last_pid();
    assert_eq!(
        exit(&mut s, &mut p, a, EXIT0, t0),
        vec![Note::Started(StartResult::Active), Note::Stopped]
    );
    assert_eq!(s.state, SubState::Dead);
}

#[test]
fn notify_service_is_active_only_after_ready() {
    let mut s = service("[Service]\nType=notify\nExecStart=/bin/d\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    assert_eq!(s.start(&mut p, t0), vec![]);
    assert_eq!(s.state, SubState::Start);
    assert_eq!(s.state.active_state(), "activating");
    let main = s.main_pid.unwrap();
    let status = vec![("STATUS".to_string(), "warming up".to_string())];
    // Messages from other processes are not accepted.
    assert_eq!(s.on_notify(&mut p, 999, None, &status, t0), None);
    assert_eq!(s.on_notify(&mut p, main, None, &status, t0), Some(vec![]));
    assert_eq!(s.status_text.as_deref(), Some("warming up"));
    assert_eq!(s.state, SubState::Start);
    let ready = vec![("READY".to_string(), "1".to_string())];
    assert_eq!(s.on_notify(&mut p, main, None, &ready, t0), Some(active()));
    assert_eq!(s.state, SubState::Running);
}

#[test]
fn notify_service_that_never_gets_ready_times_out() {
    let mut s = service("[Service]\nType=notify\nExecStart=/bin/d\nTimeoutStartSec=5\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    assert_eq!(s.deadline(), Some(t0 + 5 * S));
    assert_eq!(s.tick(&mut p, t0 + 4 * S), vec![]);
    assert_eq!(s.tick(&mut p, t0 + 5 * S), vec![]);
    assert_eq!(s.state, SubState::StopSigterm);
    let main = s.main_pid.unwrap();
    let notes = exit(&mut s, &mut p, main, KILLED_TERM, t0 + 6 * S);
    assert_eq!(
        notes,
        vec![
            Note::Started(StartResult::Failed("timed out".into())),
            Note::Stopped
        ]
    );
    assert_eq!(s.state, SubState::Failed);
}

#[test]
fn notify_service_exiting_before_ready_fails() {
    let mut s = service("[Service]\nType=notify\nExecStart=/bin/d\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let main = s.main_pid.unwrap();
    let notes = exit(&mut s, &mut p, main, EXIT0, t0);
    assert_eq!(
        notes,
        vec![
            Note::Started(StartResult::Failed("exited before READY=1".into())),
            Note::Stopped
        ]
    );
}

#[test]
fn stop_escalates_to_kill_after_the_stop_timeout() {
    let mut s = service("[Service]\nExecStart=/bin/d\nTimeoutStopSec=3\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let main = s.main_pid.unwrap();
    s.stop(&mut p, t0);
    assert_eq!(s.state, SubState::StopSigterm);
    assert_eq!(s.tick(&mut p, t0 + 2 * S), vec![]);
    s.tick(&mut p, t0 + 3 * S);
    assert_eq!(s.state, SubState::StopSigkill);
    assert!(p.signals.contains(&("t.service".into(), 0, 9)));
    let notes = exit(
        &mut s,
        &mut p,
        main,
        ExitStatus::Signaled {
            signal: 9,
            core: false,
        },
        t0 + 3 * S,
    );
    assert_eq!(notes, vec![Note::Stopped]);
    assert_eq!(s.state, SubState::Dead);
}

#[test]
fn control_group_mode_waits_for_every_process_of_the_unit() {
    let mut s = service("[Service]\nExecStart=/bin/d\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let main = s.main_pid.unwrap();
    p.add_live("t.service", 4242); // a child the daemon forked
    s.stop(&mut p, t0);
    exit(&mut s, &mut p, main, KILLED_TERM, t0);
    assert_eq!(s.state, SubState::StopSigterm, "the child is still there");
    assert_eq!(s.tick(&mut p, t0), vec![]);
    p.exit(4242);
    assert_eq!(s.tick(&mut p, t0), vec![Note::Stopped]);
    assert_eq!(s.state, SubState::Dead);
}

#[test]
fn kill_mode_process_signals_only_the_main_process() {
    let mut s = service("[Service]\nExecStart=/bin/d\nKillMode=process\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let main = s.main_pid.unwrap();
    p.add_live("t.service", 4242);
    s.stop(&mut p, t0);
    assert!(p.signals.contains(&("t.service".into(), main, 15)));
    assert!(!p.signals.iter().any(|(_, pid, _)| *pid == 0));
    assert_eq!(
        exit(&mut s, &mut p, main, KILLED_TERM, t0),
        vec![Note::Stopped]
    );
}

#[test]
fn crashing_service_restarts_with_backoff_then_hits_the_start_limit() {
    let mut s = service("[Service]\nExecStart=/bin/crash\nRestart=on-failure\nRestartSec=1\n");
    let mut p = FakeProcs::new();
    let mut now = Instant::now();
    assert_eq!(s.start(&mut p, now), active());
    let mut delays = Vec::new();
    for _ in 0..4 {
        let main = s.main_pid.unwrap();
        assert_eq!(exit(&mut s, &mut p, main, SEGV, now), vec![]);
        assert_eq!(s.state, SubState::AutoRestart);
        assert_eq!(s.result, ServiceResult::Exit(SEGV));
        let due = s.deadline().unwrap();
        delays.push(due.duration_since(now).as_secs());
        assert_eq!(s.tick(&mut p, due - Duration::from_millis(1)), vec![]);
        now = due;
        s.tick(&mut p, now);
        assert_eq!(s.state, SubState::Running);
    }
    assert_eq!(delays, [1, 2, 4, 8]);
    assert_eq!(s.restarts, 4);
    assert!(p.logged(
        "t.service",
        "Main process exited, code=dumped, status=11/SEGV"
    ));
    // With the default RestartSec= (100 ms), the sixth start comes 3.1 s
    // after the first: more than StartLimitBurst=5 in 10 s.
    let mut s = service("[Service]\nExecStart=/bin/crash\nRestart=always\n");
    let mut p = FakeProcs::new();
    let mut now = Instant::now();
    s.start(&mut p, now);
    for _ in 0..5 {
        let main = s.main_pid.unwrap();
        exit(&mut s, &mut p, main, EXIT1, now);
        now = s.deadline().unwrap();
        s.tick(&mut p, now);
    }
    assert_eq!(s.state, SubState::Failed);
    assert_eq!(s.result, ServiceResult::StartLimitHit);
    assert!(p.logged("t.service", "Start request repeated too quickly."));
}

#[test]
fn restart_policies_follow_the_systemd_table() {
    let cases = [
        ("no", EXIT1, false),
        ("always", EXIT0, true),
        ("on-success", EXIT0, true),
        ("on-success", EXIT1, false),
        ("on-failure", EXIT0, false),
        ("on-failure", EXIT1, true),
        ("on-failure", SEGV, true),
        ("on-abnormal", EXIT1, false),
        ("on-abnormal", SEGV, true),
        ("on-abort", SEGV, true),
        ("on-abort", EXIT1, false),
    ];
    for (policy, status, restarts) in cases {
        let mut s = service(&format!("[Service]\nExecStart=/bin/x\nRestart={policy}\n"));
        let mut p = FakeProcs::new();
        let t0 = Instant::now();
        s.start(&mut p, t0);
        let main = s.main_pid.unwrap();
        exit(&mut s, &mut p, main, status, t0);
        assert_eq!(
            s.state == SubState::AutoRestart,
            restarts,
            "Restart={policy} after {status:?}: {:?}",
            s.state
        );
    }
    // RestartPreventExitStatus= wins over the policy.
    let mut s =
        service("[Service]\nExecStart=/bin/x\nRestart=always\nRestartPreventExitStatus=1\n");
    let mut p = FakeProcs::new();
    s.start(&mut p, Instant::now());
    let main = s.main_pid.unwrap();
    exit(&mut s, &mut p, main, EXIT1, Instant::now());
    assert_eq!(s.state, SubState::Failed);
}

#[test]
fn a_requested_stop_never_restarts() {
    let mut s = service("[Service]\nExecStart=/bin/x\nRestart=always\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let main = s.main_pid.unwrap();
    s.stop(&mut p, t0);
    assert_eq!(exit(&mut s, &mut p, main, EXIT1, t0), vec![Note::Stopped]);
    assert_eq!(s.state, SubState::Dead);
    // Stopping during auto-restart cancels the restart.
    s.start(&mut p, t0);
    let main = s.main_pid.unwrap();
    exit(&mut s, &mut p, main, EXIT1, t0);
    assert_eq!(s.state, SubState::AutoRestart);
    assert_eq!(s.stop(&mut p, t0), vec![Note::Stopped]);
    assert_eq!(s.deadline(), None);
    assert_eq!(s.state, SubState::Dead);
}

#[test]
fn forking_service_takes_its_main_pid_from_the_pid_file() {
    let mut s = service("[Service]\nType=forking\nPIDFile=/run/d.pid\nExecStart=/bin/d\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let parent = p.last_pid();
    assert_eq!(s.main_pid, None);
    p.add_live("t.service", 777);
    p.pid_file = Some(777);
    assert_eq!(exit(&mut s, &mut p, parent, EXIT0, t0), active());
    assert_eq!(s.main_pid, Some(777));
    assert_eq!(s.state, SubState::Running);
    // The daemon dies: the service stops (and would restart per policy).
    p.exit(777);
    let notes = s.on_exit(&mut p, 777, SEGV, t0).unwrap();
    assert_eq!(notes, vec![Note::Stopped]);
    assert_eq!(s.state, SubState::Failed);
}

#[test]
fn conditions_skip_the_service() {
    let mut s = service(
        "[Unit]\nConditionPathExists=!/etc/done\n[Service]\nType=oneshot\nExecStart=/bin/x\n",
    );
    let mut p = FakeProcs::new();
    p.paths.insert("/etc/done".into());
    let notes = s.start(&mut p, Instant::now());
    assert_eq!(
        notes,
        vec![Note::Started(StartResult::Skipped(
            "ConditionPathExists=!/etc/done".into()
        ))]
    );
    assert_eq!(s.state, SubState::Condition);
    assert!(p.spawns.is_empty());
}

#[test]
fn exit_statuses_from_success_exit_status_are_clean() {
    let mut s = service("[Service]\nExecStart=/bin/x\nSuccessExitStatus=3 SIGUSR1\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let main = s.main_pid.unwrap();
    exit(&mut s, &mut p, main, ExitStatus::Exited(3), t0);
    assert_eq!(s.state, SubState::Dead);
    assert!(s.result.is_success());
}

#[test]
fn notify_access_all_accepts_a_helper_that_already_exited() {
    let mut s = service("[Service]\nType=notify\nNotifyAccess=all\nExecStart=/bin/d\n");
    let mut p = FakeProcs::new();
    let t0 = Instant::now();
    s.start(&mut p, t0);
    let ready = vec![("READY".to_string(), "1".to_string())];
    // pid 555 is gone from the cgroup, but was in it when it sent.
    assert_eq!(
        s.on_notify(&mut p, 555, Some("other.service"), &ready, t0),
        None
    );
    assert_eq!(
        s.on_notify(&mut p, 555, Some("t.service"), &ready, t0),
        Some(active())
    );
}
