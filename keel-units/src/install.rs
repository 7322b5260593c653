//! Enabling and disabling units the way `systemctl enable` does: the links
//! an `[Install]` section asks for, below `etc/systemd/system` of a root.
//!
//! - `WantedBy=T` → `T.wants/NAME`, `RequiredBy=T` → `T.requires/NAME`,
//!   `Alias=A` → `A`, each a symlink to the unit file as seen from inside
//!   the root (e.g. `/usr/lib/systemd/system/ssh.service`);
//! - `Also=` units are enabled/disabled along;
//! - a template (`getty@.service`) is enabled as `getty@DEFAULT.service`
//!   with its `DefaultInstance=`; instances link to the template file.
//!
//! Both directions are idempotent and report each link created or removed.
//! Units that are not in the given [`Loaded`] (templates, instances not yet
//! linked) are loaded on demand with an empty [`MachineInfo`], so `%H` and
//! `%m` in their `[Install]` sections expand to nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use super::load::load_one;
use super::model::Unit;
use super::name::{parse_name, UnitName};
use super::specifier::MachineInfo;
use super::{LoadError, Loaded};

/// Where enable/disable put links, relative to the root.
pub const CONFIG_DIR: &str = "etc/systemd/system";

/// Instance name used to read a template's `[Install]` section.
const PROBE_INSTANCE: &str = "keel-install-probe";

/// One link created or removed. Paths are absolute as seen inside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallChange {
    /// `link` now points to `target`.
    Created {
        /// The symlink.
        link: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// `link` was removed.
    Removed {
        /// The symlink.
        link: PathBuf,
    },
}

impl fmt::Display for InstallChange {
    /// systemctl's wording: `Created symlink A → B.` / `Removed "A".`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallChange::Created { link, target } => write!(
                f,
                "Created symlink {} → {}.",
                link.display(),
                target.display()
            ),
            InstallChange::Removed { link } => write!(f, "Removed \"{}\".", link.display()),
        }
    }
}

/// Why a unit could not be enabled or disabled.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The name breaks systemd's unit naming rules.
    #[error("invalid unit name {name:?}")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// No unit file of that name.
    #[error("unit file {name} does not exist")]
    NotFound {
        /// The name.
        name: String,
    },
    /// The unit is masked (linked to /dev/null).
    #[error("unit {name} is masked")]
    Masked {
        /// The name.
        name: String,
    },
    /// Nothing in `[Install]` to act on.
    #[error(
        "the unit files have no installation config (WantedBy=, RequiredBy=, Alias=, Also=) \
         in {name}"
    )]
    NoInstallSection {
        /// The unit.
        name: String,
    },
    /// A template without `DefaultInstance=` cannot be enabled as such.
    #[error("{name} is a template without DefaultInstance=: enable an instance of it instead")]
    TemplateWithoutInstance {
        /// The template.
        name: String,
    },
    /// The unit file could not be loaded.
    #[error("loading {name}")]
    Load {
        /// The unit.
        name: String,
        /// The cause.
        #[source]
        source: LoadError,
    },
    /// An `Alias=` that systemd refuses too.
    #[error("{}: Alias={alias}: {reason}", file.display())]
    BadAlias {
        /// The unit file.
        file: PathBuf,
        /// The alias.
        alias: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The unit file is not below the root (cannot be linked from inside).
    #[error("unit file {} is outside the root {}", fragment.display(), root.display())]
    OutsideRoot {
        /// The unit file.
        fragment: PathBuf,
        /// The root.
        root: PathBuf,
    },
    /// Something else already exists where a link is due.
    #[error("{} already exists and is not a link to {}", link.display(), target.display())]
    Conflict {
        /// The path, as seen inside the root.
        link: PathBuf,
        /// The link that was due there.
        target: PathBuf,
    },
    /// A file system operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// The operation.
        what: &'static str,
        /// Its object (full path).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A link `enable` creates; `path` is relative to the root.
#[derive(Debug)]
struct Link {
    path: PathBuf,
    target: PathBuf,
}

/// Creates the `[Install]` links of `name` (and of its `Also=` units) below
/// `root`/etc/systemd/system. Links that exist already are left alone; a
/// link to the same unit file name elsewhere is replaced. Anything else in
/// the way fails the whole call before any change. Paths are resolved
/// inside the root ([`keel_core::beneath`]): a `*.wants` directory that is
/// a symlink is followed as the root's own programs would see it, never
/// out of the root.
pub fn enable(
    root: &Path,
    loaded: &Loaded,
    name: &str,
) -> Result<Vec<InstallChange>, InstallError> {
    enable_recording(root, loaded, name, &mut |_| Ok(()))
}

/// [`enable`], telling `made_dir` of every directory it creates (full
/// path, right after creating it), so that a caller can record and undo
/// it.
pub fn enable_recording(
    root: &Path,
    loaded: &Loaded,
    name: &str,
    made_dir: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> Result<Vec<InstallChange>, InstallError> {
    let mut links = Vec::new();
    collect(root, loaded, name, true, &mut BTreeSet::new(), &mut links)?;
    // Check every place first: a conflict leaves everything as it was.
    let steps = links
        .iter()
        .map(|l| check(root, l))
        .collect::<Result<Vec<_>, _>>()?;
    let mut changes = Vec::new();
    for (link, step) in links.iter().zip(steps) {
        create(root, link, step, &mut changes, made_dir)?;
    }
    Ok(changes)
}

/// Where the node `rel` (relative to the root) really is below `root`,
/// its directories resolved inside the root, and its path as seen inside
/// the root; `None` when a directory on the way does not exist.
fn place(root: &Path, rel: &Path) -> Result<Option<(PathBuf, PathBuf)>, InstallError> {
    let inner = Path::new("/").join(rel);
    let found =
        keel_core::beneath::resolve_parent(root, &inner).map_err(io_err("resolving", &inner))?;
    Ok(found.map(|(dir, name)| real(root, dir.join(name))))
}

/// `full` (below `root`) with its path as seen inside the root.
fn real(root: &Path, full: PathBuf) -> (PathBuf, PathBuf) {
    let inner = Path::new("/").join(full.strip_prefix(root).unwrap_or(&full));
    (full, inner)
}

/// Whether `name` is enabled: `None` when it has no `[Install]` rules (or
/// cannot be loaded), else whether any of the links [`enable`] would
/// create exists and points to the unit.
pub fn is_enabled(root: &Path, loaded: &Loaded, name: &str) -> Option<bool> {
    let mut links = Vec::new();
    collect(root, loaded, name, true, &mut BTreeSet::new(), &mut links).ok()?;
    Some(links.iter().any(|l| {
        matches!(place(root, &l.path), Ok(Some((full, inner)))
            if link_target(&full, &inner).is_some_and(|t| same_unit_file(&t, &l.target)))
    }))
}

/// Collects the links for `name` and its `Also=` units.
fn collect(
    root: &Path,
    loaded: &Loaded,
    name: &str,
    top: bool,
    seen: &mut BTreeSet<String>,
    links: &mut Vec<Link>,
) -> Result<(), InstallError> {
    let parsed = parse(name)?;
    let name = if parsed.is_template() {
        let probe = probe_template(root, name, &parsed)?;
        match probe.install.default_instance {
            Some(inst) => format!("{}@{inst}.{}", parsed.prefix, parsed.suffix),
            None => {
                return Err(InstallError::TemplateWithoutInstance {
                    name: name.to_string(),
                })
            }
        }
    } else {
        name.to_string()
    };
    let unit = lookup(root, loaded, &name)?;
    if !seen.insert(unit.name.clone()) {
        return Ok(());
    }
    let install = &unit.install;
    let has_links = !(install.wanted_by.is_empty()
        && install.required_by.is_empty()
        && install.alias.is_empty());
    if !has_links && install.also.is_empty() {
        return if top {
            Err(InstallError::NoInstallSection { name: unit.name })
        } else {
            Ok(())
        };
    }
    let target = inside(root, &unit.fragment)?;
    let config = Path::new(CONFIG_DIR);
    for (owners, dir) in [
        (&install.wanted_by, "wants"),
        (&install.required_by, "requires"),
    ] {
        for owner in owners {
            links.push(Link {
                path: config.join(format!("{owner}.{dir}")).join(&unit.name),
                target: target.clone(),
            });
        }
    }
    for alias in &install.alias {
        let alias = alias_name(&unit, alias)?;
        if alias != unit.name {
            links.push(Link {
                path: config.join(alias),
                target: target.clone(),
            });
        }
    }
    for also in &install.also {
        collect(root, loaded, also, false, seen, links)?;
    }
    Ok(())
}

fn parse(name: &str) -> Result<UnitName<'_>, InstallError> {
    parse_name(name).ok_or_else(|| InstallError::InvalidName {
        name: name.to_string(),
    })
}

/// Loads a template through a made-up instance, to read its `[Install]`.
fn probe_template(root: &Path, name: &str, parsed: &UnitName<'_>) -> Result<Unit, InstallError> {
    let probe = format!("{}@{PROBE_INSTANCE}.{}", parsed.prefix, parsed.suffix);
    load_one(root, &MachineInfo::default(), &probe)
        .map(|(unit, _)| unit)
        .map_err(|e| load_error(name, e))
}

fn load_error(name: &str, e: LoadError) -> InstallError {
    let name = name.to_string();
    match e {
        LoadError::NotFound { .. } => InstallError::NotFound { name },
        LoadError::Masked { .. } => InstallError::Masked { name },
        source => InstallError::Load { name, source },
    }
}

/// The unit `name` (plain or instance, possibly an alias) is, from `loaded`
/// or loaded now.
fn lookup(root: &Path, loaded: &Loaded, name: &str) -> Result<Unit, InstallError> {
    let canonical = loaded.aliases.get(name).map_or(name, String::as_str);
    if loaded.masked.contains(name) || loaded.masked.contains(canonical) {
        return Err(InstallError::Masked {
            name: name.to_string(),
        });
    }
    if let Some(unit) = loaded.units.get(canonical) {
        return Ok(unit.clone());
    }
    load_one(root, &MachineInfo::default(), canonical)
        .map(|(unit, _)| unit)
        .map_err(|e| load_error(name, e))
}

/// `fragment` as an absolute path inside `root`.
fn inside(root: &Path, fragment: &Path) -> Result<PathBuf, InstallError> {
    let rel = fragment
        .strip_prefix(root)
        .map_err(|_| InstallError::OutsideRoot {
            fragment: fragment.to_path_buf(),
            root: root.to_path_buf(),
        })?;
    Ok(Path::new("/").join(rel))
}

/// The link name for `Alias=alias` of `unit`: same type, and for an
/// instance of a template an alias template is instantiated.
fn alias_name(unit: &Unit, alias: &str) -> Result<String, InstallError> {
    let bad = |reason| InstallError::BadAlias {
        file: unit.fragment.clone(),
        alias: alias.to_string(),
        reason,
    };
    let a = parse_name(alias).ok_or_else(|| bad("not a valid unit name"))?;
    let u = parse_name(&unit.name).ok_or_else(|| bad("the unit's own name is invalid"))?;
    if a.suffix != u.suffix {
        return Err(bad("an alias must have the same type suffix as the unit"));
    }
    match (a.instance, u.instance) {
        (Some(""), Some(inst)) if !inst.is_empty() => {
            Ok(format!("{}@{inst}.{}", a.prefix, a.suffix))
        }
        (Some(""), _) => Err(bad("a template alias needs a template unit")),
        _ => Ok(alias.to_string()),
    }
}

/// Where the symlink at `full` (seen inside the root as `inner`) points,
/// as an absolute, lexically normalised path inside the root; `None` when
/// it is not a symlink.
fn link_target(full: &Path, inner: &Path) -> Option<PathBuf> {
    let target = fs::read_link(full).ok()?;
    let abs = if target.is_absolute() {
        target
    } else {
        Path::new("/")
            .join(inner.parent().unwrap_or(Path::new("")))
            .join(target)
    };
    Some(normalise(&abs))
}

fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether a link target names the same unit file as `target`: the same
/// path, or the same file name in another unit directory.
fn same_unit_file(found: &Path, target: &Path) -> bool {
    found == target || (found.file_name().is_some() && found.file_name() == target.file_name())
}

/// What has to happen at a link's place.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// It is there already.
    Keep,
    /// Nothing is there.
    Create,
    /// A link to the same unit file name elsewhere is there.
    Replace,
}

/// Checks the place of `link`: fails when something else is there.
fn check(root: &Path, link: &Link) -> Result<Step, InstallError> {
    let conflict = || InstallError::Conflict {
        link: Path::new("/").join(&link.path),
        target: link.target.clone(),
    };
    let Some((full, inner)) = place(root, &link.path)? else {
        return Ok(Step::Create);
    };
    match fs::symlink_metadata(&full) {
        Ok(meta) if meta.file_type().is_symlink() => match link_target(&full, &inner) {
            Some(found) if found == link.target => Ok(Step::Keep),
            Some(found) if same_unit_file(&found, &link.target) => Ok(Step::Replace),
            _ => Err(conflict()),
        },
        Ok(_) => Err(conflict()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Step::Create),
        Err(e) => Err(io_err("inspecting", &full)(e)),
    }
}

fn create(
    root: &Path,
    link: &Link,
    step: Step,
    changes: &mut Vec<InstallChange>,
    made_dir: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> Result<(), InstallError> {
    if step == Step::Keep {
        return Ok(());
    }
    let wanted = Path::new("/").join(&link.path);
    let (dir, name) = keel_core::beneath::make_parents(root, &wanted, made_dir)
        .map_err(io_err("creating the directory of", &wanted))?;
    let (full, inner) = real(root, dir.join(name));
    if step == Step::Replace {
        fs::remove_file(&full).map_err(io_err("removing", &full))?;
        changes.push(InstallChange::Removed {
            link: inner.clone(),
        });
    }
    symlink(&link.target, &full).map_err(io_err("creating symlink", &full))?;
    changes.push(InstallChange::Created {
        link: inner,
        target: link.target.clone(),
    });
    Ok(())
}

/// What [`disable`] removes.
#[derive(Debug, Default)]
struct Selection {
    /// Link names to remove from `*.wants/` and `*.requires/`.
    names: BTreeSet<String>,
    /// Alias link names to remove from the top of the config directory
    /// when they point to one of `files`.
    aliases: BTreeSet<String>,
    /// Unit files of plain units: links to them under another name are
    /// stray aliases.
    files: BTreeSet<PathBuf>,
    /// Templates (prefix, suffix, file): all their instances' links go.
    templates: Vec<(String, String, PathBuf)>,
    /// Unit files of all selected units (an instance's is its template's):
    /// what an alias link must point to.
    linked: BTreeSet<PathBuf>,
    /// Canonical names of the selected units (and templates): at the top
    /// of the config directory these are linked unit files, not aliases.
    own: BTreeSet<String>,
    /// Names already selected (for `Also=` loops).
    seen: BTreeSet<String>,
}

/// Removes the `[Install]` links of `name` and of its `Also=` units, and
/// every other link in `etc/systemd/system/*.wants|*.requires` that enables
/// it (by name, or pointing to its unit file). Disabling a template removes
/// the links of all its instances; disabling an instance only its own.
/// Works for masked units too (links by name only).
pub fn disable(
    root: &Path,
    loaded: &Loaded,
    name: &str,
) -> Result<Vec<InstallChange>, InstallError> {
    let mut sel = Selection::default();
    select(root, loaded, name, &mut sel)?;
    let config_inner = Path::new("/").join(CONFIG_DIR);
    let Some(config) = keel_core::beneath::resolve(root, &config_inner)
        .map_err(io_err("resolving", &config_inner))?
    else {
        return Ok(Vec::new());
    };
    let entries = match fs::read_dir(&config) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("reading", &config)(e)),
    };
    let mut top = Vec::new();
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("reading", &config))?;
        let fname = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(io_err("reading", &config))?;
        let dependency_dir = fname.ends_with(".wants") || fname.ends_with(".requires");
        if kind.is_dir() && dependency_dir {
            dirs.push(config.join(&fname));
        } else if kind.is_symlink() && dependency_dir {
            // A `*.wants` that is a link: where enable put the links.
            let inner = config_inner.join(&fname);
            match keel_core::beneath::resolve(root, &inner) {
                Ok(Some(d)) if d.is_dir() => dirs.push(d),
                _ => top.push(fname),
            }
        } else if !kind.is_dir() {
            top.push(fname);
        }
    }
    // Links are read where they really are: their relative targets are
    // relative to that place.
    let mut remove = Vec::new();
    for fname in top {
        let (full, inner) = real(root, config.join(&fname));
        if let Some(t) = link_target(&full, &inner) {
            if sel.is_alias(&fname, &t) {
                remove.push((full, inner));
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    for full_dir in dirs {
        let entries = fs::read_dir(&full_dir).map_err(io_err("reading", &full_dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("reading", &full_dir))?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            let (full, inner) = real(root, full_dir.join(&fname));
            if let Some(t) = link_target(&full, &inner) {
                if sel.is_dependency_link(&fname, &t) {
                    remove.push((full, inner));
                }
            }
        }
    }
    remove.sort();
    let mut changes = Vec::new();
    for (full, inner) in remove {
        fs::remove_file(&full).map_err(io_err("removing", &full))?;
        changes.push(InstallChange::Removed { link: inner });
    }
    Ok(changes)
}

impl Selection {
    /// A link at the top of the config directory that is an alias.
    fn is_alias(&self, fname: &str, target: &Path) -> bool {
        if self.own.contains(fname) {
            // A unit's own name at the top is a linked unit file, not an alias.
            return false;
        }
        let same = |f: &PathBuf| same_unit_file(target, f);
        self.files.iter().any(same)
            || self.templates.iter().any(|(_, _, f)| same(f))
            || (self.aliases.contains(fname) && self.linked.iter().any(same))
    }

    /// A link in a `*.wants/` or `*.requires/` directory that enables a
    /// selected unit.
    fn is_dependency_link(&self, fname: &str, target: &Path) -> bool {
        if self.names.contains(fname) || self.aliases.contains(fname) {
            return true;
        }
        let Some(parsed) = parse_name(fname) else {
            return false;
        };
        if parsed.template().is_some() {
            return self.templates.iter().any(|(p, s, f)| {
                p == parsed.prefix && s == parsed.suffix && same_unit_file(target, f)
            });
        }
        self.files.iter().any(|f| same_unit_file(target, f))
    }
}

fn select(
    root: &Path,
    loaded: &Loaded,
    name: &str,
    sel: &mut Selection,
) -> Result<(), InstallError> {
    if !sel.seen.insert(name.to_string()) {
        return Ok(());
    }
    let parsed = parse(name)?;
    if parsed.is_template() {
        let probe = probe_template(root, name, &parsed)?;
        sel.own.insert(name.to_string());
        sel.templates.push((
            parsed.prefix.to_string(),
            parsed.suffix.to_string(),
            inside(root, &probe.fragment)?,
        ));
        for alias in &probe.install.alias {
            if parse_name(alias).is_some_and(|a| a.is_template()) {
                // Instances of an alias template: matched through the file.
                if let Some(a) = parse_name(alias) {
                    sel.templates.push((
                        a.prefix.to_string(),
                        a.suffix.to_string(),
                        inside(root, &probe.fragment)?,
                    ));
                }
            } else {
                sel.aliases.insert(alias.clone());
            }
        }
        if let Some(inst) = &probe.install.default_instance {
            let instance = format!("{}@{inst}.{}", parsed.prefix, parsed.suffix);
            return select(root, loaded, &instance, sel);
        }
        return Ok(());
    }
    let unit = match lookup(root, loaded, name) {
        Ok(u) => u,
        Err(InstallError::Masked { .. }) => {
            sel.names.insert(name.to_string());
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    sel.seen.insert(unit.name.clone());
    sel.own.insert(unit.name.clone());
    sel.names.insert(name.to_string());
    sel.names.insert(unit.name.clone());
    let file = inside(root, &unit.fragment)?;
    let is_instance = parse_name(&unit.name).is_some_and(|n| n.template().is_some());
    if !is_instance {
        sel.files.insert(file.clone());
    }
    sel.linked.insert(file);
    for alias in unit.aliases.iter().chain(&unit.install.alias) {
        let alias = alias_name(&unit, alias).unwrap_or_else(|_| alias.clone());
        sel.aliases.insert(alias);
    }
    for also in unit.install.also.clone() {
        select(root, loaded, &also, sel)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "install_tests.rs"]
mod tests;
