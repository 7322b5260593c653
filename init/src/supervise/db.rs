//! From loaded unit files to the planner's nodes.

use crate::plan::{Kind, Node, Units};
use crate::unit::{Loaded, ServiceType, Unit, UnitKind};

/// The planner's view of the loaded units: built-in targets, then every
/// loaded unit (a unit file overrides a built-in target of its name).
/// Names in dependency lists are mapped from aliases to canonical names.
pub fn units_of(loaded: &Loaded) -> Units {
    let mut units: Units = loaded.units.values().map(|u| node_of(u, loaded)).collect();
    // Links into built-in targets (multi-user.target.wants/ without a
    // multi-user.target file).
    for (owner, (wants, requires)) in &loaded.links {
        if let Some(mut node) = units.get(owner).cloned() {
            node.wants.extend(wants.iter().cloned());
            node.requires.extend(requires.iter().cloned());
            units.insert(node);
        }
    }
    units
}

fn node_of(unit: &Unit, loaded: &Loaded) -> Node {
    let kind = match unit.kind {
        UnitKind::Service => Kind::Service,
        UnitKind::Target => Kind::Target,
        UnitKind::Unsupported(_) => Kind::Other,
    };
    let canon = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .map(|n| loaded.aliases.get(n).unwrap_or(n).clone())
            .collect()
    };
    let s = &unit.unit;
    let mut node = Node::new(unit.name.clone(), kind);
    node.after = canon(&s.after);
    node.before = canon(&s.before);
    node.requires = canon(&s.requires);
    node.requisite = canon(&s.requisite);
    node.wants = canon(&s.wants);
    node.part_of = canon(&s.part_of);
    node.conflicts = canon(&s.conflicts);
    node.default_dependencies = s.default_dependencies;
    node.oneshot =
        unit.kind == UnitKind::Service && unit.service.service_type == ServiceType::Oneshot;
    node
}
