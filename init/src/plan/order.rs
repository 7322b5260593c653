//! The ordering graph: `After=` and `Before=` as one set of edges
//! "u starts before v", cycle detection (Tarjan's strongly connected
//! components, iterative so long chains cannot overflow the stack) and
//! deterministic cycle breaking.
//!
//! Cycle breaking: while a strongly connected component with more than one
//! unit exists, take its lexicographically smallest unit, find the shortest
//! cycle through it (successors visited in name order), report it, and drop
//! one ordering edge of that cycle: the edge pointing to the weakest unit,
//! i.e. the one pulled in only by `Wants=` rather than by `Requires=` or as
//! the goal, and among equals the lexicographically greatest name. That
//! unit then no longer waits for its predecessor in the cycle; nothing is
//! removed from the transaction. All choices depend on names and pull
//! strengths only, never on input order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use super::Node;

/// An ordering cycle that was found and broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The cycle in start order, closed: `[a, b, a]` means a is ordered
    /// before b and b before a.
    pub units: Vec<String>,
    /// The dropped edge: `dropped.0` no longer has to start before
    /// `dropped.1`.
    pub dropped: (String, String),
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ordering cycle: {}; dropped the ordering of {} after {}",
            self.units.join(" -> "),
            self.dropped.1,
            self.dropped.0
        )
    }
}

/// Ordering edges between a set of units; node indices follow name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Graph {
    pub names: Vec<String>,
    index: BTreeMap<String, usize>,
    /// `succ[u]` holds every v that u starts before.
    pub succ: Vec<BTreeSet<usize>>,
    /// `pred[v]` holds every u that v starts after.
    pub pred: Vec<BTreeSet<usize>>,
}

impl Graph {
    /// The ordering among `members`; edges to units outside are ignored,
    /// members without a node have no edges.
    pub fn build<'a>(
        db: &BTreeMap<String, Node>,
        members: impl IntoIterator<Item = &'a String>,
    ) -> Graph {
        let set: BTreeSet<&String> = members.into_iter().collect();
        let names: Vec<String> = set.into_iter().cloned().collect();
        let index: BTreeMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let mut graph = Graph {
            succ: vec![BTreeSet::new(); names.len()],
            pred: vec![BTreeSet::new(); names.len()],
            names,
            index,
        };
        for (i, name) in graph.names.clone().iter().enumerate() {
            let Some(node) = db.get(name) else {
                continue;
            };
            for other in &node.after {
                if let Some(&j) = graph.index.get(other) {
                    graph.add_edge(j, i);
                }
            }
            for other in &node.before {
                if let Some(&j) = graph.index.get(other) {
                    graph.add_edge(i, j);
                }
            }
        }
        graph
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    fn add_edge(&mut self, from: usize, to: usize) {
        if from != to {
            self.succ[from].insert(to);
            self.pred[to].insert(from);
        }
    }

    fn remove_edge(&mut self, from: usize, to: usize) {
        self.succ[from].remove(&to);
        self.pred[to].remove(&from);
    }

    /// Strongly connected components with more than one unit, each sorted,
    /// in order of their smallest member.
    pub fn cycles_sccs(&self) -> Vec<Vec<usize>> {
        let n = self.names.len();
        let mut counter = 0;
        let mut indices: Vec<Option<usize>> = vec![None; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut out = Vec::new();
        for start in 0..n {
            if indices[start].is_some() {
                continue;
            }
            let mut calls: Vec<(usize, Vec<usize>, usize)> = Vec::new();
            indices[start] = Some(counter);
            low[start] = counter;
            counter += 1;
            stack.push(start);
            on_stack[start] = true;
            calls.push((start, self.succ[start].iter().copied().collect(), 0));
            while let Some(frame) = calls.last_mut() {
                let v = frame.0;
                if let Some(&w) = frame.1.get(frame.2) {
                    frame.2 += 1;
                    match indices[w] {
                        None => {
                            indices[w] = Some(counter);
                            low[w] = counter;
                            counter += 1;
                            stack.push(w);
                            on_stack[w] = true;
                            calls.push((w, self.succ[w].iter().copied().collect(), 0));
                        }
                        Some(index_w) if on_stack[w] => low[v] = low[v].min(index_w),
                        Some(_) => {}
                    }
                    continue;
                }
                calls.pop();
                if let Some(parent) = calls.last() {
                    low[parent.0] = low[parent.0].min(low[v]);
                }
                if Some(low[v]) == indices[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort_unstable();
                        out.push(component);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The shortest cycle through the smallest unit of `component`.
    fn cycle_in(&self, component: &[usize]) -> Vec<usize> {
        let members: BTreeSet<usize> = component.iter().copied().collect();
        let Some(&start) = component.first() else {
            return Vec::new();
        };
        let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(u) = queue.pop_front() {
            for &w in &self.succ[u] {
                if !members.contains(&w) {
                    continue;
                }
                if w == start {
                    let mut path = vec![u];
                    let mut at = u;
                    while at != start {
                        let Some(&up) = parent.get(&at) else {
                            return Vec::new();
                        };
                        at = up;
                        path.push(at);
                    }
                    path.reverse();
                    path.push(start);
                    return path;
                }
                if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(w) {
                    e.insert(u);
                    queue.push_back(w);
                }
            }
        }
        Vec::new()
    }

    /// Breaks every cycle (see the module documentation); `weakness` ranks
    /// units, greater is weaker. Returns the cycles in the order found.
    pub fn break_cycles<K: Ord>(&mut self, weakness: impl Fn(&str) -> K) -> Vec<Cycle> {
        let mut found = Vec::new();
        loop {
            let components = self.cycles_sccs();
            let Some(component) = components.first() else {
                return found;
            };
            let cycle = self.cycle_in(component);
            let edge = cycle
                .windows(2)
                .map(|w| (w[0], w[1]))
                .max_by_key(|&(_, to)| (weakness(&self.names[to]), to));
            let Some((from, to)) = edge else {
                // Cannot happen for a component of two or more units; stop
                // rather than loop.
                return found;
            };
            self.remove_edge(from, to);
            found.push(Cycle {
                units: cycle.iter().map(|&i| self.names[i].clone()).collect(),
                dropped: (self.names[from].clone(), self.names[to].clone()),
            });
        }
    }

    /// Parallel layers: every unit comes after all its predecessors (or,
    /// with `reverse`, after all its successors). Units left on a cycle,
    /// which `break_cycles` prevents, form a last layer.
    pub fn layers(&self, reverse: bool) -> Vec<Vec<String>> {
        let (before, after) = if reverse {
            (&self.succ, &self.pred)
        } else {
            (&self.pred, &self.succ)
        };
        let mut waiting: Vec<usize> = before.iter().map(BTreeSet::len).collect();
        let mut current: Vec<usize> = (0..self.names.len()).filter(|&i| waiting[i] == 0).collect();
        let mut done = vec![false; self.names.len()];
        let mut layers = Vec::new();
        while !current.is_empty() {
            let mut next = Vec::new();
            for &u in &current {
                done[u] = true;
                for &w in &after[u] {
                    waiting[w] -= 1;
                    if waiting[w] == 0 {
                        next.push(w);
                    }
                }
            }
            layers.push(current.iter().map(|&i| self.names[i].clone()).collect());
            next.sort_unstable();
            current = next;
        }
        let rest: Vec<String> = (0..self.names.len())
            .filter(|&i| !done[i])
            .map(|i| self.names[i].clone())
            .collect();
        if !rest.is_empty() {
            layers.push(rest);
        }
        layers
    }
}
