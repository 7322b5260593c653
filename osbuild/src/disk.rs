//! Disk layout and GPT: partitions in a fixed order, 1 MiB aligned, DPS
//! type GUIDs, GUIDs derived from the image identity so that equal inputs
//! give equal bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::str::FromStr;

use gpt::disk::LogicalBlockSize;
use gpt::partition::Partition;
use gpt::partition_types::Type;
use sha2::{Digest, Sha256};

pub const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("writing the partition table: {0}")]
    Gpt(String),
    #[error("writing the protective MBR: {0}")]
    Mbr(String),
    #[error("the partitions add up to more than {} TiB (at partition {label})", MAX_DISK >> 40)]
    TooLarge { label: &'static str },
}

/// The largest disk image [`Layout::plan`] makes.
pub const MAX_DISK: u64 = 64 << 40;

#[derive(Debug, Clone)]
pub struct PartitionSpec {
    pub label: &'static str,
    pub type_guid: &'static str,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Placed {
    pub label: &'static str,
    pub type_guid: &'static str,
    pub guid: uuid::Uuid,
    /// Byte offset and size on the disk.
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub disk_guid: uuid::Uuid,
    pub disk_size: u64,
    pub partitions: Vec<Placed>,
}

/// A version 4 style UUID derived from `seed` and `what`: stable across
/// builds of the same image, distinct between images and partitions.
pub fn derived_uuid(seed: &str, what: &str) -> uuid::Uuid {
    let digest = Sha256::new()
        .chain_update(seed.as_bytes())
        .chain_update([0])
        .chain_update(what.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

impl Layout {
    /// Places the partitions one after another from 1 MiB on, each start
    /// aligned to 1 MiB; the last MiB holds the backup GPT. A disk larger
    /// than [`MAX_DISK`] is an error (the sums never overflow).
    pub fn plan(specs: &[PartitionSpec], seed: &str) -> Result<Layout, DiskError> {
        let mut offset = MIB;
        let mut partitions = Vec::new();
        for s in specs {
            let too_large = || DiskError::TooLarge { label: s.label };
            let size = s
                .size
                .div_ceil(MIB)
                .checked_mul(MIB)
                .ok_or_else(too_large)?;
            partitions.push(Placed {
                label: s.label,
                type_guid: s.type_guid,
                guid: derived_uuid(seed, s.label),
                offset,
                size,
            });
            offset = offset
                .checked_add(size)
                .filter(|end| end.saturating_add(MIB) <= MAX_DISK)
                .ok_or_else(too_large)?;
        }
        Ok(Layout {
            disk_guid: derived_uuid(seed, "disk"),
            disk_size: offset + MIB,
            partitions,
        })
    }

    pub fn get(&self, label: &str) -> Option<&Placed> {
        self.partitions.iter().find(|p| p.label == label)
    }

    /// Writes the protective MBR and both GPT headers and entry arrays to
    /// `disk`, which must already be `disk_size` bytes long.
    pub fn write_gpt(&self, disk: &mut File) -> Result<(), DiskError> {
        let sectors = self.disk_size / SECTOR;
        let mbr =
            gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(sectors - 1).unwrap_or(u32::MAX));
        mbr.overwrite_lba0(disk)
            .map_err(|e| DiskError::Mbr(e.to_string()))?;
        let gerr = |e: gpt::GptError| DiskError::Gpt(e.to_string());
        let mut gdisk = gpt::GptConfig::new()
            .writable(true)
            .logical_block_size(LogicalBlockSize::Lb512)
            .create_from_device(disk, Some(self.disk_guid))
            .map_err(gerr)?;
        let mut parts = BTreeMap::new();
        for (i, p) in self.partitions.iter().enumerate() {
            let type_guid = Type::from_str(p.type_guid).map_err(|e| {
                DiskError::Gpt(format!("type GUID {} of {}: {e}", p.type_guid, p.label))
            })?;
            parts.insert(
                i as u32 + 1,
                Partition {
                    part_type_guid: type_guid,
                    part_guid: p.guid,
                    first_lba: p.offset / SECTOR,
                    last_lba: (p.offset + p.size) / SECTOR - 1,
                    flags: 0,
                    name: p.label.to_string(),
                },
            );
        }
        gdisk.update_partitions(parts).map_err(gerr)?;
        gdisk.write().map_err(gerr)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_core::layout;
    use std::process::Command;

    fn specs() -> Vec<PartitionSpec> {
        vec![
            PartitionSpec {
                label: "esp",
                type_guid: layout::ESP_TYPE,
                size: 64 * MIB,
            },
            PartitionSpec {
                label: "root-a",
                type_guid: layout::ROOT_TYPE,
                size: 100 * MIB + 5,
            },
            PartitionSpec {
                label: "var",
                type_guid: layout::VAR_TYPE,
                size: 32 * MIB,
            },
        ]
    }

    #[test]
    fn plan_is_aligned_and_deterministic() {
        let a = Layout::plan(&specs(), "img-1.0").unwrap();
        let b = Layout::plan(&specs(), "img-1.0").unwrap();
        assert_eq!(a.disk_guid, b.disk_guid);
        assert_ne!(
            a.disk_guid,
            Layout::plan(&specs(), "img-1.1").unwrap().disk_guid
        );
        for p in &a.partitions {
            assert_eq!(p.offset % MIB, 0);
            assert_eq!(p.size % MIB, 0);
        }
        assert_eq!(a.get("root-a").unwrap().size, 101 * MIB);
        assert_eq!(a.disk_size, (1 + 64 + 101 + 32 + 1) * MIB);
    }

    #[test]
    fn sizes_that_would_overflow_are_errors() {
        for big in [u64::MAX, u64::MAX / 2, MAX_DISK] {
            let mut s = specs();
            s[1].size = big;
            let e = Layout::plan(&s, "img").unwrap_err().to_string();
            assert!(e.contains("root-a") && e.contains("64 TiB"), "{e}");
        }
        let mut s = specs();
        s[2].size = MAX_DISK - 64 * MIB - 101 * MIB - 2 * MIB;
        assert_eq!(Layout::plan(&s, "img").unwrap().disk_size, MAX_DISK);
        s[2].size += 1;
        assert!(Layout::plan(&s, "img").is_err());
    }

    /// sgdisk, an independent implementation, finds nothing wrong and reads
    /// back our labels, types and GUIDs.
    #[test]
    fn sgdisk_accepts_it() {
        let l = Layout::plan(&specs(), "img").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("disk.raw");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(l.disk_size).unwrap();
        l.write_gpt(&mut f).unwrap();
        drop(f);
        let out = Command::new("sgdisk")
            .arg("-v")
            .arg(&path)
            .output()
            .expect("sgdisk (gdisk) must be installed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("No problems found"),
            "{text}"
        );
        let out = Command::new("sgdisk")
            .arg("-i")
            .arg("2")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_uppercase();
        assert!(text.contains(&layout::ROOT_TYPE.to_uppercase()), "{text}");
        assert!(
            text.contains(&l.get("root-a").unwrap().guid.to_string().to_uppercase()),
            "{text}"
        );
        assert!(text.contains("'ROOT-A'"), "{text}");
        assert!(
            text.contains(&format!("FIRST SECTOR: {}", (65 * MIB) / 512)),
            "{text}"
        );
    }
}
