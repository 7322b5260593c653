//! The supervisor: starts the boot transaction, runs services through
//! their life cycle, serves start/stop requests, judges boot health and
//! stops everything at shutdown. Pure logic over [`Procs`]: the runtime
//! (`crate::runtime`) feeds it process exits, sd_notify messages, requests
//! and the time, and carries out what it returns.

mod db;
pub mod exec;
pub mod health;
pub mod service;
pub mod status;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_mount;
#[cfg(test)]
mod tests_service;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::plan::{Outcome, Plan, PlanError, State, Units};
use crate::unit::{Loaded, ServiceType, Unit, UnitKind};

pub use db::units_of;
pub use health::{Health, HealthConfig, Verdict};
pub use service::{Note, Phase, Procs, Service, StartResult, SubState};
pub use status::{describe, ExitStatus, ServiceResult};

/// How often stopping services are polled for an empty cgroup.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// Who asked for a job, to be told how it ended.
pub type Reply = Box<dyn FnOnce(Result<String, String>) + Send>;

/// A start request: a plan for its goal.
struct StartJob {
    plan: Plan,
    reply: Option<Reply>,
}

/// A stop request: layers of units, the first stops first.
struct StopJob {
    layers: Vec<Vec<String>>,
    current: usize,
    reply: Option<Reply>,
    /// Start this goal once everything stopped (restart).
    then_start: Option<String>,
}

/// What the runtime must do after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print this on the console (and init's log).
    Say(String),
    /// The boot is healthy: bless it and print the boot-complete line.
    Healthy,
    /// The boot is not healthy by the deadline: the reasons, one per unit.
    Unhealthy(Vec<String>),
    /// Every unit stopped for shutdown: kill the rest, unmount, reboot.
    ShutdownReady,
}

/// One unit's state for `keelctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitInfo {
    pub name: String,
    /// The unit type: `service`, `target`, `mount`, `swap`, ...
    pub kind: String,
    pub description: Option<String>,
    pub load: &'static str,
    pub active: &'static str,
    pub sub: &'static str,
    pub main_pid: Option<u32>,
    pub since: Option<Instant>,
    pub result: Option<String>,
    pub restarts: u32,
    pub health: bool,
    pub fragment: Option<String>,
    pub status_text: Option<String>,
}

/// The supervisor.
pub struct Supervisor {
    units: Units,
    loaded: Loaded,
    services: BTreeMap<String, Service>,
    active_targets: BTreeSet<String>,
    boot: Plan,
    starts: Vec<StartJob>,
    stops: Vec<StopJob>,
    health: Health,
    shutting_down: bool,
    /// The boot transaction is not run (see [`Supervisor::hold_boot`]).
    boot_held: bool,
    actions: Vec<Action>,
}

impl Supervisor {
    /// Plans the boot of `goal` (normally multi-user.target) over the
    /// loaded units.
    pub fn new(
        loaded: Loaded,
        goal: &str,
        health: HealthConfig,
        now: Instant,
    ) -> Result<Supervisor, PlanError> {
        let units = units_of(&loaded);
        let boot = Plan::new(&units, goal)?;
        let services = loaded
            .units
            .values()
            .filter(|u| u.kind.runs_processes())
            .map(|u| (u.name.clone(), Service::new(u.clone())))
            .collect();
        let mut actions: Vec<Action> = boot.warnings().iter().cloned().map(Action::Say).collect();
        for w in &loaded.warnings {
            actions.push(Action::Say(format!("warning: {w}")));
        }
        for (name, e) in &loaded.errors {
            actions.push(Action::Say(format!(
                "error: unit {}: {}",
                if name.is_empty() { "directories" } else { name },
                crate::error::chain(e)
            )));
        }
        Ok(Supervisor {
            units,
            loaded,
            services,
            active_targets: BTreeSet::new(),
            boot,
            starts: Vec::new(),
            stops: Vec::new(),
            health: Health::new(health, now),
            shutting_down: false,
            boot_held: false,
            actions,
        })
    }

    /// The boot plan.
    pub fn boot_plan(&self) -> &Plan {
        &self.boot
    }

    /// Takes the actions accumulated since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(self.canonical(name))
    }

    fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        self.loaded.aliases.get(name).map_or(name, String::as_str)
    }

    /// Keeps the boot transaction from running: none of its units, not
    /// even its targets, becomes active, and the boot is not judged (after
    /// a failed first boot). `keelctl` requests still work.
    pub fn hold_boot(&mut self) {
        self.boot_held = true;
    }

    /// Starts the boot transaction.
    pub fn boot(&mut self, procs: &mut dyn Procs, now: Instant) {
        self.after_change(procs, now);
    }

    /// Units currently not inactive (for stop ordering).
    fn running_units(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .services
            .values()
            .filter(|s| !s.state.is_inactive())
            .map(|s| s.unit.name.clone())
            .collect();
        out.extend(self.active_targets.iter().cloned());
        out.sort();
        out
    }

    /// Hands ready units of every plan to their services until nothing
    /// more can start now.
    fn drive(&mut self, procs: &mut dyn Procs, now: Instant) {
        loop {
            let mut progressed = false;
            for idx in 0..=self.starts.len() {
                let ready = match idx {
                    0 if self.boot_held => Vec::new(),
                    0 => self.boot.ready(),
                    i => self.starts[i - 1].plan.ready(),
                };
                for name in ready {
                    progressed = true;
                    self.plan_mut(idx).started(&name).ok();
                    self.start_one(procs, idx, &name, now);
                }
            }
            self.collect_targets();
            if !progressed {
                break;
            }
        }
        self.finish_start_jobs();
    }

    fn plan_mut(&mut self, idx: usize) -> &mut Plan {
        match idx {
            0 => &mut self.boot,
            i => &mut self.starts[i - 1].plan,
        }
    }

    fn plans_mut(&mut self) -> impl Iterator<Item = &mut Plan> {
        std::iter::once(&mut self.boot).chain(self.starts.iter_mut().map(|j| &mut j.plan))
    }

    /// Starts `name` for plan `idx`.
    fn start_one(&mut self, procs: &mut dyn Procs, idx: usize, name: &str, now: Instant) {
        let outcome = match self.loaded.units.get(name).map(|u| &u.kind) {
            None => Some(Outcome::Failed(if self.loaded.masked.contains(name) {
                "unit is masked".to_string()
            } else if let Some(e) = self.loaded.errors.get(name) {
                crate::error::chain(e)
            } else {
                "unit not found".to_string()
            })),
            Some(UnitKind::Unsupported(kind)) => Some(Outcome::Skipped(format!(
                "unit type .{kind} is not supported"
            ))),
            Some(UnitKind::Target) => Some(Outcome::Active),
            Some(UnitKind::Service | UnitKind::Mount | UnitKind::Swap) => None,
        };
        if let Some(outcome) = outcome {
            self.plan_mut(idx).finished(name, outcome).ok();
            return;
        }
        let conflicting = self.boot.conflicts_to_stop(name, &self.running_units());
        for other in conflicting {
            self.actions.push(Action::Say(format!(
                "stopping {other}: it conflicts with {name}"
            )));
            self.with_service(procs, &other, now, |s, p, n| s.stop(p, n));
        }
        self.with_service(procs, name, now, |s, p, n| s.start(p, n));
    }

    /// Runs `f` on a service and processes the notes it returns.
    fn with_service(
        &mut self,
        procs: &mut dyn Procs,
        name: &str,
        now: Instant,
        f: impl FnOnce(&mut Service, &mut dyn Procs, Instant) -> Vec<Note>,
    ) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let notes = f(service, procs, now);
        self.handle_notes(name, notes);
    }

    fn handle_notes(&mut self, name: &str, notes: Vec<Note>) {
        for note in notes {
            match note {
                Note::Started(result) => {
                    let outcome = match &result {
                        StartResult::Active => Outcome::Active,
                        StartResult::Failed(r) => {
                            self.actions
                                .push(Action::Say(format!("{name} failed: {r}")));
                            Outcome::Failed(r.clone())
                        }
                        StartResult::Skipped(c) => Outcome::Skipped(c.clone()),
                    };
                    for plan in self.plans_mut() {
                        if plan.state(name) == Some(&State::Started) {
                            plan.finished(name, outcome.clone()).ok();
                        }
                    }
                }
                Note::Stopped => {}
            }
        }
    }

    /// Targets of finished plans become active; they have no process.
    fn collect_targets(&mut self) {
        let mut newly = Vec::new();
        let boot = (!self.boot_held).then_some(&self.boot);
        for plan in boot.into_iter().chain(self.starts.iter().map(|j| &j.plan)) {
            for name in plan.units() {
                if plan.state(name) == Some(&State::Active)
                    && matches!(
                        self.loaded.units.get(name).map(|u| &u.kind),
                        None | Some(UnitKind::Target)
                    )
                    && !self.services.contains_key(name)
                {
                    newly.push(name.clone());
                }
            }
        }
        self.active_targets.extend(newly);
    }

    fn finish_start_jobs(&mut self) {
        let mut i = 0;
        while i < self.starts.len() {
            if !self.starts[i].plan.is_complete() {
                i += 1;
                continue;
            }
            let job = self.starts.remove(i);
            let goal = job.plan.goal().to_string();
            let result = match job.plan.state(&goal) {
                Some(State::Active) => Ok(format!("started {goal}")),
                Some(State::Skipped(c)) => Ok(format!("{goal} skipped: {c}")),
                Some(State::Failed(r)) => Err(format!("{goal} failed: {r}")),
                _ => Err(format!("{goal} did not start")),
            };
            if let Some(reply) = job.reply {
                reply(result);
            }
        }
    }

    /// A child process exited.
    pub fn on_exit(&mut self, procs: &mut dyn Procs, pid: u32, status: ExitStatus, now: Instant) {
        let mut hit = None;
        for (name, service) in self.services.iter_mut() {
            if let Some(notes) = service.on_exit(procs, pid, status, now) {
                hit = Some((name.clone(), notes));
                break;
            }
        }
        if let Some((name, notes)) = hit {
            self.handle_notes(&name, notes);
            self.after_change(procs, now);
        }
    }

    /// An sd_notify message.
    pub fn on_notify(
        &mut self,
        procs: &mut dyn Procs,
        pid: u32,
        sender_unit: Option<&str>,
        fields: &[(String, String)],
        now: Instant,
    ) {
        let mut hit = None;
        for (name, service) in self.services.iter_mut() {
            if let Some(notes) = service.on_notify(procs, pid, sender_unit, fields, now) {
                hit = Some((name.clone(), notes));
                break;
            }
        }
        if let Some((name, notes)) = hit {
            self.handle_notes(&name, notes);
            self.after_change(procs, now);
        }
    }

    /// Timeouts, restarts, stop polling and the health judgement.
    pub fn tick(&mut self, procs: &mut dyn Procs, now: Instant) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            self.with_service(procs, &name, now, |s, p, n| s.tick(p, n));
        }
        self.after_change(procs, now);
    }

    fn after_change(&mut self, procs: &mut dyn Procs, now: Instant) {
        self.drive(procs, now);
        self.advance_stops(procs, now);
        if !self.shutting_down && !self.boot_held {
            self.judge(now);
        }
    }

    /// When [`Supervisor::tick`] must run next.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = self.services.values().filter_map(Service::deadline).min();
        let stopping = self
            .services
            .values()
            .any(|s| matches!(s.state, SubState::StopSigterm | SubState::StopSigkill));
        if stopping {
            next = Some(next.map_or(now + STOP_POLL, |n| n.min(now + STOP_POLL)));
        }
        if !self.shutting_down {
            if let Some(h) = self.health.next_check() {
                next = Some(next.map_or(h, |n| n.min(h)));
            }
        }
        next
    }

    fn judge(&mut self, now: Instant) {
        if !self.boot.is_complete() && now < self.health.deadline() {
            return;
        }
        let problems = self.health_problems();
        match self.health.observe(now, &problems) {
            Some(Verdict::Healthy) => self.actions.push(Action::Healthy),
            Some(Verdict::Unhealthy(reasons)) => self.actions.push(Action::Unhealthy(reasons)),
            None => {}
        }
    }

    /// Since when every unit of the boot has been up, while it is.
    pub fn healthy_since(&self) -> Option<Instant> {
        self.health.healthy_since()
    }

    /// Every boot-transaction service that counts for health and is not
    /// up, with the reason.
    pub fn health_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.boot.units() {
            let Some(unit) = self.loaded.units.get(name) else {
                if let Some(State::Failed(r)) = self.boot.state(name) {
                    out.push(format!("{name}: {r}"));
                }
                continue;
            };
            if unit.unit.health_opt_out {
                continue;
            }
            match self.boot.state(name) {
                Some(State::Failed(r)) => {
                    out.push(format!("{name}: {r}"));
                    continue;
                }
                Some(State::Skipped(_)) => continue,
                Some(State::Active) => {}
                Some(s) => {
                    out.push(format!("{name}: still {s}"));
                    continue;
                }
                None => continue,
            }
            let Some(service) = self.services.get(name) else {
                continue;
            };
            let oneshot_done = service.unit.service.service_type == ServiceType::Oneshot
                && service.state == SubState::Dead
                && service.result.is_success();
            if !(service.state.is_active() || oneshot_done || service.state == SubState::Condition)
            {
                let why = if service.result.is_success() {
                    service.state.name().to_string()
                } else {
                    service.result.to_string()
                };
                out.push(format!("{name}: {} ({why})", service.state.active_state()));
            }
        }
        out
    }

    /// `keelctl start`: starts `name` and what it pulls in.
    pub fn request_start(&mut self, procs: &mut dyn Procs, name: &str, reply: Reply, now: Instant) {
        if self.shutting_down {
            reply(Err("the system is shutting down".into()));
            return;
        }
        let name = self.canonical(name).to_string();
        if let Err(e) = self.check_startable(&name) {
            reply(Err(e));
            return;
        }
        let mut plan = match Plan::new(&self.units, &name) {
            Ok(p) => p,
            Err(e) => {
                reply(Err(e.to_string()));
                return;
            }
        };
        // Units already up count as done.
        loop {
            let mut any = false;
            for u in plan.ready() {
                let up = self.services.get(&u).is_some_and(|s| s.state.is_active())
                    || self.active_targets.contains(&u);
                if up {
                    plan.started(&u).ok();
                    plan.finished(&u, Outcome::Active).ok();
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        self.starts.push(StartJob {
            plan,
            reply: Some(reply),
        });
        self.after_change(procs, now);
    }

    fn check_startable(&self, name: &str) -> Result<(), String> {
        if self.loaded.masked.contains(name) {
            return Err(format!("unit {name} is masked"));
        }
        if let Some(e) = self.loaded.errors.get(name) {
            return Err(format!(
                "unit {name} failed to load: {}",
                crate::error::chain(e)
            ));
        }
        if !self.loaded.units.contains_key(name) {
            return Err(format!("unit {name} not found"));
        }
        Ok(())
    }

    /// `keelctl stop`: stops `name` and the units bound to it.
    pub fn request_stop(&mut self, procs: &mut dyn Procs, name: &str, reply: Reply, now: Instant) {
        self.stop_job(procs, name, Some(reply), None, now);
    }

    /// `keelctl restart`: stop, then start.
    pub fn request_restart(
        &mut self,
        procs: &mut dyn Procs,
        name: &str,
        reply: Reply,
        now: Instant,
    ) {
        if self.shutting_down {
            reply(Err("the system is shutting down".into()));
            return;
        }
        let canonical = self.canonical(name).to_string();
        if let Err(e) = self.check_startable(&canonical) {
            reply(Err(e));
            return;
        }
        self.stop_job(procs, name, Some(reply), Some(canonical), now);
    }

    fn stop_job(
        &mut self,
        procs: &mut dyn Procs,
        name: &str,
        reply: Option<Reply>,
        then_start: Option<String>,
        now: Instant,
    ) {
        let name = self.canonical(name).to_string();
        if !self.loaded.units.contains_key(&name) && !self.active_targets.contains(&name) {
            if let Some(r) = reply {
                r(Err(format!("unit {name} not found")));
            }
            return;
        }
        let active = self.running_units();
        let mut set = self.boot.stops_with(&name, &active);
        set.push(name.clone());
        let layers = self.boot.stop_order(&set);
        let layers = if layers.iter().flatten().any(|n| *n == name) {
            layers
        } else {
            vec![vec![name.clone()]]
        };
        self.stops.push(StopJob {
            layers,
            current: 0,
            reply,
            then_start,
        });
        self.after_change(procs, now);
    }

    /// Starts the shutdown: every unit stops, in reverse start order.
    pub fn shutdown(&mut self, procs: &mut dyn Procs, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for job in self.starts.drain(..) {
            if let Some(reply) = job.reply {
                reply(Err("the system is shutting down".into()));
            }
        }
        let active = self.running_units();
        let layers = self.boot.stop_order(&active);
        self.stops.push(StopJob {
            layers,
            current: 0,
            reply: None,
            then_start: None,
        });
        self.after_change(procs, now);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn advance_stops(&mut self, procs: &mut dyn Procs, now: Instant) {
        let mut i = 0;
        while i < self.stops.len() {
            loop {
                let job = &self.stops[i];
                let Some(layer) = job.layers.get(job.current).cloned() else {
                    break;
                };
                // Issue the stops of this layer (idempotent).
                for name in &layer {
                    if self.active_targets.remove(name) {
                        continue;
                    }
                    let busy = self.services.get(name).is_some_and(|s| {
                        !s.state.is_inactive()
                            && !matches!(
                                s.state,
                                SubState::Stop
                                    | SubState::StopSigterm
                                    | SubState::StopSigkill
                                    | SubState::StopPost
                            )
                    });
                    if busy {
                        self.with_service(procs, name, now, |s, p, n| s.stop(p, n));
                    }
                }
                let done = layer
                    .iter()
                    .all(|n| self.services.get(n).is_none_or(|s| s.state.is_inactive()));
                if !done {
                    break;
                }
                self.stops[i].current += 1;
            }
            let job = &self.stops[i];
            if job.current < job.layers.len() {
                i += 1;
                continue;
            }
            let job = self.stops.remove(i);
            if let Some(goal) = job.then_start {
                if let Some(reply) = job.reply {
                    self.request_start(procs, &goal, reply, now);
                }
            } else if let Some(reply) = job.reply {
                reply(Ok("stopped".into()));
            }
        }
        if self.shutting_down
            && self.stops.is_empty()
            && !self.actions.contains(&Action::ShutdownReady)
        {
            self.actions.push(Action::ShutdownReady);
        }
    }

    /// The state of one unit, or of every loaded unit (and built-in or
    /// failed ones) in name order.
    pub fn status(&self, name: Option<&str>, now: Instant) -> Result<Vec<UnitInfo>, String> {
        let _ = now;
        let names: Vec<String> = match name {
            Some(n) => {
                let n = self.canonical(n).to_string();
                if !self.loaded.units.contains_key(&n)
                    && !self.loaded.masked.contains(&n)
                    && !self.loaded.errors.contains_key(&n)
                    && self.units.get(&n).is_none()
                {
                    return Err(format!("unit {n} not found"));
                }
                vec![n]
            }
            None => {
                let mut all: BTreeSet<String> = self.loaded.units.keys().cloned().collect();
                all.extend(self.units.names().map(str::to_string));
                all.extend(self.loaded.errors.keys().filter(|k| !k.is_empty()).cloned());
                all.extend(self.loaded.masked.iter().cloned());
                all.into_iter().collect()
            }
        };
        Ok(names.iter().map(|n| self.info(n)).collect())
    }

    fn info(&self, name: &str) -> UnitInfo {
        let unit: Option<&Unit> = self.loaded.units.get(name);
        let mut info = UnitInfo {
            name: name.to_string(),
            kind: unit.map_or_else(
                || {
                    crate::unit::name::parse_name(name)
                        .map_or("", |n| n.suffix)
                        .to_string()
                },
                |u| u.kind.type_name().to_string(),
            ),
            description: unit.and_then(|u| u.unit.description.clone()),
            load: "loaded",
            active: "inactive",
            sub: "dead",
            main_pid: None,
            since: None,
            result: None,
            restarts: 0,
            health: unit.is_none_or(|u| !u.unit.health_opt_out),
            fragment: unit.map(|u| u.fragment.display().to_string()),
            status_text: None,
        };
        if self.loaded.masked.contains(name) {
            info.load = "masked";
        } else if let Some(e) = self.loaded.errors.get(name) {
            info.load = "error";
            info.result = Some(crate::error::chain(e));
        } else if unit.is_none() && self.units.get(name).is_none() {
            info.load = "not-found";
        }
        if let Some(s) = self.services.get(name) {
            info.active = s.state.active_state();
            info.sub = status::sub_name(&s.unit.kind, s.state);
            info.main_pid = s.main_pid;
            info.since = s.since;
            info.restarts = s.restarts;
            info.status_text = s.status_text.clone();
            if !s.result.is_success() {
                info.result = Some(s.result.to_string());
            }
        } else if self.active_targets.contains(name) {
            info.active = "active";
            info.sub = "active";
        } else if let Some(State::Failed(r)) = self.boot.state(name) {
            info.active = "failed";
            info.sub = "failed";
            info.result = Some(r.clone());
        }
        info
    }

    /// The loaded units.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// Whether `name` (or an alias) is known, loaded or not.
    pub fn knows(&self, name: &str) -> bool {
        let n = self.canonical(name);
        self.loaded.units.contains_key(n)
            || self.loaded.masked.contains(n)
            || self.units.get(n).is_some()
    }

    /// Adds a unit loaded on demand (a unit file written after boot, as
    /// systemd loads units when they are first referenced). A unit of the
    /// same name that is not running is replaced.
    pub fn add_unit(&mut self, unit: Unit) {
        let name = unit.name.clone();
        self.loaded.errors.remove(&name);
        for alias in &unit.aliases {
            self.loaded.aliases.insert(alias.clone(), name.clone());
        }
        if unit.kind.runs_processes() {
            match self.services.get_mut(&name) {
                Some(s) if s.state.is_inactive() => s.set_unit(unit.clone()),
                Some(_) => {}
                None => {
                    self.services
                        .insert(name.clone(), Service::new(unit.clone()));
                }
            }
        }
        self.loaded.units.insert(name, unit);
        self.units = units_of(&self.loaded);
    }
}
