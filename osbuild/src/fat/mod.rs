//! A deterministic, write-once FAT32 image writer for the EFI System Partition.
//!
//! All directories and files are collected in memory first ([`FatImage::add_dir`],
//! [`FatImage::add_file`]); [`FatImage::write_to`] then lays them out and writes
//! a complete FAT32 filesystem into a region of a disk image. Same inputs give
//! byte-identical output: directory entries are sorted by name, every
//! timestamp is the one given to [`FatImage::new`], and the layout does not
//! depend on the order in which entries were added.

mod dirent;
mod geometry;
mod layout;
mod names;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

/// Errors from building or writing a FAT image.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("invalid volume label {label:?}: {reason}")]
    InvalidLabel { label: String, reason: &'static str },
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid name {name:?} in path {path:?}: {reason}")]
    InvalidName {
        path: String,
        name: String,
        reason: &'static str,
    },
    #[error("{path} already exists")]
    AlreadyExists { path: String },
    #[error("{path} is a file, not a directory")]
    NotADirectory { path: String },
    #[error("{path} clashes with existing {existing} (names differ only in case)")]
    CaseClash { path: String, existing: String },
    #[error("file {path} is {size} bytes, more than FAT's limit of 4 GiB - 1")]
    FileTooLarge { path: String, size: usize },
    #[error("directory {path} has more than 65536 entries")]
    DirectoryTooLarge { path: String },
    #[error("no unique short name left for {path}")]
    NoShortName { path: String },
    #[error("{what} {value} is not a multiple of 512 bytes")]
    Unaligned { what: &'static str, value: u64 },
    #[error("filesystem of {size} bytes is too small for FAT32: {clusters} clusters, need at least 65525")]
    TooSmall { size: u64, clusters: u32 },
    #[error("filesystem of {size} bytes is too large for FAT32")]
    TooLarge { size: u64 },
    #[error("contents need {needed} clusters but the filesystem of {size} bytes has {available}")]
    NoSpace {
        size: u64,
        needed: u64,
        available: u32,
    },
    #[error("writing filesystem image")]
    Io(#[source] std::io::Error),
}

/// A FAT32 filesystem to be written: volume identity plus a directory tree.
#[derive(Debug, Clone)]
pub struct FatImage {
    label: String,
    volume_id: u32,
    mtime: u64,
    root: Dir,
}

/// A directory's entries keyed by their case-folded name (sorted, unique).
#[derive(Debug, Clone, Default)]
pub(crate) struct Dir {
    pub entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The name as given (case preserved).
    pub name: String,
    pub node: Node,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Dir(Dir),
    File(Vec<u8>),
}

impl FatImage {
    /// A new, empty filesystem. `label` has at most 11 characters allowed in
    /// short names (and spaces) and is uppercased; an empty label is written as
    /// "NO NAME". An invalid label is reported by [`FatImage::write_to`].
    /// `volume_id` is the serial number; `mtime` (unix seconds) is used for
    /// every timestamp, clamped to FAT's range 1980..2107 (UTC).
    pub fn new(label: &str, volume_id: u32, mtime: u64) -> Self {
        FatImage {
            label: label.to_string(),
            volume_id,
            mtime,
            root: Dir::default(),
        }
    }

    /// Adds a directory, creating missing parents. Adding a directory that
    /// already exists with the same spelling is a no-op (like `mkdir -p`), so
    /// the result does not depend on the order of calls.
    pub fn add_dir(&mut self, path: &str) -> Result<(), FatError> {
        let parts = split_path(path)?;
        self.dir_at(&parts).map(|_| ())
    }

    /// Adds a file, creating missing parent directories. A second entry of the
    /// same name (also differing only in case) is an error.
    pub fn add_file(&mut self, path: &str, data: Vec<u8>) -> Result<(), FatError> {
        let parts = split_path(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(FatError::InvalidPath {
                path: path.to_string(),
                reason: "no file name",
            });
        };
        if u32::try_from(data.len()).is_err() {
            return Err(FatError::FileTooLarge {
                path: path.to_string(),
                size: data.len(),
            });
        }
        let dir = self.dir_at(parents)?;
        let key = names::fold_case(name);
        if let Some(existing) = dir.entries.get(&key) {
            return Err(clash(path, &existing.name, name));
        }
        dir.entries.insert(
            key,
            Entry {
                name: name.to_string(),
                node: Node::File(data),
            },
        );
        Ok(())
    }

    /// Writes a complete FAT32 filesystem of exactly `size` bytes at byte
    /// `offset` of `dev` (a disk image); bytes outside that region are not
    /// touched. Reserved sectors, both FATs, every directory and every file
    /// (padded to whole clusters) are written; free clusters are left as they
    /// are, so on a fresh sparse file the whole region is deterministic.
    /// `offset` and `size` must be multiples of 512.
    pub fn write_to<F: std::io::Write + std::io::Seek>(
        &self,
        dev: &mut F,
        offset: u64,
        size: u64,
    ) -> Result<(), FatError> {
        if !offset.is_multiple_of(geometry::SECTOR) {
            return Err(FatError::Unaligned {
                what: "offset",
                value: offset,
            });
        }
        let label = pack_label(&self.label)?;
        let geometry = geometry::Geometry::for_size(size)?;
        let hidden_sectors = u32::try_from(offset / geometry::SECTOR)
            .map_err(|_| FatError::TooLarge { size: offset })?;
        let info = geometry::VolumeInfo {
            label: &label,
            volume_id: self.volume_id,
            hidden_sectors,
        };
        let plan = layout::Plan::new(&self.root, &geometry, &label, self.mtime, size)?;
        plan.write(dev, offset, size, &geometry, &info)
            .map_err(FatError::Io)
    }

    /// The directory at `parts` below the root, created as needed.
    fn dir_at(&mut self, parts: &[&str]) -> Result<&mut Dir, FatError> {
        let mut dir = &mut self.root;
        for (i, part) in parts.iter().enumerate() {
            let key = names::fold_case(part);
            let entry = dir.entries.entry(key).or_insert_with(|| Entry {
                name: part.to_string(),
                node: Node::Dir(Dir::default()),
            });
            let so_far = parts[..=i].join("/");
            if entry.name != *part {
                return Err(clash(&so_far, &entry.name, part));
            }
            dir = match &mut entry.node {
                Node::Dir(d) => d,
                Node::File(_) => return Err(FatError::NotADirectory { path: so_far }),
            };
        }
        Ok(dir)
    }
}

/// The boot sector / volume entry form of a label.
fn pack_label(label: &str) -> Result<[u8; 11], FatError> {
    let upper = label.to_uppercase();
    let bad = |reason| FatError::InvalidLabel {
        label: label.to_string(),
        reason,
    };
    if upper.len() > 11 {
        return Err(bad("longer than 11 characters"));
    }
    if upper.starts_with(' ') {
        return Err(bad("starts with a space"));
    }
    let allowed =
        |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || " $%'-_@~`!(){}^#&".contains(c);
    if !upper.chars().all(allowed) {
        return Err(bad("only A-Z, 0-9, space and $%'-_@~`!(){}^#& are allowed"));
    }
    let mut packed = [b' '; 11];
    let text = if upper.is_empty() { "NO NAME" } else { &upper };
    packed[..text.len()].copy_from_slice(text.as_bytes());
    Ok(packed)
}

fn clash(path: &str, existing: &str, name: &str) -> FatError {
    if existing == name {
        FatError::AlreadyExists {
            path: path.to_string(),
        }
    } else {
        FatError::CaseClash {
            path: path.to_string(),
            existing: existing.to_string(),
        }
    }
}

/// Splits "a/b/c" or "/a/b/c" into checked components.
fn split_path(path: &str) -> Result<Vec<&str>, FatError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(FatError::InvalidPath {
            path: path.to_string(),
            reason: "empty path",
        });
    }
    trimmed
        .split('/')
        .map(|name| {
            names::check_long_name(name)
                .map(|()| name)
                .map_err(|reason| FatError::InvalidName {
                    path: path.to_string(),
                    name: name.to_string(),
                    reason,
                })
        })
        .collect()
}
