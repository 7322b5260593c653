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
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ignition_config::v3_6;
use uuid::Uuid;

use crate::report::JsonPath;

/// Linux filesystem data, the type of partitions that give none.
pub const LINUX_DATA: Uuid = Uuid::from_u128(0x0FC6_3DAF_8483_4772_8E79_3D69_D847_7DE4);

const MIB: u64 = 1 << 20;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const HEADER_SIZE: usize = 92;
const ENTRY_MIN: usize = 128;
const NAME_UNITS: usize = 36;

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

#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Bytes per logical sector.
    sector: u64,
    /// Logical sectors on the device.
    sectors: u64,
    /// Sectors per MiB, the alignment of default starts.
    align: u64,
}

impl Geometry {
    fn array_sectors(&self, t: &Table) -> u64 {
        (u64::from(t.num_entries) * u64::from(t.entry_size)).div_ceil(self.sector)
    }

    /// The last usable sector once the backup GPT sits at the end of the
    /// device (where every write puts it, as sgdisk does on a grown disk).
    fn last_usable(&self, t: &Table) -> u64 {
        self.sectors.saturating_sub(2 + self.array_sectors(t))
    }

    fn mib(&self, mib: i64) -> Option<u64> {
        u64::try_from(mib).ok()?.checked_mul(self.align)
    }
}

/// One partition entry, kept as its bytes so entries that are not touched
/// are written back exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry(Vec<u8>);

impl Entry {
    fn new(
        entry_size: u32,
        type_guid: Uuid,
        guid: Uuid,
        first: u64,
        last: u64,
        name: &[u16],
    ) -> Self {
        let mut b = vec![0u8; entry_size as usize];
        b[0..16].copy_from_slice(&type_guid.to_bytes_le());
        b[16..32].copy_from_slice(&guid.to_bytes_le());
        b[32..40].copy_from_slice(&first.to_le_bytes());
        b[40..48].copy_from_slice(&last.to_le_bytes());
        for (i, u) in name.iter().take(NAME_UNITS).enumerate() {
            b[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        Entry(b)
    }

    fn type_guid(&self) -> Uuid {
        Uuid::from_bytes_le(arr16(&self.0[0..16]))
    }

    fn guid(&self) -> Uuid {
        Uuid::from_bytes_le(arr16(&self.0[16..32]))
    }

    fn first(&self) -> u64 {
        le64(&self.0[32..40])
    }

    fn last(&self) -> u64 {
        le64(&self.0[40..48])
    }

    fn size(&self) -> u64 {
        self.last() + 1 - self.first()
    }

    fn set_last(&mut self, last: u64) {
        self.0[40..48].copy_from_slice(&last.to_le_bytes());
    }

    fn name_units(&self) -> Vec<u16> {
        self.0[56..56 + 2 * NAME_UNITS]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect()
    }

    fn name(&self) -> String {
        String::from_utf16_lossy(&self.name_units())
    }
}

fn arr16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// A GPT in memory: the header fields a rewrite keeps, and the used
/// entries by partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    disk_guid: Uuid,
    first_usable: u64,
    /// The primary entry array's first sector.
    array_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries: BTreeMap<u32, Entry>,
    /// The first 446 bytes of the MBR sector (boot code, disk signature),
    /// kept when the table is rewritten.
    mbr_code: Option<Vec<u8>>,
}

impl Table {
    /// What sgdisk makes on a blank disk: 128 entries from sector 2.
    fn empty(geo: &Geometry) -> Self {
        let mut t = Table {
            disk_guid: Uuid::new_v4(),
            first_usable: 0,
            array_lba: 2,
            num_entries: 128,
            entry_size: ENTRY_MIN as u32,
            entries: BTreeMap::new(),
            mbr_code: None,
        };
        t.first_usable = 2 + geo.array_sectors(&t);
        t
    }

    fn lowest_free(&self) -> Option<u32> {
        (1..=self.num_entries).find(|n| !self.entries.contains_key(n))
    }
}

fn read_at(f: &File, geo: &Geometry, lba: u64, sectors: u64) -> Result<Vec<u8>, String> {
    let len = usize::try_from(sectors * geo.sector).map_err(|e| e.to_string())?;
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, lba * geo.sector)
        .map_err(|e| format!("reading sector {lba}: {e}"))?;
    Ok(b)
}

/// The GPT on the device; `None` when there is none. A table that is
/// present but fails its checks is an error, not an empty disk.
fn read_table(f: &File, geo: &Geometry) -> Result<Option<Table>, String> {
    if geo.sectors < 3 {
        return Ok(None);
    }
    let mbr = read_at(f, geo, 0, 1)?;
    let hdr = read_at(f, geo, 1, 1)?;
    if &hdr[..8] != SIGNATURE {
        let backup = read_at(f, geo, geo.sectors - 1, 1)?;
        if &backup[..8] == SIGNATURE {
            return Err("the primary GPT header is missing but a backup header exists".into());
        }
        if mbr[510..512] == [0x55, 0xAA]
            && mbr[446..510]
                .chunks_exact(16)
                .any(|r| r[4] != 0 && r[4] != 0xEE)
        {
            return Err("it holds an MBR (DOS) partition table, not a GPT".into());
        }
        return Ok(None);
    }
    let size = le32(&hdr[12..16]) as usize;
    if size < HEADER_SIZE || size as u64 > geo.sector {
        return Err(format!("GPT header size {size} is invalid"));
    }
    let mut h = hdr[..size].to_vec();
    h[16..20].fill(0);
    if crc32fast::hash(&h) != le32(&hdr[16..20]) {
        return Err("the primary GPT header's CRC is wrong".into());
    }
    if le64(&hdr[24..32]) != 1 {
        return Err("the primary GPT header does not say it is at sector 1".into());
    }
    let alternate = le64(&hdr[32..40]);
    if alternate >= geo.sectors {
        return Err(format!(
            "the backup GPT header is at sector {alternate}, past the end of the device"
        ));
    }
    let (num_entries, entry_size) = (le32(&hdr[80..84]), le32(&hdr[84..88]));
    if (entry_size as usize) < ENTRY_MIN || entry_size % 8 != 0 || num_entries > 65536 {
        return Err(format!(
            "GPT entry array of {num_entries} entries of {entry_size} bytes is invalid"
        ));
    }
    let mut t = Table {
        disk_guid: Uuid::from_bytes_le(arr16(&hdr[56..72])),
        first_usable: le64(&hdr[40..48]),
        array_lba: le64(&hdr[72..80]),
        num_entries,
        entry_size,
        entries: BTreeMap::new(),
        mbr_code: (mbr[510..512] == [0x55, 0xAA]).then(|| mbr[..446].to_vec()),
    };
    let array_sectors = geo.array_sectors(&t);
    if t.array_lba < 2 || t.array_lba + array_sectors > t.first_usable {
        return Err("the GPT entry array overlaps the usable area".into());
    }
    let array = read_at(f, geo, t.array_lba, array_sectors)?;
    let array = &array[..num_entries as usize * entry_size as usize];
    if crc32fast::hash(array) != le32(&hdr[88..92]) {
        return Err("the GPT entry array's CRC is wrong".into());
    }
    let last_usable = geo.last_usable(&t);
    for (i, raw) in array.chunks_exact(entry_size as usize).enumerate() {
        if raw[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let e = Entry(raw.to_vec());
        let number = i as u32 + 1;
        if e.first() > e.last() || e.first() < t.first_usable || e.last() > last_usable {
            return Err(format!(
                "partition {number} (sectors {}-{}) lies outside the usable sectors {}-{last_usable}",
                e.first(),
                e.last(),
                t.first_usable
            ));
        }
        t.entries.insert(number, e);
    }
    Ok(Some(t))
}

/// Like `sgdisk --zap-all`: zeroes the MBR, both headers and both entry
/// arrays (where a fresh `t` puts them), and the backup header an old
/// primary points to if the disk grew since; then syncs.
fn zap(f: &File, geo: &Geometry, t: &Table) -> io::Result<()> {
    let sector = geo.sector as usize;
    let array_sectors = geo.array_sectors(t);
    let last = geo.sectors - 1;
    let old_backup = read_at(f, geo, 1, 1)
        .ok()
        .filter(|h| &h[..8] == SIGNATURE)
        .map(|h| le64(&h[32..40]))
        .filter(|&lba| lba > 1 && lba < last);
    let head = 2 + array_sectors;
    f.write_all_at(&vec![0u8; head as usize * sector], 0)?;
    let tail = 1 + array_sectors;
    f.write_all_at(
        &vec![0u8; tail as usize * sector],
        (geo.sectors - tail) * geo.sector,
    )?;
    if let Some(lba) = old_backup {
        f.write_all_at(&vec![0u8; sector], lba * geo.sector)?;
    }
    f.sync_all()
}

/// Writes the backup array and header at the end of the device, then the
/// primary array and header, then a protective MBR (keeping the old boot
/// code unless `fresh`), and syncs.
fn write_table(f: &File, geo: &Geometry, t: &Table, fresh: bool) -> io::Result<()> {
    let sector = geo.sector as usize;
    let array_sectors = geo.array_sectors(t);
    let last = geo.sectors - 1;
    let mut array = vec![0u8; array_sectors as usize * sector];
    for (n, e) in &t.entries {
        let at = (*n as usize - 1) * t.entry_size as usize;
        array[at..at + e.0.len()].copy_from_slice(&e.0);
    }
    let array_crc = crc32fast::hash(&array[..t.num_entries as usize * t.entry_size as usize]);
    let backup_array = last - array_sectors;
    let header = |mine: u64, other: u64, array_lba: u64| {
        let mut h = vec![0u8; sector];
        h[..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        h[24..32].copy_from_slice(&mine.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&t.first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&geo.last_usable(t).to_le_bytes());
        h[56..72].copy_from_slice(&t.disk_guid.to_bytes_le());
        h[72..80].copy_from_slice(&array_lba.to_le_bytes());
        h[80..84].copy_from_slice(&t.num_entries.to_le_bytes());
        h[84..88].copy_from_slice(&t.entry_size.to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    f.write_all_at(&array, backup_array * geo.sector)?;
    f.write_all_at(&header(last, 1, backup_array), last * geo.sector)?;
    f.write_all_at(&array, t.array_lba * geo.sector)?;
    f.write_all_at(&header(1, last, t.array_lba), geo.sector)?;
    let mut mbr = [0u8; 512];
    if let Some(code) = t.mbr_code.as_ref().filter(|_| !fresh) {
        mbr[..446].copy_from_slice(code);
    }
    // One protective record: CHS 0/0/2 to the maximum, type 0xEE, from
    // sector 1 over the whole disk (or as much as 32 bits can say).
    mbr[446..454].copy_from_slice(&[0x00, 0x00, 0x02, 0x00, 0xEE, 0xFF, 0xFF, 0xFF]);
    mbr[454..458].copy_from_slice(&1u32.to_le_bytes());
    let covered = u32::try_from(geo.sectors - 1).unwrap_or(u32::MAX);
    mbr[458..462].copy_from_slice(&covered.to_le_bytes());
    mbr[510..512].copy_from_slice(&[0x55, 0xAA]);
    f.write_all_at(&mbr, 0)?;
    f.sync_all()
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
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, SystemTime};

    const DISK_MIB: u64 = 64;
    /// Sectors on a 64 MiB disk, and its last usable one with 128 entries.
    const SECTORS: u64 = DISK_MIB * MIB / 512;
    const LAST_USABLE: u64 = SECTORS - 34;
    const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

    /// A sparse 64 MiB disk file in a fresh temp dir.
    fn blank() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk.img");
        File::create(&path)
            .and_then(|f| f.set_len(DISK_MIB * MIB))
            .expect("sparse disk file");
        (dir, path)
    }

    fn disk(json: serde_json::Value) -> v3_6::Disk {
        serde_json::from_value(json).expect("disk entry")
    }

    fn at() -> JsonPath {
        JsonPath::root().key("storage").key("disks").index(0)
    }

    fn run(path: &Path, config: serde_json::Value) -> Result<DiskOutcome, DiskError> {
        partition_disk(path, &disk(config), &at())
    }

    /// Runs sgdisk, the independent reference; a missing sgdisk fails the
    /// test rather than skipping it.
    fn sgdisk(args: &[&str], path: &Path) -> String {
        let out = match Command::new("sgdisk").args(args).arg(path).output() {
            Ok(out) => out,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                panic!("sgdisk not found: install gdisk (apt-get install gdisk) to run these tests")
            }
            Err(e) => panic!("running sgdisk: {e}"),
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "sgdisk {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// `sgdisk -v` finds both headers, both arrays, their CRCs and the
    /// protective MBR in order.
    fn verify(path: &Path) {
        let out = sgdisk(&["-v"], path);
        assert!(out.contains("No problems found"), "sgdisk -v: {out}");
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Info {
        type_guid: String,
        guid: String,
        first: u64,
        last: u64,
        name: String,
    }

    /// Partition `n` as `sgdisk -i` describes it.
    fn info(path: &Path, n: u32) -> Option<Info> {
        let out = sgdisk(&["-i", &n.to_string()], path);
        if out.contains("does not exist") {
            return None;
        }
        let field = |prefix: &str| -> String {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {out}"))
                .trim()
                .to_string()
        };
        let word = |prefix: &str| field(prefix).split(' ').next().unwrap_or("").to_string();
        let number = |prefix: &str| word(prefix).parse::<u64>().expect("sector number");
        let name = field("Partition name:");
        Some(Info {
            type_guid: word("Partition GUID code:"),
            guid: word("Partition unique GUID:"),
            first: number("First sector:"),
            last: number("Last sector:"),
            name: name.trim_matches('\'').to_string(),
        })
    }

    /// The partition numbers `sgdisk -p` lists.
    fn numbers(path: &Path) -> Vec<u32> {
        let out = sgdisk(&["-p"], path);
        out.lines()
            .skip_while(|l| !l.starts_with("Number"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    fn disk_guid(path: &Path) -> String {
        let out = sgdisk(&["-p"], path);
        out.lines()
            .find_map(|l| l.strip_prefix("Disk identifier (GUID): "))
            .expect("disk GUID")
            .to_string()
    }

    fn actions(o: &DiskOutcome) -> Vec<(u32, PartitionAction)> {
        o.partitions.iter().map(|p| (p.number, p.action)).collect()
    }

    fn mib(n: u64) -> u64 {
        n * MIB / 512
    }

    #[test]
    fn disks_create_on_blank_file() {
        let (_dir, path) = blank();
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"label": "rest"},
                {"number": 1, "label": "boot", "sizeMiB": 16},
            ]}),
        )
        .expect("partition");
        assert!(o.written && !o.wiped);
        // The numbered partition is placed first, config order is kept
        // in the outcome.
        assert_eq!(
            actions(&o),
            [(2, PartitionAction::Created), (1, PartitionAction::Created)]
        );
        verify(&path);
        assert_eq!(numbers(&path), [1, 2]);
        let boot = info(&path, 1).expect("partition 1");
        assert_eq!((boot.first, boot.last), (2048, 2048 + mib(16) - 1));
        assert_eq!(boot.name, "boot");
        assert_eq!(boot.type_guid, upper(LINUX_DATA));
        let rest = info(&path, 2).expect("partition 2");
        assert_eq!((rest.first, rest.last), (2048 + mib(16), LAST_USABLE));
        assert_eq!(rest.name, "rest");
        assert_ne!(boot.guid, rest.guid);
        assert_eq!(o.summary(), "created 2, 1");
    }

    #[test]
    fn disks_rerun_writes_nothing() {
        let (_dir, path) = blank();
        let config = serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "label": "boot", "sizeMiB": 16, "startMiB": 0},
            {"label": "rest", "sizeMiB": 0},
        ]});
        run(&path, config.clone()).expect("first run");
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
        let before = std::fs::read(&path).expect("read disk");
        let o = run(&path, config).expect("second run");
        assert!(!o.written && !o.changed());
        assert_eq!(
            actions(&o),
            [(1, PartitionAction::Kept), (2, PartitionAction::Kept)]
        );
        assert_eq!(std::fs::read(&path).expect("read disk"), before);
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified());
        assert_eq!(mtime.expect("mtime"), old);
    }

    #[test]
    fn disks_nothing_to_do_writes_nothing() {
        let (_dir, path) = blank();
        let empty = serde_json::json!({"device": "/dev/vdb"});
        let o = run(&path, empty).expect("no partitions");
        assert!(!o.written && o.partitions.is_empty());
        assert!(std::fs::read(&path).expect("read").iter().all(|&b| b == 0));
        // wipeTable alone is sgdisk --zap-all: no table afterwards.
        sgdisk(&["-n", "1:0:+8M"], &path);
        let wipe = serde_json::json!({"device": "/dev/vdb", "wipeTable": true});
        let o = run(&path, wipe).expect("wipe");
        assert!(o.written && o.wiped);
        let bytes = std::fs::read(&path).expect("read");
        assert!(bytes.iter().all(|&b| b == 0), "GPT or MBR left behind");
    }

    #[test]
    fn disks_match_by_label() {
        let (_dir, path) = blank();
        sgdisk(
            &[
                "-n", "1:0:+8M", "-c", "1:alpha", "-n", "2:0:+8M", "-c", "2:beta",
            ],
            &path,
        );
        let before = std::fs::read(&path).expect("read disk");
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"label": "beta", "sizeMiB": 8},
                {"label": "gamma", "sizeMiB": 4},
            ]}),
        )
        .expect("partition");
        assert_eq!(
            actions(&o),
            [(2, PartitionAction::Kept), (3, PartitionAction::Created)]
        );
        verify(&path);
        assert_eq!(numbers(&path), [1, 2, 3]);
        let gamma = info(&path, 3).expect("partition 3");
        assert_eq!(
            (gamma.first, gamma.name.as_str()),
            (2048 + mib(16), "gamma")
        );
        // Partitions 1 and 2 are as sgdisk made them.
        let after = std::fs::read(&path).expect("read disk");
        let array = 2 * 512..(2 * 512 + 2 * 128);
        assert_eq!(after[array.clone()], before[array]);
    }

    #[test]
    fn disks_wipe_table_replaces_sgdisk_table() {
        let (_dir, path) = blank();
        sgdisk(
            &[
                "-n", "1:0:+8M", "-n", "2:0:+8M", "-n", "3:0:0", "-c", "3:old",
            ],
            &path,
        );
        let old_guid = disk_guid(&path);
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "wipeTable": true, "partitions": [
                {"number": 1, "label": "new", "sizeMiB": 4},
            ]}),
        )
        .expect("partition");
        assert!(o.written && o.wiped);
        assert_eq!(actions(&o), [(1, PartitionAction::Created)]);
        verify(&path);
        assert_eq!(numbers(&path), [1]);
        let new = info(&path, 1).expect("partition 1");
        assert_eq!(
            (new.first, new.last, new.name.as_str()),
            (2048, 2048 + mib(4) - 1, "new")
        );
        assert_ne!(disk_guid(&path), old_guid);
    }

    #[test]
    fn disks_should_exist_false_deletes_with_wipe_partition_entry() {
        let (_dir, path) = blank();
        sgdisk(&["-n", "1:0:+8M", "-n", "2:0:+8M"], &path);
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 1, "shouldExist": false, "wipePartitionEntry": true},
                {"number": 5, "shouldExist": false},
            ]}),
        )
        .expect("partition");
        assert_eq!(
            actions(&o),
            [(1, PartitionAction::Deleted), (5, PartitionAction::Absent)]
        );
        verify(&path);
        assert_eq!(numbers(&path), [2]);
    }

    #[test]
    fn disks_should_exist_false_without_wipe_partition_entry_fails() {
        let (_dir, path) = blank();
        sgdisk(&["-n", "1:0:+8M"], &path);
        let before = std::fs::read(&path).expect("read disk");
        let e = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 1, "shouldExist": false},
            ]}),
        )
        .expect_err("must refuse");
        assert!(
            matches!(e, DiskError::ShouldNotExist { number: 1, .. }),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).expect("read disk"), before);
    }

    #[test]
    fn disks_mismatch_errors_and_leaves_bytes() {
        let (_dir, path) = blank();
        sgdisk(&["-n", "1:0:+8M", "-c", "1:data"], &path);
        let before = std::fs::read(&path).expect("read disk");
        let e = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 1, "label": "data", "sizeMiB": 16},
            ]}),
        )
        .expect_err("must not match");
        let text = e.to_string();
        assert!(
            text.starts_with("$.storage.disks.0.partitions.0: partition 1 on "),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains("size did not match (specified 32768, got 16384)"),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).expect("read disk"), before);
    }

    #[test]
    fn disks_wipe_partition_entry_recreates() {
        let (_dir, path) = blank();
        sgdisk(&["-n", "1:0:+8M", "-c", "1:data"], &path);
        let old = info(&path, 1).expect("partition 1");
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 1, "label": "data", "sizeMiB": 16, "wipePartitionEntry": true},
            ]}),
        )
        .expect("partition");
        assert_eq!(actions(&o), [(1, PartitionAction::Recreated)]);
        verify(&path);
        let new = info(&path, 1).expect("partition 1");
        assert_eq!((new.first, new.last), (2048, 2048 + mib(16) - 1));
        assert_ne!(new.guid, old.guid);
    }

    #[test]
    fn disks_resize_grows() {
        let (_dir, path) = blank();
        sgdisk(
            &[
                "-n",
                "1:0:+4M",
                "-n",
                "2:0:+8M",
                "-c",
                "2:root",
                "-t",
                &format!("2:{ESP}"),
            ],
            &path,
        );
        let old = info(&path, 2).expect("partition 2");
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 2, "label": "root", "sizeMiB": 0, "resize": true},
            ]}),
        )
        .expect("partition");
        assert_eq!(actions(&o), [(2, PartitionAction::Resized)]);
        verify(&path);
        let new = info(&path, 2).expect("partition 2");
        assert_eq!(
            new,
            Info {
                last: LAST_USABLE,
                ..old
            }
        );
        // Without resize, the same config is a mismatch once more.
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 2, "sizeMiB": 40, "resize": true},
            ]}),
        )
        .expect("shrink");
        assert_eq!(actions(&o), [(2, PartitionAction::Resized)]);
        let e = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 2, "sizeMiB": 41},
            ]}),
        )
        .expect_err("no resize");
        assert!(matches!(e, DiskError::Mismatch { number: 2, .. }), "{e}");
    }

    #[test]
    fn disks_number_zero_takes_lowest_free() {
        let (_dir, path) = blank();
        sgdisk(&["-n", "1:0:+4M", "-n", "3:0:+4M"], &path);
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"label": "new", "sizeMiB": 4},
            ]}),
        )
        .expect("partition");
        assert_eq!(actions(&o), [(2, PartitionAction::Created)]);
        verify(&path);
        assert_eq!(numbers(&path), [1, 2, 3]);
        // The start of the largest free block: after partition 3.
        let new = info(&path, 2).expect("partition 2");
        assert_eq!((new.first, new.name.as_str()), (2048 + mib(8), "new"));
    }

    #[test]
    fn disks_explicit_start_and_size() {
        let (_dir, path) = blank();
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"label": "later", "sizeMiB": 8},
                {"number": 2, "startMiB": 20, "sizeMiB": 10},
                {"number": 3, "startMiB": 1, "sizeMiB": 2},
            ]}),
        )
        .expect("partition");
        // The numbered ones go first; "later" goes to the start of the
        // largest free block that leaves (30 MiB on), as number 1.
        assert_eq!(
            actions(&o),
            [
                (1, PartitionAction::Created),
                (2, PartitionAction::Created),
                (3, PartitionAction::Created)
            ]
        );
        verify(&path);
        let get = |n| info(&path, n).map(|i| (i.first, i.last));
        assert_eq!(get(2), Some((mib(20), mib(30) - 1)));
        assert_eq!(get(3), Some((mib(1), mib(3) - 1)));
        assert_eq!(get(1), Some((mib(30), mib(38) - 1)));
        // Overlapping an existing partition is refused.
        let e = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 4, "startMiB": 25, "sizeMiB": 1},
            ]}),
        )
        .expect_err("overlap");
        assert!(e.to_string().contains("overlap partition 2"), "{e}");
    }

    #[test]
    fn disks_type_guid_and_guid() {
        let (_dir, path) = blank();
        let guid = "0b3c6f9e-2d4a-4e5b-8c7d-112233445566";
        let config = serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "label": "esp", "sizeMiB": 8,
             "typeGuid": ESP.to_lowercase(), "guid": guid},
        ]});
        run(&path, config.clone()).expect("partition");
        verify(&path);
        let esp = info(&path, 1).expect("partition 1");
        assert_eq!(esp.type_guid, ESP);
        assert_eq!(esp.guid, guid.to_uppercase());
        // GUIDs compare without regard to case.
        let o = run(&path, config).expect("rerun");
        assert!(!o.written);
        let e = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 1, "typeGuid": upper(LINUX_DATA)},
            ]}),
        )
        .expect_err("type differs");
        assert!(e.to_string().contains("type GUID did not match"), "{e}");
    }

    #[test]
    fn disks_corrupt_table_is_an_error() {
        let (_dir, path) = blank();
        sgdisk(&["-n", "1:0:+8M"], &path);
        let f = File::options().write(true).open(&path).expect("open");
        f.write_all_at(b"X", 512 + 100).expect("corrupt");
        f.write_all_at(&[0xFF], 512 + 48).expect("corrupt");
        let e = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": []}),
        )
        .expect_err("corrupt");
        let text = e.to_string();
        assert!(matches!(e, DiskError::BadTable { .. }), "{text}");
        assert!(text.starts_with("$.storage.disks.0: "), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        // wipeTable starts over regardless.
        run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "wipeTable": true, "partitions": [
                {"number": 1}]}),
        )
        .expect("wipe");
        verify(&path);
    }

    #[test]
    fn disks_grown_disk_moves_backup_to_end() {
        let (_dir, path) = blank();
        sgdisk(&["-n", "1:0:+8M"], &path);
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(2 * DISK_MIB * MIB))
            .expect("grow");
        let o = run(
            &path,
            serde_json::json!({"device": "/dev/vdb", "partitions": [
                {"number": 1, "sizeMiB": 0, "resize": true}]}),
        )
        .expect("partition");
        assert_eq!(actions(&o), [(1, PartitionAction::Resized)]);
        verify(&path);
        let p = info(&path, 1).expect("partition 1");
        assert_eq!((p.first, p.last), (2048, 2 * SECTORS - 34));
    }

    #[test]
    fn disks_4k_sectors_are_self_consistent() {
        let (_dir, path) = blank();
        let config = serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "sizeMiB": 4}, {"label": "rest"}]});
        let o = partition_disk_with_sector_size(&path, &disk(config.clone()), &at(), 4096)
            .expect("partition");
        assert!(o.written);
        let o = partition_disk_with_sector_size(&path, &disk(config), &at(), 4096).expect("rerun");
        assert!(!o.written);
        let f = File::open(&path).expect("open");
        let t = read_table(
            &f,
            &Geometry {
                sector: 4096,
                sectors: DISK_MIB * MIB / 4096,
                align: 256,
            },
        )
        .expect("valid")
        .expect("present");
        let spans: Vec<(u64, u64)> = t.entries.values().map(|e| (e.first(), e.last())).collect();
        assert_eq!(spans, [(256, 256 + 1024 - 1), (1280, DISK_MIB * 256 - 6)]);
    }
}
