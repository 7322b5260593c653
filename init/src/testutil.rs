//! Helpers for tests that check results with independent tools (sgdisk,
//! mkfs.ext4, veritysetup). Missing tools fail the test with a hint. Also
//! unit files as Butane generates them, shared by the loader, planner and
//! supervisor tests.

use std::fs::File;
use std::path::Path;
use std::process::Command;

pub const MIB: u64 = 1 << 20;

/// Runs `tool args`, asserts success and returns stdout + stderr.
pub fn run(tool: &str, package: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e} (apt-get install -y {package})"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} {args:?} failed: {text}");
    text
}

pub fn sgdisk(args: &[&str]) -> String {
    run("sgdisk", "gdisk", args)
}

/// A Keel-like GPT on a sparse file of `size` bytes; `var` is partition 6
/// of `var_size` (sgdisk syntax: `+8M`, or `0` for the rest of the disk),
/// followed by partition 7 `other` unless `var_last`.
pub fn make_disk(path: &Path, size: u64, var_size: &str, var_last: bool) {
    File::create(path).unwrap().set_len(size).unwrap();
    let p = path.to_str().unwrap();
    #[rustfmt::skip]
    let mut args = vec![
        "-n", "1:2048:+4M", "-c", "1:esp",
        "-n", "2:0:+4M", "-c", "2:root-a",
        "-n", "3:0:+1M", "-c", "3:root-a-verity",
        "-n", "4:0:+4M", "-c", "4:root-b",
        "-n", "5:0:+1M", "-c", "5:root-b-verity",
    ];
    let var = format!("6:0:{var_size}");
    args.extend(["-n", &var, "-c", "6:var"]);
    if !var_last {
        args.extend(["-n", "7:0:+1M", "-c", "7:other"]);
    }
    args.push(p);
    sgdisk(&args);
}

/// (first, last) sector of partition `n` as sgdisk reports them.
pub fn sectors(path: &Path, n: u32) -> (u64, u64) {
    let info = sgdisk(&["-i", &n.to_string(), path.to_str().unwrap()]);
    let field = |name: &str| -> u64 {
        let line = info.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    (field("First sector:"), field("Last sector:"))
}

/// mkfs.ext4 on a new sparse file of `size` bytes.
pub fn mkfs_ext4(path: &Path, size: u64, extra: &[&str]) {
    File::create(path).unwrap().set_len(size).unwrap();
    let mut args = vec!["-q", "-F"];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    run("mkfs.ext4", "e2fsprogs", &args);
}

/// `veritysetup format data hash`; returns (root hash hex, salt hex).
pub fn verity_format(data: &Path, hash: &Path) -> (String, String) {
    let out = run(
        "veritysetup",
        "cryptsetup-bin",
        &["format", data.to_str().unwrap(), hash.to_str().unwrap()],
    );
    let field = |name: &str| -> String {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        line.split(':').nth(1).unwrap().trim().to_string()
    };
    (field("Root hash"), field("Salt"))
}

pub use keel_units::fixtures::{
    BUTANE_FSCK_NAME, BUTANE_MOUNT, BUTANE_MOUNT_NAME, BUTANE_SWAP, BUTANE_SWAP_NAME, FSCK_TEMPLATE,
};
