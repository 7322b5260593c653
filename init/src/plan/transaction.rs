//! The boot transaction: every unit the goal pulls in, and why.
//!
//! Rules:
//! - `Requires=` and `Wants=` pull units in, recursively. Each unit keeps
//!   the best chain that reached it: the strongest first (the goal, then a
//!   chain made only of `Requires=`, then a chain with at least one
//!   `Wants=`), then the shortest, then the lexicographically smallest.
//! - `Requisite=` does not pull anything in (as in systemd): the unit fails
//!   when its requisite is neither loaded nor part of the transaction.
//! - A missing `Requires=` unit fails the requirer, with the chain in the
//!   reason; the requirer stays in the transaction (as failed) but pulls
//!   nothing in. A missing `Wants=` unit is a warning.
//! - `Conflicts=` (either direction) between two units of the transaction:
//!   the unit with the better chain (stronger, then nearer, then smaller
//!   name) wins, the other is dropped from the transaction with a message;
//!   units that require the dropped one fail, units only it pulled in go.
//!   Conflicts are resolved one at a time, the pair with the strongest
//!   winner first, and the transaction is recomputed after each.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::{Node, PlanError, Units};

/// How strongly the goal pulls a unit in; smaller is stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strength {
    /// The goal itself.
    Goal,
    /// Reached through `Requires=` only.
    Required,
    /// Reached through at least one `Wants=`.
    Wanted,
}

/// Why a unit is in the transaction. Orders from best to worst.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pull {
    pub strength: Strength,
    /// Number of dependency edges from the goal.
    pub depth: usize,
    /// The goal, ..., the unit.
    pub chain: Vec<String>,
}

impl Pull {
    /// The chain as text: `multi-user.target -> a.service -> b.service`.
    pub fn chain_text(&self) -> String {
        self.chain.join(" -> ")
    }
}

/// The units a goal pulls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub goal: String,
    /// Every unit that takes part, failed ones included.
    pub units: BTreeMap<String, Pull>,
    /// Units that fail before anything starts, with the reason.
    pub failed: BTreeMap<String, String>,
    /// Units dropped because of a conflict, with the reason.
    pub dropped: BTreeMap<String, String>,
    /// Missing wanted units and conflict resolutions, for the console.
    pub warnings: Vec<String>,
}

impl Transaction {
    /// Builds the transaction of `goal` over `units` (default dependencies
    /// applied).
    pub fn build(units: &Units, goal: &str) -> Result<Transaction, PlanError> {
        build_effective(&units.effective(), goal)
    }
}

pub(super) fn build_effective(
    db: &BTreeMap<String, Node>,
    goal: &str,
) -> Result<Transaction, PlanError> {
    if !db.contains_key(goal) {
        return Err(PlanError::GoalNotFound(goal.to_owned()));
    }
    let mut dropped: BTreeMap<String, String> = BTreeMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut conflict_messages = Vec::new();
    // Every round adds to `failed` or `dropped`, so this ends.
    loop {
        let (units, missing_wanted) = pull(db, goal, &dropped, &failed);
        let new_failures = requirement_failures(db, &units, &dropped, &failed);
        if !new_failures.is_empty() {
            failed.extend(new_failures);
            continue;
        }
        if let Some((winner, loser)) = first_conflict(db, &units) {
            let message = format!(
                "{loser} conflicts with {winner}: keeping {winner} (pulled in by {}), dropping {loser} (pulled in by {})",
                units[&winner].chain_text(),
                units[&loser].chain_text(),
            );
            conflict_messages.push(message);
            dropped.insert(loser, format!("conflicts with {winner}"));
            continue;
        }
        let mut warnings = missing_wanted;
        warnings.extend(conflict_messages);
        return Ok(Transaction {
            goal: goal.to_owned(),
            units,
            failed,
            dropped,
            warnings,
        });
    }
}

/// Best-chain search (Dijkstra over (strength, depth, chain), which only
/// grows along a path). Failed units are not expanded; dropped units are
/// skipped. Returns the units and the missing-wanted warnings.
fn pull(
    db: &BTreeMap<String, Node>,
    goal: &str,
    dropped: &BTreeMap<String, String>,
    failed: &BTreeMap<String, String>,
) -> (BTreeMap<String, Pull>, Vec<String>) {
    let mut best: BTreeMap<String, Pull> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut heap = BinaryHeap::new();
    heap.push(Reverse(Pull {
        strength: Strength::Goal,
        depth: 0,
        chain: vec![goal.to_owned()],
    }));
    while let Some(Reverse(current)) = heap.pop() {
        let Some(name) = current.chain.last().cloned() else {
            continue;
        };
        if best.contains_key(&name) {
            continue;
        }
        best.insert(name.clone(), current.clone());
        if failed.contains_key(&name) {
            continue;
        }
        let Some(node) = db.get(&name) else {
            continue;
        };
        let edges = [
            (&node.requires, Strength::Required),
            (&node.wants, Strength::Wanted),
        ];
        for (deps, strength) in edges {
            for dep in deps {
                if !db.contains_key(dep) {
                    if strength == Strength::Wanted {
                        warnings.push(format!(
                            "wanted unit {dep} not found ({} -> {dep})",
                            current.chain_text()
                        ));
                    }
                    continue;
                }
                if dropped.contains_key(dep) || best.contains_key(dep) {
                    continue;
                }
                let mut chain = current.chain.clone();
                chain.push(dep.clone());
                heap.push(Reverse(Pull {
                    strength: current.strength.max(strength),
                    depth: current.depth + 1,
                    chain,
                }));
            }
        }
    }
    (best, warnings)
}

/// Units that cannot start because a `Requires=` unit is missing or
/// dropped, or a `Requisite=` unit is missing or not in the transaction.
fn requirement_failures(
    db: &BTreeMap<String, Node>,
    units: &BTreeMap<String, Pull>,
    dropped: &BTreeMap<String, String>,
    failed: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, pull) in units {
        if failed.contains_key(name) {
            continue;
        }
        let Some(node) = db.get(name) else {
            continue;
        };
        let chain = pull.chain_text();
        let reason = node
            .requires
            .iter()
            .find_map(|dep| {
                if !db.contains_key(dep) {
                    Some(format!("required unit {dep} not found ({chain} -> {dep})"))
                } else {
                    dropped
                        .get(dep)
                        .map(|why| format!("dependency failed: {dep} ({why})"))
                }
            })
            .or_else(|| {
                node.requisite.iter().find_map(|dep| {
                    if !db.contains_key(dep) {
                        Some(format!("requisite unit {dep} not found ({chain} -> {dep})"))
                    } else if !units.contains_key(dep) {
                        Some(format!(
                            "requisite unit {dep} is not part of the transaction ({chain})"
                        ))
                    } else {
                        None
                    }
                })
            });
        if let Some(reason) = reason {
            out.insert(name.clone(), reason);
        }
    }
    out
}

/// The conflict to resolve first: (winner, loser), the pair with the best
/// winner, then the best loser.
fn first_conflict(
    db: &BTreeMap<String, Node>,
    units: &BTreeMap<String, Pull>,
) -> Option<(String, String)> {
    let mut pairs = Vec::new();
    for (name, pull) in units {
        let Some(node) = db.get(name) else {
            continue;
        };
        for other in &node.conflicts {
            let Some(other_pull) = units.get(other) else {
                continue;
            };
            let (winner, loser) = if (pull, name) < (other_pull, other) {
                ((pull, name), (other_pull, other))
            } else {
                ((other_pull, other), (pull, name))
            };
            pairs.push((winner, loser));
        }
    }
    pairs
        .into_iter()
        .min()
        .map(|((_, winner), (_, loser))| (winner.clone(), loser.clone()))
}
