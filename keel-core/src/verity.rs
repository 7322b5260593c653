//! dm-verity hash tree and superblock, byte-compatible with `veritysetup format`.
//!
//! The hash device layout is what cryptsetup writes for format version 1 with
//! a superblock: block 0 holds the 512-byte verity superblock (zero-padded to
//! one hash block), followed by the hash tree, top level first. Every digest
//! is `sha256(salt || block)`; hash blocks are zero-padded. The root hash is
//! the digest of the single top-level block (or of the only data block when
//! the image is one block long and there is no tree).
//!
//! Only 4096-byte data and hash blocks and SHA-256 are supported.

use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

mod superblock;

pub use superblock::Superblock;
use superblock::{ALGORITHM, HASH_TYPE};

/// Data and hash block size in bytes.
pub const BLOCK_SIZE: u32 = 4096;
/// Size of the on-disk verity superblock in bytes.
pub const SUPERBLOCK_SIZE: usize = 512;
/// Longest salt the superblock can hold.
pub const MAX_SALT_SIZE: usize = 256;

const BLOCK: usize = BLOCK_SIZE as usize;
const DIGEST: usize = 32;
/// Blocks of data read per `read_exact` call while hashing.
const READ_CHUNK_BLOCKS: usize = 256;

/// Errors from building, parsing or verifying dm-verity metadata.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    #[error("data size {0} is not a positive multiple of {BLOCK_SIZE} bytes")]
    BadDataSize(u64),
    #[error("salt is {0} bytes, at most {MAX_SALT_SIZE} are allowed")]
    SaltTooLong(usize),
    #[error("data image of {0} blocks is too large to hash on this machine")]
    TooLarge(u64),
    #[error("reading data image")]
    ReadData(#[source] io::Error),
    #[error("data image ended before {expected} bytes")]
    DataTooShort { expected: u64 },
    #[error("writing hash device")]
    WriteHash(#[source] io::Error),
    #[error("reading hash device")]
    ReadHash(#[source] io::Error),
    #[error("hash device ended before {expected} bytes")]
    HashTooShort { expected: u64 },
    #[error("verity superblock is {0} bytes, need {SUPERBLOCK_SIZE}")]
    SuperblockTooShort(usize),
    #[error("no verity superblock signature")]
    BadSignature,
    #[error("unsupported verity superblock version {0}, only 1 is supported")]
    UnsupportedVersion(u32),
    #[error("unsupported verity hash type {0}, only 1 is supported")]
    UnsupportedHashType(u32),
    #[error("unsupported verity hash algorithm {0:?}, only sha256 is supported")]
    UnsupportedAlgorithm(String),
    #[error(
        "unsupported verity block sizes data={data} hash={hash}, only {BLOCK_SIZE} is supported"
    )]
    UnsupportedBlockSize { data: u32, hash: u32 },
    #[error("verity superblock salt size {0} exceeds {MAX_SALT_SIZE}")]
    BadSaltSize(u16),
    #[error("verity superblock has zero data blocks")]
    NoDataBlocks,
    #[error("data block {0} does not match its hash")]
    DataBlockMismatch(u64),
    /// Levels are counted from the bottom: level 0 holds the data digests.
    #[error("hash tree block {index} of level {level} does not match its hash")]
    HashBlockMismatch { level: usize, index: u64 },
    #[error("root hash mismatch: expected {expected}, hash device has {actual}")]
    RootHashMismatch { expected: String, actual: String },
}

/// Parameters chosen by the image builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// Salt prepended to every hashed block, at most 256 bytes (may be empty).
    pub salt: Vec<u8>,
    /// UUID stored in the superblock (bytes in the order of the text form).
    pub uuid: [u8; 16],
}

/// Number of blocks of each hash tree level, bottom level (hashes of the
/// data blocks) first. Empty for a single data block.
fn level_sizes(data_blocks: u64) -> Vec<u64> {
    let per_block = (BLOCK / DIGEST) as u64;
    let mut sizes = Vec::new();
    let mut n = data_blocks;
    while n > 1 {
        n = n.div_ceil(per_block);
        sizes.push(n);
    }
    sizes
}

/// Bytes the hash device needs (superblock block + all tree levels) for
/// `data_size` bytes of data; a partial last block counts as a whole one.
pub fn hash_device_size(data_size: u64) -> u64 {
    let data_blocks = data_size.div_ceil(u64::from(BLOCK_SIZE));
    let tree_blocks: u64 = level_sizes(data_blocks).iter().sum();
    (1 + tree_blocks) * u64::from(BLOCK_SIZE)
}

/// Result of [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityTree {
    /// Root hash to put on the kernel command line.
    pub root_hash: [u8; 32],
    /// The superblock written to block 0 of the hash device.
    pub superblock: Superblock,
    /// Bytes written to the hash device, equal to [`hash_device_size`].
    pub hash_size: u64,
}

fn salted_hash(salt: &[u8], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Reads `data_blocks` blocks from `data` and returns their concatenated
/// salted digests. Holds one read chunk plus the digests in memory.
fn hash_data<R: Read>(mut data: R, data_blocks: u64, salt: &[u8]) -> Result<Vec<u8>, VerityError> {
    let digests_len = usize::try_from(data_blocks)
        .ok()
        .and_then(|n| n.checked_mul(DIGEST))
        .ok_or(VerityError::TooLarge(data_blocks))?;
    let mut digests = Vec::with_capacity(digests_len);
    let mut buf = vec![0u8; READ_CHUNK_BLOCKS * BLOCK];
    let mut remaining = data_blocks;
    while remaining > 0 {
        let blocks =
            usize::try_from(remaining).map_or(READ_CHUNK_BLOCKS, |r| r.min(READ_CHUNK_BLOCKS));
        let chunk = &mut buf[..blocks * BLOCK];
        data.read_exact(chunk).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                VerityError::DataTooShort {
                    expected: data_blocks * u64::from(BLOCK_SIZE),
                }
            } else {
                VerityError::ReadData(e)
            }
        })?;
        for block in chunk.chunks_exact(BLOCK) {
            digests.extend_from_slice(&salted_hash(salt, block));
        }
        remaining -= blocks as u64;
    }
    Ok(digests)
}

/// Zero-pads `bytes` to a whole number of hash blocks.
fn pad_to_block(mut bytes: Vec<u8>) -> Vec<u8> {
    let len = bytes.len().div_ceil(BLOCK) * BLOCK;
    bytes.resize(len, 0);
    bytes
}

/// Builds the tree levels (bottom first, each zero-padded to whole blocks)
/// and the root hash from the digests of the data blocks.
fn tree_from_digests(mut digests: Vec<u8>, salt: &[u8]) -> (Vec<Vec<u8>>, [u8; 32]) {
    let mut levels = Vec::new();
    while digests.len() > DIGEST {
        let level = pad_to_block(digests);
        digests = level
            .chunks_exact(BLOCK)
            .flat_map(|block| salted_hash(salt, block))
            .collect();
        levels.push(level);
    }
    let mut root = [0u8; 32];
    root.copy_from_slice(&digests[..DIGEST]);
    (levels, root)
}

fn data_blocks_for(data_size: u64) -> Result<u64, VerityError> {
    if data_size == 0 || data_size & u64::from(BLOCK_SIZE - 1) != 0 {
        return Err(VerityError::BadDataSize(data_size));
    }
    Ok(data_size / u64::from(BLOCK_SIZE))
}

/// Streams `data` (`data_size` bytes, a positive multiple of 4096) and writes
/// the superblock and hash tree to `out` from its position 0 up to
/// `hash_size`. Memory use is about 1/64 of the data size (the tree levels).
pub fn build<R: Read, W: Write + Seek>(
    data: R,
    data_size: u64,
    params: &VerityParams,
    out: &mut W,
) -> Result<VerityTree, VerityError> {
    let data_blocks = data_blocks_for(data_size)?;
    if params.salt.len() > MAX_SALT_SIZE {
        return Err(VerityError::SaltTooLong(params.salt.len()));
    }
    let digests = hash_data(data, data_blocks, &params.salt)?;
    let (levels, root_hash) = tree_from_digests(digests, &params.salt);

    let superblock = Superblock {
        uuid: params.uuid,
        hash_type: HASH_TYPE,
        algorithm: ALGORITHM.to_string(),
        data_block_size: BLOCK_SIZE,
        hash_block_size: BLOCK_SIZE,
        data_blocks,
        salt: params.salt.clone(),
    };
    let mut first = vec![0u8; BLOCK];
    first[..SUPERBLOCK_SIZE].copy_from_slice(&superblock.to_bytes());
    out.seek(SeekFrom::Start(0))
        .map_err(VerityError::WriteHash)?;
    out.write_all(&first).map_err(VerityError::WriteHash)?;
    let mut hash_size = BLOCK as u64;
    for level in levels.iter().rev() {
        out.write_all(level).map_err(VerityError::WriteHash)?;
        hash_size += level.len() as u64;
    }
    out.flush().map_err(VerityError::WriteHash)?;
    Ok(VerityTree {
        root_hash,
        superblock,
        hash_size,
    })
}

/// Reads exactly `buf.len()` bytes of the hash device.
fn read_hash<H: Read>(hash: &mut H, buf: &mut [u8], expected: u64) -> Result<(), VerityError> {
    hash.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            VerityError::HashTooShort { expected }
        } else {
            VerityError::ReadHash(e)
        }
    })
}

/// Checks `data` against the superblock and hash tree on `hash` and against
/// `root_hash`, both devices read from position 0.
///
/// Every stored tree block is checked against its parent digest and the top
/// block against `root_hash`, so any change to the data or the tree is found.
pub fn verify<R: Read + Seek, H: Read + Seek>(
    mut data: R,
    mut hash: H,
    root_hash: &[u8; 32],
) -> Result<(), VerityError> {
    hash.seek(SeekFrom::Start(0))
        .map_err(VerityError::ReadHash)?;
    let mut sb_bytes = [0u8; SUPERBLOCK_SIZE];
    read_hash(&mut hash, &mut sb_bytes, SUPERBLOCK_SIZE as u64)?;
    let sb = Superblock::parse(&sb_bytes)?;
    let sizes = level_sizes(sb.data_blocks);
    let hash_size = hash_device_size(sb.data_blocks * u64::from(BLOCK_SIZE));

    // Stored levels, bottom first, read from their places in the file.
    let mut stored: Vec<Vec<u8>> = Vec::with_capacity(sizes.len());
    let mut offset = hash_size;
    for &blocks in &sizes {
        let len = usize::try_from(blocks)
            .ok()
            .and_then(|b| b.checked_mul(BLOCK))
            .ok_or(VerityError::TooLarge(sb.data_blocks))?;
        offset -= len as u64;
        hash.seek(SeekFrom::Start(offset))
            .map_err(VerityError::ReadHash)?;
        let mut level = vec![0u8; len];
        read_hash(&mut hash, &mut level, hash_size)?;
        stored.push(level);
    }

    // Top down, as dm-verity does: root, then each level against its
    // parent, then the data against the bottom level.
    let root_mismatch = |actual: [u8; 32]| VerityError::RootHashMismatch {
        expected: hex::encode(root_hash),
        actual: hex::encode(actual),
    };
    if let Some(top) = stored.last() {
        let actual = salted_hash(&sb.salt, top);
        if &actual != root_hash {
            return Err(root_mismatch(actual));
        }
        for (level, pair) in stored.windows(2).enumerate().rev() {
            let computed: Vec<u8> = pair[0]
                .chunks_exact(BLOCK)
                .flat_map(|block| salted_hash(&sb.salt, block))
                .collect();
            if let Some(index) = first_mismatch(&computed, &pair[1]) {
                return Err(VerityError::HashBlockMismatch { level, index });
            }
        }
    }

    data.seek(SeekFrom::Start(0))
        .map_err(VerityError::ReadData)?;
    let digests = hash_data(data, sb.data_blocks, &sb.salt)?;
    match stored.first() {
        Some(bottom) => {
            if let Some(i) = first_mismatch(&digests, bottom) {
                return Err(VerityError::DataBlockMismatch(i));
            }
        }
        None => {
            // A single data block has no tree: its digest is the root hash.
            let mut actual = [0u8; 32];
            actual.copy_from_slice(&digests[..DIGEST]);
            if &actual != root_hash {
                return Err(root_mismatch(actual));
            }
        }
    }
    Ok(())
}

/// Index of the first digest in `computed` that differs from `stored`.
fn first_mismatch(computed: &[u8], stored: &[u8]) -> Option<u64> {
    computed
        .chunks_exact(DIGEST)
        .zip(stored.chunks_exact(DIGEST))
        .position(|(c, s)| c != s)
        .map(|i| i as u64)
}

/// Parameters of the kernel "verity" device-mapper target for this tree:
/// `1 <data_dev> <hash_dev> <data_bs> <hash_bs> <data_blocks> 1 sha256 <root> <salt|->`.
/// The hash start block is 1 because block 0 holds the superblock.
pub fn dm_table_params(
    sb: &Superblock,
    data_dev: &str,
    hash_dev: &str,
    root_hash: &[u8; 32],
) -> String {
    let salt = if sb.salt.is_empty() {
        "-".to_string()
    } else {
        hex::encode(&sb.salt)
    };
    format!(
        "1 {data_dev} {hash_dev} {} {} {} 1 {} {} {salt}",
        sb.data_block_size,
        sb.hash_block_size,
        sb.data_blocks,
        sb.algorithm,
        hex::encode(root_hash),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn sizes_follow_cryptsetup_levels() {
        assert_eq!(level_sizes(1), Vec::<u64>::new());
        assert_eq!(level_sizes(2), vec![1]);
        assert_eq!(level_sizes(128), vec![1]);
        assert_eq!(level_sizes(129), vec![2, 1]);
        assert_eq!(level_sizes(128 * 128), vec![128, 1]);
        assert_eq!(level_sizes(128 * 128 + 1), vec![129, 2, 1]);
        assert_eq!(hash_device_size(4096), 4096);
        assert_eq!(hash_device_size(129 * 4096), 4 * 4096);
        assert_eq!(hash_device_size(129 * 4096 - 1), 4 * 4096);
    }

    fn params() -> VerityParams {
        VerityParams {
            salt: vec![1, 2, 3],
            uuid: [9; 16],
        }
    }

    #[test]
    fn build_rejects_bad_sizes_and_salt() {
        let mut out = Cursor::new(Vec::new());
        for size in [0, 4095, 4097] {
            let data = vec![0u8; size as usize];
            assert!(matches!(
                build(&data[..], size, &params(), &mut out),
                Err(VerityError::BadDataSize(s)) if s == size
            ));
        }
        let long = VerityParams {
            salt: vec![0; 257],
            uuid: [0; 16],
        };
        assert!(matches!(
            build(&[0u8; 4096][..], 4096, &long, &mut out),
            Err(VerityError::SaltTooLong(257))
        ));
        assert!(matches!(
            build(&[0u8; 4096][..], 8192, &params(), &mut out),
            Err(VerityError::DataTooShort { expected: 8192 })
        ));
    }

    #[test]
    fn single_block_root_is_salted_digest() {
        let data = vec![0x42u8; 4096];
        let mut out = Cursor::new(Vec::new());
        let tree = build(&data[..], 4096, &params(), &mut out).unwrap();
        let mut h = Sha256::new();
        h.update([1u8, 2, 3]);
        h.update(&data);
        assert_eq!(tree.root_hash, <[u8; 32]>::from(h.finalize()));
        assert_eq!(tree.hash_size, 4096);
        assert_eq!(out.get_ref().len(), 4096);
    }

    #[test]
    fn verify_finds_tampering() {
        let blocks = 300u64;
        let data: Vec<u8> = (0..blocks * 4096).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Cursor::new(Vec::new());
        let tree = build(&data[..], data.len() as u64, &params(), &mut out).unwrap();
        let hash = out.into_inner();
        assert_eq!(hash.len() as u64, tree.hash_size);
        assert_eq!(tree.hash_size, hash_device_size(data.len() as u64));
        verify(Cursor::new(&data), Cursor::new(&hash), &tree.root_hash).unwrap();

        let mut bad_data = data.clone();
        bad_data[200 * 4096 + 17] ^= 1;
        assert!(matches!(
            verify(Cursor::new(&bad_data), Cursor::new(&hash), &tree.root_hash),
            Err(VerityError::DataBlockMismatch(200))
        ));
        // Layout: superblock, top (1 block), bottom (3 blocks).
        let mut bad_hash = hash.clone();
        bad_hash[3 * 4096 + 5] ^= 1;
        assert!(matches!(
            verify(Cursor::new(&data), Cursor::new(&bad_hash), &tree.root_hash),
            Err(VerityError::HashBlockMismatch { level: 0, index: 1 })
        ));
        let mut bad_top = hash.clone();
        bad_top[4096 + 4095] ^= 1;
        assert!(matches!(
            verify(Cursor::new(&data), Cursor::new(&bad_top), &tree.root_hash),
            Err(VerityError::RootHashMismatch { .. })
        ));
        let mut other_root = tree.root_hash;
        other_root[0] ^= 1;
        assert!(matches!(
            verify(Cursor::new(&data), Cursor::new(&hash), &other_root),
            Err(VerityError::RootHashMismatch { .. })
        ));
        assert!(matches!(
            verify(
                Cursor::new(&data[..4096 * 10]),
                Cursor::new(&hash),
                &tree.root_hash
            ),
            Err(VerityError::DataTooShort { .. })
        ));
        assert!(matches!(
            verify(
                Cursor::new(&data),
                Cursor::new(&hash[..3 * 4096]),
                &tree.root_hash
            ),
            Err(VerityError::HashTooShort { .. })
        ));
    }

    #[test]
    fn table_params() {
        let sb = Superblock {
            salt: vec![0xab, 0x01],
            ..superblock::tests::sample()
        };
        let root = [0x11u8; 32];
        assert_eq!(
            dm_table_params(&sb, "/dev/vda2", "/dev/vda4", &root),
            format!(
                "1 /dev/vda2 /dev/vda4 4096 4096 129 1 sha256 {} ab01",
                "11".repeat(32)
            )
        );
        let unsalted = Superblock { salt: vec![], ..sb };
        assert!(dm_table_params(&unsalted, "a", "b", &root).ends_with(" -"));
    }
}
