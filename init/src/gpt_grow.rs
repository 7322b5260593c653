//! Growing the last GPT partition to the end of a disk that got bigger.
//!
//! A deliberately small, hand-written GPT update: it validates the primary
//! header and entry array (CRC32), moves the backup header and entries to
//! the disk's real end, extends one entry, and rewrites both copies with
//! fresh CRCs. The new backup is written before the primary, so an
//! interruption leaves either the old or the new table valid.

use std::io::{self, Read, Seek, SeekFrom, Write};

const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: usize = 92;
const ENTRY_NAME_OFFSET: usize = 56;
const ENTRY_NAME_LEN: usize = 72;
/// New partition ends are rounded down so the size stays a multiple of this.
const END_ALIGN: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("no GPT header at LBA 1 (sector size {0})")]
    NoHeader(u64),
    #[error("GPT header CRC mismatch")]
    HeaderCrc,
    #[error("GPT header is malformed: {0}")]
    Malformed(String),
    #[error("GPT partition entries CRC mismatch")]
    EntriesCrc,
    #[error("no GPT partition labelled {0:?}")]
    NoSuchPartition(String),
    #[error("disk has {disk_lbas} sectors but the GPT backup header is at sector {alternate}; the disk shrank")]
    DiskShrank { disk_lbas: u64, alternate: u64 },
}

/// What [`grow_last_partition`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowOutcome {
    /// Another partition ends after the one asked for; nothing changed.
    NotLast {
        after: u32,
    },
    /// Less than the minimum gain is free behind the partition; nothing changed.
    NoRoom {
        free_bytes: u64,
    },
    Grown(Grown),
}

/// A partition that was extended; byte offsets, as BLKPG wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grown {
    /// 1-based partition number.
    pub number: u32,
    pub start: u64,
    pub old_length: u64,
    pub length: u64,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> GptError {
    let what = what.into();
    move |source| GptError::Io { what, source }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn read_at<D: Read + Seek>(
    disk: &mut D,
    offset: u64,
    len: usize,
    what: &str,
) -> Result<Vec<u8>, GptError> {
    let mut buf = vec![0u8; len];
    disk.seek(SeekFrom::Start(offset))
        .and_then(|_| disk.read_exact(&mut buf))
        .map_err(io_err(format!("reading {what} at byte {offset}")))?;
    Ok(buf)
}

fn write_at<D: Write + Seek>(
    disk: &mut D,
    offset: u64,
    data: &[u8],
    what: &str,
) -> Result<(), GptError> {
    disk.seek(SeekFrom::Start(offset))
        .and_then(|_| disk.write_all(data))
        .map_err(io_err(format!("writing {what} at byte {offset}")))
}

/// The header with its CRC field recomputed.
fn seal_header(header: &mut [u8]) {
    put_u32(header, 16, 0);
    let crc = crc32fast::hash(header);
    put_u32(header, 16, crc);
}

fn entry_name(entry: &[u8]) -> String {
    let units: Vec<u16> = entry[ENTRY_NAME_OFFSET..ENTRY_NAME_OFFSET + ENTRY_NAME_LEN]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

fn entry_used(entry: &[u8]) -> bool {
    entry[..16].iter().any(|&b| b != 0)
}

/// Extends the partition labelled `label` to the end of `disk` if it is the
/// last partition and at least `min_gain` bytes would be gained. Also
/// updates a protective MBR to cover the whole disk.
pub fn grow_last_partition<D: Read + Write + Seek>(
    disk: &mut D,
    sector_size: u64,
    label: &str,
    min_gain: u64,
) -> Result<GrowOutcome, GptError> {
    let ss = sector_size;
    let disk_bytes = disk
        .seek(SeekFrom::End(0))
        .map_err(io_err("finding the disk size"))?;
    let disk_lbas = disk_bytes / ss;
    let last_lba = disk_lbas.saturating_sub(1);

    let sector = read_at(disk, ss, ss as usize, "GPT header")?;
    if &sector[..8] != SIGNATURE {
        return Err(GptError::NoHeader(ss));
    }
    let header_size = u32_at(&sector, 12) as usize;
    if !(MIN_HEADER_SIZE..=ss as usize).contains(&header_size) {
        return Err(GptError::Malformed(format!("header size {header_size}")));
    }
    let mut header = sector[..header_size].to_vec();
    let stored_crc = u32_at(&header, 16);
    seal_header(&mut header);
    if u32_at(&header, 16) != stored_crc {
        return Err(GptError::HeaderCrc);
    }
    let alternate = u64_at(&header, 32);
    let first_usable = u64_at(&header, 40);
    let entries_lba = u64_at(&header, 72);
    let num_entries = u32_at(&header, 80) as usize;
    let entry_size = u32_at(&header, 84) as usize;
    if u64_at(&header, 24) != 1
        || entry_size < 128
        || entry_size & 7 != 0
        || num_entries == 0
        || num_entries > 4096
    {
        return Err(GptError::Malformed(format!(
            "my LBA {}, {num_entries} entries of {entry_size} bytes",
            u64_at(&header, 24)
        )));
    }
    if alternate > last_lba {
        return Err(GptError::DiskShrank {
            disk_lbas,
            alternate,
        });
    }
    let array_len = num_entries * entry_size;
    let mut entries = read_at(disk, entries_lba * ss, array_len, "GPT partition entries")?;
    if crc32fast::hash(&entries) != u32_at(&header, 88) {
        return Err(GptError::EntriesCrc);
    }

    let index = (0..num_entries)
        .find(|&i| {
            let e = &entries[i * entry_size..(i + 1) * entry_size];
            entry_used(e) && entry_name(e) == label
        })
        .ok_or_else(|| GptError::NoSuchPartition(label.to_string()))?;
    let number = index as u32 + 1;
    let e = index * entry_size;
    let start_lba = u64_at(&entries, e + 32);
    let old_end = u64_at(&entries, e + 40);
    if let Some(after) = (0..num_entries).find(|&i| {
        let o = &entries[i * entry_size..(i + 1) * entry_size];
        i != index && entry_used(o) && u64_at(o, 40) > old_end
    }) {
        return Ok(GrowOutcome::NotLast {
            after: after as u32 + 1,
        });
    }

    let array_sectors = (array_len as u64).div_ceil(ss);
    let new_last_usable = last_lba
        .checked_sub(array_sectors + 1)
        .filter(|&l| l >= first_usable)
        .ok_or_else(|| GptError::Malformed(format!("disk of {disk_lbas} sectors is too small")))?;
    let new_end = ((new_last_usable + 1) * ss / END_ALIGN * END_ALIGN) / ss - 1;
    let free_bytes = new_end.saturating_sub(old_end) * ss;
    if new_end <= old_end || free_bytes < min_gain {
        return Ok(GrowOutcome::NoRoom { free_bytes });
    }

    put_u64(&mut entries, e + 40, new_end);
    let entries_crc = crc32fast::hash(&entries);
    put_u64(&mut header, 32, last_lba);
    put_u64(&mut header, 48, new_last_usable);
    put_u32(&mut header, 88, entries_crc);
    seal_header(&mut header);

    let backup_entries_lba = last_lba - array_sectors;
    let mut backup = header.clone();
    put_u64(&mut backup, 24, last_lba);
    put_u64(&mut backup, 32, 1);
    put_u64(&mut backup, 72, backup_entries_lba);
    seal_header(&mut backup);

    let pad = |h: &[u8]| {
        let mut s = vec![0u8; ss as usize];
        s[..h.len()].copy_from_slice(h);
        s
    };
    write_at(
        disk,
        backup_entries_lba * ss,
        &entries,
        "backup GPT partition entries",
    )?;
    write_at(disk, last_lba * ss, &pad(&backup), "backup GPT header")?;
    disk.flush().map_err(io_err("flushing the backup GPT"))?;
    write_at(
        disk,
        entries_lba * ss,
        &entries,
        "primary GPT partition entries",
    )?;
    write_at(disk, ss, &pad(&header), "primary GPT header")?;
    if alternate > old_end && alternate < backup_entries_lba {
        // The stale backup header now lies inside the grown partition.
        write_at(
            disk,
            alternate * ss,
            &vec![0u8; ss as usize],
            "old backup GPT header",
        )?;
    }
    update_protective_mbr(disk, disk_lbas)?;
    disk.flush().map_err(io_err("flushing the primary GPT"))?;

    Ok(GrowOutcome::Grown(Grown {
        number,
        start: start_lba * ss,
        old_length: (old_end + 1 - start_lba) * ss,
        length: (new_end + 1 - start_lba) * ss,
    }))
}

/// Makes a protective MBR's 0xEE partition cover the whole disk (capped at
/// 2^32-1 sectors, as the UEFI spec says). Other MBRs are left alone.
fn update_protective_mbr<D: Read + Write + Seek>(
    disk: &mut D,
    disk_lbas: u64,
) -> Result<(), GptError> {
    let mut mbr = read_at(disk, 0, 512, "protective MBR")?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Ok(());
    }
    for i in 0..4 {
        let p = 446 + i * 16;
        if mbr[p + 4] == 0xee && u32_at(&mbr, p + 8) == 1 {
            let size = u32::try_from(disk_lbas - 1).unwrap_or(u32::MAX);
            if u32_at(&mbr, p + 12) == size {
                return Ok(());
            }
            put_u32(&mut mbr, p + 12, size);
            return write_at(disk, 0, &mbr, "protective MBR");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{make_disk, sectors, sgdisk, MIB};
    use std::fs::{File, OpenOptions};
    use std::path::Path;

    fn last_sector(path: &Path, n: u32) -> u64 {
        sectors(path, n).1
    }

    fn open(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn grows_var_to_the_end_and_sgdisk_agrees() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("disk.img");
        make_disk(&path, 64 * MIB, "+8M", true);
        let old_last = last_sector(&path, 6);
        open(&path).set_len(200 * MIB).unwrap();

        let out = grow_last_partition(&mut open(&path), 512, "var", MIB).unwrap();
        let GrowOutcome::Grown(g) = out else {
            panic!("expected growth, got {out:?}");
        };
        assert_eq!(g.number, 6);
        assert_eq!(g.old_length, (old_last + 1) * 512 - g.start);

        let verify = sgdisk(&["-v", path.to_str().unwrap()]);
        assert!(verify.contains("No problems found"), "{verify}");
        let new_last = last_sector(&path, 6);
        assert_eq!(g.length, (new_last + 1) * 512 - g.start);
        // 200 MiB disk: backup at LBA 409599, entries 32 sectors before,
        // last usable 409566; end rounded down to a 4 KiB boundary.
        assert_eq!(new_last, 409_559);
        // Nothing left to do the second time.
        let again = grow_last_partition(&mut open(&path), 512, "var", MIB).unwrap();
        assert!(matches!(again, GrowOutcome::NoRoom { .. }), "{again:?}");
        let print = sgdisk(&["-p", path.to_str().unwrap()]);
        assert!(print.contains("var"), "{print}");
    }

    #[test]
    fn leaves_a_full_disk_alone() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("disk.img");
        make_disk(&path, 64 * MIB, "0", true);
        let before = std::fs::read(&path).unwrap();
        let out = grow_last_partition(&mut open(&path), 512, "var", MIB).unwrap();
        assert!(matches!(out, GrowOutcome::NoRoom { .. }), "{out:?}");
        assert!(std::fs::read(&path).unwrap() == before, "disk was modified");
    }

    #[test]
    fn leaves_var_alone_when_not_last() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("disk.img");
        make_disk(&path, 64 * MIB, "+8M", false);
        open(&path).set_len(128 * MIB).unwrap();
        let out = grow_last_partition(&mut open(&path), 512, "var", MIB).unwrap();
        assert_eq!(out, GrowOutcome::NotLast { after: 7 });
    }

    #[test]
    fn rejects_corrupt_tables() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("disk.img");
        make_disk(&path, 64 * MIB, "+8M", true);
        open(&path).set_len(128 * MIB).unwrap();
        let err = grow_last_partition(&mut open(&path), 512, "nope", MIB).unwrap_err();
        assert_eq!(err.to_string(), "no GPT partition labelled \"nope\"");
        // Flip a byte in the entry array: the entries CRC must catch it.
        let mut f = open(&path);
        f.seek(SeekFrom::Start(2 * 512 + 60)).unwrap();
        f.write_all(b"X").unwrap();
        let err = grow_last_partition(&mut open(&path), 512, "var", MIB).unwrap_err();
        assert!(matches!(err, GptError::EntriesCrc), "{err}");
        // And in the header.
        f.seek(SeekFrom::Start(512 + 40)).unwrap();
        f.write_all(b"X").unwrap();
        let err = grow_last_partition(&mut open(&path), 512, "var", MIB).unwrap_err();
        assert!(matches!(err, GptError::HeaderCrc), "{err}");
        let err = grow_last_partition(&mut open(&path), 4096, "var", MIB).unwrap_err();
        assert!(matches!(err, GptError::NoHeader(4096)), "{err}");
    }
}
