//! Finding and loading unit files below a root directory, with systemd's
//! search path precedence, masks, aliases, drop-ins, `*.wants/` and
//! `*.requires/` directories and template instances.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::apply::Applier;
use super::model::{Restart, ServiceType, Unit, UnitKind};
use super::mount;
use super::name::parse_name;
use super::specifier::MachineInfo;
use super::{syntax, LoadError, Loaded, Warning};

/// Unit directories relative to the root, highest precedence first.
/// `lib/systemd/system` is skipped when it is `usr/lib` (merged /usr).
pub const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "run/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

const MAX_LINKS: usize = 32;

/// How a name in the unit directories resolves.
enum Resolved {
    /// A unit file (for an instance: the template's file).
    Fragment(PathBuf),
    /// `/dev/null` link or empty file.
    Masked,
    /// Another name for `canonical`; `path` is the file the link ends at.
    Alias { canonical: String, path: PathBuf },
}

/// The scanned unit directories of one root.
struct Index {
    root: PathBuf,
    dirs: Vec<PathBuf>,
    /// Name → highest-precedence directory entry.
    files: BTreeMap<String, PathBuf>,
    /// Owner name → units from `OWNER.wants/` in any directory.
    wants: BTreeMap<String, BTreeSet<String>>,
    /// Owner name → units from `OWNER.requires/`.
    requires: BTreeMap<String, BTreeSet<String>>,
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LoadError + '_ {
    move |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn lib_is_usr_lib(root: &Path) -> bool {
    if let Ok(t) = fs::read_link(root.join("lib")) {
        let t = t.to_string_lossy();
        if t.trim_end_matches('/') == "usr/lib" || t.trim_end_matches('/') == "/usr/lib" {
            return true;
        }
    }
    match (
        in_root(root, Path::new("/lib/systemd/system")),
        in_root(root, Path::new("/usr/lib/systemd/system")),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `abs` (as seen inside the root) resolved below `root`, every symlink
/// followed inside the root ([`keel_core::beneath`]); `None` when it does
/// not exist or cannot be resolved.
fn in_root(root: &Path, abs: &Path) -> Option<PathBuf> {
    keel_core::beneath::resolve(root, abs).ok().flatten()
}

/// The path of `full` (below `root`) as seen inside the root.
fn inner(root: &Path, full: &Path) -> PathBuf {
    Path::new("/").join(full.strip_prefix(root).unwrap_or(full))
}

impl Index {
    fn scan(root: &Path) -> Result<Index, LoadError> {
        let mut idx = Index {
            root: root.to_path_buf(),
            dirs: Vec::new(),
            files: BTreeMap::new(),
            wants: BTreeMap::new(),
            requires: BTreeMap::new(),
        };
        let skip_lib = lib_is_usr_lib(root);
        for rel in UNIT_DIRS {
            if *rel == "lib/systemd/system" && skip_lib {
                continue;
            }
            // The directory where it really is inside the root (with
            // merged /usr, /lib/systemd/system is a link).
            let Some(dir) = in_root(root, &Path::new("/").join(rel)) else {
                continue;
            };
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_err(&dir)(e)),
            };
            let mut names: Vec<(String, PathBuf)> = Vec::new();
            for entry in entries {
                let entry = entry.map_err(read_err(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                names.push((name, entry.path()));
            }
            names.sort();
            for (name, path) in names {
                for (suffix, map) in [(".wants", &mut idx.wants), (".requires", &mut idx.requires)]
                {
                    if let Some(owner) = name.strip_suffix(suffix) {
                        let Some(path) = in_root(root, &inner(root, &path)) else {
                            continue;
                        };
                        if path.is_dir() {
                            let set = map.entry(owner.to_string()).or_default();
                            for e in fs::read_dir(&path).map_err(read_err(&path))? {
                                let e = e.map_err(read_err(&path))?;
                                let n = e.file_name().to_string_lossy().into_owned();
                                if parse_name(&n).is_some() {
                                    set.insert(n);
                                }
                            }
                        }
                    }
                }
                if parse_name(&name).is_some() && !path.is_dir() {
                    idx.files.entry(name).or_insert(path);
                }
            }
            idx.dirs.push(dir);
        }
        Ok(idx)
    }

    /// Where the symlink at `link` (below the root) whose target is
    /// `target` leads: its directories resolved inside the root, its last
    /// component not followed (the caller goes on from there).
    fn link_target(&self, link: &Path, target: &Path) -> Result<PathBuf, LoadError> {
        let abs = if target.is_absolute() {
            target.to_path_buf()
        } else {
            inner(&self.root, link.parent().unwrap_or(&self.root)).join(target)
        };
        match keel_core::beneath::resolve_parent(&self.root, &abs) {
            Ok(Some((dir, name))) => Ok(dir.join(name)),
            // Missing on the way: the same error as a missing file.
            Ok(None) => Ok(keel_core::beneath::lexical(&self.root, &abs)),
            Err(source) => Err(LoadError::Read {
                path: link.to_path_buf(),
                source,
            }),
        }
    }

    /// Follows the symlink chain starting at `path` to a file or a mask.
    fn follow(&self, mut path: PathBuf) -> Result<Option<PathBuf>, LoadError> {
        for _ in 0..MAX_LINKS {
            let meta = fs::symlink_metadata(&path).map_err(read_err(&path))?;
            if !meta.file_type().is_symlink() {
                return Ok((meta.len() > 0).then_some(path));
            }
            let target = fs::read_link(&path).map_err(read_err(&path))?;
            if target == Path::new("/dev/null") {
                return Ok(None);
            }
            path = self.link_target(&path, &target)?;
        }
        Err(LoadError::SymlinkLoop { path })
    }

    fn resolve(&self, name: &str) -> Result<Resolved, LoadError> {
        let parsed = parse_name(name).ok_or_else(|| LoadError::InvalidName {
            name: name.to_string(),
        })?;
        let Some(entry) = self.files.get(name) else {
            // An instance without its own file uses the template's.
            let template = parsed.template().ok_or_else(|| LoadError::NotFound {
                name: name.to_string(),
            })?;
            return match self.resolve(&template)? {
                Resolved::Fragment(p) => Ok(Resolved::Fragment(p)),
                Resolved::Masked => Ok(Resolved::Masked),
                Resolved::Alias { .. } => Err(LoadError::NotFound {
                    name: name.to_string(),
                }),
            };
        };
        let Some(file) = self.follow(entry.clone())? else {
            return Ok(Resolved::Masked);
        };
        let final_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let same_template = parsed.template().as_deref() == Some(final_name.as_str());
        if final_name == name || same_template || parse_name(&final_name).is_none() {
            return Ok(Resolved::Fragment(file));
        }
        Ok(Resolved::Alias {
            canonical: final_name,
            path: file,
        })
    }

    /// Drop-ins for the given names: merged by file name (a higher
    /// precedence directory wins), in lexical order; `None` = masked.
    fn dropins(&self, names: &[String]) -> Result<Vec<PathBuf>, LoadError> {
        let mut by_name: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
        for dir in &self.dirs {
            for n in names {
                let Some(d) = in_root(&self.root, &inner(&self.root, &dir.join(format!("{n}.d"))))
                else {
                    continue;
                };
                let entries = match fs::read_dir(&d) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                    Err(e) => return Err(read_err(&d)(e)),
                };
                for e in entries {
                    let e = e.map_err(read_err(&d))?;
                    let fname = e.file_name().to_string_lossy().into_owned();
                    if !fname.ends_with(".conf") || by_name.contains_key(&fname) {
                        continue;
                    }
                    let resolved = self.follow(e.path())?;
                    by_name.insert(fname, resolved);
                }
            }
        }
        Ok(by_name.into_values().flatten().collect())
    }

    /// Loads `name` (not an alias) from `fragment`.
    fn load(
        &self,
        name: &str,
        fragment: PathBuf,
        aliases: Vec<String>,
        machine: &MachineInfo,
        warnings: &mut Vec<Warning>,
    ) -> Result<Unit, LoadError> {
        let parsed = parse_name(name).ok_or_else(|| LoadError::InvalidName {
            name: name.to_string(),
        })?;
        if parsed.is_template() {
            return Err(LoadError::NotFound {
                name: name.to_string(),
            });
        }
        let kind = match parsed.suffix {
            "service" => UnitKind::Service,
            "target" => UnitKind::Target,
            "mount" => UnitKind::Mount,
            "swap" => UnitKind::Swap,
            other => UnitKind::Unsupported(other.to_string()),
        };
        let mut owners = vec![name.to_string()];
        owners.extend(aliases.iter().cloned());
        owners.extend(parsed.template());
        let dropins = self.dropins(&owners)?;

        let mut entries = Vec::new();
        for file in std::iter::once(&fragment).chain(&dropins) {
            let text = fs::read_to_string(file).map_err(read_err(file))?;
            entries.extend(syntax::parse(file, &text)?);
        }
        let mut unit = Unit::new(name, kind.clone(), fragment);
        unit.dropins = dropins;
        unit.aliases = aliases;
        let mut local = Vec::new();
        if let UnitKind::Unsupported(t) = &kind {
            local.push(Warning {
                file: unit.fragment.clone(),
                line: 0,
                section: String::new(),
                directive: String::new(),
                message: format!("unsupported unit type {t}, loaded for its dependencies only"),
            });
        }
        Applier::new(&mut unit, machine, &mut local).apply_all(&entries);
        if unit.kind == UnitKind::Service {
            let type_given = entries
                .iter()
                .any(|e| e.section == "Service" && e.key == "Type" && !e.value.is_empty());
            verify_service(&mut unit, type_given)?;
        }
        mount::verify(&mut unit)?;
        for owner in &owners {
            for (map, list) in [(&self.wants, 0), (&self.requires, 1)] {
                for dep in map.get(owner).into_iter().flatten() {
                    let target = if list == 0 {
                        &mut unit.unit.wants
                    } else {
                        &mut unit.unit.requires
                    };
                    if !target.contains(dep) {
                        target.push(dep.clone());
                    }
                }
            }
        }
        warnings.extend(local);
        Ok(unit)
    }
}

/// systemd's load-time checks of a service (`service_verify()`); also
/// applies its default of `Type=oneshot` for a service without `ExecStart=`.
fn verify_service(unit: &mut Unit, type_given: bool) -> Result<(), LoadError> {
    let s = &mut unit.service;
    if s.exec_start.is_empty() && !type_given {
        s.service_type = ServiceType::Oneshot;
    }
    let message = if s.exec_start.is_empty() && s.exec_stop.is_empty() {
        "service has no ExecStart= and no ExecStop=, refusing"
    } else if s.exec_start.is_empty() && s.service_type != ServiceType::Oneshot {
        "service has no ExecStart=, which is only allowed for Type=oneshot, refusing"
    } else if s.exec_start.len() > 1 && s.service_type != ServiceType::Oneshot {
        "service has more than one ExecStart=, which is only allowed for Type=oneshot, refusing"
    } else if s.service_type == ServiceType::Oneshot
        && matches!(s.restart, Restart::Always | Restart::OnSuccess)
    {
        "Restart=always or on-success is not allowed for Type=oneshot, refusing"
    } else {
        return Ok(());
    };
    Err(LoadError::Invalid {
        file: unit.fragment.clone(),
        message: message.to_string(),
    })
}

/// Loads every unit below `root` (see [`UNIT_DIRS`]), plus the instances
/// that `*.wants/`/`*.requires/` links and dependencies name.
pub fn load_units(root: &Path, machine: &MachineInfo) -> Loaded {
    let mut loaded = Loaded::default();
    let index = match Index::scan(root) {
        Ok(i) => i,
        Err(e) => {
            loaded.errors.insert(String::new(), e);
            return loaded;
        }
    };
    // Names from link directories must exist; names from files do.
    let linked: BTreeSet<String> = index
        .wants
        .values()
        .chain(index.requires.values())
        .flatten()
        .cloned()
        .collect();
    let mut todo: Vec<String> = index.files.keys().chain(&linked).cloned().collect();
    todo.sort();
    todo.dedup();
    todo.reverse();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // First pass: classify names, collect aliases.
    let mut fragments: BTreeMap<String, PathBuf> = BTreeMap::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if parse_name(&name).is_some_and(|n| n.is_template()) {
            continue;
        }
        match index.resolve(&name) {
            Ok(Resolved::Fragment(p)) => {
                fragments.insert(name, p);
            }
            Ok(Resolved::Masked) => {
                loaded.masked.insert(name);
            }
            Ok(Resolved::Alias { canonical, path }) => {
                if !index.files.contains_key(&canonical) {
                    fragments.insert(canonical.clone(), path);
                }
                loaded.aliases.insert(name, canonical.clone());
                todo.push(canonical);
            }
            Err(LoadError::NotFound { .. }) if !linked.contains(&name) => {}
            Err(e) => {
                loaded.errors.insert(name, e);
            }
        }
    }
    // Aliases of masked units are masked too.
    for (alias, canonical) in &loaded.aliases {
        if loaded.masked.contains(canonical) {
            loaded.masked.insert(alias.clone());
        }
    }
    // Second pass: load, following dependencies on not yet seen instances.
    let mut queue: Vec<(String, PathBuf)> = fragments.into_iter().rev().collect();
    while let Some((name, fragment)) = queue.pop() {
        let aliases: Vec<String> = loaded
            .aliases
            .iter()
            .filter(|(_, c)| **c == name)
            .map(|(a, _)| a.clone())
            .collect();
        match index.load(&name, fragment, aliases, machine, &mut loaded.warnings) {
            Ok(unit) => {
                for dep in dependency_names(&unit) {
                    let is_instance = parse_name(dep).is_some_and(|n| n.template().is_some());
                    if is_instance && seen.insert(dep.clone()) {
                        match index.resolve(dep) {
                            Ok(Resolved::Fragment(p)) => queue.push((dep.clone(), p)),
                            Ok(Resolved::Masked) => {
                                loaded.masked.insert(dep.clone());
                            }
                            _ => {}
                        }
                    }
                }
                loaded.units.insert(name, unit);
            }
            Err(e) => {
                loaded.errors.insert(name, e);
            }
        }
    }
    let owners: BTreeSet<&String> = index.wants.keys().chain(index.requires.keys()).collect();
    for owner in owners {
        if loaded.units.contains_key(owner) || loaded.aliases.contains_key(owner) {
            continue;
        }
        let list = |m: &BTreeMap<String, BTreeSet<String>>| -> Vec<String> {
            m.get(owner).into_iter().flatten().cloned().collect()
        };
        loaded
            .links
            .insert(owner.clone(), (list(&index.wants), list(&index.requires)));
    }
    loaded
}

fn dependency_names(unit: &Unit) -> impl Iterator<Item = &String> {
    let u = &unit.unit;
    u.wants
        .iter()
        .chain(&u.requires)
        .chain(&u.requisite)
        .chain(&u.binds_to)
}

/// Loads one unit on demand (e.g. an instance `foo@bar.service` of a
/// template), following an alias to its canonical unit.
pub fn load_one(
    root: &Path,
    machine: &MachineInfo,
    name: &str,
) -> Result<(Unit, Vec<Warning>), LoadError> {
    let index = Index::scan(root)?;
    let mut current = name.to_string();
    for _ in 0..MAX_LINKS {
        match index.resolve(&current)? {
            Resolved::Masked => return Err(LoadError::Masked { name: current }),
            Resolved::Fragment(p) => {
                let aliases: Vec<String> = if current == name {
                    Vec::new()
                } else {
                    vec![name.to_string()]
                };
                let mut warnings = Vec::new();
                let unit = index.load(&current, p, aliases, machine, &mut warnings)?;
                return Ok((unit, warnings));
            }
            Resolved::Alias { canonical, path } => {
                if !index.files.contains_key(&canonical) {
                    let mut warnings = Vec::new();
                    let aliases = vec![name.to_string()];
                    let unit = index.load(&canonical, path, aliases, machine, &mut warnings)?;
                    return Ok((unit, warnings));
                }
                current = canonical;
            }
        }
    }
    Err(LoadError::SymlinkLoop {
        path: PathBuf::from(name),
    })
}
