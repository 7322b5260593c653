//! Just enough of the ext4 superblock to decide on online growth.

use std::io::{self, Read, Seek, SeekFrom};

const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;
const MAGIC: u16 = 0xef53;
const INCOMPAT_64BIT: u32 = 0x80;

#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error("reading the ext4 superblock")]
    Read(#[source] io::Error),
    #[error("no ext4 superblock (magic {0:#06x})")]
    BadMagic(u16),
    #[error("ext4 block size 2^{0} KiB is not supported")]
    BadBlockSize(u32),
}

/// Size facts of an ext4 file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Size {
    pub block_size: u64,
    pub blocks: u64,
}

impl Ext4Size {
    /// Reads the primary superblock of the file system on `dev`.
    pub fn read<D: Read + Seek>(dev: &mut D) -> Result<Self, Ext4Error> {
        let mut sb = [0u8; SUPERBLOCK_LEN];
        dev.seek(SeekFrom::Start(SUPERBLOCK_OFFSET))
            .and_then(|_| dev.read_exact(&mut sb))
            .map_err(Ext4Error::Read)?;
        let le32 =
            |off: usize| u32::from_le_bytes([sb[off], sb[off + 1], sb[off + 2], sb[off + 3]]);
        let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
        if magic != MAGIC {
            return Err(Ext4Error::BadMagic(magic));
        }
        let log = le32(0x18);
        if log > 6 {
            return Err(Ext4Error::BadBlockSize(log));
        }
        let mut blocks = u64::from(le32(0x04));
        if le32(0x60) & INCOMPAT_64BIT != 0 {
            blocks |= u64::from(le32(0x150)) << 32;
        }
        Ok(Ext4Size {
            block_size: 1024 << log,
            blocks,
        })
    }

    /// The block count that fills `partition_bytes`, if that is more than
    /// the file system has now.
    pub fn grow_target(&self, partition_bytes: u64) -> Option<u64> {
        let fits = partition_bytes / self.block_size;
        (fits > self.blocks).then_some(fits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MIB;
    use std::fs::File;
    use std::process::Command;

    fn mkfs(path: &std::path::Path, size: u64, extra: &[&str]) {
        crate::testutil::mkfs_ext4(path, size, extra)
    }

    /// Block count and size as dumpe2fs reports them.
    fn dumpe2fs(path: &std::path::Path) -> (u64, u64) {
        let out = Command::new("dumpe2fs")
            .arg("-h")
            .arg(path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |name: &str| -> u64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line.split(':').nth(1).unwrap().trim().parse().unwrap()
        };
        (field("Block count"), field("Block size"))
    }

    #[test]
    fn matches_dumpe2fs() {
        let t = tempfile::tempdir().unwrap();
        for (size, extra) in [
            (64 * MIB, &[][..]),
            (40 * MIB, &["-b", "1024"][..]),
            (64 * MIB, &["-O", "^64bit"][..]),
        ] {
            let path = t.path().join("fs.img");
            mkfs(&path, size, extra);
            let got = Ext4Size::read(&mut File::open(&path).unwrap()).unwrap();
            let (blocks, bs) = dumpe2fs(&path);
            assert_eq!((got.blocks, got.block_size), (blocks, bs), "{extra:?}");
            assert_eq!(got.grow_target(size), None);
            assert_eq!(
                got.grow_target(size + 10 * MIB),
                Some((size + 10 * MIB) / bs)
            );
        }
    }

    #[test]
    fn grows_to_what_resize2fs_accepts() {
        // The target we compute for a bigger partition is one resize2fs
        // (offline, the same kernel-independent arithmetic) can reach.
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("fs.img");
        mkfs(&path, 32 * MIB, &[]);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100 * MIB + 512)
            .unwrap();
        let before = Ext4Size::read(&mut File::open(&path).unwrap()).unwrap();
        let target = before.grow_target(100 * MIB + 512).unwrap();
        let out = Command::new("resize2fs")
            .arg("-f")
            .arg(&path)
            .arg(target.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = Ext4Size::read(&mut File::open(&path).unwrap()).unwrap();
        assert_eq!(after.blocks, target);
        assert_eq!(after.blocks * after.block_size, 100 * MIB);
    }

    #[test]
    fn rejects_non_ext4() {
        let mut zeros = std::io::Cursor::new(vec![0u8; 4096]);
        let err = Ext4Size::read(&mut zeros).unwrap_err();
        assert_eq!(err.to_string(), "no ext4 superblock (magic 0x0000)");
        let mut short = std::io::Cursor::new(vec![0u8; 100]);
        assert!(matches!(
            Ext4Size::read(&mut short),
            Err(Ext4Error::Read(_))
        ));
    }
}
