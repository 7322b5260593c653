//! Stopping: the order, and which units go along with a stopped, restarted
//! or conflicting unit. Works on the whole unit database, so units started
//! after boot (e.g. by `keelctl start`) are covered too.
//!
//! Rules (as systemd's stop and restart propagation):
//! - Units are stopped in the reverse of their start ordering: a unit stops
//!   only after every active unit ordered after it has stopped.
//! - When x stops, every active unit that `Requires=`, `Requisite=` or is
//!   `PartOf=` x stops too, transitively. When x restarts, those units
//!   restart.
//! - Starting x stops every active unit that conflicts with x (in either
//!   direction), and with each of them what its stop propagates to. Since
//!   default dependencies make services and targets conflict with
//!   shutdown.target, `conflicts_to_stop("shutdown.target", ...)` is the
//!   set of units a shutdown stops.

use std::collections::{BTreeSet, VecDeque};

use super::order::Graph;
use super::Plan;

impl Plan {
    /// The order to stop `active` units in: parallel layers, the first
    /// stops first. Ordering cycles are broken as for the start.
    pub fn stop_order(&self, active: &[String]) -> Vec<Vec<String>> {
        let mut graph = Graph::build(&self.db, active);
        graph.break_cycles(|name| self.pull(name).map(|p| p.strength));
        graph.layers(true)
    }

    /// The active units that stop when `name` stops, in name order,
    /// without `name` itself.
    pub fn stops_with(&self, name: &str, active: &[String]) -> Vec<String> {
        let active: BTreeSet<&str> = active.iter().map(String::as_str).collect();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut queue = VecDeque::from([name.to_owned()]);
        while let Some(current) = queue.pop_front() {
            for &other in &active {
                if other == name || seen.contains(other) {
                    continue;
                }
                let Some(node) = self.db.get(other) else {
                    continue;
                };
                let bound = node
                    .requires
                    .iter()
                    .chain(&node.requisite)
                    .chain(&node.part_of)
                    .any(|dep| *dep == current);
                if bound {
                    seen.insert(other.to_owned());
                    queue.push_back(other.to_owned());
                }
            }
        }
        seen.into_iter().collect()
    }

    /// The active units that restart when `name` restarts (the same
    /// relations as [`Plan::stops_with`]).
    pub fn restarts_with(&self, name: &str, active: &[String]) -> Vec<String> {
        self.stops_with(name, active)
    }

    /// The active units to stop before `starting` starts: those that
    /// conflict with it and what their stop propagates to, in name order.
    pub fn conflicts_to_stop(&self, starting: &str, active: &[String]) -> Vec<String> {
        let starting_conflicts: &[String] = self
            .db
            .get(starting)
            .map_or(&[], |node| node.conflicts.as_slice());
        let mut out: BTreeSet<String> = BTreeSet::new();
        for other in active {
            if other == starting {
                continue;
            }
            let conflicts = starting_conflicts.contains(other)
                || self
                    .db
                    .get(other)
                    .is_some_and(|node| node.conflicts.iter().any(|c| c == starting));
            if conflicts {
                out.insert(other.clone());
                out.extend(self.stops_with(other, active));
            }
        }
        out.remove(starting);
        out.into_iter().collect()
    }
}
