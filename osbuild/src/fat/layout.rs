//! Lays the directory tree out in clusters, renders directories and the FAT,
//! and writes everything to the target.
//!
//! Order on disk: the root directory at cluster 2, then every other directory
//! (depth-first, sorted by name), then every file's data (same order), each
//! contiguous. Nothing depends on the order entries were added in.

use std::collections::BTreeSet;
use std::io::{Seek, SeekFrom, Write};

use super::dirent::{self, FatTime, ATTR_ARCHIVE, ATTR_DIRECTORY, ATTR_VOLUME_ID};
use super::geometry::{self, Geometry, VolumeInfo, END_OF_CHAIN, ROOT_CLUSTER};
use super::names;
use super::{Dir, FatError, Node};

/// Most entries (32 bytes each) a FAT directory may hold.
const MAX_DIR_ENTRIES: usize = 65_536;

/// One entry of a planned directory.
struct Slot<'a> {
    short: [u8; 11],
    /// The long name, when LFN entries are needed.
    long: Option<&'a str>,
    kind: SlotKind,
}

enum SlotKind {
    /// Index into `Plan::dirs`.
    Dir(usize),
    /// Index into `Plan::files`.
    File(usize),
}

struct DirPlan<'a> {
    parent: Option<usize>,
    slots: Vec<Slot<'a>>,
    /// 32-byte entries in use, including ".", ".." and the volume label.
    entry_count: usize,
    first_cluster: u32,
    cluster_count: u32,
}

struct FilePlan<'a> {
    data: &'a [u8],
    first_cluster: u32,
    cluster_count: u32,
}

/// A complete layout of one filesystem.
pub(crate) struct Plan<'a> {
    dirs: Vec<DirPlan<'a>>,
    files: Vec<FilePlan<'a>>,
    label: [u8; 11],
    time: FatTime,
    /// Clusters in use (directories and files).
    used: u32,
}

impl<'a> Plan<'a> {
    pub(crate) fn new(
        root: &'a Dir,
        g: &Geometry,
        label: &[u8; 11],
        mtime: u64,
        size: u64,
    ) -> Result<Self, FatError> {
        let mut plan = Plan {
            dirs: Vec::new(),
            files: Vec::new(),
            label: *label,
            time: FatTime::from_unix(mtime),
            used: 0,
        };
        plan.add_dir(root, None, "")?;
        plan.allocate(g, size)?;
        Ok(plan)
    }

    /// Plans `dir` and, recursively, its subdirectories (pre-order).
    fn add_dir(
        &mut self,
        dir: &'a Dir,
        parent: Option<usize>,
        path: &str,
    ) -> Result<usize, FatError> {
        let index = self.dirs.len();
        self.dirs.push(DirPlan {
            parent,
            slots: Vec::new(),
            entry_count: 0,
            first_cluster: 0,
            cluster_count: 0,
        });
        // Names that are exact 8.3 names keep them; the others get generated
        // short names that avoid those, in sorted order.
        let mut taken: BTreeSet<[u8; 11]> = dir
            .entries
            .values()
            .filter_map(|e| names::exact_short_name(&e.name))
            .collect();
        let mut slots = Vec::with_capacity(dir.entries.len());
        let mut entry_count = if parent.is_none() { 1 } else { 2 };
        for entry in dir.entries.values() {
            let child_path = format!("{path}/{}", entry.name);
            let (short, long) =
                match names::exact_short_name(&entry.name) {
                    Some(short) => (short, None),
                    None => {
                        let short = names::generate_short_name(&entry.name, &mut taken)
                            .ok_or_else(|| FatError::NoShortName {
                                path: child_path.clone(),
                            })?;
                        entry_count += names::lfn_entry_count(&entry.name);
                        (short, Some(entry.name.as_str()))
                    }
                };
            entry_count += 1;
            let kind = match &entry.node {
                Node::Dir(d) => SlotKind::Dir(self.add_dir(d, Some(index), &child_path)?),
                Node::File(data) => {
                    self.files.push(FilePlan {
                        data,
                        first_cluster: 0,
                        cluster_count: 0,
                    });
                    SlotKind::File(self.files.len() - 1)
                }
            };
            slots.push(Slot { short, long, kind });
        }
        if entry_count > MAX_DIR_ENTRIES {
            let path = if path.is_empty() { "/" } else { path };
            return Err(FatError::DirectoryTooLarge {
                path: path.to_string(),
            });
        }
        self.dirs[index].slots = slots;
        self.dirs[index].entry_count = entry_count;
        Ok(index)
    }

    /// Assigns contiguous clusters: directories first, then files.
    fn allocate(&mut self, g: &Geometry, size: u64) -> Result<(), FatError> {
        let bytes = g.cluster_bytes();
        let mut next = u64::from(ROOT_CLUSTER);
        let mut take = |len: u64| -> (u32, u32) {
            let count = len.div_ceil(bytes);
            let first = if count == 0 { 0 } else { next };
            next += count;
            // Truncation only matters when it does not fit; checked below.
            (first as u32, count as u32)
        };
        for d in &mut self.dirs {
            (d.first_cluster, d.cluster_count) = take(d.entry_count as u64 * 32);
            if d.cluster_count == 0 {
                (d.first_cluster, d.cluster_count) = take(1);
            }
        }
        for f in &mut self.files {
            (f.first_cluster, f.cluster_count) = take(f.data.len() as u64);
        }
        let needed = next - u64::from(ROOT_CLUSTER);
        if needed > u64::from(g.clusters) {
            return Err(FatError::NoSpace {
                size,
                needed,
                available: g.clusters,
            });
        }
        self.used = needed as u32;
        Ok(())
    }

    /// The bytes of directory `index`, padded to its clusters.
    fn dir_bytes(&self, index: usize, g: &Geometry) -> Vec<u8> {
        let d = &self.dirs[index];
        let mut out = Vec::with_capacity((u64::from(d.cluster_count) * g.cluster_bytes()) as usize);
        let t = self.time;
        match d.parent {
            None => {
                if &self.label != b"NO NAME    " {
                    out.extend_from_slice(&dirent::short_entry(
                        &self.label,
                        ATTR_VOLUME_ID,
                        0,
                        0,
                        t,
                    ));
                }
            }
            Some(p) => {
                let parent_cluster = if p == 0 {
                    0
                } else {
                    self.dirs[p].first_cluster
                };
                out.extend_from_slice(&dirent::short_entry(
                    b".          ",
                    ATTR_DIRECTORY,
                    d.first_cluster,
                    0,
                    t,
                ));
                out.extend_from_slice(&dirent::short_entry(
                    b"..         ",
                    ATTR_DIRECTORY,
                    parent_cluster,
                    0,
                    t,
                ));
            }
        }
        for slot in &d.slots {
            if let Some(long) = slot.long {
                for e in names::lfn_entries(long, &slot.short) {
                    out.extend_from_slice(&e);
                }
            }
            let (attr, cluster, len) = match slot.kind {
                SlotKind::Dir(i) => (ATTR_DIRECTORY, self.dirs[i].first_cluster, 0),
                SlotKind::File(i) => {
                    let f = &self.files[i];
                    (ATTR_ARCHIVE, f.first_cluster, f.data.len() as u32)
                }
            };
            out.extend_from_slice(&dirent::short_entry(&slot.short, attr, cluster, len, t));
        }
        out.resize((u64::from(d.cluster_count) * g.cluster_bytes()) as usize, 0);
        out
    }

    /// One copy of the FAT.
    fn fat_bytes(&self, g: &Geometry) -> Vec<u8> {
        let mut fat = vec![0u8; (u64::from(g.fat_sectors) * geometry::SECTOR) as usize];
        let mut set = |cluster: u32, value: u32| {
            let at = cluster as usize * 4;
            fat[at..at + 4].copy_from_slice(&value.to_le_bytes());
        };
        set(0, 0x0FFF_FF00 | u32::from(geometry::MEDIA));
        set(1, END_OF_CHAIN);
        let chains = self
            .dirs
            .iter()
            .map(|d| (d.first_cluster, d.cluster_count))
            .chain(
                self.files
                    .iter()
                    .map(|f| (f.first_cluster, f.cluster_count)),
            );
        for (first, count) in chains {
            for c in first..first + count {
                set(
                    c,
                    if c + 1 == first + count {
                        END_OF_CHAIN
                    } else {
                        c + 1
                    },
                );
            }
        }
        fat
    }

    pub(crate) fn write<F: Write + Seek>(
        &self,
        dev: &mut F,
        offset: u64,
        size: u64,
        g: &Geometry,
        info: &VolumeInfo<'_>,
    ) -> std::io::Result<()> {
        let at = |dev: &mut F, pos: u64, bytes: &[u8]| -> std::io::Result<()> {
            dev.seek(SeekFrom::Start(offset + pos))?;
            dev.write_all(bytes)
        };
        // Make the region's last byte exist even if nothing else reaches it.
        at(dev, size - 1, &[0])?;

        let free = g.clusters - self.used;
        let next_free = (free > 0).then(|| ROOT_CLUSTER + self.used);
        let boot = geometry::boot_sector(g, info);
        let fsinfo = geometry::fsinfo_sector(free, next_free);
        let mut reserved =
            vec![0u8; (u64::from(geometry::RESERVED_SECTORS) * geometry::SECTOR) as usize];
        let backup = usize::from(geometry::BACKUP_BOOT_SECTOR) * 512;
        reserved[..512].copy_from_slice(&boot);
        reserved[512..1024].copy_from_slice(&fsinfo);
        reserved[backup..backup + 512].copy_from_slice(&boot);
        reserved[backup + 512..backup + 1024].copy_from_slice(&fsinfo);
        at(dev, 0, &reserved)?;

        let fat = self.fat_bytes(g);
        for n in 0..geometry::NUM_FATS {
            at(dev, g.fat_offset(n), &fat)?;
        }

        for index in 0..self.dirs.len() {
            let bytes = self.dir_bytes(index, g);
            at(
                dev,
                g.cluster_offset(self.dirs[index].first_cluster),
                &bytes,
            )?;
        }

        let cluster = g.cluster_bytes();
        for f in self.files.iter().filter(|f| f.cluster_count > 0) {
            let pos = g.cluster_offset(f.first_cluster);
            at(dev, pos, f.data)?;
            let pad = (u64::from(f.cluster_count) * cluster) as usize - f.data.len();
            at(dev, pos + f.data.len() as u64, &vec![0u8; pad])?;
        }
        dev.flush()
    }
}
