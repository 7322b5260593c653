//! From loaded unit files to the planner's nodes.

use std::path::{Path, PathBuf};

use crate::plan::{Kind, Node, Units};
use crate::unit::mount::mount_units_for;
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
        UnitKind::Mount => Kind::Mount,
        UnitKind::Swap => Kind::Swap,
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
    node.oneshot = unit.kind.runs_processes() && unit.service.service_type == ServiceType::Oneshot;
    for mount in mounts_needed(unit, loaded) {
        node.requires.push(mount.clone());
        node.after.push(mount);
    }
    node
}

/// The loaded mount units `unit` needs, which it gets `Requires=` and
/// `After=` on (systemd's implicit dependencies, systemd.mount(5),
/// systemd.swap(5)): the mount units of each `RequiresMountsFor=` path and
/// its parents; for a mount, those of the parents of `Where=`; for a mount
/// or swap, those of `What=` when it is a path (a loop or swap file, a
/// bind mount source). Mount units that are not loaded are left out.
fn mounts_needed(unit: &Unit, loaded: &Loaded) -> Vec<String> {
    let mut paths: Vec<&Path> = unit
        .unit
        .requires_mounts_for
        .iter()
        .map(PathBuf::as_path)
        .collect();
    let what = match unit.kind {
        UnitKind::Mount => unit.mount.what.as_deref(),
        UnitKind::Swap => unit.swap.what.as_deref(),
        _ => None,
    };
    paths.extend(what.map(Path::new).filter(|p| p.is_absolute()));
    if unit.kind == UnitKind::Mount {
        paths.extend(unit.mount.where_.as_deref().and_then(Path::parent));
    }
    let mut out: Vec<String> = paths
        .into_iter()
        .flat_map(mount_units_for)
        .filter(|m| *m != unit.name && loaded.units.contains_key(m))
        .collect();
    out.sort();
    out.dedup();
    out
}
