//! FAT32 geometry (cluster size, FAT size, cluster count) and the boot
//! sector and FSInfo sector that describe it.

use super::FatError;

pub(crate) const SECTOR: u64 = 512;
pub(crate) const RESERVED_SECTORS: u32 = 32;
pub(crate) const NUM_FATS: u32 = 2;
pub(crate) const MEDIA: u8 = 0xF8;
pub(crate) const ROOT_CLUSTER: u32 = 2;
pub(crate) const FSINFO_SECTOR: u16 = 1;
pub(crate) const BACKUP_BOOT_SECTOR: u16 = 6;
/// Fewest clusters a FAT32 volume may have.
pub(crate) const MIN_CLUSTERS: u32 = 65_525;
/// Most clusters a FAT32 volume may have (cluster numbers up to 0x0FFFFFF6).
pub(crate) const MAX_CLUSTERS: u32 = 0x0FFF_FFF5 - 2;
/// FAT entry marking the end of a cluster chain.
pub(crate) const END_OF_CHAIN: u32 = 0x0FFF_FFFF;

/// Where everything of one FAT32 volume lies, in sectors from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub total_sectors: u32,
    pub sectors_per_cluster: u32,
    pub fat_sectors: u32,
    pub clusters: u32,
}

impl Geometry {
    /// Geometry for a volume of `size` bytes, with sectors per cluster chosen
    /// like mkfs.fat does for FAT32 (Microsoft's table).
    pub(crate) fn for_size(size: u64) -> Result<Self, FatError> {
        if !size.is_multiple_of(SECTOR) {
            return Err(FatError::Unaligned {
                what: "size",
                value: size,
            });
        }
        let total = u32::try_from(size / SECTOR).map_err(|_| FatError::TooLarge { size })?;
        let mib = size / (1024 * 1024);
        let spc: u32 = match mib {
            0..=260 => 1,
            261..=8192 => 8,
            8193..=16384 => 16,
            16385..=32768 => 32,
            _ => 64,
        };
        let too_small = FatError::TooSmall { size, clusters: 0 };
        let data_and_fats = total.checked_sub(RESERVED_SECTORS).ok_or(too_small)?;
        let clusters_for =
            |fat_sectors: u32| data_and_fats.saturating_sub(NUM_FATS * fat_sectors) / spc;
        let fits = |fat_sectors: u32| {
            u64::from(clusters_for(fat_sectors)) + 2 <= u64::from(fat_sectors) * SECTOR / 4
        };
        // Start from Microsoft's formula (fatgen103), which is never too small,
        // then shrink while the FAT still covers every cluster.
        let per_fat_sector = (256 * spc + NUM_FATS) / 2;
        let mut fat_sectors = data_and_fats.div_ceil(per_fat_sector);
        while fat_sectors > 1 && fits(fat_sectors - 1) {
            fat_sectors -= 1;
        }
        let clusters = clusters_for(fat_sectors);
        if clusters < MIN_CLUSTERS {
            return Err(FatError::TooSmall { size, clusters });
        }
        if clusters > MAX_CLUSTERS {
            return Err(FatError::TooLarge { size });
        }
        Ok(Geometry {
            total_sectors: total,
            sectors_per_cluster: spc,
            fat_sectors,
            clusters,
        })
    }

    pub(crate) fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR
    }

    /// Byte offset of FAT number `n` (0 or 1) from the volume start.
    pub(crate) fn fat_offset(&self, n: u32) -> u64 {
        u64::from(RESERVED_SECTORS + n * self.fat_sectors) * SECTOR
    }

    /// Byte offset of data cluster `cluster` (>= 2) from the volume start.
    pub(crate) fn cluster_offset(&self, cluster: u32) -> u64 {
        let data_start = u64::from(RESERVED_SECTORS + NUM_FATS * self.fat_sectors);
        (data_start + u64::from(cluster - 2) * u64::from(self.sectors_per_cluster)) * SECTOR
    }
}

/// Volume identity written into the boot sector.
pub(crate) struct VolumeInfo<'a> {
    pub label: &'a [u8; 11],
    pub volume_id: u32,
    pub hidden_sectors: u32,
}

/// The boot sector (also written as the backup at sector 6).
pub(crate) fn boot_sector(g: &Geometry, v: &VolumeInfo<'_>) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    b[3..11].copy_from_slice(b"KEEL    ");
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = g.sectors_per_cluster as u8;
    b[14..16].copy_from_slice(&(RESERVED_SECTORS as u16).to_le_bytes());
    b[16] = NUM_FATS as u8;
    // root entry count, 16-bit total sectors: 0 on FAT32
    b[21] = MEDIA;
    // 16-bit FAT size: 0 on FAT32
    b[24..26].copy_from_slice(&32u16.to_le_bytes()); // sectors per track
    b[26..28].copy_from_slice(&64u16.to_le_bytes()); // heads
    b[28..32].copy_from_slice(&v.hidden_sectors.to_le_bytes());
    b[32..36].copy_from_slice(&g.total_sectors.to_le_bytes());
    b[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes());
    // extended flags 0 (FAT mirrored), version 0.0
    b[44..48].copy_from_slice(&ROOT_CLUSTER.to_le_bytes());
    b[48..50].copy_from_slice(&FSINFO_SECTOR.to_le_bytes());
    b[50..52].copy_from_slice(&BACKUP_BOOT_SECTOR.to_le_bytes());
    b[64] = 0x80; // drive number
    b[66] = 0x29; // extended boot signature
    b[67..71].copy_from_slice(&v.volume_id.to_le_bytes());
    b[71..82].copy_from_slice(v.label);
    b[82..90].copy_from_slice(b"FAT32   ");
    // Boot code at 0x5A, the jump target: cli; hlt; jmp hlt.
    b[90..94].copy_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]);
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// The FSInfo sector. `next_free` is the first free cluster, if any.
pub(crate) fn fsinfo_sector(free_clusters: u32, next_free: Option<u32>) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    b[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    b[488..492].copy_from_slice(&free_clusters.to_le_bytes());
    b[492..496].copy_from_slice(&next_free.unwrap_or(0xFFFF_FFFF).to_le_bytes());
    b[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn cluster_sizes_follow_mkfs() {
        let g = Geometry::for_size(64 * MIB).unwrap();
        assert_eq!(g.sectors_per_cluster, 1);
        assert_eq!(
            Geometry::for_size(256 * MIB).unwrap().sectors_per_cluster,
            1
        );
        assert_eq!(
            Geometry::for_size(512 * MIB).unwrap().sectors_per_cluster,
            8
        );
        assert_eq!(
            Geometry::for_size(1024 * MIB).unwrap().sectors_per_cluster,
            8
        );
    }

    #[test]
    fn fat_is_big_enough_and_tight() {
        for size in [
            33 * MIB,
            64 * MIB,
            256 * MIB,
            261 * MIB,
            512 * MIB,
            1024 * MIB,
        ] {
            let g = Geometry::for_size(size).unwrap();
            let entries = u64::from(g.fat_sectors) * SECTOR / 4;
            assert!(entries >= u64::from(g.clusters) + 2, "{size}");
            // one sector less would not do
            assert!(
                entries - u64::from(g.clusters) - 2
                    < 128 + 2 * 128 / u64::from(g.sectors_per_cluster),
                "{size}"
            );
            let end = g.cluster_offset(g.clusters + 2);
            assert!(end <= size, "{size}");
            assert!(size - end < g.cluster_bytes(), "{size}");
        }
    }

    #[test]
    fn too_small_and_unaligned() {
        assert!(matches!(
            Geometry::for_size(32 * MIB),
            Err(FatError::TooSmall { .. })
        ));
        assert!(matches!(
            Geometry::for_size(0),
            Err(FatError::TooSmall { .. })
        ));
        assert!(matches!(
            Geometry::for_size(64 * MIB + 1),
            Err(FatError::Unaligned { .. })
        ));
        // 300 MiB gets 4 KiB clusters, still enough of them
        assert!(Geometry::for_size(300 * MIB).is_ok());
    }
}
