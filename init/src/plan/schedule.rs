//! The scheduler the supervisor drives: [`Plan::ready`] lists the units
//! that may start now (in parallel), the supervisor reports
//! [`Plan::started`] and [`Plan::finished`].
//!
//! Rules:
//! - A unit is ready when every unit it is ordered after has reached a
//!   final state (active, failed or skipped) and every `Requisite=` unit has
//!   too (a requisite is waited for even without `After=`, so the check
//!   never races).
//! - A unit whose `Requires=` or `Requisite=` unit failed, and that has not
//!   been started yet, fails with "dependency failed: x", transitively. A
//!   skipped unit (condition not met) does not fail its dependents, except
//!   through `Requisite=` ("requisite x is not active"). `Wants=` failures
//!   never propagate.
//! - Targets have no process: the plan makes them active by itself once
//!   they are ready, so [`Plan::ready`] lists only other units. Units of
//!   [`Kind::Other`] are handed out like services: the supervisor finishes
//!   them as it sees fit (e.g. skipped, if it cannot run that type).
//! - The supervisor decides when a unit counts as done: a oneshot when it
//!   exited, a simple service when it was spawned, a notify service at
//!   READY=1. [`Plan::is_oneshot`] tells which.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::order::{Cycle, Graph};
use super::transaction::{build_effective, Pull, Transaction};
use super::{Kind, Node, PlanError, Units};

/// Where a unit of the plan stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started yet.
    Waiting,
    /// Started, not done yet.
    Started,
    Active,
    Failed(String),
    /// Not run because a condition was not met.
    Skipped(String),
}

impl State {
    /// Active, failed or skipped: units ordered after it may go.
    pub fn is_final(&self) -> bool {
        matches!(self, State::Active | State::Failed(_) | State::Skipped(_))
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Waiting => write!(f, "waiting"),
            State::Started => write!(f, "started"),
            State::Active => write!(f, "active"),
            State::Failed(reason) => write!(f, "failed ({reason})"),
            State::Skipped(condition) => write!(f, "skipped ({condition})"),
        }
    }
}

/// How a started unit ended its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Active,
    Failed(String),
    Skipped(String),
}

/// The start plan of one goal, and the unit database it came from.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(super) db: BTreeMap<String, Node>,
    transaction: Transaction,
    pub(super) graph: Graph,
    states: Vec<State>,
    /// `Requires=` and `Requisite=` units inside the plan, per unit.
    hard_deps: Vec<BTreeSet<usize>>,
    /// `Requisite=` units inside the plan, per unit.
    requisites: Vec<BTreeSet<usize>>,
    cycles: Vec<Cycle>,
    warnings: Vec<String>,
}

impl Plan {
    /// Plans the start of `goal` (e.g. multi-user.target).
    pub fn new(units: &Units, goal: &str) -> Result<Plan, PlanError> {
        let db = units.effective();
        let transaction = build_effective(&db, goal)?;
        let mut graph = Graph::build(&db, transaction.units.keys());
        let cycles = graph.break_cycles(|name| transaction.units.get(name).map(|p| p.strength));
        let mut warnings = transaction.warnings.clone();
        warnings.extend(cycles.iter().map(ToString::to_string));
        let n = graph.names.len();
        let mut hard_deps = vec![BTreeSet::new(); n];
        let mut requisites = vec![BTreeSet::new(); n];
        let mut states = Vec::with_capacity(n);
        for (i, name) in graph.names.iter().enumerate() {
            if let Some(node) = db.get(name) {
                for dep in node.requires.iter().chain(&node.requisite) {
                    if let Some(j) = graph.index_of(dep) {
                        hard_deps[i].insert(j);
                    }
                }
                for dep in &node.requisite {
                    if let Some(j) = graph.index_of(dep) {
                        requisites[i].insert(j);
                    }
                }
            }
            states.push(match transaction.failed.get(name) {
                Some(reason) => State::Failed(reason.clone()),
                None => State::Waiting,
            });
        }
        let mut plan = Plan {
            db,
            transaction,
            graph,
            states,
            hard_deps,
            requisites,
            cycles,
            warnings,
        };
        plan.settle();
        Ok(plan)
    }

    pub fn goal(&self) -> &str {
        &self.transaction.goal
    }

    pub fn transaction(&self) -> &Transaction {
        &self.transaction
    }

    /// Every unit of the plan, in name order.
    pub fn units(&self) -> &[String] {
        &self.graph.names
    }

    pub fn state(&self, name: &str) -> Option<&State> {
        self.graph.index_of(name).map(|i| &self.states[i])
    }

    pub fn pull(&self, name: &str) -> Option<&Pull> {
        self.transaction.units.get(name)
    }

    pub fn is_oneshot(&self, name: &str) -> bool {
        self.db.get(name).is_some_and(|n| n.oneshot)
    }

    /// Ordering cycles found and broken.
    pub fn cycles(&self) -> &[Cycle] {
        &self.cycles
    }

    /// Missing wanted units, conflict resolutions and broken cycles.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The start order as parallel layers (after cycle breaking).
    pub fn start_layers(&self) -> Vec<Vec<String>> {
        self.graph.layers(false)
    }

    /// Units the supervisor may start now, in name order.
    pub fn ready(&self) -> Vec<String> {
        (0..self.states.len())
            .filter(|&i| self.states[i] == State::Waiting && self.kind(i) != Kind::Target)
            .filter(|&i| self.blocker(i).is_none())
            .map(|i| self.graph.names[i].clone())
            .collect()
    }

    /// The supervisor started `name`, which must be ready.
    pub fn started(&mut self, name: &str) -> Result<(), PlanError> {
        let i = self.index(name)?;
        if self.states[i] != State::Waiting {
            return Err(PlanError::NotStartable {
                name: name.to_owned(),
                state: self.states[i].to_string(),
            });
        }
        if let Some(blocker) = self.blocker(i) {
            return Err(PlanError::NotStartable {
                name: name.to_owned(),
                state: format!("waiting for {}", self.graph.names[blocker]),
            });
        }
        self.states[i] = State::Started;
        Ok(())
    }

    /// `name` reached a final state. A unit that was never started may be
    /// finished too (e.g. skipped because of a condition).
    pub fn finished(&mut self, name: &str, outcome: Outcome) -> Result<(), PlanError> {
        let i = self.index(name)?;
        if self.states[i].is_final() {
            return Err(PlanError::AlreadyFinal {
                name: name.to_owned(),
                state: self.states[i].to_string(),
            });
        }
        self.states[i] = match outcome {
            Outcome::Active => State::Active,
            Outcome::Failed(reason) => State::Failed(reason),
            Outcome::Skipped(condition) => State::Skipped(condition),
        };
        self.settle();
        Ok(())
    }

    /// Every unit of the plan reached a final state.
    pub fn is_complete(&self) -> bool {
        self.states.iter().all(State::is_final)
    }

    /// Failed units with their reasons, in name order.
    pub fn failed(&self) -> Vec<(String, String)> {
        self.graph
            .names
            .iter()
            .zip(&self.states)
            .filter_map(|(name, state)| match state {
                State::Failed(reason) => Some((name.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn index(&self, name: &str) -> Result<usize, PlanError> {
        self.graph
            .index_of(name)
            .ok_or_else(|| PlanError::UnknownUnit(name.to_owned()))
    }

    fn kind(&self, i: usize) -> Kind {
        self.db
            .get(&self.graph.names[i])
            .map_or(Kind::Other, |n| n.kind)
    }

    /// The first predecessor or requisite of `i` that is not final yet.
    fn blocker(&self, i: usize) -> Option<usize> {
        self.graph.pred[i]
            .iter()
            .chain(&self.requisites[i])
            .copied()
            .find(|&j| !self.states[j].is_final())
    }

    /// Propagates dependency failures and activates ready targets, until
    /// nothing changes.
    fn settle(&mut self) {
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.states.len() {
                if self.states[i] != State::Waiting {
                    continue;
                }
                let failed_dep = self.hard_deps[i]
                    .iter()
                    .find(|&&j| matches!(self.states[j], State::Failed(_)));
                if let Some(&j) = failed_dep {
                    let reason = format!("dependency failed: {}", self.graph.names[j]);
                    self.states[i] = State::Failed(reason);
                    changed = true;
                    continue;
                }
                let inactive_requisite = self.requisites[i]
                    .iter()
                    .find(|&&j| matches!(self.states[j], State::Skipped(_)));
                if let Some(&j) = inactive_requisite {
                    let reason = format!("requisite {} is not active", self.graph.names[j]);
                    self.states[i] = State::Failed(reason);
                    changed = true;
                    continue;
                }
                if self.kind(i) == Kind::Target && self.blocker(i).is_none() {
                    self.states[i] = State::Active;
                    changed = true;
                }
            }
        }
    }
}
