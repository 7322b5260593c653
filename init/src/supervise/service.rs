//! One service's life cycle, as systemd's service state machine runs it
//! (systemd.service(5)), without any I/O: processes are started and
//! signalled through [`Procs`], time comes in as arguments, and every
//! change the supervisor must act on comes back as a [`Note`].
//!
//! ```text
//! dead/failed ─start─▶ start-pre ─▶ start ─▶ start-post ─▶ running/exited
//!                          │          │           │              │ main exits / stop
//!                          └──────────┴───────────┴────failure──▶ stop ─▶ stop-sigterm
//!   auto-restart ◀──restart policy── dead/failed ◀── stop-post ◀── stop-sigkill
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::unit::{Command, Condition, KillMode, Restart, ServiceType, TimeSpan, Unit};

use super::status::{describe, ExitStatus, ServiceResult};

/// `DefaultTimeoutStartSec=` / `DefaultTimeoutStopSec=` of systemd.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
/// systemd's default `RestartSec=`.
pub const DEFAULT_RESTART_SEC: Duration = Duration::from_millis(100);
/// systemd's `DefaultStartLimitIntervalSec=` and `DefaultStartLimitBurst=`.
pub const DEFAULT_START_LIMIT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_START_LIMIT_BURST: u32 = 5;
/// The restart delay doubles with each restart in a row, up to this (or
/// `RestartSec=` when that is longer).
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// A service that stayed up this long has its backoff reset.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
const SIGCONT: i32 = 18;

/// Which command list a process belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    StartPre,
    Start,
    StartPost,
    Stop,
    StopPost,
}

impl Phase {
    /// The directive name, for messages.
    pub fn directive(self) -> &'static str {
        match self {
            Phase::StartPre => "ExecStartPre",
            Phase::Start => "ExecStart",
            Phase::StartPost => "ExecStartPost",
            Phase::Stop => "ExecStop",
            Phase::StopPost => "ExecStopPost",
        }
    }
}

/// Where a service stands (systemd's sub-states of a service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    Dead,
    Condition,
    StartPre,
    Start,
    StartPost,
    Running,
    Exited,
    Stop,
    StopSigterm,
    StopSigkill,
    StopPost,
    Failed,
    AutoRestart,
}

impl SubState {
    /// The name `keelctl status` shows (as systemctl does).
    pub fn name(self) -> &'static str {
        match self {
            SubState::Dead => "dead",
            SubState::Condition => "condition",
            SubState::StartPre => "start-pre",
            SubState::Start => "start",
            SubState::StartPost => "start-post",
            SubState::Running => "running",
            SubState::Exited => "exited",
            SubState::Stop => "stop",
            SubState::StopSigterm => "stop-sigterm",
            SubState::StopSigkill => "stop-sigkill",
            SubState::StopPost => "stop-post",
            SubState::Failed => "failed",
            SubState::AutoRestart => "auto-restart",
        }
    }

    /// The active state: active, activating, deactivating, inactive, failed.
    pub fn active_state(self) -> &'static str {
        match self {
            SubState::Running | SubState::Exited => "active",
            SubState::StartPre | SubState::Start | SubState::StartPost | SubState::AutoRestart => {
                "activating"
            }
            SubState::Stop | SubState::StopSigterm | SubState::StopSigkill | SubState::StopPost => {
                "deactivating"
            }
            SubState::Dead | SubState::Condition => "inactive",
            SubState::Failed => "failed",
        }
    }

    /// Running or exited with `RemainAfterExit=yes`.
    pub fn is_active(self) -> bool {
        matches!(self, SubState::Running | SubState::Exited)
    }

    /// Dead, failed or skipped: nothing runs and nothing is pending.
    pub fn is_inactive(self) -> bool {
        matches!(
            self,
            SubState::Dead | SubState::Failed | SubState::Condition
        )
    }
}

/// What the supervisor must learn from a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The start job finished: active, failed (with the reason), or
    /// skipped (with the condition that was not met).
    Started(StartResult),
    /// The service is inactive again after a stop (requested or not).
    Stopped,
}

/// How a start ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartResult {
    Active,
    Failed(String),
    Skipped(String),
}

/// The process-level operations a service needs. The real implementation
/// forks into the unit's cgroup; tests record the calls.
pub trait Procs {
    /// Prepares a start: cgroup, `RuntimeDirectory=` and friends.
    fn prepare(&mut self, unit: &Unit) -> Result<(), String>;
    /// Starts one command; `main_pid` is `$MAINPID` for stop commands.
    fn spawn(
        &mut self,
        unit: &Unit,
        cmd: &Command,
        phase: Phase,
        main_pid: Option<u32>,
    ) -> Result<u32, String>;
    /// Sends a signal to one process.
    fn signal(&mut self, pid: u32, signal: i32);
    /// Sends a signal to every process of the unit's cgroup.
    fn signal_unit(&mut self, unit: &Unit, signal: i32);
    /// Whether any process is left in the unit's cgroup.
    fn unit_populated(&mut self, unit: &Unit) -> bool;
    /// The processes in the unit's cgroup.
    fn unit_pids(&mut self, unit: &Unit) -> Vec<u32>;
    /// Reads `PIDFile=`.
    fn read_pid_file(&mut self, unit: &Unit) -> Option<u32>;
    /// Checks one condition.
    fn condition(&mut self, condition: &Condition) -> bool;
    /// For a mount or swap unit whose file system is already mounted on
    /// `Where=` (or whose swap is already on): what is there. The start
    /// then runs nothing and the unit is active.
    fn already_active(&mut self, unit: &Unit) -> Option<String>;
    /// Cleans up after the service became inactive (`final_stop`: not
    /// about to be restarted, so `RuntimeDirectory=` goes too).
    fn cleanup(&mut self, unit: &Unit, final_stop: bool);
    /// Records an event in the unit's log.
    fn log(&mut self, unit: &Unit, message: &str);
}

/// One service and its run-time state.
#[derive(Debug, Clone)]
pub struct Service {
    pub unit: Unit,
    pub state: SubState,
    pub main_pid: Option<u32>,
    pub control_pid: Option<u32>,
    /// Why the last run failed.
    pub result: ServiceResult,
    /// `STATUS=` from sd_notify.
    pub status_text: Option<String>,
    /// Automatic restarts since the service was last started by request.
    pub restarts: u32,
    /// When the state last changed.
    pub since: Option<Instant>,
    /// A start job is waiting for [`Note::Started`].
    start_job: bool,
    /// A stop was requested: no automatic restart.
    stop_requested: bool,
    /// Start after the current stop finishes (restart).
    start_after_stop: bool,
    /// Index into the current phase's command list.
    cmd_index: usize,
    phase: Option<Phase>,
    deadline: Option<Instant>,
    starts: VecDeque<Instant>,
    /// Restarts in a row, for the backoff.
    consecutive: u32,
    became_active: Option<Instant>,
    ready: bool,
}

fn span(t: Option<TimeSpan>, default: Duration) -> Option<Duration> {
    match t {
        None => Some(default),
        Some(TimeSpan::Infinity) => None,
        Some(TimeSpan::Finite(d)) if d.is_zero() => None,
        Some(TimeSpan::Finite(d)) => Some(d),
    }
}

impl Service {
    pub fn new(unit: Unit) -> Service {
        Service {
            unit,
            state: SubState::Dead,
            main_pid: None,
            control_pid: None,
            result: ServiceResult::Success,
            status_text: None,
            restarts: 0,
            since: None,
            start_job: false,
            stop_requested: false,
            start_after_stop: false,
            cmd_index: 0,
            phase: None,
            deadline: None,
            starts: VecDeque::new(),
            consecutive: 0,
            became_active: None,
            ready: false,
        }
    }

    /// Replaces the unit definition (after a reload); takes effect on the
    /// next start.
    pub fn set_unit(&mut self, unit: Unit) {
        self.unit = unit;
    }

    /// The next time [`Service::tick`] must run.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether a start job is pending.
    pub fn start_pending(&self) -> bool {
        self.start_job
    }

    fn set_state(&mut self, state: SubState, now: Instant) {
        if state != self.state {
            self.state = state;
            self.since = Some(now);
        }
    }

    fn svc_type(&self) -> ServiceType {
        self.unit.service.service_type
    }

    fn commands(&self, phase: Phase) -> &[Command] {
        let s = &self.unit.service;
        match phase {
            Phase::StartPre => &s.exec_start_pre,
            Phase::Start => &s.exec_start,
            Phase::StartPost => &s.exec_start_post,
            Phase::Stop => &s.exec_stop,
            Phase::StopPost => &s.exec_stop_post,
        }
    }

    fn timeout_start(&self) -> Option<Duration> {
        let default = if self.svc_type() == ServiceType::Oneshot {
            None
        } else {
            Some(DEFAULT_TIMEOUT)
        };
        match self.unit.service.timeout_start {
            None => default,
            t => span(t, DEFAULT_TIMEOUT),
        }
    }

    fn timeout_stop(&self) -> Option<Duration> {
        span(self.unit.service.timeout_stop, DEFAULT_TIMEOUT)
    }

    /// Starts the service (a start job). Already active or activating:
    /// nothing to do. Stopping: starts again once stopped.
    pub fn start(&mut self, procs: &mut dyn Procs, now: Instant) -> Vec<Note> {
        self.stop_requested = false;
        if self.state.is_active() {
            return vec![Note::Started(StartResult::Active)];
        }
        self.start_job = true;
        match self.state {
            SubState::Dead | SubState::Failed | SubState::Condition => {
                self.restarts = 0;
                self.consecutive = 0;
                self.begin(procs, now)
            }
            SubState::AutoRestart => self.begin(procs, now),
            SubState::Stop | SubState::StopSigterm | SubState::StopSigkill | SubState::StopPost => {
                self.start_after_stop = true;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Stops the service. Returns [`Note::Stopped`] at once when it is
    /// already inactive.
    pub fn stop(&mut self, procs: &mut dyn Procs, now: Instant) -> Vec<Note> {
        self.stop_requested = true;
        self.start_after_stop = false;
        let mut notes = Vec::new();
        if self.start_job {
            self.start_job = false;
            notes.push(Note::Started(StartResult::Failed(
                "stopped before it finished starting".into(),
            )));
        }
        match self.state {
            SubState::Dead | SubState::Failed | SubState::Condition => {
                notes.push(Note::Stopped);
            }
            SubState::AutoRestart => {
                // As systemd: a stop while waiting to restart leaves the
                // service dead, not failed.
                self.deadline = None;
                self.set_state(SubState::Dead, now);
                procs.cleanup(&self.unit, true);
                notes.push(Note::Stopped);
            }
            SubState::StartPre | SubState::Start | SubState::StartPost => {
                // systemd skips ExecStop= when the start never finished.
                notes.extend(self.enter_signal(procs, now, ServiceResult::Success));
            }
            SubState::Running | SubState::Exited => {
                notes.extend(self.enter_stop(procs, now, ServiceResult::Success));
            }
            SubState::Stop | SubState::StopSigterm | SubState::StopSigkill | SubState::StopPost => {
            }
        }
        notes
    }

    /// A process exited; `status` is its decoded wait status. Returns
    /// `None` when the process does not belong to this service.
    pub fn on_exit(
        &mut self,
        procs: &mut dyn Procs,
        pid: u32,
        status: ExitStatus,
        now: Instant,
    ) -> Option<Vec<Note>> {
        if Some(pid) == self.main_pid {
            self.main_pid = None;
            Some(self.main_exited(procs, status, now))
        } else if Some(pid) == self.control_pid {
            self.control_pid = None;
            Some(self.control_exited(procs, status, now))
        } else {
            None
        }
    }

    /// An sd_notify message from `pid`, which was in the cgroup of
    /// `sender_unit` when the message arrived (it may have exited since).
    /// Returns `None` when it is not accepted from that process.
    pub fn on_notify(
        &mut self,
        procs: &mut dyn Procs,
        pid: u32,
        sender_unit: Option<&str>,
        fields: &[(String, String)],
        now: Instant,
    ) -> Option<Vec<Note>> {
        use crate::unit::NotifyAccess;
        let access =
            self.unit
                .service
                .notify_access
                .unwrap_or(if self.svc_type() == ServiceType::Notify {
                    NotifyAccess::Main
                } else {
                    NotifyAccess::None
                });
        let allowed = match access {
            NotifyAccess::None => false,
            NotifyAccess::Main => Some(pid) == self.main_pid,
            NotifyAccess::Exec => Some(pid) == self.main_pid || Some(pid) == self.control_pid,
            NotifyAccess::All => {
                Some(pid) == self.main_pid
                    || Some(pid) == self.control_pid
                    || sender_unit == Some(self.unit.name.as_str())
                    || procs.unit_pids(&self.unit).contains(&pid)
            }
        };
        if !allowed {
            return None;
        }
        let mut ready = false;
        for (key, value) in fields {
            match key.as_str() {
                "READY" if value == "1" => ready = true,
                "STATUS" => self.status_text = Some(value.clone()),
                "MAINPID" => match value.parse::<u32>() {
                    Ok(p) if p > 1 => self.main_pid = Some(p),
                    _ => procs.log(&self.unit, &format!("ignoring invalid MAINPID={value}")),
                },
                _ => {}
            }
        }
        let mut notes = Vec::new();
        if ready && !self.ready {
            self.ready = true;
            if self.state == SubState::Start && self.svc_type() == ServiceType::Notify {
                notes.extend(self.enter_start_post(procs, now));
            }
        }
        Some(notes)
    }

    /// Runs timeouts and delayed restarts that are due at `now`.
    pub fn tick(&mut self, procs: &mut dyn Procs, now: Instant) -> Vec<Note> {
        // Stopping: done as soon as nothing is left to wait for.
        if matches!(self.state, SubState::StopSigterm | SubState::StopSigkill)
            && self.nothing_left(procs)
        {
            self.deadline = None;
            return self.enter_stop_post(procs, now);
        }
        match self.deadline {
            Some(d) if d <= now => {}
            _ => return Vec::new(),
        }
        self.deadline = None;
        match self.state {
            SubState::AutoRestart => {
                procs.log(
                    &self.unit,
                    &format!(
                        "Scheduled restart job, restart counter is at {}.",
                        self.restarts
                    ),
                );
                self.begin(procs, now)
            }
            SubState::StartPre | SubState::Start | SubState::StartPost => {
                procs.log(&self.unit, "Start operation timed out. Terminating.");
                self.enter_signal(procs, now, ServiceResult::Timeout)
            }
            SubState::Stop => {
                procs.log(&self.unit, "Stopping timed out. Terminating.");
                let result = self.result.clone();
                self.enter_signal(procs, now, result)
            }
            SubState::StopSigterm => {
                if self.unit.service.send_sigkill && self.unit.service.kill_mode != KillMode::None {
                    procs.log(&self.unit, "State 'stop-sigterm' timed out. Killing.");
                    self.kill(procs, SIGKILL, true);
                    self.set_state(SubState::StopSigkill, now);
                    self.deadline = self.timeout_stop().map(|t| now + t);
                    Vec::new()
                } else {
                    self.enter_stop_post(procs, now)
                }
            }
            SubState::StopSigkill => {
                procs.log(
                    &self.unit,
                    "Processes still around after SIGKILL. Ignoring.",
                );
                self.enter_stop_post(procs, now)
            }
            SubState::StopPost => {
                procs.log(&self.unit, "ExecStopPost= timed out; killing it.");
                if let Some(pid) = self.control_pid.take() {
                    procs.signal(pid, SIGKILL);
                }
                self.enter_dead(procs, now)
            }
            _ => Vec::new(),
        }
    }

    /// Wait for stop is over: no main process and, when the whole cgroup is
    /// signalled, no process in it.
    fn nothing_left(&mut self, procs: &mut dyn Procs) -> bool {
        if self.main_pid.is_some() || self.control_pid.is_some() {
            return false;
        }
        match self.unit.service.kill_mode {
            KillMode::ControlGroup | KillMode::Mixed => !procs.unit_populated(&self.unit),
            KillMode::Process | KillMode::None => true,
        }
    }

    fn conditions_met(&self, procs: &mut dyn Procs) -> Result<(), String> {
        let mut triggers = Vec::new();
        for c in &self.unit.unit.conditions {
            let ok = procs.condition(c) != c.negate;
            if c.trigger {
                triggers.push((c, ok));
            } else if !ok {
                return Err(describe_condition(c));
            }
        }
        if !triggers.is_empty() && !triggers.iter().any(|(_, ok)| *ok) {
            let all: Vec<String> = triggers
                .iter()
                .map(|(c, _)| describe_condition(c))
                .collect();
            return Err(all.join(" | "));
        }
        Ok(())
    }

    fn asserts_met(&self, procs: &mut dyn Procs) -> Result<(), String> {
        for c in &self.unit.unit.asserts {
            if procs.condition(c) == c.negate {
                return Err(describe_condition(c));
            }
        }
        Ok(())
    }

    /// Checks conditions and the start rate limit, then starts.
    fn begin(&mut self, procs: &mut dyn Procs, now: Instant) -> Vec<Note> {
        self.deadline = None;
        if let Err(condition) = self.conditions_met(procs) {
            procs.log(
                &self.unit,
                &format!("Condition check resulted in the unit being skipped: {condition}"),
            );
            self.set_state(SubState::Condition, now);
            return self.finish_start(StartResult::Skipped(condition));
        }
        if let Err(assert) = self.asserts_met(procs) {
            return self.fail_before_start(
                procs,
                now,
                ServiceResult::Other(format!("assertion failed: {assert}")),
            );
        }
        if let Some(what) = procs.already_active(&self.unit) {
            procs.log(&self.unit, &format!("{what}, nothing to do."));
            self.result = ServiceResult::Success;
            self.set_state(SubState::Exited, now);
            self.became_active = Some(now);
            return self.finish_start(StartResult::Active);
        }
        let interval = span(
            self.unit.unit.start_limit_interval,
            DEFAULT_START_LIMIT_INTERVAL,
        );
        let burst = self
            .unit
            .unit
            .start_limit_burst
            .unwrap_or(DEFAULT_START_LIMIT_BURST);
        if let Some(interval) = interval {
            while self
                .starts
                .front()
                .is_some_and(|t| now.duration_since(*t) >= interval)
            {
                self.starts.pop_front();
            }
            if burst > 0 && self.starts.len() >= burst as usize {
                procs.log(&self.unit, "Start request repeated too quickly.");
                return self.fail_before_start(procs, now, ServiceResult::StartLimitHit);
            }
            self.starts.push_back(now);
        }
        if let Err(e) = procs.prepare(&self.unit) {
            return self.fail_before_start(procs, now, ServiceResult::Resources(e));
        }
        self.result = ServiceResult::Success;
        self.main_pid = None;
        self.control_pid = None;
        self.ready = false;
        self.status_text = None;
        self.became_active = None;
        self.set_state(SubState::StartPre, now);
        self.deadline = self.timeout_start().map(|t| now + t);
        self.run_phase(procs, Phase::StartPre, now)
    }

    fn fail_before_start(
        &mut self,
        procs: &mut dyn Procs,
        now: Instant,
        result: ServiceResult,
    ) -> Vec<Note> {
        procs.log(
            &self.unit,
            &format!("Failed with result '{}'.", result.code()),
        );
        self.result = result;
        self.set_state(SubState::Failed, now);
        let reason = self.result.to_string();
        self.finish_start(StartResult::Failed(reason))
    }

    fn finish_start(&mut self, result: StartResult) -> Vec<Note> {
        if std::mem::take(&mut self.start_job) {
            vec![Note::Started(result)]
        } else {
            Vec::new()
        }
    }

    /// Runs the commands of `phase` from `cmd_index` on, one at a time;
    /// moves on to the next phase when there are none (left).
    fn run_phase(&mut self, procs: &mut dyn Procs, phase: Phase, now: Instant) -> Vec<Note> {
        if self.phase != Some(phase) {
            self.phase = Some(phase);
            self.cmd_index = 0;
        }
        let Some(cmd) = self.commands(phase).get(self.cmd_index).cloned() else {
            return self.phase_done(procs, phase, now);
        };
        let is_main = phase == Phase::Start;
        let spawned = procs.spawn(&self.unit, &cmd, phase, self.main_pid);
        match spawned {
            Ok(pid) => {
                if is_main && self.svc_type() != ServiceType::Forking {
                    self.main_pid = Some(pid);
                } else {
                    self.control_pid = Some(pid);
                }
                if is_main && matches!(self.svc_type(), ServiceType::Simple | ServiceType::Exec) {
                    // Up as soon as it runs (exec: spawn returns after execve).
                    return self.enter_start_post(procs, now);
                }
                Vec::new()
            }
            Err(e) => {
                let message = format!("Failed to run {}= {}: {e}", phase.directive(), cmd.path);
                procs.log(&self.unit, &message);
                if cmd.ignore_failure {
                    self.cmd_index += 1;
                    return self.run_phase(procs, phase, now);
                }
                self.command_failed(procs, phase, ServiceResult::Resources(message), now)
            }
        }
    }

    fn phase_done(&mut self, procs: &mut dyn Procs, phase: Phase, now: Instant) -> Vec<Note> {
        self.phase = None;
        match phase {
            Phase::StartPre => {
                self.set_state(SubState::Start, now);
                if self.commands(Phase::Start).is_empty() {
                    // Only oneshot services may lack ExecStart= (the loader
                    // refuses the others).
                    return self.enter_start_post(procs, now);
                }
                self.run_phase(procs, Phase::Start, now)
            }
            Phase::Start => {
                // Oneshot: every command succeeded. Forking: the parent
                // exited successfully.
                if self.svc_type() == ServiceType::Forking {
                    self.main_pid = procs.read_pid_file(&self.unit).or_else(|| {
                        let pids = procs.unit_pids(&self.unit);
                        (pids.len() == 1).then(|| pids[0])
                    });
                    if self.main_pid.is_none() {
                        procs.log(
                            &self.unit,
                            "New main PID could not be determined; watching the cgroup.",
                        );
                    }
                }
                self.enter_start_post(procs, now)
            }
            Phase::StartPost => self.enter_running(procs, now),
            Phase::Stop => {
                let result = self.result.clone();
                self.enter_signal(procs, now, result)
            }
            Phase::StopPost => self.enter_dead(procs, now),
        }
    }

    fn enter_start_post(&mut self, procs: &mut dyn Procs, now: Instant) -> Vec<Note> {
        self.set_state(SubState::StartPost, now);
        self.run_phase(procs, Phase::StartPost, now)
    }

    fn enter_running(&mut self, procs: &mut dyn Procs, now: Instant) -> Vec<Note> {
        self.deadline = None;
        let alive = self.main_pid.is_some()
            || (self.svc_type() == ServiceType::Forking && procs.unit_populated(&self.unit));
        let mut notes = Vec::new();
        if self.svc_type() == ServiceType::Oneshot || !alive {
            if self.unit.service.remain_after_exit && self.result.is_success() {
                self.set_state(SubState::Exited, now);
                self.became_active = Some(now);
                notes.extend(self.finish_start(StartResult::Active));
                procs.log(&self.unit, "Finished.");
                return notes;
            }
            if self.svc_type() == ServiceType::Oneshot {
                notes.extend(self.finish_start(StartResult::Active));
                procs.log(&self.unit, "Finished.");
            }
            let result = self.result.clone();
            notes.extend(self.enter_stop(procs, now, result));
            return notes;
        }
        self.set_state(SubState::Running, now);
        self.became_active = Some(now);
        procs.log(&self.unit, "Started.");
        notes.extend(self.finish_start(StartResult::Active));
        notes
    }

    fn enter_stop(
        &mut self,
        procs: &mut dyn Procs,
        now: Instant,
        result: ServiceResult,
    ) -> Vec<Note> {
        self.result = self.result.clone().or(result);
        self.set_state(SubState::Stop, now);
        self.deadline = self.timeout_stop().map(|t| now + t);
        self.run_phase(procs, Phase::Stop, now)
    }

    fn kill(&mut self, procs: &mut dyn Procs, signal: i32, is_kill: bool) {
        match self.unit.service.kill_mode {
            KillMode::ControlGroup => {
                procs.signal_unit(&self.unit, signal);
                if !is_kill {
                    procs.signal_unit(&self.unit, SIGCONT);
                }
            }
            KillMode::Mixed if is_kill => procs.signal_unit(&self.unit, signal),
            KillMode::Mixed | KillMode::Process => {
                for pid in self.main_pid.iter().chain(&self.control_pid) {
                    procs.signal(*pid, signal);
                    if !is_kill {
                        procs.signal(*pid, SIGCONT);
                    }
                }
            }
            KillMode::None => {}
        }
    }

    fn enter_signal(
        &mut self,
        procs: &mut dyn Procs,
        now: Instant,
        result: ServiceResult,
    ) -> Vec<Note> {
        self.result = self.result.clone().or(result);
        self.phase = None;
        let signal = self.unit.service.kill_signal.unwrap_or(SIGTERM);
        self.kill(procs, signal, false);
        self.set_state(SubState::StopSigterm, now);
        self.deadline = self.timeout_stop().map(|t| now + t);
        if self.nothing_left(procs) {
            self.deadline = None;
            return self.enter_stop_post(procs, now);
        }
        Vec::new()
    }

    fn enter_stop_post(&mut self, procs: &mut dyn Procs, now: Instant) -> Vec<Note> {
        self.set_state(SubState::StopPost, now);
        self.deadline = self.timeout_stop().map(|t| now + t);
        self.run_phase(procs, Phase::StopPost, now)
    }

    fn enter_dead(&mut self, procs: &mut dyn Procs, now: Instant) -> Vec<Note> {
        self.deadline = None;
        self.phase = None;
        self.main_pid = None;
        self.control_pid = None;
        let mut notes = Vec::new();
        let failed = !self.result.is_success();
        if failed {
            procs.log(
                &self.unit,
                &format!("Failed with result '{}'.", self.result.code()),
            );
        }
        if self.start_job {
            let outcome = if failed {
                StartResult::Failed(self.result.to_string())
            } else {
                StartResult::Failed("exited during start".into())
            };
            notes.extend(self.finish_start(outcome));
        }
        if self.start_after_stop {
            self.start_after_stop = false;
            self.start_job = true;
            procs.cleanup(&self.unit, false);
            self.set_state(SubState::Dead, now);
            notes.push(Note::Stopped);
            notes.extend(self.begin(procs, now));
            return notes;
        }
        if !self.stop_requested && self.should_restart() {
            if let Some(up) = self.became_active {
                if now.duration_since(up) >= BACKOFF_RESET_AFTER {
                    self.consecutive = 0;
                }
            }
            self.consecutive += 1;
            self.restarts += 1;
            let delay = self.restart_delay();
            procs.cleanup(&self.unit, false);
            self.set_state(SubState::AutoRestart, now);
            self.deadline = Some(now + delay);
            procs.log(
                &self.unit,
                &format!(
                    "Scheduling restart in {} ms (restart {} in a row).",
                    delay.as_millis(),
                    self.consecutive
                ),
            );
            return notes;
        }
        procs.cleanup(&self.unit, true);
        self.set_state(
            if failed {
                SubState::Failed
            } else {
                SubState::Dead
            },
            now,
        );
        notes.push(Note::Stopped);
        notes
    }

    /// `RestartSec=` doubled for each restart in a row, capped.
    pub fn restart_delay(&self) -> Duration {
        let base = match self.unit.service.restart_sec {
            None => DEFAULT_RESTART_SEC,
            Some(TimeSpan::Finite(d)) => d,
            Some(TimeSpan::Infinity) => MAX_RESTART_DELAY,
        };
        let cap = base.max(MAX_RESTART_DELAY);
        let shift = self.consecutive.saturating_sub(1).min(20);
        base.saturating_mul(1u32 << shift).min(cap)
    }

    /// systemd.service(5), table 2.
    fn should_restart(&self) -> bool {
        let r = &self.result;
        if let ServiceResult::Exit(ExitStatus::Exited(code)) = r {
            if u8::try_from(*code).is_ok_and(|c| {
                self.unit
                    .service
                    .restart_prevent_exit_status
                    .codes
                    .contains(&c)
            }) {
                return false;
            }
        }
        if let ServiceResult::Exit(ExitStatus::Signaled { signal, .. }) = r {
            if self
                .unit
                .service
                .restart_prevent_exit_status
                .signals
                .contains(signal)
            {
                return false;
            }
        }
        match self.unit.service.restart {
            Restart::No => false,
            Restart::Always => !matches!(r, ServiceResult::StartLimitHit),
            Restart::OnSuccess => r.is_success(),
            Restart::OnFailure => matches!(
                r,
                ServiceResult::Exit(_) | ServiceResult::Timeout | ServiceResult::Resources(_)
            ),
            Restart::OnAbnormal => matches!(
                r,
                ServiceResult::Exit(ExitStatus::Signaled { .. }) | ServiceResult::Timeout
            ),
            Restart::OnAbort => matches!(r, ServiceResult::Exit(ExitStatus::Signaled { .. })),
            Restart::OnWatchdog => false,
        }
    }

    /// Whether `status` is a clean exit for a process of `phase`.
    fn is_clean(&self, status: ExitStatus, main: bool) -> bool {
        let success = &self.unit.service.success_exit_status;
        match status {
            ExitStatus::Exited(0) => true,
            ExitStatus::Exited(code) => {
                main && u8::try_from(code).is_ok_and(|c| success.codes.contains(&c))
            }
            ExitStatus::Signaled { signal, .. } => {
                main && (success.signals.contains(&signal)
                    || (self.svc_type() != ServiceType::Oneshot
                        && matches!(signal, 1 | 2 | 13 | 15)))
            }
        }
    }

    fn main_exited(
        &mut self,
        procs: &mut dyn Procs,
        status: ExitStatus,
        now: Instant,
    ) -> Vec<Note> {
        let clean = self.is_clean(status, true);
        let stopping = matches!(
            self.state,
            SubState::Stop | SubState::StopSigterm | SubState::StopSigkill | SubState::StopPost
        );
        if !stopping || !clean {
            procs.log(
                &self.unit,
                &format!("Main process exited, {}", describe(status)),
            );
        }
        // Signals init sent while stopping are expected, not failures.
        let expected = stopping && self.stop_requested;
        if !clean && !expected {
            self.result = self.result.clone().or(ServiceResult::Exit(status));
        }
        match self.state {
            SubState::Start if self.svc_type() == ServiceType::Oneshot => {
                if clean || self.current_ignores_failure() {
                    self.cmd_index += 1;
                    self.run_phase(procs, Phase::Start, now)
                } else {
                    self.enter_signal(procs, now, ServiceResult::Exit(status))
                }
            }
            SubState::Start => {
                // Notify: exited before READY=1.
                let result = if clean {
                    ServiceResult::Protocol("exited before READY=1".into())
                } else {
                    ServiceResult::Exit(status)
                };
                self.enter_signal(procs, now, result)
            }
            SubState::StartPost => Vec::new(), // handled when ExecStartPost= ends
            SubState::Running => {
                if clean && self.unit.service.remain_after_exit {
                    self.set_state(SubState::Exited, now);
                    return Vec::new();
                }
                let result = self.result.clone();
                self.enter_stop(procs, now, result)
            }
            SubState::StopSigterm | SubState::StopSigkill => {
                if self.nothing_left(procs) {
                    self.deadline = None;
                    return self.enter_stop_post(procs, now);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn current_ignores_failure(&self) -> bool {
        self.phase
            .and_then(|p| self.commands(p).get(self.cmd_index))
            .is_some_and(|c| c.ignore_failure)
    }

    fn command_failed(
        &mut self,
        procs: &mut dyn Procs,
        phase: Phase,
        result: ServiceResult,
        now: Instant,
    ) -> Vec<Note> {
        match phase {
            Phase::StartPre | Phase::Start => self.enter_signal(procs, now, result),
            Phase::StartPost => self.enter_stop(procs, now, result),
            Phase::Stop => self.enter_signal(procs, now, result),
            Phase::StopPost => {
                self.result = self.result.clone().or(result);
                self.enter_dead(procs, now)
            }
        }
    }

    fn control_exited(
        &mut self,
        procs: &mut dyn Procs,
        status: ExitStatus,
        now: Instant,
    ) -> Vec<Note> {
        let Some(phase) = self.phase else {
            // A stop interrupted this command; its exit changes nothing
            // except ending the wait.
            if matches!(self.state, SubState::StopSigterm | SubState::StopSigkill)
                && self.nothing_left(procs)
            {
                self.deadline = None;
                return self.enter_stop_post(procs, now);
            }
            return Vec::new();
        };
        let forking_parent = phase == Phase::Start && self.svc_type() == ServiceType::Forking;
        let clean = self.is_clean(status, forking_parent);
        if !clean {
            let path = self
                .commands(phase)
                .get(self.cmd_index)
                .map_or("?", |c| c.path.as_str())
                .to_string();
            procs.log(
                &self.unit,
                &format!("{}= {path} exited, {}", phase.directive(), describe(status)),
            );
            if !self.current_ignores_failure() {
                return self.command_failed(procs, phase, ServiceResult::Exit(status), now);
            }
        }
        self.cmd_index += 1;
        self.run_phase(procs, phase, now)
    }
}

fn describe_condition(c: &Condition) -> String {
    use crate::unit::ConditionKind;
    let what = match c.kind {
        ConditionKind::PathExists => "PathExists",
        ConditionKind::PathIsDirectory => "PathIsDirectory",
        ConditionKind::FileNotEmpty => "FileNotEmpty",
    };
    format!(
        "Condition{what}={}{}{}",
        if c.trigger { "|" } else { "" },
        if c.negate { "!" } else { "" },
        c.path.display()
    )
}
