//! `storage.disks`: making the GPT on a disk match one Ignition disk entry,
//! with the semantics of Ignition's disks stage
//! (`internal/exec/stages/disks/partitions.go`, which drives sgdisk), but
//! reading and writing the table here, on an open file: a block device on
//! a node, a sparse file in tests.
//!
//! The rules, and where they come from in Ignition:
//!
//! - `wipeTable: true` starts from an empty table, like `sgdisk --zap-all`
//!   (`partitionDisk`, before anything else). The disk gets a new GUID.
//! - Partitions with a number are handled before those without
//!   (`sort.Stable(PartitionList(...))`, whose `Less` puts number 0 last);
//!   otherwise config order is kept. All deletions happen before all
//!   creations (`sgdisk.Operation.buildOptions`).
//! - `startMiB`/`sizeMiB` of 0 are resolved the way Ignition resolves them
//!   with `sgdisk --pretend` (`getRealStartAndSize`): every configured
//!   partition that exists is deleted from a copy of the table, those whose
//!   start or size is absent keep the existing value (unless
//!   `wipePartitionEntry`), then all are created in order, and the start
//!   and size they get there are what the existing partitions are compared
//!   against. Ignition's documentation (docs/operator-notes.md, "Partition
//!   start 0", "Partition size 0"): a start of 0 is the first sector of the
//!   largest free block (not the first block large enough), a size of 0
//!   runs to the end of the largest free block, and fails if the start is
//!   not in it. Starts chosen this way are rounded up to 1 MiB, as sgdisk's
//!   default alignment of 2048 sectors does; explicit starts are taken as
//!   given (they are whole MiB).
//! - An absent start or size of a partition that exists means "as it is";
//!   of one that does not exist, or with `wipePartitionEntry`, it means 0.
//! - Matching (`partitionMatches`): every attribute given (start, size,
//!   type GUID, GUID, label; an empty GUID string counts as not given)
//!   must equal the existing one; GUIDs compare case-insensitively.
//! - The action matrix (operator notes, "Partition Reuse Semantics"):
//!   absent and `shouldExist: false` does nothing; absent otherwise is
//!   created; present and `shouldExist: false` is deleted only with
//!   `wipePartitionEntry: true` and is an error otherwise; present and
//!   matching is kept; present and not matching is resized when `resize`
//!   is set and only the size differs (start, GUIDs, label and, here, the
//!   attribute bits are kept), recreated with `wipePartitionEntry`, and an
//!   error otherwise.
//! - Number 0 takes the lowest free entry of the table, as `sgdisk --new
//!   0:...` does. New partitions default to the Linux filesystem data type
//!   and a random unique GUID; an absent label is an empty name.
//!
//! One difference from Ignition: Ignition matches existing partitions by
//! number only, so a partition given by label alone is created again on
//! every run (coreos/ignition#1219). Here a partition with number 0 and a
//! label is matched against the existing partition of that name, and
//! handled like a partition with that number.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ignition_config::v3_6;
use uuid::Uuid;

use crate::report::JsonPath;

mod gpt;

use gpt::{read_table, write_table, zap, Entry, Geometry, Table};

/// Linux filesystem data, the type of partitions that give none.
pub const LINUX_DATA: Uuid = Uuid::from_u128(0x0FC6_3DAF_8483_4772_8E79_3D69_D847_7DE4);

pub(super) const MIB: u64 = 1 << 20;
pub(super) const NAME_UNITS: usize = 36;

/// What happened to one configured partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionAction {
    /// It exists and matches: left alone.
    Kept,
    /// It did not exist and was created.
    Created,
    /// It existed and was deleted (`shouldExist: false`).
    Deleted,
    /// It did not match and was deleted and created again
    /// (`wipePartitionEntry: true`).
    Recreated,
    /// Only its size changed (`resize: true`).
    Resized,
    /// `shouldExist: false` and it does not exist: nothing to do.
    Absent,
}

/// One configured partition and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOutcome {
    /// The partition number on the disk (0 for an [`PartitionAction::Absent`]
    /// partition given without a number, which cannot happen in a valid
    /// config).
    pub number: u32,
    /// `$.storage.disks.N.partitions.M`.
    pub path: JsonPath,
    pub action: PartitionAction,
}

/// What [`partition_disk`] did to a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOutcome {
    pub device: PathBuf,
    /// The old table was discarded (`wipeTable: true`).
    pub wiped: bool,
    /// A new table was written; when false the disk was not written at all
    /// and the kernel need not re-read it.
    pub written: bool,
    /// In config order.
    pub partitions: Vec<PartitionOutcome>,
}

impl DiskOutcome {
    /// Whether the table on the disk changed, so the kernel must re-read it.
    pub fn changed(&self) -> bool {
        self.written
    }

    /// One line for the log: `wiped the table; created 1, 2; kept 3`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.wiped {
            parts.push("wiped the table".to_string());
        }
        for (action, word) in [
            (PartitionAction::Created, "created"),
            (PartitionAction::Recreated, "recreated"),
            (PartitionAction::Resized, "resized"),
            (PartitionAction::Deleted, "deleted"),
            (PartitionAction::Kept, "kept"),
            (PartitionAction::Absent, "absent as asked"),
        ] {
            let numbers: Vec<String> = self
                .partitions
                .iter()
                .filter(|p| p.action == action)
                .map(|p| p.number.to_string())
                .collect();
            if !numbers.is_empty() {
                parts.push(format!("{word} {}", numbers.join(", ")));
            }
        }
        if parts.is_empty() {
            "nothing to do".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// Every message names the JSON path and the device, and is complete on
/// its own (an I/O error's text is part of it, not a separate source).
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {what} {}: {error}", device.display())]
    Io {
        path: JsonPath,
        device: PathBuf,
        what: &'static str,
        error: io::Error,
    },
    #[error("{path}: the partition table on {} is not usable: {reason}", device.display())]
    BadTable {
        path: JsonPath,
        device: PathBuf,
        reason: String,
    },
    #[error("{path}: partition {number} on {} didn't match: {differences}", device.display())]
    Mismatch {
        path: JsonPath,
        device: PathBuf,
        number: u32,
        differences: String,
    },
    #[error(
        "{path}: partition {number} on {} exists but is specified as nonexistent and wipePartitionEntry is false",
        device.display()
    )]
    ShouldNotExist {
        path: JsonPath,
        device: PathBuf,
        number: u32,
    },
    #[error("{path}: {}: {message}", device.display())]
    Invalid {
        path: JsonPath,
        device: PathBuf,
        message: String,
    },
}

impl DiskError {
    /// The JSON path the error is about: the disk entry or one of its
    /// partitions (or a field of one).
    pub fn path(&self) -> &JsonPath {
        match self {
            DiskError::Io { path, .. }
            | DiskError::BadTable { path, .. }
            | DiskError::Mismatch { path, .. }
            | DiskError::ShouldNotExist { path, .. }
            | DiskError::Invalid { path, .. } => path,
        }
    }
}

/// Makes the GPT on `device` match `disk`, with 512-byte logical sectors.
/// `path` is the disk entry's place in the config
/// (`$.storage.disks.N`); errors name it or the partition's.
pub fn partition_disk(
    device: &Path,
    disk: &v3_6::Disk,
    path: &JsonPath,
) -> Result<DiskOutcome, DiskError> {
    partition_disk_with_sector_size(device, disk, path, 512)
}

/// [`partition_disk`] for a disk whose logical sector size is
/// `sector_size` bytes (a power of two from 512 to 1 MiB).
pub fn partition_disk_with_sector_size(
    device: &Path,
    disk: &v3_6::Disk,
    path: &JsonPath,
    sector_size: u64,
) -> Result<DiskOutcome, DiskError> {
    let cx = Cx { device, path };
    if !sector_size.is_power_of_two() || !(512..=MIB).contains(&sector_size) {
        return Err(cx.invalid(path, format!("unsupported sector size {sector_size}")));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| cx.io("opening", e))?;
    let bytes = (&file)
        .seek(SeekFrom::End(0))
        .map_err(|e| cx.io("finding the size of", e))?;
    let geo = Geometry {
        sector: sector_size,
        sectors: bytes / sector_size,
        align: MIB / sector_size,
    };
    let wipe = disk.wipe_table == Some(true);
    let old = if wipe {
        None
    } else {
        read_table(&file, &geo).map_err(|reason| cx.bad_table(reason))?
    };
    let mut table = match &old {
        Some(t) => t.clone(),
        None => Table::empty(&geo),
    };
    if geo.last_usable(&table) < table.first_usable + 1 {
        return Err(cx.bad_table(format!("{bytes} bytes is too small for a GPT")));
    }
    let specs = disk
        .partitions
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| Spec::parse(&cx, path.key("partitions").index(i), i, p, &geo, &table))
        .collect::<Result<Vec<_>, _>>()?;
    let specs = resolve_labels(&cx, specs, &table)?;
    let mut partitions = plan(&cx, &specs, &mut table, &geo)?;
    partitions.sort_by_key(|o| o.0);
    let partitions = partitions.into_iter().map(|(_, o)| o).collect();
    // As with sgdisk: nothing to do is no write (even on a blank disk),
    // and wiping with nothing to create leaves no table at all.
    let before = old.as_ref().map(|o| &o.entries);
    let written = wipe || before.unwrap_or(&BTreeMap::new()) != &table.entries;
    if wipe {
        zap(&file, &geo, &table).map_err(|e| cx.io("wiping the partition table of", e))?;
    }
    if written && !(wipe && table.entries.is_empty()) {
        write_table(&file, &geo, &table, wipe).map_err(|e| cx.io("writing the GPT to", e))?;
    }
    Ok(DiskOutcome {
        device: device.to_path_buf(),
        wiped: wipe,
        written,
        partitions,
    })
}

/// The device and disk entry, for errors.
struct Cx<'a> {
    device: &'a Path,
    path: &'a JsonPath,
}

impl Cx<'_> {
    fn io(&self, what: &'static str, error: io::Error) -> DiskError {
        DiskError::Io {
            path: self.path.clone(),
            device: self.device.to_path_buf(),
            what,
            error,
        }
    }

    fn bad_table(&self, reason: String) -> DiskError {
        DiskError::BadTable {
            path: self.path.clone(),
            device: self.device.to_path_buf(),
            reason,
        }
    }

    fn invalid(&self, path: &JsonPath, message: String) -> DiskError {
        DiskError::Invalid {
            path: path.clone(),
            device: self.device.to_path_buf(),
            message,
        }
    }
}

/// One configured partition, in sectors.
#[derive(Debug, Clone)]
struct Spec {
    index: usize,
    path: JsonPath,
    /// 0: the lowest free number.
    number: u32,
    /// `Some(0)`: the default.
    start: Option<u64>,
    size: Option<u64>,
    type_guid: Option<Uuid>,
    guid: Option<Uuid>,
    label: Option<String>,
    should_exist: bool,
    wipe_entry: bool,
    resize: bool,
}

impl Spec {
    fn parse(
        cx: &Cx,
        path: JsonPath,
        index: usize,
        p: &v3_6::Partition,
        geo: &Geometry,
        table: &Table,
    ) -> Result<Self, DiskError> {
        let bad = |key: &str, message: String| cx.invalid(&path.key(key), message);
        let number = match p.number.unwrap_or(0) {
            n if n < 0 || n > i64::from(table.num_entries) => {
                return Err(bad(
                    "number",
                    format!(
                        "partition number {n} is not between 0 and {}, the table's size",
                        table.num_entries
                    ),
                ))
            }
            n => n as u32,
        };
        let sectors = |key: &str, v: Option<i64>| match v {
            None => Ok(None),
            Some(mib) => geo
                .mib(mib)
                .map(Some)
                .ok_or_else(|| bad(key, format!("{mib} MiB is not a usable value"))),
        };
        let guid = |key: &str, v: &Option<String>| match v.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => Uuid::parse_str(s)
                .map(Some)
                .map_err(|e| bad(key, format!("{s:?} is not a GUID: {e}"))),
        };
        if let Some(l) = &p.label {
            if l.encode_utf16().count() > NAME_UNITS || l.contains('\0') {
                return Err(bad(
                    "label",
                    format!("{l:?} does not fit a GPT partition name"),
                ));
            }
        }
        Ok(Spec {
            index,
            number,
            start: sectors("startMiB", p.start_mib)?,
            size: sectors("sizeMiB", p.size_mib)?,
            type_guid: guid("typeGuid", &p.type_guid)?,
            guid: guid("guid", &p.guid)?,
            label: p.label.clone(),
            should_exist: p.should_exist != Some(false),
            wipe_entry: p.wipe_partition_entry == Some(true),
            resize: p.resize == Some(true),
            path,
        })
    }
}

/// Gives partitions that have a label but no number the number of the
/// existing partition with that name, if there is one.
fn resolve_labels(cx: &Cx, mut specs: Vec<Spec>, table: &Table) -> Result<Vec<Spec>, DiskError> {
    for i in 0..specs.len() {
        let Some(label) = specs[i].label.clone().filter(|_| specs[i].number == 0) else {
            continue;
        };
        let named: Vec<u32> = table
            .entries
            .iter()
            .filter(|(_, e)| e.name() == label)
            .map(|(n, _)| *n)
            .collect();
        let number = match named[..] {
            [] => continue,
            [n] => n,
            _ => {
                return Err(cx.invalid(
                    &specs[i].path,
                    format!("label {label:?} names more than one partition: {named:?}"),
                ))
            }
        };
        if let Some(other) = specs.iter().find(|s| s.number == number) {
            return Err(cx.invalid(
                &specs[i].path,
                format!(
                    "label {label:?} names partition {number}, which {} also configures",
                    other.path
                ),
            ));
        }
        specs[i].number = number;
    }
    Ok(specs)
}

/// The free blocks of `t`, first and last sector, in disk order.
fn free_blocks(t: &Table, geo: &Geometry) -> Vec<(u64, u64)> {
    let mut used: Vec<(u64, u64)> = t.entries.values().map(|e| (e.first(), e.last())).collect();
    used.sort_unstable();
    let (mut blocks, mut next) = (Vec::new(), t.first_usable);
    for (first, last) in used {
        if first > next {
            blocks.push((next, first - 1));
        }
        next = next.max(last + 1);
    }
    if next <= geo.last_usable(t) {
        blocks.push((next, geo.last_usable(t)));
    }
    blocks
}

/// Where sgdisk would put `--new=N:start:+size` in `t`; a start or size of
/// `None` or 0 is the default (see the module documentation).
fn place(
    t: &Table,
    geo: &Geometry,
    start: Option<u64>,
    size: Option<u64>,
) -> Result<(u64, u64), String> {
    // The largest free block; the first of equal ones.
    let largest = free_blocks(t, geo)
        .into_iter()
        .fold(None, |best: Option<(u64, u64)>, b| match best {
            Some(x) if x.1 - x.0 >= b.1 - b.0 => Some(x),
            _ => Some(b),
        });
    let first = match start.filter(|&s| s != 0) {
        Some(s) => s,
        None => {
            let (a, b) = largest.ok_or("there is no free space")?;
            let s = a.div_ceil(geo.align) * geo.align;
            if s > b {
                return Err(format!(
                    "the largest free block ({a}-{b}) has no 1 MiB aligned sector"
                ));
            }
            s
        }
    };
    let last = match size.filter(|&s| s != 0) {
        Some(n) => first + n - 1,
        None => match largest {
            Some((a, b)) if (a..=b).contains(&first) => b,
            Some((a, b)) => {
                return Err(format!(
                    "start sector {first} is not in the largest free block ({a}-{b}), which a size of 0 fills"
                ))
            }
            None => return Err("there is no free space".into()),
        },
    };
    if first < t.first_usable || last > geo.last_usable(t) {
        return Err(format!(
            "sectors {first}-{last} are outside the usable sectors {}-{}",
            t.first_usable,
            geo.last_usable(t)
        ));
    }
    if let Some((n, e)) = t
        .entries
        .iter()
        .find(|(_, e)| e.first() <= last && first <= e.last())
    {
        return Err(format!(
            "sectors {first}-{last} overlap partition {n} ({}-{})",
            e.first(),
            e.last()
        ));
    }
    Ok((first, last))
}

/// How the existing partition differs from the spec, Ignition's
/// `partitionMatchesCommon` (`with_size`: and `partitionMatches`).
fn differences(
    e: &Entry,
    s: &Spec,
    start: Option<u64>,
    size: Option<u64>,
    with_size: bool,
) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(start) = start.filter(|&v| v != e.first()) {
        d.push(format!(
            "starting sector did not match (specified {start}, got {})",
            e.first()
        ));
    }
    if let Some(size) = size.filter(|&v| with_size && v != e.size()) {
        d.push(format!(
            "size did not match (specified {size}, got {})",
            e.size()
        ));
    }
    if let Some(g) = s.guid.filter(|&g| g != e.guid()) {
        d.push(format!(
            "GUID did not match (specified {}, got {})",
            upper(g),
            upper(e.guid())
        ));
    }
    if let Some(g) = s.type_guid.filter(|&g| g != e.type_guid()) {
        let got = upper(e.type_guid());
        d.push(format!(
            "type GUID did not match (specified {}, got {got})",
            upper(g)
        ));
    }
    if let Some(l) = s.label.as_ref().filter(|l| **l != e.name()) {
        d.push(format!(
            "label did not match (specified {l:?}, got {:?})",
            e.name()
        ));
    }
    d
}

fn upper(g: Uuid) -> String {
    g.hyphenated().to_string().to_uppercase()
}

/// A creation, run after all deletions.
enum Create<'a> {
    New {
        spec: &'a Spec,
        start: Option<u64>,
        size: Option<u64>,
        outcome: usize,
    },
    Resize {
        spec: &'a Spec,
        entry: Entry,
        size: u64,
    },
}

/// Decides every partition's fate and applies it to `table`; returns the
/// outcomes with their config index.
fn plan(
    cx: &Cx,
    specs: &[Spec],
    table: &mut Table,
    geo: &Geometry,
) -> Result<Vec<(usize, PartitionOutcome)>, DiskError> {
    let placement =
        |s: &Spec, m: String| cx.invalid(&s.path, format!("cannot place the partition: {m}"));
    let order: Vec<&Spec> = specs
        .iter()
        .filter(|s| s.number != 0)
        .chain(specs.iter().filter(|s| s.number == 0))
        .collect();

    // Ignition's sgdisk --pretend run: where each partition would go if
    // every configured one were deleted and created again.
    let mut sim = table.clone();
    for s in &order {
        sim.entries.remove(&s.number);
    }
    let mut resolved = HashMap::new();
    for s in order.iter().filter(|s| s.should_exist) {
        let keep = table.entries.get(&s.number).filter(|_| !s.wipe_entry);
        let start = s.start.or(keep.map(Entry::first));
        let size = s.size.or(keep.map(Entry::size));
        let (first, last) = place(&sim, geo, start, size).map_err(|m| placement(s, m))?;
        let number = match s.number {
            0 => sim
                .lowest_free()
                .ok_or_else(|| placement(s, "no free partition entry".into()))?,
            n => n,
        };
        let e = Entry::new(table.entry_size, LINUX_DATA, Uuid::nil(), first, last, &[]);
        sim.entries.insert(number, e);
        resolved.insert(s.index, (first, last + 1 - first));
    }

    let mut outcomes = Vec::new();
    let mut deletions = Vec::new();
    let mut creations = Vec::new();
    for s in &order {
        // 0 is resolved for numbered partitions; for the others sgdisk
        // picks the default when it creates them.
        let res = resolved.get(&s.index).filter(|_| s.number != 0);
        let start = match s.start {
            Some(0) => res.map(|r| r.0),
            v => v,
        };
        let size = match s.size {
            Some(0) => res.map(|r| r.1),
            v => v,
        };
        let outcome = |action| PartitionOutcome {
            number: s.number,
            path: s.path.clone(),
            action,
        };
        let existing = table.entries.get(&s.number).filter(|_| s.number != 0);
        let action = match (existing, s.should_exist) {
            (None, false) => PartitionAction::Absent,
            (None, true) => PartitionAction::Created,
            (Some(_), false) if !s.wipe_entry => {
                return Err(DiskError::ShouldNotExist {
                    path: s.path.clone(),
                    device: cx.device.to_path_buf(),
                    number: s.number,
                })
            }
            (Some(_), false) => {
                deletions.push(s.number);
                PartitionAction::Deleted
            }
            (Some(e), true) => {
                let diffs = differences(e, s, start, size, true);
                if diffs.is_empty() {
                    PartitionAction::Kept
                } else if s.wipe_entry {
                    deletions.push(s.number);
                    PartitionAction::Recreated
                } else if let (true, Some(size), true) = (
                    s.resize,
                    size,
                    differences(e, s, start, size, false).is_empty(),
                ) {
                    deletions.push(s.number);
                    creations.push(Create::Resize {
                        spec: s,
                        entry: e.clone(),
                        size,
                    });
                    PartitionAction::Resized
                } else {
                    return Err(DiskError::Mismatch {
                        path: s.path.clone(),
                        device: cx.device.to_path_buf(),
                        number: s.number,
                        differences: diffs.join("; "),
                    });
                }
            }
        };
        if matches!(
            action,
            PartitionAction::Created | PartitionAction::Recreated
        ) {
            creations.push(Create::New {
                spec: s,
                start,
                size,
                outcome: outcomes.len(),
            });
        }
        outcomes.push((s.index, outcome(action)));
    }

    for n in deletions {
        table.entries.remove(&n);
    }
    for c in creations {
        match c {
            Create::New {
                spec,
                start,
                size,
                outcome,
            } => {
                let (first, last) =
                    place(table, geo, start, size).map_err(|m| placement(spec, m))?;
                let number = match spec.number {
                    0 => table
                        .lowest_free()
                        .ok_or_else(|| placement(spec, "no free partition entry".into()))?,
                    n => n,
                };
                let name: Vec<u16> = spec.label.as_deref().unwrap_or("").encode_utf16().collect();
                let e = Entry::new(
                    table.entry_size,
                    spec.type_guid.unwrap_or(LINUX_DATA),
                    spec.guid.unwrap_or_else(Uuid::new_v4),
                    first,
                    last,
                    &name,
                );
                table.entries.insert(number, e);
                if let Some((_, o)) = outcomes.get_mut(outcome) {
                    o.number = number;
                }
            }
            Create::Resize {
                spec,
                mut entry,
                size,
            } => {
                let (_, last) = place(table, geo, Some(entry.first()), Some(size))
                    .map_err(|m| placement(spec, m))?;
                entry.set_last(last);
                table.entries.insert(spec.number, entry);
            }
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests;
