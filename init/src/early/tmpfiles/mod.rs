//! tmpfiles.d (tmpfiles.d(5)) at boot, as `systemd-tmpfiles --create
//! --remove --boot` applies it.
//!
//! Lines are grouped by path as systemd groups them: lines whose path may
//! be a glob apart from the others, a later line for a path already owned
//! by an incompatible line is a duplicate (warning, ignored). The remove
//! phase runs first (r, R, D contents; children before their parents),
//! then the create phase (parents before their children); within each,
//! plain paths in the order they were first listed, then globs.
//!
//! Supported: f F w d D e v q Q L z Z r R (v, q and Q make plain
//! directories; e only adjusts mode and owner of existing directories).
//! x and X, and the age column, only matter for age-based cleanup, which
//! does not run at boot. p c b C t T h H a A are reported as not
//! supported, as is the `=` modifier; `^` lines (credentials) are skipped
//! since keel-init passes none. Removal (r, R, D contents) only deletes
//! paths below /run, /tmp and /var.

mod ops;
pub mod parse;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

use super::accounts::Accounts;
use keel_units::confdirs;

use super::Log;
pub use ops::{mask_mode, REMOVABLE_BELOW};
pub use parse::{Item, Mode, Owner};

/// The configuration directory name below [`confdirs::CONF_ROOTS`].
pub const TMPFILES_D: &str = "tmpfiles.d";

/// What the machine-dependent specifiers expand to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Specifiers {
    /// `%m`; lines using it are skipped (with a warning) when unknown.
    pub machine_id: Option<String>,
    /// `%b`, 32 hex digits.
    pub boot_id: Option<String>,
    /// `%H` (and `%l`, up to the first dot).
    pub hostname: String,
    /// `%v`.
    pub kernel_release: Option<String>,
}

/// The items for one path.
#[derive(Debug)]
struct Group {
    items: Vec<Item>,
    parent: Option<usize>,
    children: Vec<usize>,
    removed: bool,
    created: bool,
}

/// All items, grouped by path; index 0: plain paths, 1: globs.
#[derive(Debug, Default)]
struct Plan {
    groups: Vec<Group>,
    by_path: [HashMap<String, usize>; 2],
    order: [Vec<usize>; 2],
}

fn effective_mode(i: &Item) -> (u32, bool, bool) {
    match i.mode {
        Some(m) => (m.bits, m.masked, m.create_only),
        None => (parse::default_mode(i.kind), false, false),
    }
}

/// systemd's `item_compatible`: two lines owning the same path must agree.
fn compatible(a: &Item, b: &Item) -> bool {
    if !(parse::takes_ownership(a.kind) && parse::takes_ownership(b.kind)) {
        return true;
    }
    a.argument == b.argument
        && a.uid == b.uid
        && a.gid == b.gid
        && effective_mode(a) == effective_mode(b)
        && a.age == b.age
}

impl Plan {
    /// Adds an item; false if it duplicates an earlier one (a warning).
    fn add(&mut self, item: Item, log: &mut Log) -> bool {
        let g = usize::from(parse::needs_glob(item.kind));
        if let Some(&i) = self.by_path[g].get(&item.path) {
            let group = &mut self.groups[i];
            if let Some(first) = group.items.iter().find(|e| !compatible(e, &item)) {
                log.warn(&format!(
                    "{}: duplicate line for path {}, ignoring (first given at {})",
                    item.origin, item.path, first.origin
                ));
                return false;
            }
            group.items.push(item);
            // Owning items first (create, then adjust), then by type.
            group
                .items
                .sort_by_key(|i| (!parse::takes_ownership(i.kind), i.kind));
            return true;
        }
        let i = self.groups.len();
        self.by_path[g].insert(item.path.clone(), i);
        self.order[g].push(i);
        self.groups.push(Group {
            items: vec![item],
            parent: None,
            children: Vec::new(),
            removed: false,
            created: false,
        });
        true
    }

    /// Links every group to the group of its closest listed ancestor path.
    fn link_parents(&mut self) {
        for i in 0..self.groups.len() {
            let mut path = self.groups[i].items[0].path.clone();
            while let Some(cut) = path.rfind('/') {
                path.truncate(cut);
                if path.is_empty() {
                    break;
                }
                let found = self.by_path[0]
                    .get(&path)
                    .or_else(|| self.by_path[1].get(&path))
                    .copied();
                if let Some(p) = found {
                    self.groups[i].parent = Some(p);
                    self.groups[p].children.push(i);
                    break;
                }
            }
        }
    }

    fn all(&self) -> Vec<usize> {
        self.order[0]
            .iter()
            .chain(&self.order[1])
            .copied()
            .collect()
    }

    fn remove(&mut self, i: usize, root: &Path, log: &mut Log) {
        if std::mem::replace(&mut self.groups[i].removed, true) {
            return;
        }
        for c in self.groups[i].children.clone() {
            self.remove(c, root, log);
        }
        for item in &self.groups[i].items {
            report(item, ops::remove(root, item), false, log);
        }
    }

    fn create(&mut self, i: usize, root: &Path, log: &mut Log) {
        if std::mem::replace(&mut self.groups[i].created, true) {
            return;
        }
        if let Some(p) = self.groups[i].parent {
            self.create(p, root, log);
        }
        for item in &self.groups[i].items {
            report(item, ops::create(root, item), true, log);
        }
    }
}

fn report(item: &Item, errors: Vec<String>, creating: bool, log: &mut Log) {
    for e in errors {
        if creating && item.allow_failure {
            log.info(&format!("{}: {e} (ignored: '-' line)", item.origin));
        } else {
            log.warn(&format!("{}: {e}", item.origin));
        }
    }
}

/// Applies every tmpfiles.d file below `root` as at boot.
pub fn apply(root: &Path, spec: &Specifiers, log: &mut Log) {
    let accounts = Accounts::load(root).unwrap_or_else(|e| {
        log.warn(&format!(
            "tmpfiles: {}; only numeric owners and root resolve",
            crate::error::chain(&e)
        ));
        Accounts::default()
    });
    let files = super::conf_files(root, TMPFILES_D, log);
    let mut plan = Plan::default();
    let mut lines = 0;
    for file in &files {
        let text = match file.read(root) {
            Ok(t) => t,
            Err(e) => {
                log.warn(&format!("reading {}: {e}", file.shown));
                continue;
            }
        };
        for (n, line) in confdirs::lines(&text, &['#']) {
            let origin = format!("{}:{n}", file.shown);
            match parse::parse_line(line, &origin, spec, &accounts, log) {
                Ok(Some(item)) => {
                    if plan.add(item, log) {
                        lines += 1;
                    }
                }
                Ok(None) => {}
                Err(msg) => log.warn(&format!("{origin}: {msg}")),
            }
        }
    }
    plan.link_parents();
    for i in plan.all() {
        plan.remove(i, root, log);
    }
    for i in plan.all() {
        plan.create(i, root, log);
    }
    if !files.is_empty() {
        log.info(&format!(
            "tmpfiles: {lines} lines from {} files applied",
            files.len()
        ));
    }
}
