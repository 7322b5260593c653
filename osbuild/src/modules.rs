//! Kernel modules: dependency data from each module's `.modinfo` section
//! (what depmod reads) and the closure the initramfs needs. The root's
//! `modules.dep` and the other modprobe indexes come from the host's depmod
//! ([`crate::tools::depmod`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("reading kernel modules under {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel module {path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error(
        "kernel module {name:?} is neither built into kernel {kver} nor shipped as a module{chain}"
    )]
    Missing {
        name: String,
        kver: String,
        chain: String,
    },
}

/// Module names use `_`; file names may use `-`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

#[derive(Debug, Clone)]
pub struct Module {
    /// Path relative to the modules directory (`kernel/fs/erofs/erofs.ko`).
    pub rel: PathBuf,
    pub depends: Vec<String>,
    /// `softdep` pre-dependencies (e.g. ext4 needs crc32c).
    pub pre_softdeps: Vec<String>,
}

/// All modules of one kernel (`<root>/usr/lib/modules/<kver>`).
#[derive(Debug)]
pub struct ModuleSet {
    pub dir: PathBuf,
    pub kver: String,
    pub modules: BTreeMap<String, Module>,
    pub builtin: BTreeSet<String>,
}

fn module_stem(file_name: &str) -> Option<&str> {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))
}

impl ModuleSet {
    pub fn scan(dir: &Path, kver: &str) -> Result<Self, ModulesError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModulesError::Io { path, source }
        };
        let mut modules = BTreeMap::new();
        let mut stack = vec![dir.join("kernel")];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).map_err(io(&d))? {
                let entry = entry.map_err(io(&d))?;
                let path = entry.path();
                let ft = entry.file_type().map_err(io(&path))?;
                if ft.is_dir() {
                    stack.push(path);
                    continue;
                }
                let fname = entry.file_name().to_string_lossy().into_owned();
                let Some(stem) = module_stem(&fname) else {
                    continue;
                };
                if !ft.is_file() {
                    // Read as it is, a link could bring a file of the build
                    // host into the initramfs.
                    return Err(ModulesError::Bad {
                        path,
                        reason: "not a regular file (a kernel module may not be a symlink)".into(),
                    });
                }
                if !fname.ends_with(".ko") {
                    return Err(ModulesError::Bad {
                        path,
                        reason: "compressed modules are not supported yet".into(),
                    });
                }
                let data = fs::read(&path).map_err(io(&path))?;
                let info = modinfo(&data).map_err(|reason| ModulesError::Bad {
                    path: path.clone(),
                    reason,
                })?;
                let mut depends = Vec::new();
                let mut pre = Vec::new();
                for (k, v) in &info {
                    match k.as_str() {
                        "depends" => {
                            depends.extend(v.split(',').filter(|s| !s.is_empty()).map(normalize))
                        }
                        "softdep" => pre.extend(parse_softdep_pre(v)),
                        _ => {}
                    }
                }
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                modules.insert(
                    normalize(stem),
                    Module {
                        rel,
                        depends,
                        pre_softdeps: pre,
                    },
                );
            }
        }
        let builtin_path = dir.join("modules.builtin");
        let builtin = match fs::read_to_string(&builtin_path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.rsplit('/').next())
                .filter_map(module_stem)
                .map(normalize)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(io(&builtin_path)(e)),
        };
        Ok(ModuleSet {
            dir: dir.to_path_buf(),
            kver: kver.to_string(),
            modules,
            builtin,
        })
    }

    /// Modules to load, dependencies first, for the requested names.
    /// Built-in modules are skipped; a name that is neither is an error.
    pub fn closure(&self, requested: &[String]) -> Result<Vec<&Module>, ModulesError> {
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        for name in requested {
            self.visit(&normalize(name), &mut Vec::new(), &mut done, &mut out)?;
        }
        Ok(out)
    }

    fn visit<'a>(
        &'a self,
        name: &str,
        chain: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<&'a Module>,
    ) -> Result<(), ModulesError> {
        if done.contains(name) || self.builtin.contains(name) || chain.iter().any(|c| c == name) {
            return Ok(());
        }
        let Some(m) = self.modules.get(name) else {
            return Err(ModulesError::Missing {
                name: name.to_string(),
                kver: self.kver.clone(),
                chain: if chain.is_empty() {
                    String::new()
                } else {
                    format!(" (needed by {})", chain.join(" -> "))
                },
            });
        };
        chain.push(name.to_string());
        for dep in m.pre_softdeps.iter().chain(&m.depends) {
            // A soft dependency may be absent (e.g. an optional accelerated
            // crc32c); only hard dependencies must exist.
            if m.pre_softdeps.contains(dep) && !self.modules.contains_key(dep) {
                continue;
            }
            self.visit(dep, chain, done, out)?;
        }
        chain.pop();
        done.insert(name.to_string());
        out.push(m);
        Ok(())
    }
}

fn parse_softdep_pre(v: &str) -> Vec<String> {
    let mut pre = Vec::new();
    let mut in_pre = false;
    for word in v.split_whitespace() {
        match word {
            "pre:" => in_pre = true,
            "post:" => in_pre = false,
            w if in_pre => pre.push(normalize(w)),
            _ => {}
        }
    }
    pre
}

/// The `key=value` strings of an ELF module's `.modinfo` section.
fn modinfo(data: &[u8]) -> Result<Vec<(String, String)>, String> {
    let obj = object::File::parse(data).map_err(|e| format!("not an ELF object: {e}"))?;
    let section = obj
        .section_by_name(".modinfo")
        .ok_or_else(|| "no .modinfo section".to_string())?;
    let bytes = section
        .data()
        .map_err(|e| format!("reading .modinfo: {e}"))?;
    Ok(bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(mods: &[(&str, &[&str], &[&str])], builtin: &[&str]) -> ModuleSet {
        ModuleSet {
            dir: PathBuf::from("/m"),
            kver: "6.1".into(),
            modules: mods
                .iter()
                .map(|(n, d, s)| {
                    (
                        n.to_string(),
                        Module {
                            rel: PathBuf::from(format!("kernel/{n}.ko")),
                            depends: d.iter().map(|s| s.to_string()).collect(),
                            pre_softdeps: s.iter().map(|s| s.to_string()).collect(),
                        },
                    )
                })
                .collect(),
            builtin: builtin.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn closure_orders_dependencies_first() {
        let s = set(
            &[
                ("dm_verity", &["dm_bufio", "dm_mod"], &[]),
                ("dm_bufio", &["dm_mod"], &[]),
                ("dm_mod", &[], &[]),
                ("ext4", &["jbd2"], &["crc32c", "absent_soft"]),
                ("crc32c", &[], &[]),
            ],
            &["jbd2"],
        );
        let names: Vec<_> = s
            .closure(&["dm-verity".into(), "ext4".into(), "dm_mod".into()])
            .unwrap()
            .iter()
            .map(|m| m.rel.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "kernel/dm_mod.ko",
                "kernel/dm_bufio.ko",
                "kernel/dm_verity.ko",
                "kernel/crc32c.ko",
                "kernel/ext4.ko"
            ]
        );
    }

    #[test]
    fn missing_module_names_the_chain() {
        let s = set(&[("a", &["b"], &[])], &[]);
        let e = s.closure(&["a".into()]).unwrap_err().to_string();
        assert!(e.contains("\"b\"") && e.contains("needed by a"), "{e}");
        assert!(s.closure(&["zz".into()]).is_err());
    }

    #[test]
    fn a_symlinked_module_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("6.1");
        std::fs::create_dir_all(dir.join("kernel/fs")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("kernel/fs/x.ko")).unwrap();
        let e = ModuleSet::scan(&dir, "6.1").unwrap_err().to_string();
        assert!(e.contains("x.ko") && e.contains("symlink"), "{e}");
    }

    #[test]
    fn softdep_syntax() {
        assert_eq!(parse_softdep_pre("pre: crc32c post: x"), ["crc32c"]);
    }
}
