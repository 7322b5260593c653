//! Tests of the ordering graph, cycle breaking and stopping.

use super::tests::{bare, goal, list, run, svc, tgt, Lcg, NodeExt};
use super::*;

fn diamond() -> Units {
    [
        goal().wants(&["a.service", "b.service", "c.service", "d.service"]),
        // Before= on the other side is the same edge as After=.
        bare("a.service").before(&["c.service"]),
        bare("b.service").after(&["a.service"]),
        bare("c.service"),
        bare("d.service").after(&["b.service", "c.service"]),
        // Not pulled in: its ordering does not matter.
        bare("x.service").before(&["a.service"]),
    ]
    .into_iter()
    .collect()
}

#[test]
fn diamond_runs_in_parallel_layers() {
    let mut plan = Plan::new(&diamond(), "goal.target").unwrap();
    assert_eq!(
        plan.start_layers(),
        vec![
            // DefaultDependencies=no: the goal is not ordered after them.
            list(&["a.service", "goal.target"]),
            list(&["b.service", "c.service"]),
            list(&["d.service"]),
        ]
    );
    let layers = run(&mut plan, |_| Outcome::Active);
    assert_eq!(
        layers,
        vec![
            list(&["a.service"]),
            list(&["b.service", "c.service"]),
            list(&["d.service"]),
        ]
    );
    assert!(plan.is_complete());
    assert_eq!(plan.state("goal.target"), Some(&State::Active));
}

#[test]
fn long_chain_does_not_overflow() {
    let n = 20_000;
    let name = |i: usize| format!("u{i:05}.service");
    let mut units = Units::empty();
    let all: Vec<String> = (0..n).map(name).collect();
    let mut g = goal();
    g.wants = all.clone();
    units.insert(g);
    for i in 0..n {
        let mut node = bare(&name(i));
        if i > 0 {
            node.after.push(name(i - 1));
        }
        // Close one huge cycle: the last unit before the first.
        if i == n - 1 {
            node.before.push(name(0));
        }
        units.insert(node);
    }
    let plan = Plan::new(&units, "goal.target").unwrap();
    assert_eq!(plan.cycles().len(), 1);
    let cycle = &plan.cycles()[0];
    assert_eq!(cycle.units.len(), n + 1);
    assert_eq!(cycle.units.first(), Some(&name(0)));
    // All wanted: the edge to the greatest name goes.
    assert_eq!(cycle.dropped, (name(n - 2), name(n - 1)));
    assert_eq!(plan.start_layers().len(), n);
    assert_eq!(plan.ready(), vec![name(n - 1)]);
}

#[test]
fn two_unit_cycle_is_reported_and_broken() {
    let units: Units = [
        goal().wants(&["a.service", "b.service"]),
        bare("a.service").after(&["b.service"]),
        bare("b.service").after(&["a.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    assert_eq!(plan.cycles().len(), 1);
    assert_eq!(
        plan.warnings(),
        ["ordering cycle: a.service -> b.service -> a.service; dropped the ordering of b.service after a.service"]
    );
    assert_eq!(
        run(&mut plan, |_| Outcome::Active),
        vec![list(&["b.service"]), list(&["a.service"])]
    );
    assert!(plan.is_complete());
}

#[test]
fn cycle_breaking_prefers_the_wanted_unit() {
    // b is required and its name is greater, but a is only wanted: the
    // edge pointing to a goes.
    let units: Units = [
        goal().requires(&["b.service"]).wants(&["a.service"]),
        bare("a.service").after(&["b.service"]),
        bare("b.service").after(&["a.service"]),
    ]
    .into_iter()
    .collect();
    let plan = Plan::new(&units, "goal.target").unwrap();
    assert_eq!(
        plan.cycles()[0].dropped,
        ("b.service".to_owned(), "a.service".to_owned())
    );
    assert_eq!(plan.ready(), list(&["a.service"]));
}

#[test]
fn default_dependency_cycle_is_broken_at_the_wanted_service() {
    // Before=basic.target contradicts the default After=basic.target.
    let units: Units = [
        tgt(MULTI_USER_TARGET)
            .requires(&[BASIC_TARGET])
            .after(&[BASIC_TARGET])
            .wants(&["early.service"]),
        svc("early.service").before(&[BASIC_TARGET]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, MULTI_USER_TARGET).unwrap();
    assert_eq!(
        plan.warnings(),
        ["ordering cycle: basic.target -> early.service -> basic.target; dropped the ordering of early.service after basic.target"]
    );
    assert_eq!(plan.state(BASIC_TARGET), Some(&State::Waiting));
    assert_eq!(
        run(&mut plan, |_| Outcome::Active),
        vec![list(&["early.service"])]
    );
    assert!(plan.is_complete());
}

#[test]
fn self_ordering_is_ignored() {
    let units: Units = [
        goal().wants(&["a.service"]),
        bare("a.service")
            .after(&["a.service"])
            .before(&["a.service"]),
    ]
    .into_iter()
    .collect();
    let plan = Plan::new(&units, "goal.target").unwrap();
    assert!(plan.cycles().is_empty());
    assert_eq!(plan.ready(), list(&["a.service"]));
}

/// Several intertwined cycles, with requires and wants.
fn tangled() -> Vec<Node> {
    vec![
        goal()
            .wants(&["a.service", "c.service", "e.service"])
            .requires(&["b.service"]),
        bare("a.service")
            .after(&["b.service"])
            .wants(&["d.service"]),
        bare("b.service").after(&["c.service"]),
        bare("c.service").after(&["a.service", "e.service"]),
        bare("d.service")
            .before(&["a.service"])
            .after(&["e.service"]),
        bare("e.service")
            .after(&["d.service"])
            .before(&["b.service"]),
    ]
}

fn shuffled(seed: u64) -> Units {
    let mut rng = Lcg(seed);
    let mut nodes = tangled();
    for node in &mut nodes {
        rng.shuffle(&mut node.after);
        rng.shuffle(&mut node.before);
        rng.shuffle(&mut node.wants);
        rng.shuffle(&mut node.requires);
    }
    rng.shuffle(&mut nodes);
    let mut units = Units::empty();
    for node in nodes {
        units.insert(node);
    }
    units
}

#[test]
fn cycle_breaking_is_deterministic() {
    let reference = Plan::new(&shuffled(0), "goal.target").unwrap();
    assert!(reference.cycles().len() >= 2, "{:?}", reference.cycles());
    for cycle in reference.cycles() {
        assert_eq!(cycle.units.first(), cycle.units.last());
    }
    for seed in 1..50 {
        let plan = Plan::new(&shuffled(seed), "goal.target").unwrap();
        assert_eq!(plan.cycles(), reference.cycles(), "seed {seed}");
        assert_eq!(plan.warnings(), reference.warnings(), "seed {seed}");
        assert_eq!(plan.start_layers(), reference.start_layers(), "seed {seed}");
    }
    let mut plan = reference.clone();
    let layers = run(&mut plan, |_| Outcome::Active);
    assert_eq!(layers.concat().len(), 5);
    assert!(plan.is_complete());
}

#[test]
fn stop_order_reverses_start_order() {
    let plan = Plan::new(&diamond(), "goal.target").unwrap();
    let active = list(&["d.service", "c.service", "b.service", "a.service"]);
    assert_eq!(
        plan.stop_order(&active),
        vec![
            list(&["d.service"]),
            list(&["b.service", "c.service"]),
            list(&["a.service"]),
        ]
    );
    // Only direct ordering between active units counts (as in systemd);
    // unknown units have no ordering.
    let active = list(&["a.service", "c.service", "manual.service"]);
    assert_eq!(
        plan.stop_order(&active),
        vec![list(&["c.service", "manual.service"]), list(&["a.service"])]
    );
    let active = list(&["a.service", "d.service"]);
    assert_eq!(
        plan.stop_order(&active),
        vec![list(&["a.service", "d.service"])]
    );
}

#[test]
fn stop_propagates_through_requires_and_part_of() {
    let units: Units = [
        goal().wants(&["db.service", "app.service", "web.service", "side.service"]),
        bare("db.service"),
        bare("app.service").requires(&["db.service"]),
        bare("web.service").part_of(&["app.service"]),
        bare("side.service").wants(&["db.service"]),
        bare("check.service").requisite(&["web.service"]),
    ]
    .into_iter()
    .collect();
    let plan = Plan::new(&units, "goal.target").unwrap();
    let active = list(&[
        "db.service",
        "app.service",
        "web.service",
        "side.service",
        "check.service",
    ]);
    assert_eq!(
        plan.stops_with("db.service", &active),
        list(&["app.service", "check.service", "web.service"])
    );
    assert_eq!(
        plan.restarts_with("app.service", &active),
        list(&["check.service", "web.service"])
    );
    assert!(plan.stops_with("side.service", &active).is_empty());
    // Inactive units are not listed.
    assert_eq!(
        plan.stops_with("db.service", &list(&["db.service", "web.service"])),
        Vec::<String>::new()
    );
}

#[test]
fn conflicts_stop_the_other_side() {
    let units: Units = [
        goal(),
        bare("a.service"),
        bare("a-user.service").part_of(&["a.service"]),
        bare("b.service").conflicts(&["a.service"]),
        bare("c.service"),
    ]
    .into_iter()
    .collect();
    let plan = Plan::new(&units, "goal.target").unwrap();
    let active = list(&["a.service", "a-user.service", "c.service"]);
    assert_eq!(
        plan.conflicts_to_stop("b.service", &active),
        list(&["a-user.service", "a.service"])
    );
    // The other direction: a's own Conflicts= is not needed.
    let active = list(&["b.service", "c.service"]);
    assert_eq!(
        plan.conflicts_to_stop("a.service", &active),
        list(&["b.service"])
    );
}

#[test]
fn shutdown_target_conflicts_with_default_units() {
    let units: Units = [
        svc("a.service"),
        svc("b.service").after(&["a.service"]),
        svc("raw.service").no_defaults(),
    ]
    .into_iter()
    .collect();
    let plan = Plan::new(&units, MULTI_USER_TARGET).unwrap();
    let active = list(&[
        "a.service",
        "b.service",
        "raw.service",
        SYSINIT_TARGET,
        BASIC_TARGET,
        MULTI_USER_TARGET,
    ]);
    assert_eq!(
        plan.conflicts_to_stop(SHUTDOWN_TARGET, &active),
        list(&[
            "a.service",
            "b.service",
            BASIC_TARGET,
            MULTI_USER_TARGET,
            SYSINIT_TARGET
        ])
    );
    assert_eq!(
        plan.stop_order(&active),
        vec![
            list(&["b.service", MULTI_USER_TARGET, "raw.service"]),
            list(&["a.service"]),
            list(&[BASIC_TARGET]),
            list(&[SYSINIT_TARGET]),
        ]
    );
}

/// Random graphs with cycles: every reported cycle is made of real
/// ordering edges, the dropped edge is on it, no cycle survives (every unit
/// gets to start), and the result does not depend on input order.
#[test]
fn random_cycles_are_real_broken_and_deterministic() {
    use std::collections::BTreeSet;
    for seed in 0..40u64 {
        let mut rng = Lcg(seed * 104_729 + 3);
        let n = 3 + rng.below(25);
        let name = |i: usize| format!("r{i:02}.service");
        let mut nodes: Vec<Node> = (0..n).map(|i| bare(&name(i))).collect();
        let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
        for _ in 0..rng.below(3 * n) + 1 {
            let (u, v) = (rng.below(n), rng.below(n));
            if u == v {
                continue;
            }
            // u starts before v.
            if rng.below(2) == 0 {
                nodes[v].after.push(name(u));
            } else {
                nodes[u].before.push(name(v));
            }
            edges.insert((name(u), name(v)));
            if rng.below(3) == 0 {
                nodes[v].requires.push(name(u));
            }
        }
        let mut g = goal();
        g.wants = (0..n).map(name).collect();
        g.requires = (0..n).filter(|_| rng.below(3) == 0).map(name).collect();
        nodes.push(g);
        let reference = {
            let units: Units = nodes.clone().into_iter().collect();
            Plan::new(&units, "goal.target").unwrap()
        };
        for cycle in reference.cycles() {
            assert!(cycle.units.len() >= 3, "seed {seed}: {cycle}");
            assert_eq!(cycle.units.first(), cycle.units.last());
            for pair in cycle.units.windows(2) {
                let edge = (pair[0].clone(), pair[1].clone());
                assert!(
                    edges.contains(&edge),
                    "seed {seed}: {cycle}: no edge {edge:?}"
                );
            }
            let on_cycle = cycle
                .units
                .windows(2)
                .any(|p| (p[0].clone(), p[1].clone()) == cycle.dropped);
            assert!(on_cycle, "seed {seed}: {cycle}");
        }
        for round in 0..5u64 {
            let mut shuffled = nodes.clone();
            let mut r = Lcg(seed ^ ((round + 1) * 31));
            for node in &mut shuffled {
                r.shuffle(&mut node.after);
                r.shuffle(&mut node.before);
            }
            r.shuffle(&mut shuffled);
            let units: Units = shuffled.into_iter().collect();
            let plan = Plan::new(&units, "goal.target").unwrap();
            assert_eq!(plan.cycles(), reference.cycles(), "seed {seed}");
            assert_eq!(plan.start_layers(), reference.start_layers(), "seed {seed}");
        }
        let mut plan = reference.clone();
        let started: usize = run(&mut plan, |_| Outcome::Active)
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(started, n, "seed {seed}");
        assert!(plan.is_complete(), "seed {seed}");
    }
}
