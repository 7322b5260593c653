//! Checks the image `make image` built (`out/containerd-*.raw`, `.qcow2`,
//! `.manifest.json`) with independent tools, never with our own readers:
//! sgdisk (gdisk), veritysetup (cryptsetup-bin), fsck.erofs (erofs-utils),
//! fsck.fat (dosfstools), mtools, e2fsck (e2fsprogs), qemu-img (qemu-utils)
//! and modprobe (kmod). What the root holds is checked in [`root`]; its
//! unit files are loaded with keel-init's own loader, which is what runs
//! them.
//!
//! Partitions are copied by offset into sparse files in a temporary directory.
//! A missing image or tool fails the test, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_core::layout::{self, Slot};
use tempfile::TempDir;

#[path = "image_checks/root.rs"]
mod root;

/// The default image (`image-configs/containerd.toml`).
const IMAGE: &str = "containerd";

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// A byte inside the erofs superblock (which starts at 1024), flipped to
/// corrupt the root file system.
const EROFS_SB_BYTE: u64 = 1024 + 16;

/// (label, DPS type GUID) of every partition the image must have.
const EXPECTED: [(&str, &str); 6] = [
    (layout::ESP_LABEL, layout::ESP_TYPE),
    ("root-a", layout::ROOT_TYPE),
    ("root-a-verity", layout::ROOT_VERITY_TYPE),
    ("root-b", layout::ROOT_TYPE),
    ("root-b-verity", layout::ROOT_VERITY_TYPE),
    (layout::VAR_LABEL, layout::VAR_TYPE),
];

/// The built image: its three files and the partitions sgdisk reports.
struct Image {
    raw: PathBuf,
    qcow2: PathBuf,
    manifest: PathBuf,
    parts: Vec<Part>,
}

#[derive(Debug)]
struct Part {
    number: u32,
    label: String,
    type_guid: String,
    first_sector: u64,
    last_sector: u64,
}

impl Part {
    fn offset(&self) -> u64 {
        self.first_sector * SECTOR
    }

    fn len(&self) -> u64 {
        (self.last_sector - self.first_sector + 1) * SECTOR
    }
}

/// Which Debian package ships each tool, for the hint when one is missing.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "sgdisk" => "gdisk",
        "veritysetup" => "cryptsetup-bin",
        "fsck.erofs" => "erofs-utils",
        "fsck.fat" => "dosfstools",
        "mdir" | "mtype" => "mtools",
        "e2fsck" => "e2fsprogs",
        "qemu-img" => "qemu-utils",
        "modprobe" => "kmod",
        "readelf" => "binutils",
        _ => "?",
    }
}

/// Runs `tool args…`; returns whether it exited 0 and its stdout + stderr.
fn run(tool: &str, args: &[&str]) -> (bool, String) {
    // sgdisk, veritysetup and e2fsck live in sbin, which a user's PATH may lack.
    let program = ["/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(tool));
    let out = Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            let pkg = package_of(tool);
            panic!("cannot run {tool} ({e}): `apt-get install {pkg}` (scripts/install-deps.sh)")
        });
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    let text = String::from_utf8_lossy(&[stdout.as_slice(), stderr].concat()).into_owned();
    (out.status.success(), text)
}

/// Runs `tool args…`, failing the test unless it exits 0; returns its output.
fn run_ok(tool: &str, args: &[&str]) -> String {
    let (ok, text) = run(tool, args);
    assert!(ok, "{tool} {} failed:\n{text}", args.join(" "));
    text
}

/// Fails the test unless `output` of `what` (the command) contains `needle`.
fn assert_says(output: &str, needle: &str, what: &str) {
    assert!(
        output.contains(needle),
        "{what}: no {needle:?} in:\n{output}"
    );
}

fn s(path: &Path) -> &str {
    path.to_str().expect("image and temporary paths are UTF-8")
}

/// The image built by `make image`, with its partition table read by sgdisk.
fn image() -> Image {
    let qcow2 = qemu_tests::find_image(IMAGE).unwrap();
    let raw = qcow2.with_extension("raw");
    let manifest = qcow2.with_extension("manifest.json");
    for path in [&raw, &manifest] {
        assert!(
            path.is_file(),
            "{} missing: run `make image`",
            path.display()
        );
    }
    let table = run_ok("sgdisk", &["-p", s(&raw)]);
    assert_says(&table, "Sector size (logical): 512 bytes", "sgdisk -p");
    // Rows of the table start with the partition number.
    let parts = (table.lines())
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .map(|n| part_info(&raw, n))
        .collect();
    Image {
        raw,
        qcow2,
        manifest,
        parts,
    }
}

/// Parses `sgdisk -i N`.
fn part_info(raw: &Path, number: u32) -> Part {
    let info = run_ok("sgdisk", &[&format!("-i{number}"), s(raw)]);
    let field = |name: &str| -> &str {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("sgdisk -i{number}: no {name:?} in:\n{info}"))
            .trim()
    };
    let first_word =
        |name: &str| -> String { field(name).split_whitespace().next().unwrap().to_string() };
    let sector = |name: &str| -> u64 {
        let word = first_word(name);
        word.parse()
            .unwrap_or_else(|_| panic!("sgdisk -i{number}: bad {name} {word:?}:\n{info}"))
    };
    Part {
        number,
        label: field("Partition name:").trim_matches('\'').to_string(),
        type_guid: first_word("Partition GUID code:").to_ascii_lowercase(),
        first_sector: sector("First sector:"),
        last_sector: sector("Last sector:"),
    }
}

impl Image {
    fn part(&self, label: &str) -> &Part {
        self.parts
            .iter()
            .find(|p| p.label == label)
            .unwrap_or_else(|| panic!("no partition labelled {label}: {:#?}", self.parts))
    }

    /// Checks slot A's erofs root with fsck.erofs and extracts it into
    /// `dir/tree` (owners and modes not preserved); returns the tree.
    fn root_tree(&self, dir: &TempDir) -> PathBuf {
        let root = self.extract(Slot::A.root_label(), dir, "root.img");
        // fsck.erofs 1.5 exits 0 even after "<E> erofs: superblock chksum
        // doesn't match", so its error lines count as a failure too.
        let fsck = |args: &[&str]| {
            let out = run_ok("fsck.erofs", args);
            assert!(
                !out.contains("<E>"),
                "fsck.erofs {}:\n{out}",
                args.join(" ")
            );
        };
        fsck(&[s(&root)]);
        let tree = dir.path().join("tree");
        fsck(&[
            &format!("--extract={}", tree.display()),
            "--no-preserve",
            s(&root),
        ]);
        tree
    }

    /// Copies the partition `label` into the sparse file `dir/<name>`.
    fn extract(&self, label: &str, dir: &TempDir, name: &str) -> PathBuf {
        let part = self.part(label);
        let dst = dir.path().join(name);
        copy_sparse(&self.raw, part.offset(), part.len(), &dst);
        dst
    }
}

/// Calls `f(relative offset, chunk)` for each 64 KiB chunk of the `len` bytes
/// at `offset` of `path` that is not all zeros.
fn nonzero_chunks(path: &Path, offset: u64, len: u64, mut f: impl FnMut(u64, &[u8])) {
    let mut input = File::open(path).unwrap();
    input.seek(SeekFrom::Start(offset)).unwrap();
    let (mut buf, zeros) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut done = 0;
    while done < len {
        let n = buf.len().min(usize::try_from(len - done).unwrap());
        input.read_exact(&mut buf[..n]).unwrap();
        // Slice equality is a memcmp, fast even in unoptimised test builds.
        if buf[..n] != zeros[..n] {
            f(done, &buf[..n]);
        }
        done += n as u64;
    }
}

/// Copies `len` bytes at `offset` of `src` into a new sparse file `dst`.
fn copy_sparse(src: &Path, offset: u64, len: u64, dst: &Path) {
    let output = File::create(dst).unwrap();
    output.set_len(len).unwrap();
    nonzero_chunks(src, offset, len, |at, chunk| {
        output.write_all_at(chunk, at).unwrap();
    });
}

/// Offset of the first non-zero byte in `len` bytes at `offset` of `path`.
fn first_nonzero(path: &Path, offset: u64, len: u64) -> Option<u64> {
    let mut first = None;
    nonzero_chunks(path, offset, len, |at, chunk| {
        let i = chunk.iter().position(|&b| b != 0).unwrap_or(0);
        first = first.or(Some(at + i as u64));
    });
    first
}

/// Paths on the ESP as mtools lists them recursively (`loader/loader.conf`).
fn esp_files(esp: &Path) -> Vec<String> {
    let listing = run_ok("mdir", &["-/b", "-i", s(esp), "::"]);
    listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("::/"))
        .map(str::to_string)
        .collect()
}

/// Name and text of the one boot entry, read with mtools.
fn boot_entry(esp: &Path) -> (String, String) {
    let dir = format!("::{}", layout::ESP_ENTRIES_DIR);
    let listing = run_ok("mdir", &["-b", "-i", s(esp), &dir]);
    let entries: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.trim().rsplit('/').next())
        .filter(|name| name.ends_with(".conf"))
        .collect();
    assert_eq!(entries.len(), 1, "mdir {dir}: want one entry:\n{listing}");
    let name = entries[0].to_string();
    let path = format!("{dir}/{name}");
    let text = run_ok("mtype", &["-i", s(esp), &path]);
    (name, text)
}

/// The value of `key=` on the entry's `options` line.
fn option<'a>(entry: &'a str, key: &str) -> &'a str {
    let options = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .unwrap_or_else(|| panic!("boot entry has no options line:\n{entry}"));
    options
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("boot entry options lack {key}=:\n{entry}"))
}

/// A string field of the image manifest (`root-hash`, `version`).
fn manifest_field(image: &Image, key: &str) -> String {
    let text = std::fs::read_to_string(&image.manifest).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[key]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no {key:?}", image.manifest.display()))
        .to_string()
}

#[test]
fn gpt_is_valid_with_dps_types_and_aligned_partitions() {
    let image = image();
    let verify = run_ok("sgdisk", &["-v", s(&image.raw)]);
    assert_says(&verify, "No problems found", "sgdisk -v");

    // Six partitions and each expected label found: exactly the expected set.
    let parts = &image.parts;
    assert_eq!(parts.len(), EXPECTED.len(), "sgdisk partitions: {parts:#?}");
    for (label, type_guid) in EXPECTED {
        let part = image.part(label);
        let msg = format!("sgdisk -i{}: {part:?}", part.number);
        assert_eq!(part.type_guid, type_guid, "{msg}: wrong type");
        assert_eq!(part.offset() % MIB, 0, "{msg}: not 1 MiB aligned");
    }
}

#[test]
fn verity_hash_tree_matches_boot_entry_and_manifest() {
    let image = image();
    let dir = TempDir::new().unwrap();
    let root = image.extract(Slot::A.root_label(), &dir, "root.img");
    let verity = image.extract(Slot::A.verity_label(), &dir, "verity.img");
    let esp = image.extract(layout::ESP_LABEL, &dir, "esp.img");

    let (name, entry) = boot_entry(&esp);
    let slot = option(&entry, "keel.slot");
    assert_eq!(slot, Slot::A.name(), "{name}:\n{entry}");
    let hash = option(&entry, "keel.roothash");
    let manifest_hash = manifest_field(&image, "root-hash");
    assert_eq!(hash, manifest_hash, "root hash of {name} vs manifest");

    let verify =
        |data: &Path, hash: &str| run("veritysetup", &["verify", s(data), s(&verity), hash]);
    let (ok, out) = verify(&root, hash);
    assert!(ok, "veritysetup verify root-a root-a-verity {hash}:\n{out}");
    // The erofs image is followed by zeros up to the end of the partition.
    let dump = run_ok("veritysetup", &["dump", s(&verity)]);
    let blocks: u64 = dump
        .lines()
        .find_map(|l| l.strip_prefix("Data blocks:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("veritysetup dump: no data block count:\n{dump}"));
    let data_len = blocks * u64::from(layout::VERITY_BLOCK_SIZE);
    let part_len = image.part(Slot::A.root_label()).len();
    assert!(data_len <= part_len, "veritysetup dump:\n{dump}");
    let tail = first_nonzero(&root, data_len, part_len - data_len);
    assert_eq!(tail, None, "root-a: non-zero byte after the erofs image");

    // Negative: one flipped byte in the erofs superblock, or a wrong hash.
    let bad = dir.path().join("bad-root.img");
    copy_sparse(&root, 0, part_len, &bad);
    let file = File::options().read(true).write(true).open(&bad).unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, EROFS_SB_BYTE).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], EROFS_SB_BYTE).unwrap();
    let (ok, out) = verify(&bad, hash);
    assert!(
        !ok && out.contains("Verification of data area failed"),
        "veritysetup verify did not reject a corrupted root:\n{out}"
    );
    let flipped = if hash.starts_with('0') { "1" } else { "0" };
    let wrong = format!("{flipped}{}", &hash[1..]);
    let (ok, out) = verify(&root, &wrong);
    assert!(
        !ok && out.contains("Verification of root hash failed"),
        "veritysetup verify did not reject a wrong root hash:\n{out}"
    );
}

#[test]
fn erofs_root_passes_fsck_and_extracts() {
    let image = image();
    let dir = TempDir::new().unwrap();
    let tree = image.root_tree(&dir);
    let os_release = std::fs::read_to_string(tree.join("usr/lib/os-release"))
        .unwrap_or_else(|e| panic!("fsck.erofs --extract: usr/lib/os-release: {e}"));
    assert!(
        os_release.lines().any(|l| l == "ID=keel"),
        "usr/lib/os-release lacks ID=keel:\n{os_release}"
    );
    for path in [layout::INIT_PATH, layout::FIRSTBOOT_PATH] {
        let bin = tree.join(path.trim_start_matches('/'));
        assert!(bin.is_file(), "fsck.erofs --extract: no {}", bin.display());
        // Both run without the image's libraries: no ELF interpreter.
        let headers = run_ok("readelf", &["--program-headers", s(&bin)]);
        assert!(
            headers.contains("LOAD") && !headers.contains("INTERP"),
            "{path} is dynamically linked:\n{headers}"
        );
    }
}

/// The tools keel-firstboot and mount units run are in the root and find
/// every library they link: `packages.exclude` left out only what they do
/// not need.
#[test]
fn storage_tools_find_their_libraries() {
    let image = image();
    let dir = TempDir::new().unwrap();
    let tree = image.root_tree(&dir);
    let libdirs = ["usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib64"];
    for tool in [
        "usr/sbin/mkfs.ext4",
        "usr/sbin/e2fsck",
        "usr/sbin/mkfs.xfs",
        "usr/sbin/xfs_repair",
        "usr/sbin/mkfs.fat",
        "usr/sbin/fsck.fat",
        "usr/sbin/mkswap",
        "usr/sbin/swapon",
        "usr/sbin/swapoff",
        "usr/sbin/blkid",
        "usr/sbin/blockdev",
        "usr/sbin/fsck",
        "usr/bin/mount",
        "usr/bin/umount",
    ] {
        let bin = tree.join(tool);
        assert!(bin.is_file(), "{tool} is not in the root");
        let dynamic = run_ok("readelf", &["--dynamic", s(&bin)]);
        for lib in dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        {
            assert!(
                libdirs.iter().any(|d| tree.join(d).join(lib).exists()),
                "{tool} needs {lib}, which is not in the root"
            );
        }
    }
    // The shell script fsck.xfs runs under the root's /bin/sh.
    assert!(tree.join("usr/sbin/fsck.xfs").is_file());
    assert!(tree
        .join("usr/lib/systemd/system/systemd-fsck@.service")
        .is_file());
}

#[test]
fn esp_passes_fsck_fat_and_holds_boot_files() {
    let image = image();
    let dir = TempDir::new().unwrap();
    let esp = image.extract(layout::ESP_LABEL, &dir, "esp.img");
    let out = run_ok("fsck.fat", &["-n", s(&esp)]);
    // A clean check prints the version line and one summary line only.
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("fsck.fat ") && lines[1].contains(" files, "),
        "fsck.fat -n reported problems:\n{out}"
    );

    let files = esp_files(&esp);
    let version = manifest_field(&image, "version");
    let release = format!("{}/{version}", layout::ESP_RELEASE_DIR);
    for want in [
        layout::ESP_BOOT_LOADER_PATH.to_string(),
        "loader/loader.conf".to_string(),
        format!("{release}/{}", layout::ESP_KERNEL_NAME),
        format!("{release}/{}", layout::ESP_INITRD_NAME),
    ] {
        assert!(files.contains(&want), "mdir: no {want} on ESP: {files:#?}");
    }
}

#[test]
fn var_passes_e2fsck() {
    let image = image();
    let dir = TempDir::new().unwrap();
    let var = image.extract(layout::VAR_LABEL, &dir, "var.img");
    run_ok("e2fsck", &["-fn", s(&var)]);
}

#[test]
fn qcow2_is_clean_and_identical_to_raw() {
    let image = image();
    let check = run_ok("qemu-img", &["check", s(&image.qcow2)]);
    assert_says(&check, "No errors were found", "qemu-img check");
    let compare = run_ok("qemu-img", &["compare", s(&image.raw), s(&image.qcow2)]);
    assert_says(&compare, "Images are identical", "qemu-img compare");
}

#[test]
fn slot_b_is_empty() {
    let image = image();
    for label in [Slot::B.root_label(), Slot::B.verity_label()] {
        let part = image.part(label);
        let nonzero = first_nonzero(&image.raw, part.offset(), part.len());
        assert_eq!(nonzero, None, "{label}: first non-zero byte (offset)");
    }
}
