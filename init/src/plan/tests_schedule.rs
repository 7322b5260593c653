//! Tests of the scheduler API, including a property test over random DAGs.

use std::collections::BTreeMap;

use super::tests::{bare, goal, list, run, svc, tgt, Lcg, NodeExt};
use super::*;

#[test]
fn requires_failure_propagates_wants_failure_does_not() {
    let units: Units = [
        goal().wants(&[
            "a.service",
            "b.service",
            "c.service",
            "w.service",
            "x.service",
        ]),
        bare("a.service"),
        bare("b.service")
            .requires(&["a.service"])
            .after(&["a.service"]),
        bare("c.service")
            .requires(&["b.service"])
            .after(&["b.service"]),
        bare("w.service")
            .wants(&["a.service"])
            .after(&["a.service"]),
        // Waits for c (After=) without requiring it: still starts.
        bare("x.service").after(&["c.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    let layers = run(&mut plan, |name| match name {
        "a.service" => Outcome::Failed("exit status 1".to_owned()),
        _ => Outcome::Active,
    });
    assert_eq!(
        layers,
        vec![list(&["a.service"]), list(&["w.service", "x.service"])]
    );
    assert_eq!(
        plan.failed(),
        vec![
            ("a.service".to_owned(), "exit status 1".to_owned()),
            (
                "b.service".to_owned(),
                "dependency failed: a.service".to_owned()
            ),
            (
                "c.service".to_owned(),
                "dependency failed: b.service".to_owned()
            ),
        ]
    );
    assert_eq!(plan.state("w.service"), Some(&State::Active));
    assert!(plan.is_complete());
}

#[test]
fn requires_failure_fails_unstarted_units_even_without_ordering() {
    let units: Units = [
        goal().wants(&["a.service", "b.service", "slow.service"]),
        bare("a.service"),
        bare("slow.service"),
        bare("b.service")
            .requires(&["a.service"])
            .after(&["slow.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    assert_eq!(plan.ready(), list(&["a.service", "slow.service"]));
    plan.started("a.service").unwrap();
    plan.finished("a.service", Outcome::Failed("killed".to_owned()))
        .unwrap();
    assert_eq!(
        plan.state("b.service"),
        Some(&State::Failed("dependency failed: a.service".to_owned()))
    );
    assert_eq!(plan.ready(), list(&["slow.service"]));
}

#[test]
fn skipped_units_do_not_fail_their_dependents() {
    let units: Units = [
        goal().wants(&["b.service"]),
        bare("a.service"),
        bare("b.service")
            .requires(&["a.service"])
            .after(&["a.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    run(&mut plan, |name| match name {
        "a.service" => Outcome::Skipped("ConditionPathExists=/etc/a".to_owned()),
        _ => Outcome::Active,
    });
    assert_eq!(
        plan.state("a.service"),
        Some(&State::Skipped("ConditionPathExists=/etc/a".to_owned()))
    );
    assert_eq!(plan.state("b.service"), Some(&State::Active));
    assert!(plan.failed().is_empty());
}

#[test]
fn oneshot_successors_wait_until_it_exits() {
    let units: Units = [
        goal().wants(&["setup.service", "app.service"]),
        bare("setup.service").oneshot(),
        bare("app.service").after(&["setup.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    assert!(plan.is_oneshot("setup.service"));
    assert!(!plan.is_oneshot("app.service"));
    assert_eq!(plan.ready(), list(&["setup.service"]));
    plan.started("setup.service").unwrap();
    // Running, not exited: app must wait.
    assert!(plan.ready().is_empty());
    assert!(!plan.is_complete());
    plan.finished("setup.service", Outcome::Active).unwrap();
    assert_eq!(plan.ready(), list(&["app.service"]));
}

#[test]
fn api_errors_name_the_unit() {
    let units: Units = [
        goal().wants(&["a.service", "b.service"]),
        bare("a.service"),
        bare("b.service").after(&["a.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    assert_eq!(
        plan.started("nope.service").unwrap_err().to_string(),
        "unit nope.service is not part of the plan"
    );
    assert_eq!(
        plan.started("b.service").unwrap_err().to_string(),
        "unit b.service cannot be started: it is waiting for a.service"
    );
    plan.started("a.service").unwrap();
    assert_eq!(
        plan.started("a.service").unwrap_err().to_string(),
        "unit a.service cannot be started: it is started"
    );
    plan.finished("a.service", Outcome::Active).unwrap();
    assert_eq!(
        plan.finished("a.service", Outcome::Active)
            .unwrap_err()
            .to_string(),
        "unit a.service cannot finish: it is already active"
    );
    // A unit may be skipped without being started.
    plan.finished("b.service", Outcome::Skipped("condition".to_owned()))
        .unwrap();
    assert!(plan.is_complete());
}

#[test]
fn default_boot_orders_services_between_targets() {
    let units: Units = [
        tgt(MULTI_USER_TARGET)
            .requires(&[BASIC_TARGET])
            .after(&[BASIC_TARGET])
            .wants(&["ssh.service", "dhcpcd.service", "containerd.service"]),
        svc("dhcpcd.service")
            .wants(&[NETWORK_TARGET])
            .before(&[NETWORK_TARGET]),
        svc("ssh.service").after(&[NETWORK_TARGET]),
        svc("containerd.service").after(&[NETWORK_TARGET, "local-fs.target"]),
        svc("early.service")
            .no_defaults()
            .before(&[SYSINIT_TARGET])
            .oneshot(),
        tgt(SYSINIT_TARGET).wants(&["early.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, MULTI_USER_TARGET).unwrap();
    assert!(plan.cycles().is_empty(), "{:?}", plan.cycles());
    assert!(plan.warnings().is_empty(), "{:?}", plan.warnings());
    assert_eq!(plan.state(SYSINIT_TARGET), Some(&State::Waiting));
    let layers = run(&mut plan, |_| Outcome::Active);
    assert_eq!(
        layers,
        vec![
            list(&["early.service"]),
            list(&["dhcpcd.service"]),
            list(&["containerd.service", "ssh.service"]),
        ]
    );
    assert!(plan.is_complete());
    assert_eq!(plan.state(MULTI_USER_TARGET), Some(&State::Active));
}

#[test]
fn multi_user_waits_for_its_services() {
    let units: Units = [
        tgt(MULTI_USER_TARGET)
            .requires(&[BASIC_TARGET])
            .after(&[BASIC_TARGET])
            .wants(&["a.service"]),
        svc("a.service"),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, MULTI_USER_TARGET).unwrap();
    assert_eq!(plan.state(BASIC_TARGET), Some(&State::Active));
    assert_eq!(plan.ready(), list(&["a.service"]));
    plan.started("a.service").unwrap();
    assert_eq!(plan.state(MULTI_USER_TARGET), Some(&State::Waiting));
    plan.finished("a.service", Outcome::Active).unwrap();
    assert_eq!(plan.state(MULTI_USER_TARGET), Some(&State::Active));
}

/// A random DAG: edges only go from lower to higher positions of a random
/// permutation, as After= or Before=; random Requires=/Wants=.
fn random_units(rng: &mut Lcg, n: usize) -> Vec<Node> {
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let name = |i: usize| format!("u{i:03}.service");
    let mut nodes: Vec<Node> = (0..n).map(|i| bare(&name(i))).collect();
    for pos in 1..n {
        let later = order[pos];
        for _ in 0..rng.below(4) {
            let earlier = order[rng.below(pos)];
            if rng.below(2) == 0 {
                nodes[later].after.push(name(earlier));
            } else {
                nodes[earlier].before.push(name(later));
            }
            match rng.below(4) {
                0 => nodes[later].requires.push(name(earlier)),
                1 => nodes[later].wants.push(name(earlier)),
                _ => {}
            }
        }
    }
    for node in &mut nodes {
        node.oneshot = rng.below(3) == 0;
    }
    let mut g = goal();
    g.wants = (0..n).filter(|_| rng.below(2) == 0).map(name).collect();
    nodes.push(g);
    nodes
}

#[test]
fn property_no_unit_starts_before_its_predecessors_are_final() {
    for seed in 0..60u64 {
        let mut rng = Lcg(seed * 7919 + 1);
        let n = 5 + rng.below(60);
        let nodes = random_units(&mut rng, n);
        let mut predecessors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for node in &nodes {
            for a in &node.after {
                predecessors
                    .entry(node.name.clone())
                    .or_default()
                    .push(a.clone());
            }
            for b in &node.before {
                predecessors
                    .entry(b.clone())
                    .or_default()
                    .push(node.name.clone());
            }
        }
        let units: Units = nodes.into_iter().collect();
        let mut plan = Plan::new(&units, "goal.target").unwrap();
        assert!(plan.cycles().is_empty(), "seed {seed}");
        let mut running: Vec<String> = Vec::new();
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "seed {seed}: no progress");
            // Start a random non-empty subset of the ready units.
            let ready = plan.ready();
            for name in &ready {
                if rng.below(2) == 0 && !running.is_empty() {
                    continue;
                }
                for pred in predecessors.get(name).into_iter().flatten() {
                    if let Some(state) = plan.state(pred) {
                        assert!(
                            state.is_final(),
                            "seed {seed}: {name} ready while {pred} is {state}"
                        );
                    }
                }
                plan.started(name).unwrap();
                running.push(name.clone());
            }
            if running.is_empty() {
                break;
            }
            // Finish one running unit, chosen at random.
            let name = running.swap_remove(rng.below(running.len()));
            let outcome = match rng.below(10) {
                0 => Outcome::Failed("exit status 1".to_owned()),
                1 => Outcome::Skipped("condition".to_owned()),
                _ => Outcome::Active,
            };
            plan.finished(&name, outcome).unwrap();
        }
        assert!(plan.is_complete(), "seed {seed}");
        // Every unit ordered after a required unit that failed has failed.
        for name in plan.units() {
            let Some(node) = units.get(name) else {
                continue;
            };
            for dep in &node.requires {
                if let Some(State::Failed(_)) = plan.state(dep) {
                    if node.after.contains(dep) {
                        assert!(
                            matches!(plan.state(name), Some(State::Failed(_))),
                            "seed {seed}: {name} not failed although {dep} failed"
                        );
                    }
                }
            }
        }
    }
}
