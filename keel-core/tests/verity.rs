//! Checks keel_core::verity against cryptsetup's `veritysetup` (Debian package
//! cryptsetup-bin): byte-identical hash devices, identical root hashes, and
//! mutual acceptance. `veritysetup format` and `verify` work on regular files
//! without loop devices or root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_core::verity::{self, Superblock, VerityError, VerityParams};

const BLOCK: u64 = 4096;

fn veritysetup() -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join("veritysetup");
        if p.exists() {
            return p;
        }
    }
    panic!("veritysetup not found: install cryptsetup-bin (apt-get install -y cryptsetup-bin)");
}

/// Deterministic pseudo-random bytes (xorshift64*), `blocks` blocks long.
fn pseudo_random(blocks: u64, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity((blocks * BLOCK) as usize);
    for _ in 0..blocks * BLOCK / 8 {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("running veritysetup");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn veritysetup_verify(data: &Path, hash: &Path, root: &str) -> (bool, String) {
    run(Command::new(veritysetup())
        .arg("verify")
        .arg(data)
        .arg(hash)
        .arg(root))
}

/// Builds the tree for `data` with our code and with `veritysetup format`
/// and checks that both agree in every byte and in the root hash.
fn compare_with_veritysetup(data: &[u8], params: &VerityParams) {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data.img");
    let ours_path = dir.path().join("ours.img");
    let theirs_path = dir.path().join("theirs.img");
    fs::write(&data_path, data).unwrap();

    let size = data.len() as u64;
    let mut ours = File::create(&ours_path).unwrap();
    let tree = verity::build(File::open(&data_path).unwrap(), size, params, &mut ours).unwrap();
    ours.flush().unwrap();
    drop(ours);
    assert_eq!(tree.hash_size, verity::hash_device_size(size));
    assert_eq!(tree.superblock.data_blocks, size / BLOCK);

    let salt = if params.salt.is_empty() {
        "-".to_string()
    } else {
        hex::encode(&params.salt)
    };
    let (ok, text) = run(Command::new(veritysetup())
        .arg("format")
        .arg(format!("--salt={salt}"))
        .arg(format!("--uuid={}", uuid_text(&params.uuid)))
        .arg("--data-block-size=4096")
        .arg("--hash-block-size=4096")
        .arg(&data_path)
        .arg(&theirs_path));
    assert!(ok, "veritysetup format failed: {text}");
    let their_root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(str::trim)
        .expect("root hash in veritysetup output");
    assert_eq!(their_root, hex::encode(tree.root_hash), "root hash differs");

    let ours_bytes = fs::read(&ours_path).unwrap();
    let theirs_bytes = fs::read(&theirs_path).unwrap();
    // veritysetup writes exactly superblock + tree, no padding beyond it.
    assert_eq!(
        theirs_bytes.len() as u64,
        tree.hash_size,
        "veritysetup file size"
    );
    assert_eq!(ours_bytes.len() as u64, tree.hash_size, "our file size");
    if let Some(pos) = ours_bytes
        .iter()
        .zip(&theirs_bytes)
        .position(|(a, b)| a != b)
    {
        panic!(
            "hash devices differ first at byte {pos} (block {})",
            pos / 4096
        );
    }

    let their_sb = Superblock::parse(&theirs_bytes).unwrap();
    assert_eq!(their_sb, tree.superblock);

    // Each side accepts the other's output.
    let (ok, text) = veritysetup_verify(&data_path, &ours_path, their_root);
    assert!(ok, "veritysetup verify rejected our hash device: {text}");
    verity::verify(
        File::open(&data_path).unwrap(),
        File::open(&theirs_path).unwrap(),
        &tree.root_hash,
    )
    .unwrap();

    // A flipped byte in the last data block is refused by both.
    let mut tampered = data.to_vec();
    let last_block = size / BLOCK - 1;
    tampered[(last_block * BLOCK + 100) as usize] ^= 0x40;
    fs::write(&data_path, &tampered).unwrap();
    let (ok, text) = veritysetup_verify(&data_path, &ours_path, their_root);
    assert!(!ok, "veritysetup verify accepted tampered data: {text}");
    let err = verity::verify(
        File::open(&data_path).unwrap(),
        File::open(&ours_path).unwrap(),
        &tree.root_hash,
    )
    .unwrap_err();
    if last_block == 0 {
        assert!(matches!(err, VerityError::RootHashMismatch { .. }), "{err}");
    } else {
        assert!(
            matches!(err, VerityError::DataBlockMismatch(b) if b == last_block),
            "{err}"
        );
    }
}

fn params(salt: Vec<u8>) -> VerityParams {
    VerityParams {
        salt,
        uuid: [
            0x5f, 0x1c, 0x9e, 0x2a, 0x77, 0x03, 0x4b, 0x1d, 0x8c, 0x6e, 0x21, 0x90, 0xaa, 0x3b,
            0x42, 0xe7,
        ],
    }
}

fn salt32() -> Vec<u8> {
    (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(5))
        .collect()
}

#[test]
fn one_block() {
    compare_with_veritysetup(&pseudo_random(1, 1), &params(salt32()));
}

#[test]
fn one_level_boundaries() {
    for blocks in [2, 127, 128] {
        compare_with_veritysetup(&pseudo_random(blocks, blocks), &params(salt32()));
    }
}

#[test]
fn two_levels() {
    compare_with_veritysetup(&pseudo_random(129, 7), &params(salt32()));
}

#[test]
fn three_levels() {
    // 128 * 128 + 1 blocks: the smallest image with three tree levels.
    compare_with_veritysetup(&pseudo_random(128 * 128 + 1, 11), &params(salt32()));
}

#[test]
fn few_mib_and_salt_variants() {
    // 3 MiB + 1 block of pseudo-random data.
    let data = pseudo_random(769, 13);
    compare_with_veritysetup(&data, &params(salt32()));
    compare_with_veritysetup(&data[..129 * 4096], &params(Vec::new()));
    compare_with_veritysetup(&data[..5 * 4096], &params(vec![0xfe; 256]));
    compare_with_veritysetup(&data[..3 * 4096], &params(vec![0x01]));
}

#[test]
fn zero_data_matches() {
    // Identical blocks must still hash to identical, correctly placed digests.
    compare_with_veritysetup(&vec![0u8; 300 * 4096], &params(salt32()));
}
