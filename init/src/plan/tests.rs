//! Tests of built-in targets, default dependencies and the transaction,
//! and helpers shared by the other test modules.

use super::*;

pub(super) fn list(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Builder methods for test nodes.
pub(super) trait NodeExt {
    fn after(self, names: &[&str]) -> Node;
    fn before(self, names: &[&str]) -> Node;
    fn requires(self, names: &[&str]) -> Node;
    fn requisite(self, names: &[&str]) -> Node;
    fn wants(self, names: &[&str]) -> Node;
    fn part_of(self, names: &[&str]) -> Node;
    fn conflicts(self, names: &[&str]) -> Node;
    fn no_defaults(self) -> Node;
    fn oneshot(self) -> Node;
}

impl NodeExt for Node {
    fn after(mut self, names: &[&str]) -> Node {
        self.after.extend(list(names));
        self
    }
    fn before(mut self, names: &[&str]) -> Node {
        self.before.extend(list(names));
        self
    }
    fn requires(mut self, names: &[&str]) -> Node {
        self.requires.extend(list(names));
        self
    }
    fn requisite(mut self, names: &[&str]) -> Node {
        self.requisite.extend(list(names));
        self
    }
    fn wants(mut self, names: &[&str]) -> Node {
        self.wants.extend(list(names));
        self
    }
    fn part_of(mut self, names: &[&str]) -> Node {
        self.part_of.extend(list(names));
        self
    }
    fn conflicts(mut self, names: &[&str]) -> Node {
        self.conflicts.extend(list(names));
        self
    }
    fn no_defaults(mut self) -> Node {
        self.default_dependencies = false;
        self
    }
    fn oneshot(mut self) -> Node {
        self.oneshot = true;
        self
    }
}

pub(super) fn svc(name: &str) -> Node {
    Node::new(name, Kind::Service)
}

pub(super) fn tgt(name: &str) -> Node {
    Node::new(name, Kind::Target)
}

/// A service without default dependencies, for graphs without built-ins.
pub(super) fn bare(name: &str) -> Node {
    svc(name).no_defaults()
}

/// A target without default dependencies, named goal.target.
pub(super) fn goal() -> Node {
    tgt("goal.target").no_defaults()
}

/// Starts every ready unit and finishes it as `outcome` says, layer by
/// layer; returns the layers the supervisor saw.
pub(super) fn run(plan: &mut Plan, outcome: impl Fn(&str) -> Outcome) -> Vec<Vec<String>> {
    let mut layers = Vec::new();
    loop {
        let ready = plan.ready();
        if ready.is_empty() {
            return layers;
        }
        for name in &ready {
            plan.started(name).unwrap();
        }
        for name in &ready {
            plan.finished(name, outcome(name)).unwrap();
        }
        layers.push(ready);
    }
}

#[test]
fn builtin_targets_always_exist() {
    let units = Units::with_builtins();
    let names: Vec<&str> = units.names().collect();
    for name in [
        SYSINIT_TARGET,
        BASIC_TARGET,
        NETWORK_PRE_TARGET,
        NETWORK_TARGET,
        NETWORK_ONLINE_TARGET,
        MULTI_USER_TARGET,
        SHUTDOWN_TARGET,
        LOCAL_FS_PRE_TARGET,
        LOCAL_FS_TARGET,
        SWAP_TARGET,
    ] {
        assert!(names.contains(&name), "{name} missing");
    }
    let plan = Plan::new(&units, MULTI_USER_TARGET).unwrap();
    // sysinit.target wants local-fs.target and swap.target (as systemd's);
    // local-fs-pre.target is only ordered against, not pulled in.
    assert_eq!(
        plan.units(),
        list(&[
            BASIC_TARGET,
            LOCAL_FS_TARGET,
            MULTI_USER_TARGET,
            SWAP_TARGET,
            SYSINIT_TARGET
        ])
    );
    assert_eq!(
        plan.start_layers(),
        vec![
            list(&[LOCAL_FS_TARGET, SWAP_TARGET]),
            list(&[SYSINIT_TARGET]),
            list(&[BASIC_TARGET]),
            list(&[MULTI_USER_TARGET])
        ]
    );
    // Targets become active by themselves.
    assert!(plan.is_complete());
    assert!(plan.ready().is_empty());
}

#[test]
fn unit_file_overrides_builtin_target() {
    let mut units = Units::with_builtins();
    let replaced = units.insert(tgt(NETWORK_ONLINE_TARGET).wants(&["wait-online.service"]));
    assert!(replaced.is_some());
    units.insert(svc("wait-online.service"));
    let plan = Plan::new(&units, NETWORK_ONLINE_TARGET).unwrap();
    assert!(plan.units().contains(&"wait-online.service".to_owned()));
    // The override has no After=network.target any more.
    assert!(!plan.units().contains(&NETWORK_TARGET.to_owned()));
}

#[test]
fn service_default_dependencies() {
    let units: Units = [svc("a.service"), svc("b.service").no_defaults()]
        .into_iter()
        .collect();
    let db = units.effective();
    let a = &db["a.service"];
    assert_eq!(a.requires, list(&[SYSINIT_TARGET]));
    assert_eq!(a.after, list(&[BASIC_TARGET, SYSINIT_TARGET]));
    assert_eq!(a.conflicts, list(&[SHUTDOWN_TARGET]));
    assert_eq!(a.before, list(&[SHUTDOWN_TARGET]));
    let b = &db["b.service"];
    assert!(b.requires.is_empty() && b.after.is_empty());
    assert!(b.conflicts.is_empty() && b.before.is_empty());
}

#[test]
fn mount_and_swap_default_dependencies() {
    let units: Units = [
        Node::new("var-data.mount", Kind::Mount),
        Node::new("x.mount", Kind::Mount).no_defaults(),
        Node::new("dev-vdb2.swap", Kind::Swap),
    ]
    .into_iter()
    .collect();
    let db = units.effective();
    let m = &db["var-data.mount"];
    assert_eq!(m.after, list(&[LOCAL_FS_PRE_TARGET]));
    assert_eq!(m.before, list(&[LOCAL_FS_TARGET, SHUTDOWN_TARGET]));
    assert_eq!(m.conflicts, list(&[SHUTDOWN_TARGET]));
    // Not the services' defaults: After=basic.target would be a cycle
    // through sysinit.target and local-fs.target.
    assert!(m.requires.is_empty());
    let s = &db["dev-vdb2.swap"];
    assert!(s.after.is_empty() && s.requires.is_empty());
    assert_eq!(s.before, list(&[SHUTDOWN_TARGET, SWAP_TARGET]));
    assert_eq!(s.conflicts, list(&[SHUTDOWN_TARGET]));
    let x = &db["x.mount"];
    assert!(x.after.is_empty() && x.before.is_empty() && x.conflicts.is_empty());
    // The built-in targets as systemd has them.
    assert_eq!(
        db[SYSINIT_TARGET].wants,
        list(&[LOCAL_FS_TARGET, SWAP_TARGET])
    );
    assert_eq!(
        db[SYSINIT_TARGET].after,
        list(&[LOCAL_FS_TARGET, SWAP_TARGET])
    );
    assert_eq!(db[LOCAL_FS_TARGET].after, list(&[LOCAL_FS_PRE_TARGET]));
    assert_eq!(db[LOCAL_FS_TARGET].conflicts, list(&[SHUTDOWN_TARGET]));
    assert!(!db[LOCAL_FS_TARGET].default_dependencies);
}

#[test]
fn target_default_dependencies() {
    let units: Units = [
        tgt("t.target")
            .wants(&["a.service", "nodef.service", "rev.service"])
            .requires(&["r.service"])
            .before(&["rev.service"]),
        svc("a.service"),
        svc("r.service"),
        svc("nodef.service").no_defaults(),
        svc("rev.service"),
        tgt("nodef.target").no_defaults().wants(&["a.service"]),
        tgt(BASIC_TARGET)
            .requires(&[SYSINIT_TARGET])
            .after(&[SYSINIT_TARGET])
            .wants(&["early.service"]),
        svc("early.service"),
    ]
    .into_iter()
    .collect();
    let db = units.effective();
    let t = &db["t.target"];
    // After= every pulled unit, except DefaultDependencies=no and the one
    // it is explicitly ordered before.
    assert_eq!(t.after, list(&["a.service", "r.service"]));
    assert_eq!(t.conflicts, list(&[SHUTDOWN_TARGET]));
    assert!(t.before.contains(&SHUTDOWN_TARGET.to_owned()));
    assert!(db["nodef.target"].after.is_empty());
    assert!(db["nodef.target"].conflicts.is_empty());
    // A service is After=basic.target by default: no loop is created.
    assert_eq!(db[BASIC_TARGET].after, list(&[SYSINIT_TARGET]));
    assert!(db[SHUTDOWN_TARGET].conflicts.is_empty());
    let plan = Plan::new(&units, BASIC_TARGET).unwrap();
    assert!(plan.cycles().is_empty(), "{:?}", plan.cycles());
}

#[test]
fn transaction_follows_requires_and_wants_only() {
    let units: Units = [
        tgt(MULTI_USER_TARGET)
            .requires(&[BASIC_TARGET])
            .after(&[BASIC_TARGET])
            .wants(&["a.service"]),
        svc("a.service")
            .requires(&["b.service"])
            .after(&["c.service"]),
        svc("b.service").wants(&["d.service"]),
        svc("c.service"),
        svc("d.service"),
        svc("e.service").requisite(&["a.service"]),
        svc("f.service").wants(&["a.service"]),
    ]
    .into_iter()
    .collect();
    let t = Transaction::build(&units, MULTI_USER_TARGET).unwrap();
    let names: Vec<&str> = t.units.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "a.service",
            "b.service",
            BASIC_TARGET,
            "d.service",
            LOCAL_FS_TARGET,
            MULTI_USER_TARGET,
            SWAP_TARGET,
            SYSINIT_TARGET
        ]
    );
    assert_eq!(t.units["a.service"].strength, Strength::Wanted);
    assert_eq!(t.units[BASIC_TARGET].strength, Strength::Required);
    assert_eq!(t.units[MULTI_USER_TARGET].strength, Strength::Goal);
    assert_eq!(
        t.units["d.service"].chain_text(),
        "multi-user.target -> a.service -> b.service -> d.service"
    );
    assert!(t.failed.is_empty() && t.warnings.is_empty());
}

#[test]
fn missing_goal_is_an_error() {
    let err = Plan::new(&Units::with_builtins(), "nope.target").unwrap_err();
    assert_eq!(err, PlanError::GoalNotFound("nope.target".to_owned()));
    assert_eq!(err.to_string(), "goal unit nope.target not found");
}

#[test]
fn missing_required_unit_fails_the_requirer_with_the_chain() {
    let units: Units = [
        goal().wants(&["a.service"]),
        bare("a.service").requires(&["b.service"]),
        bare("b.service")
            .requires(&["gone.service"])
            .wants(&["extra.service"]),
        bare("extra.service"),
        bare("c.service").requires(&["a.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    assert_eq!(
        plan.state("b.service"),
        Some(&State::Failed(
            "required unit gone.service not found (goal.target -> a.service -> b.service -> gone.service)"
                .to_owned()
        ))
    );
    // A failed unit pulls nothing in.
    assert!(!plan.units().contains(&"extra.service".to_owned()));
    // a.service requires it: fails before starting.
    assert_eq!(
        plan.state("a.service"),
        Some(&State::Failed("dependency failed: b.service".to_owned()))
    );
    assert!(run(&mut plan, |_| Outcome::Active).is_empty());
    assert!(plan.is_complete());
    assert_eq!(plan.failed().len(), 2);
}

#[test]
fn missing_wanted_unit_is_a_warning() {
    let units: Units = [
        goal().wants(&["a.service", "gone.service"]),
        bare("a.service"),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    assert_eq!(
        plan.warnings(),
        ["wanted unit gone.service not found (goal.target -> gone.service)"]
    );
    run(&mut plan, |_| Outcome::Active);
    assert!(plan.is_complete());
    assert!(plan.failed().is_empty());
}

#[test]
fn conflict_stronger_pull_wins() {
    let units: Units = [
        goal().requires(&["req.service"]).wants(&["want.service"]),
        bare("req.service"),
        bare("want.service")
            .conflicts(&["req.service"])
            .wants(&["only-via-want.service"]),
        bare("only-via-want.service"),
    ]
    .into_iter()
    .collect();
    let t = Transaction::build(&units, "goal.target").unwrap();
    assert!(t.units.contains_key("req.service"));
    assert!(!t.units.contains_key("want.service"));
    assert!(!t.units.contains_key("only-via-want.service"));
    assert_eq!(
        t.warnings,
        ["want.service conflicts with req.service: keeping req.service (pulled in by goal.target -> req.service), dropping want.service (pulled in by goal.target -> want.service)"]
    );
}

#[test]
fn conflict_nearer_pull_wins_then_name() {
    let units: Units = [
        goal().wants(&["x.service", "y.service", "p.service", "q.service"]),
        bare("y.service").wants(&["z.service"]),
        bare("z.service"),
        bare("x.service").conflicts(&["z.service"]),
        // Same strength and depth: the smaller name wins.
        bare("q.service").conflicts(&["p.service"]),
        bare("p.service"),
    ]
    .into_iter()
    .collect();
    let t = Transaction::build(&units, "goal.target").unwrap();
    assert!(t.units.contains_key("x.service"));
    assert!(!t.units.contains_key("z.service"));
    assert!(t.units.contains_key("p.service"));
    assert!(!t.units.contains_key("q.service"));
    assert_eq!(
        t.dropped.keys().collect::<Vec<_>>(),
        ["q.service", "z.service"]
    );
}

#[test]
fn conflict_drops_fail_the_units_that_require_them() {
    let units: Units = [
        goal().requires(&["a.service"]).wants(&["b.service"]),
        bare("a.service"),
        bare("b.service").requires(&["c.service"]),
        bare("c.service").conflicts(&["a.service"]),
    ]
    .into_iter()
    .collect();
    let plan = Plan::new(&units, "goal.target").unwrap();
    assert!(!plan.units().contains(&"c.service".to_owned()));
    assert_eq!(
        plan.state("b.service"),
        Some(&State::Failed(
            "dependency failed: c.service (conflicts with a.service)".to_owned()
        ))
    );
    assert_eq!(plan.state("a.service"), Some(&State::Waiting));
}

#[test]
fn requisite_is_checked_not_pulled() {
    let units: Units = [
        goal().wants(&["a.service", "b.service", "c.service"]),
        bare("a.service").requisite(&["absent.service"]),
        bare("absent.service"),
        bare("b.service").requisite(&["c.service"]),
        bare("c.service"),
        bare("d.service").requisite(&["gone.service"]),
    ]
    .into_iter()
    .collect();
    let mut plan = Plan::new(&units, "goal.target").unwrap();
    assert!(!plan.units().contains(&"absent.service".to_owned()));
    assert_eq!(
        plan.state("a.service"),
        Some(&State::Failed(
            "requisite unit absent.service is not part of the transaction (goal.target -> a.service)"
                .to_owned()
        ))
    );
    // b waits for c although it has no After=c.
    assert_eq!(plan.ready(), list(&["c.service"]));
    plan.started("c.service").unwrap();
    plan.finished(
        "c.service",
        Outcome::Skipped("ConditionPathExists=/x".to_owned()),
    )
    .unwrap();
    assert_eq!(
        plan.state("b.service"),
        Some(&State::Failed(
            "requisite c.service is not active".to_owned()
        ))
    );
    assert!(plan.is_complete());
}

/// A small linear congruential generator (Knuth's MMIX constants).
pub(super) struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
