//! Kernel modules by name, the way modprobe loads them from the running
//! kernel's module tree, and the modules listed in modules-load.d and on
//! the kernel command line.
//!
//! The tree is `<root>/usr/lib/modules/<release>/` with `modules.dep` in
//! depmod's text format (`kernel/a.ko: kernel/dep1.ko kernel/dep2.ko`,
//! dependencies listed so that the last one is loaded first; osbuild
//! writes it that way), optionally `modules.alias`, `modules.builtin` and
//! `modules.builtin.alias`. Stage 1 loads a precomputed list instead
//! ([`crate::stage1::load_modules`]).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use keel_core::cmdline::Cmdline;

use keel_units::confdirs;

use super::{Log, OSRELEASE};
use crate::error::chain;
use crate::stage1::at;
use crate::sys::Sys;

/// Where module trees live, one directory per kernel release.
pub const MODULES_DIR: &str = "/usr/lib/modules";
/// One directory per loaded module (and per built-in one with parameters).
pub const SYS_MODULE: &str = "/sys/module";
/// The configuration directory name below [`confdirs::CONF_ROOTS`].
pub const MODULES_LOAD_D: &str = "modules-load.d";
/// Kernel command line keys listing modules to load (comma-separated).
pub const CMDLINE_KEYS: [&str; 2] = ["modules_load", "modules-load"];

const COMPRESSED: [&str; 3] = [".ko.xz", ".ko.zst", ".ko.gz"];

/// How many modules (the module and its dependencies) a load actually
/// inserted; already loaded and built-in ones do not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadedCount(pub usize);

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading the kernel release from {}", path.display())]
    Release {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("module {name} not found in {}", dir.display())]
    NotFound { name: String, dir: PathBuf },
    #[error("{} is compressed; only uncompressed .ko modules can be loaded", path.display())]
    Compressed { path: PathBuf },
    #[error("loading {}: finit_module", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Module names treat `-` and `_` alike; `_` is canonical.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Like [`normalize`], but leaves `[...]` sets of an alias pattern alone
/// (kmod's alias_normalize).
fn normalize_alias(alias: &str) -> String {
    let mut out = String::with_capacity(alias.len());
    let mut in_set = false;
    for c in alias.chars() {
        match c {
            '[' => in_set = true,
            ']' => in_set = false,
            '-' if !in_set => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// The module name of a module file path (`kernel/x/virtio-net.ko` →
/// `virtio_net`).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(file);
    normalize(stem)
}

#[derive(Debug, Clone)]
struct DepEntry {
    /// As written in modules.dep: relative to the tree, or absolute.
    path: String,
    /// Dependencies as modules.dep lists them (load in reverse).
    deps: Vec<String>,
}

/// The module tree of the running kernel, read once.
#[derive(Debug)]
pub struct ModuleTree {
    root: PathBuf,
    dir: PathBuf,
    modules: HashMap<String, DepEntry>,
    builtin: BTreeSet<String>,
    /// (normalized pattern, module name), in file order.
    aliases: Vec<(String, String)>,
}

fn read_optional(path: &Path) -> Result<String, ModuleError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ModuleError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_aliases(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.lines().filter_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "alias").then_some(())?;
        let (pattern, module) = (w.next()?, w.next()?);
        Some((normalize_alias(pattern), normalize(module)))
    })
}

impl ModuleTree {
    /// Reads the tree of the kernel release in `<root>/proc/sys/kernel/osrelease`.
    pub fn open(root: &Path) -> Result<Self, ModuleError> {
        let release = super::kernel_release(root).map_err(|source| ModuleError::Release {
            path: at(root, OSRELEASE),
            source,
        })?;
        Self::open_release(root, &release)
    }

    /// Reads the tree of kernel `release` below `root`.
    pub fn open_release(root: &Path, release: &str) -> Result<Self, ModuleError> {
        let dir = at(root, MODULES_DIR).join(release);
        let dep_path = dir.join("modules.dep");
        let dep = fs::read_to_string(&dep_path).map_err(|source| ModuleError::Io {
            path: dep_path.clone(),
            source,
        })?;
        let mut modules = HashMap::new();
        for line in dep.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let entry = DepEntry {
                path: path.to_string(),
                deps: deps.split_whitespace().map(str::to_string).collect(),
            };
            modules.entry(module_name(path)).or_insert(entry);
        }
        let builtin = read_optional(&dir.join("modules.builtin"))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        let mut aliases: Vec<(String, String)> =
            parse_aliases(&read_optional(&dir.join("modules.alias"))?).collect();
        aliases.extend(parse_aliases(&read_optional(
            &dir.join("modules.builtin.alias"),
        )?));
        Ok(ModuleTree {
            root: root.to_path_buf(),
            dir,
            modules,
            builtin,
            aliases,
        })
    }

    /// The modules `name` stands for: itself if modules.dep or
    /// modules.builtin has it, otherwise every module an alias pattern
    /// matching it names.
    fn resolve(&self, name: &str) -> Vec<String> {
        let norm = normalize_alias(name);
        if self.modules.contains_key(&norm) || self.builtin.contains(&norm) {
            return vec![norm];
        }
        let mut out: Vec<String> = Vec::new();
        for (pattern, module) in &self.aliases {
            if super::glob::fnmatch(pattern, &norm) && !out.contains(module) {
                out.push(module.clone());
            }
        }
        out
    }

    fn is_loaded(&self, name: &str) -> bool {
        at(&self.root, SYS_MODULE).join(name).exists()
    }

    /// Loads `name` (a module name or alias) and its dependencies,
    /// dependencies first. Built-in and already loaded modules are
    /// skipped; `EEXIST` from the kernel counts as loaded already.
    pub fn load(&self, sys: &dyn Sys, name: &str) -> Result<LoadedCount, ModuleError> {
        let targets = self.resolve(name);
        if targets.is_empty() {
            return Err(ModuleError::NotFound {
                name: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        let mut count = 0;
        for module in targets {
            if self.builtin.contains(&module) {
                continue;
            }
            let Some(entry) = self.modules.get(&module) else {
                return Err(ModuleError::NotFound {
                    name: module,
                    dir: self.dir.clone(),
                });
            };
            if self.is_loaded(&module) {
                continue;
            }
            for dep in entry.deps.iter().rev() {
                count += self.load_file(sys, dep)?;
            }
            count += self.load_file(sys, &entry.path)?;
        }
        Ok(LoadedCount(count))
    }

    fn load_file(&self, sys: &dyn Sys, rel: &str) -> Result<usize, ModuleError> {
        let name = module_name(rel);
        if self.builtin.contains(&name) || self.is_loaded(&name) {
            return Ok(0);
        }
        let path = if rel.starts_with('/') {
            at(&self.root, rel)
        } else {
            self.dir.join(rel)
        };
        if COMPRESSED.iter().any(|ext| rel.ends_with(ext)) {
            return Err(ModuleError::Compressed { path });
        }
        let file = File::open(&path).map_err(|source| ModuleError::Io {
            path: path.clone(),
            source,
        })?;
        match sys.finit_module(&file) {
            Ok(()) => Ok(1),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(0),
            Err(source) => Err(ModuleError::Load { path, source }),
        }
    }
}

/// Loads one module (name or alias) with its dependencies from the running
/// kernel's tree below `root`.
pub fn load_module(sys: &dyn Sys, root: &Path, name: &str) -> Result<LoadedCount, ModuleError> {
    ModuleTree::open(root)?.load(sys, name)
}

/// The modules to load and where each was asked for: the kernel command
/// line first, then modules-load.d files in order.
fn requested(root: &Path, cmdline: &Cmdline, log: &mut Log) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for key in CMDLINE_KEYS {
        for value in cmdline.get_all(key) {
            for name in value.split(',').filter(|n| !n.is_empty()) {
                out.push((name.to_string(), "kernel command line".to_string()));
            }
        }
    }
    let files = super::conf_files(root, MODULES_LOAD_D, log);
    for file in files {
        let text = match file.read(root) {
            Ok(t) => t,
            Err(e) => {
                log.warn(&format!("reading {}: {e}", file.shown));
                continue;
            }
        };
        for (_, name) in confdirs::lines(&text, &['#', ';']) {
            out.push((name.to_string(), file.shown.clone()));
        }
    }
    out
}

/// Loads the modules of modules-load.d and `modules_load=` (as
/// systemd-modules-load does). Every problem is a warning.
pub fn load_configured(sys: &dyn Sys, root: &Path, cmdline: &Cmdline, log: &mut Log) {
    let wanted = requested(root, cmdline, log);
    if wanted.is_empty() {
        return;
    }
    let tree = match ModuleTree::open(root) {
        Ok(t) => t,
        Err(e) => {
            let names: Vec<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
            log.warn(&format!(
                "cannot load modules {}: {}",
                names.join(" "),
                chain(&e)
            ));
            return;
        }
    };
    let mut loaded = 0;
    for (name, from) in &wanted {
        match tree.load(sys, name) {
            Ok(LoadedCount(n)) => loaded += n,
            Err(ModuleError::NotFound { .. }) => {
                log.warn(&format!("module {name} not found (from {from})"));
            }
            Err(e) => log.warn(&format!(
                "loading module {name} (from {from}): {}",
                chain(&e)
            )),
        }
    }
    log.info(&format!(
        "modules-load.d: {} modules requested, {loaded} loaded",
        wanted.len()
    ));
}

/// Where the kernel lists its devices.
pub const SYS_DEVICES: &str = "/sys/devices";
/// How deep [`device_aliases`] looks below [`SYS_DEVICES`].
const MAX_DEVICE_DEPTH: usize = 24;
/// Rescans after loading drivers (a bus driver can add devices).
const MAX_COLDPLUG_PASSES: usize = 4;

/// Every distinct `modalias` of the devices below `<root>/sys/devices`, in
/// path order. Symbolic links are not followed.
pub fn device_aliases(root: &Path) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(at(root, SYS_DEVICES), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth < MAX_DEVICE_DEPTH {
                stack.push((entry.path(), depth + 1));
            } else if kind.is_file() && entry.file_name() == "modalias" {
                if let Ok(text) = fs::read_to_string(entry.path()) {
                    let alias = text.trim();
                    if !alias.is_empty() {
                        out.insert(alias.to_string());
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Loads the drivers of the devices the kernel has found, as udev's
/// coldplug does at boot: each device's `modalias` resolved through
/// modules.alias, with dependencies. Devices without a driver module are
/// normal (built-in drivers, or none needed); failed loads are warnings.
/// Devices that appear later (hotplug) are not handled.
pub fn load_device_drivers(sys: &dyn Sys, root: &Path, log: &mut Log) {
    let tree = match ModuleTree::open(root) {
        Ok(t) => t,
        // Without devices there is nothing to look up.
        Err(_) if device_aliases(root).is_empty() => return,
        Err(e) => {
            log.warn(&format!("cannot load device drivers: {}", chain(&e)));
            return;
        }
    };
    let mut seen = BTreeSet::new();
    let (mut devices, mut loaded) = (0usize, 0usize);
    for _ in 0..MAX_COLDPLUG_PASSES {
        let new: Vec<String> = device_aliases(root)
            .into_iter()
            .filter(|a| seen.insert(a.clone()))
            .collect();
        if new.is_empty() {
            break;
        }
        devices += new.len();
        for alias in &new {
            match tree.load(sys, alias) {
                Ok(LoadedCount(n)) => loaded += n,
                Err(ModuleError::NotFound { .. }) => {}
                // The module does not apply to this machine (acpi-cpufreq
                // on a VM): udev stays quiet about it too.
                Err(ModuleError::Load { source, .. })
                    if source.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => log.warn(&format!(
                    "loading the driver for device {alias}: {}",
                    chain(&e)
                )),
            }
        }
    }
    log.info(&format!(
        "device drivers: {devices} device aliases, {loaded} modules loaded"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSys;
    use std::os::unix::fs::symlink;

    const REL: &str = "6.1.0-test";

    /// A tree: br_netfilter -> bridge -> stp -> llc (modules.dep lists the
    /// deepest last), virtio_net -> net_failover -> failover, a compressed
    /// module, a built-in one and aliases.
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let dir = root.join("usr/lib/modules").join(REL);
        let kos = [
            "kernel/net/bridge/br_netfilter.ko",
            "kernel/net/bridge/bridge.ko",
            "kernel/net/802/stp.ko",
            "kernel/net/llc/llc.ko",
            "kernel/drivers/net/virtio_net.ko",
            "kernel/drivers/net/net_failover.ko",
            "kernel/net/core/failover.ko",
            "kernel/fs/overlayfs/overlay.ko",
        ];
        for ko in kos {
            let p = dir.join(ko);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "ELF").unwrap();
        }
        fs::write(dir.join("kernel/fs/squash.ko.xz"), "xz").unwrap();
        fs::write(
            dir.join("modules.dep"),
            "kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko\n\
             kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko\n\
             kernel/net/802/stp.ko: kernel/net/llc/llc.ko\n\
             kernel/net/llc/llc.ko:\n\
             kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n\
             kernel/fs/overlayfs/overlay.ko:\n\
             kernel/fs/squash.ko.xz:\n",
        )
        .unwrap();
        fs::write(
            dir.join("modules.builtin"),
            "kernel/fs/ext4/ext4.ko\nkernel/crypto/crc32c_generic.ko\n",
        )
        .unwrap();
        fs::write(
            dir.join("modules.alias"),
            "# Aliases extracted from modules themselves.\n\
             alias pci:v00001AF4d00001041sv*sd*bc*sc*i* virtio_net\n\
             alias fs-overlay overlay\n\
             alias net-pf-7 bridge\n",
        )
        .unwrap();
        fs::write(dir.join("modules.builtin.alias"), "alias fs-ext4 ext4\n").unwrap();
        fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        fs::write(root.join("proc/sys/kernel/osrelease"), format!("{REL}\n")).unwrap();
        fs::create_dir_all(root.join("sys/module")).unwrap();
        t
    }

    fn ko(rel: &str) -> String {
        format!("finit_module /usr/lib/modules/{REL}/kernel/{rel}")
    }

    #[test]
    fn coldplug_loads_the_drivers_of_present_devices_once() {
        let t = tree();
        let root = t.path();
        let pci = root.join("sys/devices/pci0000:00/0000:00:03.0");
        fs::create_dir_all(pci.join("virtio0")).unwrap();
        // The virtio NIC and a device no module serves.
        fs::write(
            pci.join("modalias"),
            "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00\n",
        )
        .unwrap();
        fs::write(pci.join("virtio0/modalias"), "virtio:d00000005v00001AF4\n").unwrap();
        // A link back up the tree must not be followed.
        symlink("../..", pci.join("virtio0/subsystem")).unwrap();
        assert_eq!(device_aliases(root).len(), 2);
        let sys = RecordingSys::new(root);
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        load_device_drivers(&sys, root, &mut log);
        assert!(log.warnings().is_empty(), "{:?}", log.warnings());
        assert_eq!(
            sys.calls(),
            [
                ko("net/core/failover.ko"),
                ko("drivers/net/net_failover.ko"),
                ko("drivers/net/virtio_net.ko"),
            ]
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("device drivers: 2 device aliases, 3 modules loaded"),
            "{text}"
        );
    }

    #[test]
    fn coldplug_is_quiet_about_drivers_that_do_not_apply_only() {
        let t = tree();
        let root = t.path();
        for (dev, alias) in [("a", "fs-overlay"), ("b", "net-pf-7")] {
            let d = root.join("sys/devices/platform").join(dev);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("modalias"), alias).unwrap();
        }
        let sys = RecordingSys::new(root);
        sys.fail_on(&ko("fs/overlayfs/overlay.ko"), libc::ENODEV);
        sys.fail_on(&ko("net/802/stp.ko"), libc::EPERM);
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        load_device_drivers(&sys, root, &mut log);
        let w = log.warnings().to_vec();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("warning: loading the driver for device net-pf-7: ")
                && w[0].contains("stp.ko"),
            "{w:?}"
        );
    }

    #[test]
    fn loads_dependencies_deepest_first() {
        let t = tree();
        let sys = RecordingSys::new(t.path());
        let n = load_module(&sys, t.path(), "br-netfilter").unwrap();
        assert_eq!(n, LoadedCount(4));
        assert_eq!(
            sys.calls(),
            [
                ko("net/llc/llc.ko"),
                ko("net/802/stp.ko"),
                ko("net/bridge/bridge.ko"),
                ko("net/bridge/br_netfilter.ko"),
            ]
        );
    }

    #[test]
    fn skips_loaded_and_builtin_and_accepts_eexist() {
        let t = tree();
        let root = t.path();
        fs::create_dir_all(root.join("sys/module/llc")).unwrap();
        let sys = RecordingSys::new(root);
        sys.fail_on(&ko("net/802/stp.ko"), libc::EEXIST);
        let n = load_module(&sys, root, "bridge").unwrap();
        assert_eq!(n, LoadedCount(1));
        assert_eq!(
            sys.calls(),
            [ko("net/802/stp.ko"), ko("net/bridge/bridge.ko")]
        );

        // Already loaded as a whole: nothing at all.
        fs::create_dir_all(root.join("sys/module/virtio_net")).unwrap();
        let sys = RecordingSys::new(root);
        assert_eq!(
            load_module(&sys, root, "virtio_net").unwrap(),
            LoadedCount(0)
        );
        // Built in, by name and by alias.
        assert_eq!(load_module(&sys, root, "ext4").unwrap(), LoadedCount(0));
        assert_eq!(load_module(&sys, root, "fs-ext4").unwrap(), LoadedCount(0));
        assert_eq!(
            load_module(&sys, root, "crc32c-generic").unwrap(),
            LoadedCount(0)
        );
        assert!(sys.calls().is_empty());
    }

    #[test]
    fn resolves_aliases_with_patterns() {
        let t = tree();
        let sys = RecordingSys::new(t.path());
        let tree = ModuleTree::open(t.path()).unwrap();
        assert_eq!(tree.load(&sys, "fs-overlay").unwrap(), LoadedCount(1));
        assert_eq!(
            tree.load(
                &sys,
                "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00"
            )
            .unwrap(),
            LoadedCount(3)
        );
        assert_eq!(
            sys.calls(),
            [
                ko("fs/overlayfs/overlay.ko"),
                ko("net/core/failover.ko"),
                ko("drivers/net/net_failover.ko"),
                ko("drivers/net/virtio_net.ko"),
            ]
        );
    }

    #[test]
    fn reports_missing_compressed_and_failing_modules() {
        let t = tree();
        let sys = RecordingSys::new(t.path());
        let tree = ModuleTree::open(t.path()).unwrap();
        let e = tree.load(&sys, "nosuch").unwrap_err();
        assert!(matches!(e, ModuleError::NotFound { ref name, .. } if name == "nosuch"));
        let e = tree.load(&sys, "squash").unwrap_err();
        assert!(matches!(e, ModuleError::Compressed { .. }));
        assert!(e.to_string().ends_with(
            "kernel/fs/squash.ko.xz is compressed; only uncompressed .ko modules can be loaded"
        ));
        sys.fail_on(&ko("net/llc/llc.ko"), libc::ENOEXEC);
        let e = tree.load(&sys, "llc").unwrap_err();
        assert!(chain(&e).ends_with("llc.ko: finit_module: Exec format error (os error 8)"));

        let empty = tempfile::tempdir().unwrap();
        let e = load_module(&sys, empty.path(), "llc").unwrap_err();
        assert!(matches!(e, ModuleError::Release { .. }));
    }

    #[test]
    fn loads_configured_modules_with_masking() {
        let t = tree();
        let root = t.path();
        let put = |rel: &str, text: &str| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        put(
            "usr/lib/modules-load.d/10-net.conf",
            "# bridge for containers\nbr_netfilter\n; old\n",
        );
        put("usr/lib/modules-load.d/20-masked.conf", "llc\n");
        put("usr/lib/modules-load.d/30-fs.conf", "overlay\n");
        put("etc/modules-load.d/30-fs.conf", "  fs-overlay  \nnosuch\n");
        symlink("/dev/null", root.join("etc/modules-load.d/20-masked.conf")).unwrap();
        let sys = RecordingSys::new(root);
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let cmdline = Cmdline::parse("quiet modules_load=virtio-net,missing1 modules-load=ext4");
        load_configured(&sys, root, &cmdline, &mut log);
        assert_eq!(
            log.warnings(),
            [
                "warning: module missing1 not found (from kernel command line)",
                "warning: module nosuch not found (from /etc/modules-load.d/30-fs.conf)",
            ]
        );
        assert_eq!(
            sys.calls(),
            [
                ko("net/core/failover.ko"),
                ko("drivers/net/net_failover.ko"),
                ko("drivers/net/virtio_net.ko"),
                ko("net/llc/llc.ko"),
                ko("net/802/stp.ko"),
                ko("net/bridge/bridge.ko"),
                ko("net/bridge/br_netfilter.ko"),
                ko("fs/overlayfs/overlay.ko"),
            ]
        );
        drop(log);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("keel-init: modules-load.d: 6 modules requested, 8 loaded\n"));
    }

    #[test]
    fn a_missing_tree_is_one_warning() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc/modules-load.d")).unwrap();
        fs::write(t.path().join("etc/modules-load.d/a.conf"), "a\nb\n").unwrap();
        let sys = RecordingSys::new(t.path());
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        load_configured(&sys, t.path(), &Cmdline::parse(""), &mut log);
        assert_eq!(log.warnings().len(), 1);
        assert!(log.warnings()[0]
            .starts_with("warning: cannot load modules a b: reading the kernel release"));
    }
}
