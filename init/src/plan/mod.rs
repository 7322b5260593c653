//! The start/stop planner: which units a boot pulls in, in which order they
//! start, and in which order they stop. Pure logic: no processes, no I/O.
//!
//! The input is a set of [`Node`]s (one per unit, mapped from the parsed unit
//! files) collected in [`Units`], which always holds the built-in targets
//! (see [`builtin_targets`]); a real unit file of the same name replaces a
//! built-in one. [`Plan::new`] then
//!
//! 1. applies `DefaultDependencies=yes` as systemd does (see
//!    `defaults.rs`),
//! 2. builds the transaction for the goal (see [`Transaction`]): `Requires=`
//!    and `Wants=` are followed recursively, `Requisite=` is checked but
//!    does not pull anything in, missing units and `Conflicts=` inside the
//!    transaction are resolved with a message,
//! 3. turns `After=`/`Before=` into one ordering graph, detects cycles with
//!    Tarjan's algorithm and breaks them deterministically (see [`Cycle`]),
//! 4. hands out units to the supervisor as their predecessors finish
//!    ([`Plan::ready`], [`Plan::started`], [`Plan::finished`]).
//!
//! Stopping is planned by [`Plan::stop_order`], [`Plan::stops_with`],
//! [`Plan::restarts_with`] and [`Plan::conflicts_to_stop`].

mod defaults;
mod order;
mod schedule;
mod stop;
mod transaction;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_order;
#[cfg(test)]
mod tests_schedule;

use std::collections::BTreeMap;

pub use defaults::{
    builtin_targets, BASIC_TARGET, LOCAL_FS_PRE_TARGET, LOCAL_FS_TARGET, MULTI_USER_TARGET,
    NETWORK_ONLINE_TARGET, NETWORK_PRE_TARGET, NETWORK_TARGET, SHUTDOWN_TARGET, SWAP_TARGET,
    SYSINIT_TARGET,
};
pub use order::Cycle;
pub use schedule::{Outcome, Plan, State};
pub use transaction::{Pull, Strength, Transaction};

/// What kind of unit a node is; services, targets, mounts and swaps get
/// default dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Service,
    Target,
    Mount,
    Swap,
    /// Any other unit type (socket, timer, ...): no default dependencies.
    Other,
}

/// One unit as the planner sees it. Dependency lists hold unit names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub kind: Kind,
    pub after: Vec<String>,
    pub before: Vec<String>,
    pub requires: Vec<String>,
    pub requisite: Vec<String>,
    pub wants: Vec<String>,
    pub part_of: Vec<String>,
    pub conflicts: Vec<String>,
    pub default_dependencies: bool,
    pub oneshot: bool,
}

impl Node {
    /// A node without dependencies and with `DefaultDependencies=yes`.
    pub fn new(name: impl Into<String>, kind: Kind) -> Node {
        Node {
            name: name.into(),
            kind,
            after: Vec::new(),
            before: Vec::new(),
            requires: Vec::new(),
            requisite: Vec::new(),
            wants: Vec::new(),
            part_of: Vec::new(),
            conflicts: Vec::new(),
            default_dependencies: true,
            oneshot: false,
        }
    }

    /// Sorts and deduplicates every list and drops references to itself,
    /// so that nothing downstream depends on the order of the input.
    fn normalize(&mut self) {
        let name = self.name.clone();
        for list in [
            &mut self.after,
            &mut self.before,
            &mut self.requires,
            &mut self.requisite,
            &mut self.wants,
            &mut self.part_of,
            &mut self.conflicts,
        ] {
            list.retain(|n| *n != name);
            list.sort();
            list.dedup();
        }
    }
}

/// Errors of the scheduler API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("goal unit {0} not found")]
    GoalNotFound(String),
    #[error("unit {0} is not part of the plan")]
    UnknownUnit(String),
    #[error("unit {name} cannot be started: it is {state}")]
    NotStartable { name: String, state: String },
    #[error("unit {name} cannot finish: it is already {state}")]
    AlreadyFinal { name: String, state: String },
}

/// The unit database: built-in targets plus the units loaded from files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Units {
    nodes: BTreeMap<String, Node>,
}

impl Units {
    /// An empty database, without the built-in targets.
    pub fn empty() -> Units {
        Units::default()
    }

    /// A database holding the built-in targets.
    pub fn with_builtins() -> Units {
        let mut units = Units::empty();
        for node in builtin_targets() {
            units.insert(node);
        }
        units
    }

    /// Adds a unit; a unit of the same name (e.g. a built-in target that a
    /// real unit file overrides) is replaced and returned.
    pub fn insert(&mut self, node: Node) -> Option<Node> {
        self.nodes.insert(node.name.clone(), node)
    }

    pub fn get(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Unit names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// The nodes with normalized lists and default dependencies applied.
    fn effective(&self) -> BTreeMap<String, Node> {
        let mut nodes = self.nodes.clone();
        for node in nodes.values_mut() {
            node.normalize();
        }
        defaults::apply_default_dependencies(&mut nodes);
        for node in nodes.values_mut() {
            node.normalize();
        }
        nodes
    }
}

impl FromIterator<Node> for Units {
    /// Built-in targets first, then the given nodes (which override them).
    fn from_iter<I: IntoIterator<Item = Node>>(iter: I) -> Units {
        let mut units = Units::with_builtins();
        for node in iter {
            units.insert(node);
        }
        units
    }
}
