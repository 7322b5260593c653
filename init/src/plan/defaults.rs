//! Built-in targets and `DefaultDependencies=yes`, as systemd defines them
//! (systemd.special(7), systemd.service(5), systemd.target(5),
//! systemd.mount(5), systemd.swap(5)).
//!
//! Services with `DefaultDependencies=yes` get `Requires=` and `After=`
//! sysinit.target, `After=basic.target`, and `Conflicts=` and `Before=`
//! shutdown.target.
//!
//! Targets with `DefaultDependencies=yes` get `After=` on every unit they
//! `Requires=`, `Requisite=` or `Wants=`, unless that unit has
//! `DefaultDependencies=no`, is not loaded, or is already ordered after the
//! target (that would be a loop); and, except shutdown.target itself,
//! `Conflicts=` and `Before=` shutdown.target.
//!
//! Mounts with `DefaultDependencies=yes` get `After=local-fs-pre.target`
//! and `Before=local-fs.target`; swaps `Before=swap.target`; both
//! `Conflicts=` and `Before=` shutdown.target (systemd uses umount.target,
//! which Keel does not have: its shutdown stops every unit in reverse start
//! order). Remote (`_netdev`) and `nofail` mounts are not told apart.
//!
//! Other unit types get no default dependencies here.

use std::collections::BTreeMap;

use super::{Kind, Node};

pub const SYSINIT_TARGET: &str = "sysinit.target";
pub const BASIC_TARGET: &str = "basic.target";
pub const NETWORK_PRE_TARGET: &str = "network-pre.target";
pub const NETWORK_TARGET: &str = "network.target";
pub const NETWORK_ONLINE_TARGET: &str = "network-online.target";
pub const MULTI_USER_TARGET: &str = "multi-user.target";
pub const SHUTDOWN_TARGET: &str = "shutdown.target";
pub const LOCAL_FS_PRE_TARGET: &str = "local-fs-pre.target";
pub const LOCAL_FS_TARGET: &str = "local-fs.target";
pub const SWAP_TARGET: &str = "swap.target";

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The targets that always exist, with the dependencies of systemd's own
/// target files (minus the units Keel does not have, such as
/// emergency.target). A unit file of the same name replaces one.
pub fn builtin_targets() -> Vec<Node> {
    let target = |name: &str| Node::new(name, Kind::Target);
    let local_fs_pre = target(LOCAL_FS_PRE_TARGET);
    let mut local_fs = target(LOCAL_FS_TARGET);
    local_fs.default_dependencies = false;
    local_fs.conflicts = names(&[SHUTDOWN_TARGET]);
    local_fs.after = names(&[LOCAL_FS_PRE_TARGET]);
    let swap = target(SWAP_TARGET);
    let mut sysinit = target(SYSINIT_TARGET);
    sysinit.wants = names(&[LOCAL_FS_TARGET, SWAP_TARGET]);
    sysinit.after = names(&[LOCAL_FS_TARGET, SWAP_TARGET]);
    let mut basic = target(BASIC_TARGET);
    basic.requires = names(&[SYSINIT_TARGET]);
    basic.after = names(&[SYSINIT_TARGET]);
    let network_pre = target(NETWORK_PRE_TARGET);
    let mut network = target(NETWORK_TARGET);
    network.after = names(&[NETWORK_PRE_TARGET]);
    let mut network_online = target(NETWORK_ONLINE_TARGET);
    network_online.after = names(&[NETWORK_TARGET]);
    let mut multi_user = target(MULTI_USER_TARGET);
    multi_user.requires = names(&[BASIC_TARGET]);
    multi_user.after = names(&[BASIC_TARGET]);
    let mut shutdown = target(SHUTDOWN_TARGET);
    shutdown.default_dependencies = false;
    vec![
        local_fs_pre,
        local_fs,
        swap,
        sysinit,
        basic,
        network_pre,
        network,
        network_online,
        multi_user,
        shutdown,
    ]
}

/// Adds the default dependencies to every node that asks for them. Lists
/// are expected to be normalized before; duplicates added here are removed
/// by the caller.
pub(super) fn apply_default_dependencies(nodes: &mut BTreeMap<String, Node>) {
    for node in nodes.values_mut() {
        if !node.default_dependencies {
            continue;
        }
        match node.kind {
            Kind::Service => {
                node.requires.push(SYSINIT_TARGET.to_owned());
                node.after.push(SYSINIT_TARGET.to_owned());
                node.after.push(BASIC_TARGET.to_owned());
            }
            Kind::Mount => {
                node.after.push(LOCAL_FS_PRE_TARGET.to_owned());
                node.before.push(LOCAL_FS_TARGET.to_owned());
            }
            Kind::Swap => node.before.push(SWAP_TARGET.to_owned()),
            Kind::Target | Kind::Other => continue,
        }
        node.conflicts.push(SHUTDOWN_TARGET.to_owned());
        node.before.push(SHUTDOWN_TARGET.to_owned());
    }

    // Targets: decide on the snapshot taken after the service defaults, so
    // that e.g. a service's default After=basic.target keeps basic.target
    // from being ordered after a service it wants.
    let mut additions: Vec<(String, String)> = Vec::new();
    for target in nodes.values() {
        if target.kind != Kind::Target || !target.default_dependencies {
            continue;
        }
        let pulled = target
            .requires
            .iter()
            .chain(&target.requisite)
            .chain(&target.wants);
        for other in pulled {
            let Some(unit) = nodes.get(other) else {
                continue;
            };
            if !unit.default_dependencies {
                continue;
            }
            let loops = target.before.contains(other) || unit.after.contains(&target.name);
            if !loops {
                additions.push((target.name.clone(), other.clone()));
            }
        }
    }
    for (target, other) in additions {
        if let Some(node) = nodes.get_mut(&target) {
            node.after.push(other);
        }
    }

    for node in nodes.values_mut() {
        if node.kind != Kind::Target || !node.default_dependencies {
            continue;
        }
        if node.name == SHUTDOWN_TARGET {
            continue;
        }
        node.conflicts.push(SHUTDOWN_TARGET.to_owned());
        node.before.push(SHUTDOWN_TARGET.to_owned());
    }
}
