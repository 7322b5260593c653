//! The GPT itself: reading a table (every check sgdisk makes of the
//! primary), wiping one (as `sgdisk --zap-all`), and writing one (backup
//! first, then primary, then the protective MBR), keeping the bytes of
//! entries that do not change.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use uuid::Uuid;

use super::NAME_UNITS;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const HEADER_SIZE: usize = 92;
const ENTRY_MIN: usize = 128;

#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    /// Bytes per logical sector.
    pub(super) sector: u64,
    /// Logical sectors on the device.
    pub(super) sectors: u64,
    /// Sectors per MiB, the alignment of default starts.
    pub(super) align: u64,
}

impl Geometry {
    pub(super) fn array_sectors(&self, t: &Table) -> u64 {
        (u64::from(t.num_entries) * u64::from(t.entry_size)).div_ceil(self.sector)
    }

    /// The last usable sector once the backup GPT sits at the end of the
    /// device (where every write puts it, as sgdisk does on a grown disk).
    pub(super) fn last_usable(&self, t: &Table) -> u64 {
        self.sectors.saturating_sub(2 + self.array_sectors(t))
    }

    pub(super) fn mib(&self, mib: i64) -> Option<u64> {
        u64::try_from(mib).ok()?.checked_mul(self.align)
    }
}

/// One partition entry, kept as its bytes so entries that are not touched
/// are written back exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry(pub(super) Vec<u8>);

impl Entry {
    pub(super) fn new(
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

    pub(super) fn type_guid(&self) -> Uuid {
        Uuid::from_bytes_le(arr16(&self.0[0..16]))
    }

    pub(super) fn guid(&self) -> Uuid {
        Uuid::from_bytes_le(arr16(&self.0[16..32]))
    }

    pub(super) fn first(&self) -> u64 {
        le64(&self.0[32..40])
    }

    pub(super) fn last(&self) -> u64 {
        le64(&self.0[40..48])
    }

    pub(super) fn size(&self) -> u64 {
        self.last() + 1 - self.first()
    }

    pub(super) fn set_last(&mut self, last: u64) {
        self.0[40..48].copy_from_slice(&last.to_le_bytes());
    }

    pub(super) fn name_units(&self) -> Vec<u16> {
        self.0[56..56 + 2 * NAME_UNITS]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect()
    }

    pub(super) fn name(&self) -> String {
        String::from_utf16_lossy(&self.name_units())
    }
}

pub(super) fn arr16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a
}

pub(super) fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

pub(super) fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// A GPT in memory: the header fields a rewrite keeps, and the used
/// entries by partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Table {
    pub(super) disk_guid: Uuid,
    pub(super) first_usable: u64,
    /// The primary entry array's first sector.
    pub(super) array_lba: u64,
    pub(super) num_entries: u32,
    pub(super) entry_size: u32,
    pub(super) entries: BTreeMap<u32, Entry>,
    /// The first 446 bytes of the MBR sector (boot code, disk signature),
    /// kept when the table is rewritten.
    pub(super) mbr_code: Option<Vec<u8>>,
}

impl Table {
    /// What sgdisk makes on a blank disk: 128 entries from sector 2.
    pub(super) fn empty(geo: &Geometry) -> Self {
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

    pub(super) fn lowest_free(&self) -> Option<u32> {
        (1..=self.num_entries).find(|n| !self.entries.contains_key(n))
    }
}

pub(super) fn read_at(f: &File, geo: &Geometry, lba: u64, sectors: u64) -> Result<Vec<u8>, String> {
    let len = usize::try_from(sectors * geo.sector).map_err(|e| e.to_string())?;
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, lba * geo.sector)
        .map_err(|e| format!("reading sector {lba}: {e}"))?;
    Ok(b)
}

/// The GPT on the device; `None` when there is none. A table that is
/// present but fails its checks is an error, not an empty disk.
pub(super) fn read_table(f: &File, geo: &Geometry) -> Result<Option<Table>, String> {
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
pub(super) fn zap(f: &File, geo: &Geometry, t: &Table) -> io::Result<()> {
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
pub(super) fn write_table(f: &File, geo: &Geometry, t: &Table, fresh: bool) -> io::Result<()> {
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
