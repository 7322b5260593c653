//! The 512-byte verity superblock at the start of the hash device.

use super::{VerityError, BLOCK_SIZE, MAX_SALT_SIZE, SUPERBLOCK_SIZE};

const SIGNATURE: &[u8; 8] = b"verity\0\0";
const SB_VERSION: u32 = 1;
/// Hash type 1 is the "normal" format; 0 is Chrome OS.
pub(super) const HASH_TYPE: u32 = 1;
/// The only hash algorithm supported.
pub(super) const ALGORITHM: &str = "sha256";

/// The verity superblock at the start of the hash device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub uuid: [u8; 16],
    pub hash_type: u32,
    pub algorithm: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    pub salt: Vec<u8>,
}

impl Superblock {
    /// Parses the superblock from the first 512 bytes of `bytes`.
    ///
    /// Rejects anything this module cannot build or verify: a version other
    /// than 1, hash type other than 1, an algorithm other than sha256, block
    /// sizes other than 4096 and zero data blocks.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerityError> {
        let sb = bytes
            .get(..SUPERBLOCK_SIZE)
            .ok_or(VerityError::SuperblockTooShort(bytes.len()))?;
        if &sb[0..8] != SIGNATURE {
            return Err(VerityError::BadSignature);
        }
        let version = le_u32(sb, 8);
        if version != SB_VERSION {
            return Err(VerityError::UnsupportedVersion(version));
        }
        let hash_type = le_u32(sb, 12);
        if hash_type != HASH_TYPE {
            return Err(VerityError::UnsupportedHashType(hash_type));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[16..32]);
        let alg_field = &sb[32..64];
        let alg_len = alg_field.iter().position(|&b| b == 0).unwrap_or(32);
        let algorithm = String::from_utf8_lossy(&alg_field[..alg_len]).into_owned();
        if algorithm != ALGORITHM {
            return Err(VerityError::UnsupportedAlgorithm(algorithm));
        }
        let data_block_size = le_u32(sb, 64);
        let hash_block_size = le_u32(sb, 68);
        if data_block_size != BLOCK_SIZE || hash_block_size != BLOCK_SIZE {
            return Err(VerityError::UnsupportedBlockSize {
                data: data_block_size,
                hash: hash_block_size,
            });
        }
        let mut blocks = [0u8; 8];
        blocks.copy_from_slice(&sb[72..80]);
        let data_blocks = u64::from_le_bytes(blocks);
        if data_blocks == 0 {
            return Err(VerityError::NoDataBlocks);
        }
        let salt_size = u16::from_le_bytes([sb[80], sb[81]]);
        if usize::from(salt_size) > MAX_SALT_SIZE {
            return Err(VerityError::BadSaltSize(salt_size));
        }
        let salt = sb[88..88 + usize::from(salt_size)].to_vec();
        Ok(Self {
            uuid,
            hash_type,
            algorithm,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt,
        })
    }

    /// Serialises the superblock as veritysetup does (little-endian fields).
    ///
    /// The algorithm name is cut to 31 bytes and the salt to 256 bytes so the
    /// result always fits; [`build`] never produces longer values.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut sb = [0u8; SUPERBLOCK_SIZE];
        sb[0..8].copy_from_slice(SIGNATURE);
        sb[8..12].copy_from_slice(&SB_VERSION.to_le_bytes());
        sb[12..16].copy_from_slice(&self.hash_type.to_le_bytes());
        sb[16..32].copy_from_slice(&self.uuid);
        let alg = self.algorithm.as_bytes();
        let alg_len = alg.len().min(31);
        sb[32..32 + alg_len].copy_from_slice(&alg[..alg_len]);
        sb[64..68].copy_from_slice(&self.data_block_size.to_le_bytes());
        sb[68..72].copy_from_slice(&self.hash_block_size.to_le_bytes());
        sb[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        let salt_len = self.salt.len().min(MAX_SALT_SIZE);
        // salt_len <= 256, so the cast cannot truncate.
        sb[80..82].copy_from_slice(&(salt_len as u16).to_le_bytes());
        sb[88..88 + salt_len].copy_from_slice(&self.salt[..salt_len]);
        sb
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use super::*;

    /// A valid superblock, shared with the tree tests in `verity.rs`.
    pub(in crate::verity) fn sample() -> Superblock {
        Superblock {
            uuid: *b"0123456789abcdef",
            hash_type: 1,
            algorithm: "sha256".into(),
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 129,
            salt: vec![0xaa; 32],
        }
    }

    #[test]
    fn superblock_round_trip() {
        let sb = sample();
        let bytes = sb.to_bytes();
        assert_eq!(&bytes[..8], b"verity\0\0");
        assert_eq!(Superblock::parse(&bytes).unwrap(), sb);
        let empty_salt = Superblock {
            salt: vec![],
            ..sample()
        };
        assert_eq!(
            Superblock::parse(&empty_salt.to_bytes()).unwrap(),
            empty_salt
        );
        let max_salt = Superblock {
            salt: vec![7; 256],
            ..sample()
        };
        assert_eq!(Superblock::parse(&max_salt.to_bytes()).unwrap(), max_salt);
    }

    #[test]
    fn superblock_rejects_bad_input() {
        let good = sample().to_bytes();
        assert!(matches!(
            Superblock::parse(&good[..511]),
            Err(VerityError::SuperblockTooShort(511))
        ));
        assert!(matches!(
            Superblock::parse(&[0x5a; 512]),
            Err(VerityError::BadSignature)
        ));
        let mut b = good;
        b[8] = 2;
        assert!(matches!(
            Superblock::parse(&b),
            Err(VerityError::UnsupportedVersion(2))
        ));
        let mut b = good;
        b[12] = 0;
        assert!(matches!(
            Superblock::parse(&b),
            Err(VerityError::UnsupportedHashType(0))
        ));
        let sha1 = Superblock {
            algorithm: "sha1".into(),
            ..sample()
        };
        let err = Superblock::parse(&sha1.to_bytes()).unwrap_err();
        assert!(matches!(&err, VerityError::UnsupportedAlgorithm(a) if a == "sha1"));
        assert!(err.to_string().contains("sha1"));
        let small = Superblock {
            data_block_size: 512,
            ..sample()
        };
        assert!(matches!(
            Superblock::parse(&small.to_bytes()),
            Err(VerityError::UnsupportedBlockSize {
                data: 512,
                hash: 4096
            })
        ));
        let empty = Superblock {
            data_blocks: 0,
            ..sample()
        };
        assert!(matches!(
            Superblock::parse(&empty.to_bytes()),
            Err(VerityError::NoDataBlocks)
        ));
        let mut b = good;
        b[80..82].copy_from_slice(&257u16.to_le_bytes());
        assert!(matches!(
            Superblock::parse(&b),
            Err(VerityError::BadSaltSize(257))
        ));
    }
}
