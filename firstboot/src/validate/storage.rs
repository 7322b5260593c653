//! `storage`: files, directories and links (nodes), disks and partitions,
//! filesystems, RAID and LUKS, and the checks across them.

use std::collections::{HashMap, HashSet};

use ignition_config::v3_6::{
    Disk, Filesystem, Luks, NodeGroup, NodeUser, Partition, Raid, Storage,
};

use super::{resource, Ctx};
use crate::config::Config;
use crate::report::JsonPath;

/// Ignition's `validatePath`: set, absolute, fully simplified.
pub fn path_problem(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        Some("path not specified")
    } else if !p.starts_with('/') {
        Some("path not absolute")
    } else if clean(p) != p {
        Some("path is not fully simplified")
    } else {
        None
    }
}

/// Go's `path.Clean` for absolute paths.
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// Go's `path.Join(base, rel)` followed by Clean, for an absolute base.
fn join(base: &str, rel: &str) -> String {
    clean(&format!("{base}/{rel}"))
}

fn path_at(cx: &mut Ctx, at: JsonPath, p: &str) {
    if let Some(problem) = path_problem(p) {
        cx.error(at, problem);
    }
}

fn owner(cx: &mut Ctx, at: &JsonPath, user: &Option<NodeUser>, group: &Option<NodeGroup>) {
    if let Some(u) = user {
        if u.id.is_some() && u.name.as_deref().is_some_and(|n| !n.is_empty()) {
            cx.error(at.key("user"), "cannot set both id and name");
        }
    }
    if let Some(g) = group {
        if g.id.is_some() && g.name.as_deref().is_some_and(|n| !n.is_empty()) {
            cx.error(at.key("group"), "cannot set both id and name");
        }
    }
}

fn mode(cx: &mut Ctx, at: JsonPath, mode: Option<i64>) {
    let Some(m) = mode else { return };
    if !(0..=0o7777).contains(&m) {
        cx.error(at.clone(), "illegal file mode");
    }
    // Special bits are accepted from 3.6; Ignition warns for older specs.
    if (m as u32) & 0o7000 != 0 && cx.minor < 6 {
        cx.warning(
            at,
            "setuid/setgid/sticky bits are not supported in spec versions older than 3.4.0",
        );
    }
}

/// Files, directories or links whose path equals a unit or dropin the
/// config writes.
pub fn systemd_conflicts(cx: &mut Ctx, config: &Config) {
    let mut unit_paths = HashSet::new();
    for u in config
        .systemd
        .as_ref()
        .and_then(|s| s.units.as_ref())
        .into_iter()
        .flatten()
    {
        if u.contents.as_deref().is_some_and(|c| !c.is_empty()) {
            unit_paths.insert(format!("/etc/systemd/system/{}", u.name));
        }
        for d in u.dropins.iter().flatten() {
            if d.contents.as_deref().is_some_and(|c| !c.is_empty()) {
                unit_paths.insert(format!("/etc/systemd/system/{}.d/{}", u.name, d.name));
            }
        }
    }
    let Some(s) = &config.storage else { return };
    let root = JsonPath::root().key("storage");
    let lists: [(&str, Vec<&str>); 3] = [
        (
            "files",
            s.files.iter().flatten().map(|f| f.path.as_str()).collect(),
        ),
        (
            "directories",
            s.directories
                .iter()
                .flatten()
                .map(|d| d.path.as_str())
                .collect(),
        ),
        (
            "links",
            s.links.iter().flatten().map(|l| l.path.as_str()).collect(),
        ),
    ];
    for (name, paths) in lists {
        for (i, p) in paths.into_iter().enumerate() {
            if unit_paths.contains(p) {
                cx.error(
                    root.key(name).index(i).key("path"),
                    "path conflicts with systemd unit or dropin",
                );
            }
        }
    }
}

/// How many of `links` (path → how often the config lists it) are a
/// directory above `p`: for each `/` in `p`, the part before it. Linear in
/// the length of `p`, however many links there are.
fn links_above(links: &HashMap<&str, usize>, p: &str) -> usize {
    p.match_indices('/')
        .map(|(i, _)| links.get(&p[..i]).copied().unwrap_or(0))
        .sum()
}

pub fn storage(cx: &mut Ctx, at: &JsonPath, s: &Storage) {
    let mut links: HashMap<&str, usize> = HashMap::new();
    for l in s.links.iter().flatten() {
        *links.entry(l.path.as_str()).or_default() += 1;
    }
    let under_link = |p: &str| links_above(&links, p);
    let dir_paths: HashSet<&str> = s
        .directories
        .iter()
        .flatten()
        .map(|d| d.path.as_str())
        .collect();

    for (i, d) in s.directories.iter().flatten().enumerate() {
        let p = at.key("directories").index(i);
        for _ in 0..under_link(&d.path) {
            cx.error(p.clone(), "directory path includes link in config");
        }
        owner(cx, &p, &d.user, &d.group);
        path_at(cx, p.key("path"), &d.path);
        mode(cx, p.key("mode"), d.mode);
    }
    for (i, f) in s.files.iter().flatten().enumerate() {
        let p = at.key("files").index(i);
        for _ in 0..under_link(&f.path) {
            cx.error(p.clone(), "file path includes link in config");
        }
        owner(cx, &p, &f.user, &f.group);
        path_at(cx, p.key("path"), &f.path);
        mode(cx, p.key("mode"), f.mode);
        if f.overwrite == Some(true)
            && f.contents
                .as_ref()
                .and_then(|c| c.source.as_ref())
                .is_none()
        {
            cx.error(
                p.key("overwrite"),
                "overwrite must be false if source is unspecified",
            );
        }
        if let Some(c) = &f.contents {
            resource::resource(cx, &p.key("contents"), c, true);
        }
        for (j, a) in f.append.iter().flatten().enumerate() {
            resource::resource(cx, &p.key("append").index(j), a, true);
        }
    }
    for (i, l) in s.links.iter().flatten().enumerate() {
        let p = at.key("links").index(i);
        if under_link(&l.path) > 0 {
            cx.error(p.clone(), "link path includes link in config");
        }
        owner(cx, &p, &l.user, &l.group);
        path_at(cx, p.key("path"), &l.path);
        let target = l.target.as_deref().unwrap_or("");
        if target.is_empty() && cx.minor >= 3 {
            cx.error(p.key("target"), "link target is required");
            continue;
        }
        if l.hard == Some(true) {
            // Ignition joins a relative target with the link's own path.
            let t = if target.starts_with('/') {
                clean(target)
            } else {
                join(&l.path, target)
            };
            if dir_paths.contains(t.as_str()) {
                cx.error(p.clone(), "hard link target is a directory");
            }
            let u = l.user.as_ref();
            let g = l.group.as_ref();
            for (set, key) in [
                (u.is_some_and(|u| u.id.is_some()), ("user", "id")),
                (u.is_some_and(|u| u.name.is_some()), ("user", "name")),
                (g.is_some_and(|g| g.id.is_some()), ("group", "id")),
                (g.is_some_and(|g| g.name.is_some()), ("group", "name")),
            ] {
                if set {
                    cx.warning(p.key(key.0).key(key.1), "user/group ignored for hard link");
                }
            }
        }
    }
    // directories, files and links share one set of paths.
    let nodes = s
        .directories
        .iter()
        .flatten()
        .map(|d| ("directories", d.path.clone()))
        .chain(s.files.iter().flatten().map(|f| ("files", f.path.clone())))
        .chain(s.links.iter().flatten().map(|l| ("links", l.path.clone())));
    let mut seen = HashSet::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (list, path) in nodes {
        let i = index.entry(list).or_default();
        if !seen.insert(path) {
            cx.error(at.key(list).index(*i), "duplicate entry defined");
        }
        *i += 1;
    }

    let disks: Vec<&Disk> = s.disks.iter().flatten().collect();
    for (i, d) in disks.iter().enumerate() {
        disk(cx, &at.key("disks").index(i), d);
    }
    cx.dups(&at.key("disks"), disks.iter().map(|d| d.device.clone()));
    let by_device: HashMap<&str, &Disk> = disks.iter().map(|d| (d.device.as_str(), *d)).collect();
    let filesystems: Vec<&Filesystem> = s.filesystems.iter().flatten().collect();
    for (i, f) in filesystems.iter().enumerate() {
        let p = at.key("filesystems").index(i);
        filesystem(cx, &p, f);
        if let Some(d) = by_device.get(f.device.as_str()) {
            if d.partitions.as_ref().is_some_and(|p| !p.is_empty()) {
                cx.warning(p.key("device"), "filesystem overwrites partitioned device");
            } else if d.wipe_table == Some(true) && f.wipe_filesystem != Some(true) {
                cx.warning(
                    p.key("device"),
                    "device matches disk with wipeTable enabled; filesystem will be wiped",
                );
            }
        }
    }
    cx.dups(
        &at.key("filesystems"),
        filesystems.iter().map(|f| f.device.clone()),
    );
    let raids: Vec<&Raid> = s.raid.iter().flatten().collect();
    for (i, r) in raids.iter().enumerate() {
        raid(cx, &at.key("raid").index(i), r);
    }
    cx.dups(&at.key("raid"), raids.iter().map(|r| r.name.clone()));
    let luks: Vec<&Luks> = s.luks.iter().flatten().collect();
    for (i, l) in luks.iter().enumerate() {
        luks_device(cx, &at.key("luks").index(i), l);
    }
    cx.dups(&at.key("luks"), luks.iter().map(|l| l.name.clone()));
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn disk(cx: &mut Ctx, at: &JsonPath, d: &Disk) {
    if d.device.is_empty() {
        cx.error(at.key("device"), "disk device is required");
        return;
    }
    path_at(cx, at.key("device"), &d.device);
    let parts: Vec<&Partition> = d.partitions.iter().flatten().collect();
    let pp = at.key("partitions");
    // partition numbers collide (one error per disk)
    let mut numbers = HashSet::new();
    if let Some(i) = parts.iter().enumerate().find_map(|(i, p)| {
        let n = p.number.unwrap_or(0);
        (n != 0 && !numbers.insert(n)).then_some(i)
    }) {
        cx.error(pp.index(i), "partition numbers collide");
    }
    // partitions overlap (one error per disk)
    let extents: Vec<Option<(i64, i64)>> = parts
        .iter()
        .map(|p| match (p.start_mib, p.size_mib) {
            (Some(start), Some(size)) if start != 0 => Some((
                start,
                if size == 0 {
                    start
                } else {
                    start.saturating_add(size).saturating_sub(1)
                },
            )),
            _ => None,
        })
        .collect();
    if let Some(j) = overlap(&extents) {
        cx.error(pp.index(j), "partitions overlap");
    }
    if parts.iter().any(|p| p.number.unwrap_or(0) == 0)
        && parts.iter().any(|p| p.should_exist == Some(false))
    {
        cx.error(
            pp.clone(),
            "shouldExist is false for a partition and other partition(s) has start or size 0",
        );
    }
    let mut labels = HashSet::new();
    if let Some(i) = parts.iter().enumerate().find_map(|(i, p)| {
        let l = p.label.as_ref()?;
        (!labels.insert(l.clone())).then_some(i)
    }) {
        cx.error(pp.index(i), "cannot use the same partition label twice");
    }
    for (i, p) in parts.iter().enumerate() {
        partition(cx, &pp.index(i), p);
    }
    cx.dups(
        &pp,
        parts
            .iter()
            .map(|p| match (p.number.unwrap_or(0), &p.label) {
                (0, Some(l)) => format!("label:{l}"),
                (0, None) => String::new(),
                (n, _) => format!("number:{n}"),
            }),
    );
}

/// Whether extent `a` overlaps `b`, as Ignition checks it: an end of `a`
/// lies in `b`, or `b` lies strictly inside `a`.
fn overlaps((s1, e1): (i64, i64), (s2, e2): (i64, i64)) -> bool {
    let inside = |x: i64| x >= s2 && x <= e2;
    inside(s1) || inside(e1) || (s1 < s2 && e1 > e2)
}

/// For the first extent (in order) that overlaps another one, the first
/// that it overlaps; in O(n log n).
///
/// `a` overlaps some other extent when one of its ends lies in another
/// (the extents that start at or before the point, with the largest end,
/// tell) or when another lies strictly inside it (those that start after
/// it, with the smallest end, tell).
fn overlap(extents: &[Option<(i64, i64)>]) -> Option<usize> {
    let mut by_start: Vec<(i64, i64, usize)> = extents
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.map(|(s, e)| (s, e, i)))
        .collect();
    by_start.sort_unstable();
    // The two largest ends among the first k extents by start, with their
    // indexes (two, so that an extent can leave itself out).
    let mut top2: Vec<[(i64, usize); 2]> = Vec::with_capacity(by_start.len());
    let none = (i64::MIN, usize::MAX);
    let mut best = [none, none];
    for &(_, e, i) in &by_start {
        if e > best[0].0 {
            best = [(e, i), best[0]];
        } else if e > best[1].0 {
            best[1] = (e, i);
        }
        top2.push(best);
    }
    // The smallest end among the extents from position k on.
    let mut min_end = vec![i64::MAX; by_start.len() + 1];
    for k in (0..by_start.len()).rev() {
        min_end[k] = min_end[k + 1].min(by_start[k].1);
    }
    let point_in_other = |x: i64, me: usize| {
        // Extents that start at or before x; is one's end at or after x?
        let k = by_start.partition_point(|&(s, _, _)| s <= x);
        k > 0 && top2[k - 1].iter().any(|&(e, i)| i != me && e >= x)
    };
    let first = extents.iter().enumerate().find_map(|(i, e)| {
        let (s, e) = (*e)?;
        let after = by_start.partition_point(|&(s2, _, _)| s2 <= s);
        let inside_me = min_end[after] < e;
        (point_in_other(s, i) || point_in_other(e, i) || inside_me).then_some(i)
    })?;
    let a = extents[first]?;
    extents
        .iter()
        .enumerate()
        .find_map(|(j, b)| (j != first && overlaps(a, (*b)?)).then_some(j))
}

fn partition(cx: &mut Ctx, at: &JsonPath, p: &Partition) {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if p.should_exist == Some(false)
        && (p.label.is_some()
            || set(&p.type_guid)
            || set(&p.guid)
            || p.start_mib.is_some()
            || p.size_mib.is_some())
    {
        cx.error(
            at.clone(),
            "shouldExist specified false with other options also specified",
        );
    }
    if p.number.unwrap_or(0) == 0 && p.label.is_none() {
        cx.error(
            at.clone(),
            "a partition number >= 1 or a label must be specified",
        );
    }
    if let Some(l) = &p.label {
        if l.len() > 36 {
            cx.error(
                at.key("label"),
                "partition labels may not exceed 36 characters",
            );
        } else if l.contains(':') {
            cx.error(
                at.key("label"),
                "partition label will be truncated to text before the colon",
            );
        }
    }
    for (key, v) in [("guid", &p.guid), ("typeGuid", &p.type_guid)] {
        if let Some(g) = v {
            if !g.is_empty() && !is_guid(g) {
                cx.error(
                    at.key(key),
                    "doesn't match the form \"01234567-89AB-CDEF-EDCB-A98765432101\"",
                );
            }
        }
    }
}

fn filesystem(cx: &mut Ctx, at: &JsonPath, f: &Filesystem) {
    let nonempty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if let Some(p) = f.path.as_deref().filter(|p| !p.is_empty()) {
        path_at(cx, at.key("path"), p);
    }
    path_at(cx, at.key("device"), &f.device);
    let format = f.format.as_deref().unwrap_or("");
    if format.is_empty() {
        if nonempty(&f.path)
            || nonempty(&f.label)
            || nonempty(&f.uuid)
            || f.wipe_filesystem == Some(true)
            || f.mount_options.as_ref().is_some_and(|m| !m.is_empty())
            || f.options.as_ref().is_some_and(|o| !o.is_empty())
        {
            cx.error(
                at.key("format"),
                "format cannot be empty when path, label, uuid, wipeFilesystem, options, or mountOptions is specified",
            );
        }
    } else {
        let mut known = vec!["ext4", "btrfs", "xfs", "swap", "vfat"];
        if cx.minor >= 3 {
            known.push("none");
        }
        if !known.contains(&format) {
            cx.error(at.key("format"), "invalid filesystem format");
        }
    }
    if let Some(label) = f.label.as_deref().filter(|l| !l.is_empty()) {
        if format.is_empty() {
            cx.error(
                at.key("label"),
                "filesystem must specify format if label is specified",
            );
        }
        let max = match format {
            "ext4" => Some(16),
            "btrfs" => Some(256),
            "xfs" => Some(12),
            "swap" => Some(15),
            "vfat" => Some(11),
            _ => None,
        };
        if let Some(max) = max.filter(|m| label.len() > *m) {
            cx.error(
                at.key("label"),
                format!(
                    "filesystem labels cannot be longer than {max} characters when using {format}"
                ),
            );
        }
    }
}

fn raid(cx: &mut Ctx, at: &JsonPath, r: &Raid) {
    let level = r.level.as_deref().unwrap_or("");
    if level.is_empty() && cx.minor >= 3 {
        cx.error(at.key("level"), "raid level is required");
    } else {
        match level {
            "linear" | "raid0" | "0" | "stripe" => {
                if r.spares.unwrap_or(0) != 0 {
                    cx.error(
                        at.key("level"),
                        "spares unsupported for linear and raid0 arrays",
                    );
                }
            }
            "raid1" | "1" | "mirror" | "raid4" | "4" | "raid5" | "5" | "raid6" | "6" | "raid10"
            | "10" => {}
            _ => cx.error(at.key("level"), "unrecognized raid level"),
        }
    }
    let devices = r.devices.as_deref().unwrap_or_default();
    if devices.is_empty() {
        cx.error(at.key("devices"), "raid devices required");
    }
    for (i, d) in devices.iter().enumerate() {
        path_at(cx, at.key("devices").index(i), d);
    }
    cx.dups(&at.key("devices"), devices.iter().cloned());
}

fn luks_device(cx: &mut Ctx, at: &JsonPath, l: &Luks) {
    if l.name.contains('/') {
        cx.error(at.key("name"), "device names cannot contain slashes");
    }
    if l.label.as_deref().is_some_and(|s| s.len() > 47) {
        cx.error(
            at.key("label"),
            "luks device labels cannot be longer than 47 characters",
        );
    }
    match l.device.as_deref() {
        None | Some("") => cx.error(at.key("device"), "disk device is required"),
        Some(d) => path_at(cx, at.key("device"), d),
    }
    if let Some(c) = &l.clevis {
        let pin = c
            .custom
            .as_ref()
            .and_then(|c| c.pin.as_deref())
            .unwrap_or("");
        let others = c.tang.as_ref().is_some_and(|t| !t.is_empty())
            || c.tpm2 == Some(true)
            || c.threshold.unwrap_or(0) != 0;
        if !pin.is_empty() && others {
            cx.error(
                at.key("clevis"),
                "cannot use custom clevis config with tpm2, tang, or threshold",
            );
        }
    }
    if let Some(k) = &l.key_file {
        resource::resource(cx, &at.key("keyFile"), k, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ignition's check as written: every pair.
    fn overlap_pairwise(extents: &[Option<(i64, i64)>]) -> Option<usize> {
        for (i, a) in extents.iter().enumerate() {
            let Some(a) = a else { continue };
            for (j, b) in extents.iter().enumerate() {
                let Some(b) = b else { continue };
                if i != j && overlaps(*a, *b) {
                    return Some(j);
                }
            }
        }
        None
    }

    #[test]
    fn the_sorted_overlap_check_finds_what_the_pairwise_one_does() {
        // A small linear congruential generator: reproducible extents,
        // malformed ones (end before start) and absent ones included.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((x >> 33) % m) as i64
        };
        for round in 0..3000 {
            let n = 1 + (round % 12);
            let extents: Vec<Option<(i64, i64)>> = (0..n)
                .map(|_| match next(10) {
                    0 => None,
                    1 => {
                        let s = next(40);
                        Some((s, s - 1 - next(5)))
                    }
                    _ => {
                        let s = next(40);
                        Some((s, s + next(8)))
                    }
                })
                .collect();
            assert_eq!(overlap(&extents), overlap_pairwise(&extents), "{extents:?}");
        }
    }

    #[test]
    fn links_above_a_path_are_counted_by_its_prefixes() {
        let links: HashMap<&str, usize> = [("/a", 2), ("/a/b", 1), ("", 1)].into();
        assert_eq!(links_above(&links, "/a/b/c"), 1 + 2 + 1);
        assert_eq!(links_above(&links, "/a"), 1);
        assert_eq!(links_above(&links, "/ab/c"), 1);
    }
}
