//! Whole-image tests: images are checked with fsck.fat (dosfstools) and read
//! back with two independent readers, the `fatfs` crate and mtools.

#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1024 * 1024;
const MTIME: u64 = 1_700_000_000;

/// Deterministic pseudo-random bytes (xorshift), so file contents differ.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The files of a typical ESP plus awkward cases: path -> content.
fn sample_files() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut add = |p: &str, d: Vec<u8>| files.insert(p.to_string(), d);
    add("EFI/BOOT/BOOTX64.EFI", noise(123_457, 1));
    add(
        "loader/loader.conf",
        b"timeout 3\ndefault keel-*\n".to_vec(),
    );
    add(
        "loader/entries/keel-1.0+3.conf",
        b"title Keel 1.0\nlinux /keel/1.0/vmlinuz\n".to_vec(),
    );
    add("keel/1.0/vmlinuz", noise(3 * MIB as usize + 17, 2));
    add("keel/1.0/initrd.img", noise(2 * MIB as usize, 3));
    add("empty", Vec::new());
    add("Mixed Case Name With Spaces.txt", b"spaces".to_vec());
    add("café.txt", b"unicode".to_vec());
    add("a.b.c.d", b"dots".to_vec());
    add("exactly-one-cluster", vec![0x5A; 512]);
    add(&format!("{}.long", "n".repeat(200)), b"long name".to_vec());
    // > 100 entries in one directory, long names: several clusters.
    for i in 0..150 {
        add(
            &format!("many/file-number-{i:03}.data"),
            format!("file {i}\n").into_bytes(),
        );
    }
    for i in 0..12 {
        add(
            &format!("many/UPPER{i}.TXT"),
            format!("upper {i}\n").into_bytes(),
        );
    }
    files
}

fn sample_image(reverse: bool) -> FatImage {
    let mut img = FatImage::new("keel-esp", 0x1234_ABCD, MTIME);
    img.add_dir("/loader/entries").unwrap();
    img.add_dir("EFI/Linux").unwrap();
    let files = sample_files();
    let items: Vec<_> = if reverse {
        files.into_iter().rev().collect()
    } else {
        files.into_iter().collect()
    };
    for (path, data) in items {
        img.add_file(&path, data).unwrap();
    }
    img
}

/// Writes `img` into a fresh sparse file of `pad + size + pad` bytes at `pad`.
fn write_image(img: &FatImage, size: u64, pad: u64) -> tempfile::NamedTempFile {
    let mut tmp = tempfile::NamedTempFile::new().unwrap();
    tmp.as_file().set_len(size + 2 * pad).unwrap();
    img.write_to(tmp.as_file_mut(), pad, size).unwrap();
    tmp
}

/// Runs `fsck.fat -n [extra]`; `None` if it exits 0 and reports nothing besides
/// its version line, pass headers and the summary line, else its report.
fn fsck_problems(path: &Path, extra: &[&str]) -> Option<String> {
    let out = Command::new("fsck.fat")
        .arg("-n")
        .args(extra)
        .arg(path)
        .output()
        .expect("running fsck.fat (apt-get install dosfstools)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let unexpected = stdout.lines().any(|l| {
        !(l.starts_with("fsck.fat ")
            || l.contains(" files, ") && l.contains(" clusters")
            || l.starts_with("Starting check/repair pass.")
            || l.starts_with("Starting verification pass."))
    });
    let clean = out.status.success()
        && stderr.trim().is_empty()
        && !unexpected
        && stdout.contains(" files, ");
    (!clean).then(|| {
        format!(
            "fsck.fat {extra:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        )
    })
}

fn fsck(path: &Path, extra: &[&str]) {
    if let Some(report) = fsck_problems(path, extra) {
        panic!("{report}");
    }
}

fn region(tmp: &tempfile::NamedTempFile, offset: u64, size: u64) -> Vec<u8> {
    let mut f = File::open(tmp.path()).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; size as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Reads every file back with the `fatfs` crate (long names) and compares.
fn check_with_fatfs(bytes: Vec<u8>, expected: &BTreeMap<String, Vec<u8>>) {
    let fs = fatfs::FileSystem::new(Cursor::new(bytes), fatfs::FsOptions::new()).unwrap();
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    assert_eq!(fs.volume_id(), 0x1234_ABCD);
    assert_eq!(fs.volume_label(), "KEEL-ESP");
    assert_eq!(
        fs.read_volume_label_from_root_dir().unwrap().as_deref(),
        Some("KEEL-ESP")
    );
    let mut found = BTreeMap::new();
    let mut dirs = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = dirs.pop() {
        for e in dir.iter() {
            let e = e.unwrap();
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if e.is_dir() {
                dirs.push((format!("{path}/"), e.to_dir()));
                found.entry(format!("{path}/")).or_insert_with(Vec::new);
            } else {
                let mut data = Vec::new();
                e.to_file().read_to_end(&mut data).unwrap();
                assert_eq!(e.len(), data.len() as u64, "{path}");
                found.insert(path, data);
            }
        }
    }
    let files: BTreeMap<_, _> = found
        .iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(files.len(), expected.len());
    for (path, data) in expected {
        assert!(files.get(path) == Some(data), "content of {path} differs");
    }
    assert!(found.contains_key("EFI/Linux/"));
    let stats = fs.stats().unwrap();
    assert!(stats.free_clusters() < stats.total_clusters());
}

#[test]
fn fsck_clean_at_several_sizes() {
    let img = sample_image(false);
    for size in [64 * MIB, 256 * MIB, 300 * MIB, 512 * MIB, 1024 * MIB] {
        let tmp = write_image(&img, size, 0);
        fsck(tmp.path(), &[]);
        fsck(tmp.path(), &["-V"]);
        check_with_fatfs(region(&tmp, 0, size), &sample_files());
    }
}

#[test]
fn fsck_sees_the_expected_file_count() {
    // fsck counts files, directories and the volume label (not "." and "..");
    // make sure it walked the whole tree we wrote, not an empty root.
    let img = sample_image(false);
    let tmp = write_image(&img, 64 * MIB, 0);
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let files = sample_files().len();
    let dirs = [
        "EFI",
        "EFI/BOOT",
        "EFI/Linux",
        "loader",
        "loader/entries",
        "keel",
        "keel/1.0",
        "many",
    ];
    let expected = format!(": {} files, ", files + dirs.len() + 1);
    assert!(
        stdout.contains(&expected),
        "expected {expected:?} in {stdout}"
    );
}

#[test]
fn mtools_reads_long_names_and_contents() {
    let img = sample_image(false);
    let pad = MIB;
    let tmp = write_image(&img, 256 * MIB, pad);
    let target = format!("{}@@{}", tmp.path().display(), pad);
    let mtools = |args: &[&str]| -> String {
        let out = Command::new(args[0])
            .args(["-i", &target])
            .args(&args[1..])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .expect("running mtools (apt-get install mtools)");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (path, data) in sample_files() {
        if !path.is_ascii() {
            continue; // mtools converts names via the locale; checked with fatfs
        }
        let out = Command::new("mtype")
            .args(["-i", &target, &format!("::/{path}")])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mtype {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == data, "mtype {path}: content differs");
    }
    let root = mtools(&["mdir", "::/"]);
    assert!(root.contains("Volume in drive : is KEEL-ESP"), "{root}");
    assert!(root.contains("Mixed Case Name With Spaces.txt"), "{root}");
    assert!(
        root.contains(&format!("{}.long", "n".repeat(200))),
        "{root}"
    );
    let entries = mtools(&["mdir", "-b", "::/loader/entries"]);
    assert_eq!(entries.trim(), "::/loader/entries/keel-1.0+3.conf");
    let many = mtools(&["mdir", "-b", "::/many"]);
    assert_eq!(many.lines().count(), 162, "{many}");
    assert!(many.contains("::/many/file-number-149.data"), "{many}");
}

#[test]
fn offset_leaves_surrounding_bytes_alone() {
    let img = sample_image(false);
    let (pad, size) = (MIB, 64 * MIB);
    let mut tmp = tempfile::NamedTempFile::new().unwrap();
    let fill = noise((size + 2 * pad) as usize, 9);
    tmp.write_all(&fill).unwrap();
    img.write_to(tmp.as_file_mut(), pad, size).unwrap();
    let all = region(&tmp, 0, size + 2 * pad);
    assert_eq!(all.len() as u64, size + 2 * pad);
    assert!(
        all[..pad as usize] == fill[..pad as usize],
        "bytes before the region changed"
    );
    let end = (pad + size) as usize;
    assert!(all[end..] == fill[end..], "bytes after the region changed");
    // hidden sectors = offset / 512
    let boot = &all[pad as usize..pad as usize + 512];
    assert_eq!(u32::from_le_bytes(boot[28..32].try_into().unwrap()), 2048);
    assert_eq!(&boot[510..], &[0x55, 0xAA]);
    // old bytes in free clusters do not matter to fsck or readers
    let inner = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(inner.path(), &all[pad as usize..end]).unwrap();
    fsck(inner.path(), &["-V"]);
    check_with_fatfs(all[pad as usize..end].to_vec(), &sample_files());
}

#[test]
fn output_is_deterministic() {
    let size = 64 * MIB;
    let a = region(&write_image(&sample_image(false), size, 0), 0, size);
    let b = region(&write_image(&sample_image(true), size, 0), 0, size);
    assert!(a == b, "insertion order changed the image");
    let mut other = sample_image(false);
    other.add_file("one-more", b"x".to_vec()).unwrap();
    let c = region(&write_image(&other, size, 0), 0, size);
    assert!(a != c);
}

#[test]
fn boot_sector_fields() {
    let tmp = write_image(&sample_image(false), 512 * MIB, 0);
    let b = region(&tmp, 0, 16 * 512);
    assert_eq!(&b[3..11], b"KEEL    ");
    assert_eq!(u16::from_le_bytes([b[11], b[12]]), 512);
    assert_eq!(b[13], 8);
    assert_eq!(u16::from_le_bytes([b[14], b[15]]), 32);
    assert_eq!(b[16], 2);
    assert_eq!(b[21], 0xF8);
    assert_eq!(u32::from_le_bytes(b[44..48].try_into().unwrap()), 2);
    assert_eq!(&b[71..82], b"KEEL-ESP   ");
    assert_eq!(&b[82..90], b"FAT32   ");
    assert_eq!(&b[..512], &b[6 * 512..7 * 512], "backup boot sector");
    assert_eq!(&b[512..1024], &b[7 * 512..8 * 512], "backup fsinfo");
    assert_eq!(&b[512..516], b"RRaA");
    assert_eq!(&b[996..1000], b"rrAa");
}

#[test]
fn errors() {
    let img = sample_image(false);
    let mut dev = Cursor::new(Vec::new());
    assert!(matches!(
        img.write_to(&mut dev, 0, 32 * MIB),
        Err(FatError::TooSmall { .. })
    ));
    assert!(matches!(
        img.write_to(&mut dev, 1, 64 * MIB),
        Err(FatError::Unaligned { .. })
    ));
    let mut big = FatImage::new("", 1, 0);
    big.add_file("huge", vec![0; 70 * MIB as usize]).unwrap();
    assert!(matches!(
        big.write_to(&mut dev, 0, 64 * MIB),
        Err(FatError::NoSpace { .. })
    ));
    assert!(dev.get_ref().is_empty(), "nothing written on error");

    let mut img = FatImage::new("x", 1, 0);
    img.add_file("EFI/BOOT/BOOTX64.EFI", vec![1]).unwrap();
    let err = img.add_file("EFI/BOOT/BOOTX64.EFI", vec![2]).unwrap_err();
    assert!(matches!(err, FatError::AlreadyExists { .. }), "{err}");
    let err = img.add_file("efi/boot/other", vec![2]).unwrap_err();
    assert!(matches!(err, FatError::CaseClash { .. }), "{err}");
    let err = img.add_file("EFI/BOOT/bootx64.efi", vec![2]).unwrap_err();
    assert!(matches!(err, FatError::CaseClash { .. }), "{err}");
    let err = img.add_dir("EFI/BOOT/BOOTX64.EFI").unwrap_err();
    assert!(matches!(err, FatError::NotADirectory { .. }), "{err}");
    let err = img.add_file("EFI/BOOT/BOOTX64.EFI/x", vec![2]).unwrap_err();
    assert!(matches!(err, FatError::NotADirectory { .. }), "{err}");
    let err = img.add_file("EFI", vec![2]).unwrap_err();
    assert!(matches!(err, FatError::AlreadyExists { .. }), "{err}");
    img.add_dir("EFI/BOOT").unwrap(); // existing directory: no-op
    for bad in [
        "",
        "/",
        "a//b",
        "a/./b",
        "a/../b",
        "what?",
        "a:b",
        "trailing.",
        "x/<y>",
    ] {
        let err = img.add_file(bad, vec![]).unwrap_err();
        assert!(
            matches!(
                err,
                FatError::InvalidName { .. } | FatError::InvalidPath { .. }
            ),
            "{bad:?}: {err}"
        );
    }
    for bad in ["twelve chars", "bad:label", " lead", "é"] {
        let err = FatImage::new(bad, 0, 0)
            .write_to(&mut dev, 0, 64 * MIB)
            .unwrap_err();
        assert!(
            matches!(err, FatError::InvalidLabel { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(dev.get_ref().is_empty(), "nothing written on error");
    let mut ok = Cursor::new(Vec::new());
    FatImage::new("ok label", 0, 0)
        .write_to(&mut ok, 0, 64 * MIB)
        .unwrap();
    assert_eq!(&ok.get_ref()[71..82], b"OK LABEL   ");
}

#[test]
fn empty_filesystem_and_no_label() {
    let img = FatImage::new("", 7, 0);
    let size = 64 * MIB;
    let tmp = write_image(&img, size, 0);
    fsck(tmp.path(), &["-V"]);
    let fs = fatfs::FileSystem::new(Cursor::new(region(&tmp, 0, size)), fatfs::FsOptions::new())
        .unwrap();
    assert_eq!(fs.root_dir().iter().count(), 0);
    assert_eq!(fs.volume_label(), "NO NAME");
}

#[test]
fn fsck_check_catches_corruption() {
    // The fsck check above must be able to fail: corrupt images on purpose.
    let size = 64 * MIB;
    let img = sample_image(false);
    let clean = region(&write_image(&img, size, 0), 0, size);
    let g = geometry::Geometry::for_size(size).unwrap();
    let root = g.cluster_offset(2) as usize;
    let lfn = (root..root + 512)
        .step_by(32)
        .find(|&e| clean[e + 11] == 0x0F)
        .unwrap();
    let fat1_entry = g.fat_offset(1) as usize + 4 * 20;
    let corruptions: [(&str, usize, u8); 4] = [
        (
            "fsinfo free count",
            512 + 488,
            clean[512 + 488].wrapping_add(1),
        ),
        ("lfn checksum", lfn + 13, clean[lfn + 13] ^ 0x55),
        ("second fat", fat1_entry, clean[fat1_entry] ^ 1),
        ("backup boot sector", 6 * 512 + 13, 2),
    ];
    for (what, at, value) in corruptions {
        let mut bad = clean.clone();
        bad[at] = value;
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &bad).unwrap();
        assert!(
            fsck_problems(tmp.path(), &[]).is_some(),
            "{what} not detected"
        );
    }
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &clean).unwrap();
    assert!(fsck_problems(tmp.path(), &[]).is_none());
}

#[test]
fn large_file_in_one_gib() {
    // A kernel/initrd-sized file, contiguous in a 1 GiB ESP (4 KiB clusters).
    let mut img = FatImage::new("KEEL", 0x1234_ABCD, MTIME);
    let big = noise(100 * MIB as usize + 4097, 5);
    img.add_file("keel/initrd.img", big.clone()).unwrap();
    img.add_file("keel/vmlinuz", noise(12 * MIB as usize, 6))
        .unwrap();
    let size = 1024 * MIB;
    let tmp = write_image(&img, size, 0);
    fsck(tmp.path(), &["-V"]);
    let f = File::open(tmp.path()).unwrap();
    let fs = fatfs::FileSystem::new(f, fatfs::FsOptions::new()).unwrap();
    let mut data = Vec::new();
    let mut file = fs.root_dir().open_file("keel/initrd.img").unwrap();
    file.read_to_end(&mut data).unwrap();
    assert!(data == big, "initrd content differs");
    let stats = fs.stats().unwrap();
    assert_eq!(stats.cluster_size(), 4096);
    let used = stats.total_clusters() - stats.free_clusters();
    // root, keel/, then both files rounded up to whole clusters
    assert_eq!(used, 2 + (100 * 256 + 2) + 12 * 256);
}

#[test]
fn directory_entry_limit() {
    // 3121 names of 255 characters need 21 entries each: more than 65536.
    let mut img = FatImage::new("", 1, 0);
    for i in 0..3121 {
        let name = format!("{i:05}{}", "x".repeat(250));
        img.add_file(&format!("d/{name}"), Vec::new()).unwrap();
    }
    let mut dev = Cursor::new(Vec::new());
    let err = img.write_to(&mut dev, 0, 256 * MIB).unwrap_err();
    assert!(matches!(err, FatError::DirectoryTooLarge { .. }), "{err}");
    assert_eq!(err.to_string(), "directory /d has more than 65536 entries");
}
