//! Dependency resolution: the closure of the requested packages over Depends and
//! Pre-Depends. Recommends, Suggests, Conflicts and Breaks are not considered.
//! Excluded packages are never selected: a dependency that names one (in
//! any alternative) counts as met.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::deps::{group_to_string, parse_request, Dep};
use crate::packages::{MultiArch, Package};
use crate::repository::Repository;
use crate::Error;

struct State<'r> {
    repo: &'r Repository,
    selected: BTreeMap<String, usize>,
    selected_idx: HashSet<usize>,
    chain: HashMap<String, String>,
    queue: VecDeque<usize>,
    exclude: HashSet<String>,
    /// Excluded names some dependency asked for.
    excluded_hits: HashSet<String>,
}

impl Repository {
    /// Resolves `requests` (`name`, `name (>= 1.0)`, `name=1.0`) to the sorted list
    /// of packages they need, themselves included.
    pub fn resolve(&self, requests: &[String]) -> Result<Vec<Package>, Error> {
        self.resolve_excluding(requests, &[])
    }

    /// [`Repository::resolve`], leaving out the packages named in
    /// `exclude`: dependencies on them count as met. An excluded package
    /// that is also requested, or that nothing depends on, is an error
    /// (the exclusion is wrong or stale).
    pub fn resolve_excluding(
        &self,
        requests: &[String],
        exclude: &[String],
    ) -> Result<Vec<Package>, Error> {
        let mut st = State {
            repo: self,
            selected: BTreeMap::new(),
            selected_idx: HashSet::new(),
            chain: HashMap::new(),
            queue: VecDeque::new(),
            exclude: exclude.iter().cloned().collect(),
            excluded_hits: HashSet::new(),
        };
        for request in requests {
            let dep = parse_request(request).map_err(|message| Error::BadRequest {
                request: request.clone(),
                message,
            })?;
            if st.exclude.contains(&dep.name) {
                return Err(Error::BadExclude {
                    name: dep.name,
                    why: "is also requested",
                });
            }
            if st.satisfied(&dep) {
                continue;
            }
            let real = st.real_candidates(&dep);
            let idx = match real.first() {
                Some(i) => *i,
                None => match st.provider_candidates(&dep).first() {
                    Some(i) => *i,
                    None => {
                        return Err(Error::NoSuchPackage {
                            request: request.clone(),
                        })
                    }
                },
            };
            if let Some(clash) = st.clash(idx, &dep, None) {
                return Err(clash);
            }
            st.select(idx, None);
        }
        while let Some(idx) = st.queue.pop_front() {
            let pkg = &self.packages[idx];
            for group in pkg.pre_depends.iter().chain(&pkg.depends) {
                st.resolve_group(idx, group)?;
            }
        }
        if let Some(name) = exclude.iter().find(|n| !st.excluded_hits.contains(*n)) {
            return Err(Error::BadExclude {
                name: name.clone(),
                why: "is not a dependency of any selected package",
            });
        }
        Ok(st
            .selected
            .values()
            .map(|i| self.packages[*i].clone())
            .collect())
    }
}

impl State<'_> {
    fn arch_ok(&self, pkg: &Package, dep: &Dep, via_provides: bool) -> bool {
        match dep.arch.as_deref() {
            None => true,
            Some("any") => {
                pkg.multi_arch == MultiArch::Allowed
                    || (via_provides && pkg.multi_arch == MultiArch::Foreign)
            }
            Some("native") => true,
            Some(a) => a == self.repo.arch,
        }
    }

    fn version_ok(dep: &Dep, version: Option<&str>) -> bool {
        match (&dep.constraint, version) {
            (None, _) => true,
            (Some((rel, want)), Some(v)) => rel.holds(v, want),
            (Some(_), None) => false,
        }
    }

    /// Real packages named like `dep` that satisfy it, best first.
    fn real_candidates(&self, dep: &Dep) -> Vec<usize> {
        let Some(list) = self.repo.by_name.get(&dep.name) else {
            return Vec::new();
        };
        list.iter()
            .copied()
            .filter(|i| {
                let p = &self.repo.packages[*i];
                self.arch_ok(p, dep, false) && Self::version_ok(dep, Some(&p.version))
            })
            .collect()
    }

    /// Packages providing `dep` in a way that satisfies it, ordered by name.
    fn provider_candidates(&self, dep: &Dep) -> Vec<usize> {
        let Some(list) = self.repo.providers.get(&dep.name) else {
            return Vec::new();
        };
        let mut out: Vec<usize> = list
            .iter()
            .filter(|(i, v)| {
                self.arch_ok(&self.repo.packages[*i], dep, true)
                    && Self::version_ok(dep, v.as_deref())
            })
            .map(|(i, _)| *i)
            .collect();
        let pk = &self.repo.packages;
        out.sort_by(|a, b| {
            pk[*a]
                .name
                .cmp(&pk[*b].name)
                .then_with(|| crate::compare_versions(&pk[*b].version, &pk[*a].version))
        });
        out.dedup();
        out
    }

    /// Whether an already selected package satisfies `dep`.
    fn satisfied(&self, dep: &Dep) -> bool {
        if let Some(i) = self.selected.get(&dep.name) {
            let p = &self.repo.packages[*i];
            if self.arch_ok(p, dep, false) && Self::version_ok(dep, Some(&p.version)) {
                return true;
            }
        }
        self.repo.providers.get(&dep.name).is_some_and(|list| {
            list.iter().any(|(i, v)| {
                self.selected_idx.contains(i)
                    && self.arch_ok(&self.repo.packages[*i], dep, true)
                    && Self::version_ok(dep, v.as_deref())
            })
        })
    }

    /// An error if another version of the package at `idx` is already selected.
    fn clash(&self, idx: usize, dep: &Dep, parent: Option<usize>) -> Option<Error> {
        let p = &self.repo.packages[idx];
        let other = *self.selected.get(&p.name)?;
        if other == idx {
            return None;
        }
        let chain = parent
            .map(|pi| self.chain_of(&self.repo.packages[pi].name))
            .unwrap_or_else(|| "request".to_string());
        Some(Error::VersionClash {
            dependency: dep.to_string(),
            package: p.name.clone(),
            version: p.version.clone(),
            selected: self.repo.packages[other].version.clone(),
            chain,
        })
    }

    fn chain_of(&self, name: &str) -> String {
        self.chain
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    fn select(&mut self, idx: usize, parent: Option<usize>) {
        let name = self.repo.packages[idx].name.clone();
        let chain = match parent {
            Some(pi) => format!("{} -> {name}", self.chain_of(&self.repo.packages[pi].name)),
            None => name.clone(),
        };
        self.chain.insert(name.clone(), chain);
        self.selected.insert(name, idx);
        self.selected_idx.insert(idx);
        self.queue.push_back(idx);
    }

    fn resolve_group(&mut self, parent: usize, group: &[Dep]) -> Result<(), Error> {
        if group.iter().any(|d| self.satisfied(d)) {
            return Ok(());
        }
        if let Some(d) = group.iter().find(|d| self.exclude.contains(&d.name)) {
            log::debug!(
                "{} of {} is excluded",
                d.name,
                self.repo.packages[parent].name
            );
            self.excluded_hits.insert(d.name.clone());
            return Ok(());
        }
        let mut clash = None;
        for dep in group {
            // a real package of that name first, then providers (ordered by name)
            let real = self.real_candidates(dep);
            let candidates = if real.is_empty() {
                let provs = self.provider_candidates(dep);
                let names: Vec<&str> = provs
                    .iter()
                    .map(|i| self.repo.packages[*i].name.as_str())
                    .collect();
                if names.len() > 1 {
                    log::debug!(
                        "{dep} is provided by {}; choosing {}",
                        names.join(", "),
                        names[0]
                    );
                }
                provs
            } else {
                real
            };
            for idx in candidates {
                match self.clash(idx, dep, Some(parent)) {
                    None => {
                        self.select(idx, Some(parent));
                        return Ok(());
                    }
                    Some(e) => {
                        clash.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = clash {
            return Err(e);
        }
        let p = &self.repo.packages[parent];
        Err(Error::Unsatisfiable {
            dependency: group_to_string(group),
            package: p.name.clone(),
            chain: self.chain_of(&p.name),
        })
    }
}
