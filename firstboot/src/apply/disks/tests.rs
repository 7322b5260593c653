//! The partitioning rules on sparse disk files, every table checked with
//! sgdisk.

use super::gpt::*;
use super::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, SystemTime};

const DISK_MIB: u64 = 64;
/// Sectors on a 64 MiB disk, and its last usable one with 128 entries.
const SECTORS: u64 = DISK_MIB * MIB / 512;
const LAST_USABLE: u64 = SECTORS - 34;
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// A sparse 64 MiB disk file in a fresh temp dir.
fn blank() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("disk.img");
    File::create(&path)
        .and_then(|f| f.set_len(DISK_MIB * MIB))
        .expect("sparse disk file");
    (dir, path)
}

fn disk(json: serde_json::Value) -> v3_6::Disk {
    serde_json::from_value(json).expect("disk entry")
}

fn at() -> JsonPath {
    JsonPath::root().key("storage").key("disks").index(0)
}

fn run(path: &Path, config: serde_json::Value) -> Result<DiskOutcome, DiskError> {
    partition_disk(path, &disk(config), &at())
}

/// Runs sgdisk, the independent reference; a missing sgdisk fails the
/// test rather than skipping it.
fn sgdisk(args: &[&str], path: &Path) -> String {
    let out = match Command::new("sgdisk").args(args).arg(path).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("sgdisk not found: install gdisk (apt-get install gdisk) to run these tests")
        }
        Err(e) => panic!("running sgdisk: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sgdisk {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `sgdisk -v` finds both headers, both arrays, their CRCs and the
/// protective MBR in order.
fn verify(path: &Path) {
    let out = sgdisk(&["-v"], path);
    assert!(out.contains("No problems found"), "sgdisk -v: {out}");
}

#[derive(Debug, PartialEq, Eq)]
struct Info {
    type_guid: String,
    guid: String,
    first: u64,
    last: u64,
    name: String,
}

/// Partition `n` as `sgdisk -i` describes it.
fn info(path: &Path, n: u32) -> Option<Info> {
    let out = sgdisk(&["-i", &n.to_string()], path);
    if out.contains("does not exist") {
        return None;
    }
    let field = |prefix: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {out}"))
            .trim()
            .to_string()
    };
    let word = |prefix: &str| field(prefix).split(' ').next().unwrap_or("").to_string();
    let number = |prefix: &str| word(prefix).parse::<u64>().expect("sector number");
    let name = field("Partition name:");
    Some(Info {
        type_guid: word("Partition GUID code:"),
        guid: word("Partition unique GUID:"),
        first: number("First sector:"),
        last: number("Last sector:"),
        name: name.trim_matches('\'').to_string(),
    })
}

/// The partition numbers `sgdisk -p` lists.
fn numbers(path: &Path) -> Vec<u32> {
    let out = sgdisk(&["-p"], path);
    out.lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn disk_guid(path: &Path) -> String {
    let out = sgdisk(&["-p"], path);
    out.lines()
        .find_map(|l| l.strip_prefix("Disk identifier (GUID): "))
        .expect("disk GUID")
        .to_string()
}

fn actions(o: &DiskOutcome) -> Vec<(u32, PartitionAction)> {
    o.partitions.iter().map(|p| (p.number, p.action)).collect()
}

fn mib(n: u64) -> u64 {
    n * MIB / 512
}

#[test]
fn disks_create_on_blank_file() {
    let (_dir, path) = blank();
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"label": "rest"},
            {"number": 1, "label": "boot", "sizeMiB": 16},
        ]}),
    )
    .expect("partition");
    assert!(o.written && !o.wiped);
    // The numbered partition is placed first, config order is kept
    // in the outcome.
    assert_eq!(
        actions(&o),
        [(2, PartitionAction::Created), (1, PartitionAction::Created)]
    );
    verify(&path);
    assert_eq!(numbers(&path), [1, 2]);
    let boot = info(&path, 1).expect("partition 1");
    assert_eq!((boot.first, boot.last), (2048, 2048 + mib(16) - 1));
    assert_eq!(boot.name, "boot");
    assert_eq!(boot.type_guid, upper(LINUX_DATA));
    let rest = info(&path, 2).expect("partition 2");
    assert_eq!((rest.first, rest.last), (2048 + mib(16), LAST_USABLE));
    assert_eq!(rest.name, "rest");
    assert_ne!(boot.guid, rest.guid);
    assert_eq!(o.summary(), "created 2, 1");
}

#[test]
fn disks_rerun_writes_nothing() {
    let (_dir, path) = blank();
    let config = serde_json::json!({"device": "/dev/vdb", "partitions": [
        {"number": 1, "label": "boot", "sizeMiB": 16, "startMiB": 0},
        {"label": "rest", "sizeMiB": 0},
    ]});
    run(&path, config.clone()).expect("first run");
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(old))
        .expect("set mtime");
    let before = std::fs::read(&path).expect("read disk");
    let o = run(&path, config).expect("second run");
    assert!(!o.written && !o.changed());
    assert_eq!(
        actions(&o),
        [(1, PartitionAction::Kept), (2, PartitionAction::Kept)]
    );
    assert_eq!(std::fs::read(&path).expect("read disk"), before);
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified());
    assert_eq!(mtime.expect("mtime"), old);
}

#[test]
fn disks_nothing_to_do_writes_nothing() {
    let (_dir, path) = blank();
    let empty = serde_json::json!({"device": "/dev/vdb"});
    let o = run(&path, empty).expect("no partitions");
    assert!(!o.written && o.partitions.is_empty());
    assert!(std::fs::read(&path).expect("read").iter().all(|&b| b == 0));
    // wipeTable alone is sgdisk --zap-all: no table afterwards.
    sgdisk(&["-n", "1:0:+8M"], &path);
    let wipe = serde_json::json!({"device": "/dev/vdb", "wipeTable": true});
    let o = run(&path, wipe).expect("wipe");
    assert!(o.written && o.wiped);
    let bytes = std::fs::read(&path).expect("read");
    assert!(bytes.iter().all(|&b| b == 0), "GPT or MBR left behind");
}

#[test]
fn disks_match_by_label() {
    let (_dir, path) = blank();
    sgdisk(
        &[
            "-n", "1:0:+8M", "-c", "1:alpha", "-n", "2:0:+8M", "-c", "2:beta",
        ],
        &path,
    );
    let before = std::fs::read(&path).expect("read disk");
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"label": "beta", "sizeMiB": 8},
            {"label": "gamma", "sizeMiB": 4},
        ]}),
    )
    .expect("partition");
    assert_eq!(
        actions(&o),
        [(2, PartitionAction::Kept), (3, PartitionAction::Created)]
    );
    verify(&path);
    assert_eq!(numbers(&path), [1, 2, 3]);
    let gamma = info(&path, 3).expect("partition 3");
    assert_eq!(
        (gamma.first, gamma.name.as_str()),
        (2048 + mib(16), "gamma")
    );
    // Partitions 1 and 2 are as sgdisk made them.
    let after = std::fs::read(&path).expect("read disk");
    let array = 2 * 512..(2 * 512 + 2 * 128);
    assert_eq!(after[array.clone()], before[array]);
}

#[test]
fn disks_wipe_table_replaces_sgdisk_table() {
    let (_dir, path) = blank();
    sgdisk(
        &[
            "-n", "1:0:+8M", "-n", "2:0:+8M", "-n", "3:0:0", "-c", "3:old",
        ],
        &path,
    );
    let old_guid = disk_guid(&path);
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "wipeTable": true, "partitions": [
            {"number": 1, "label": "new", "sizeMiB": 4},
        ]}),
    )
    .expect("partition");
    assert!(o.written && o.wiped);
    assert_eq!(actions(&o), [(1, PartitionAction::Created)]);
    verify(&path);
    assert_eq!(numbers(&path), [1]);
    let new = info(&path, 1).expect("partition 1");
    assert_eq!(
        (new.first, new.last, new.name.as_str()),
        (2048, 2048 + mib(4) - 1, "new")
    );
    assert_ne!(disk_guid(&path), old_guid);
}

#[test]
fn disks_should_exist_false_deletes_with_wipe_partition_entry() {
    let (_dir, path) = blank();
    sgdisk(&["-n", "1:0:+8M", "-n", "2:0:+8M"], &path);
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "shouldExist": false, "wipePartitionEntry": true},
            {"number": 5, "shouldExist": false},
        ]}),
    )
    .expect("partition");
    assert_eq!(
        actions(&o),
        [(1, PartitionAction::Deleted), (5, PartitionAction::Absent)]
    );
    verify(&path);
    assert_eq!(numbers(&path), [2]);
}

#[test]
fn disks_should_exist_false_without_wipe_partition_entry_fails() {
    let (_dir, path) = blank();
    sgdisk(&["-n", "1:0:+8M"], &path);
    let before = std::fs::read(&path).expect("read disk");
    let e = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "shouldExist": false},
        ]}),
    )
    .expect_err("must refuse");
    assert!(
        matches!(e, DiskError::ShouldNotExist { number: 1, .. }),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).expect("read disk"), before);
}

#[test]
fn disks_mismatch_errors_and_leaves_bytes() {
    let (_dir, path) = blank();
    sgdisk(&["-n", "1:0:+8M", "-c", "1:data"], &path);
    let before = std::fs::read(&path).expect("read disk");
    let e = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "label": "data", "sizeMiB": 16},
        ]}),
    )
    .expect_err("must not match");
    let text = e.to_string();
    assert!(
        text.starts_with("$.storage.disks.0.partitions.0: partition 1 on "),
        "{text}"
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("size did not match (specified 32768, got 16384)"),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).expect("read disk"), before);
}

#[test]
fn disks_wipe_partition_entry_recreates() {
    let (_dir, path) = blank();
    sgdisk(&["-n", "1:0:+8M", "-c", "1:data"], &path);
    let old = info(&path, 1).expect("partition 1");
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "label": "data", "sizeMiB": 16, "wipePartitionEntry": true},
        ]}),
    )
    .expect("partition");
    assert_eq!(actions(&o), [(1, PartitionAction::Recreated)]);
    verify(&path);
    let new = info(&path, 1).expect("partition 1");
    assert_eq!((new.first, new.last), (2048, 2048 + mib(16) - 1));
    assert_ne!(new.guid, old.guid);
}

#[test]
fn disks_resize_grows() {
    let (_dir, path) = blank();
    sgdisk(
        &[
            "-n",
            "1:0:+4M",
            "-n",
            "2:0:+8M",
            "-c",
            "2:root",
            "-t",
            &format!("2:{ESP}"),
        ],
        &path,
    );
    let old = info(&path, 2).expect("partition 2");
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 2, "label": "root", "sizeMiB": 0, "resize": true},
        ]}),
    )
    .expect("partition");
    assert_eq!(actions(&o), [(2, PartitionAction::Resized)]);
    verify(&path);
    let new = info(&path, 2).expect("partition 2");
    assert_eq!(
        new,
        Info {
            last: LAST_USABLE,
            ..old
        }
    );
    // Without resize, the same config is a mismatch once more.
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 2, "sizeMiB": 40, "resize": true},
        ]}),
    )
    .expect("shrink");
    assert_eq!(actions(&o), [(2, PartitionAction::Resized)]);
    let e = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 2, "sizeMiB": 41},
        ]}),
    )
    .expect_err("no resize");
    assert!(matches!(e, DiskError::Mismatch { number: 2, .. }), "{e}");
}

#[test]
fn disks_number_zero_takes_lowest_free() {
    let (_dir, path) = blank();
    sgdisk(&["-n", "1:0:+4M", "-n", "3:0:+4M"], &path);
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"label": "new", "sizeMiB": 4},
        ]}),
    )
    .expect("partition");
    assert_eq!(actions(&o), [(2, PartitionAction::Created)]);
    verify(&path);
    assert_eq!(numbers(&path), [1, 2, 3]);
    // The start of the largest free block: after partition 3.
    let new = info(&path, 2).expect("partition 2");
    assert_eq!((new.first, new.name.as_str()), (2048 + mib(8), "new"));
}

#[test]
fn disks_explicit_start_and_size() {
    let (_dir, path) = blank();
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"label": "later", "sizeMiB": 8},
            {"number": 2, "startMiB": 20, "sizeMiB": 10},
            {"number": 3, "startMiB": 1, "sizeMiB": 2},
        ]}),
    )
    .expect("partition");
    // The numbered ones go first; "later" goes to the start of the
    // largest free block that leaves (30 MiB on), as number 1.
    assert_eq!(
        actions(&o),
        [
            (1, PartitionAction::Created),
            (2, PartitionAction::Created),
            (3, PartitionAction::Created)
        ]
    );
    verify(&path);
    let get = |n| info(&path, n).map(|i| (i.first, i.last));
    assert_eq!(get(2), Some((mib(20), mib(30) - 1)));
    assert_eq!(get(3), Some((mib(1), mib(3) - 1)));
    assert_eq!(get(1), Some((mib(30), mib(38) - 1)));
    // Overlapping an existing partition is refused.
    let e = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 4, "startMiB": 25, "sizeMiB": 1},
        ]}),
    )
    .expect_err("overlap");
    assert!(e.to_string().contains("overlap partition 2"), "{e}");
}

#[test]
fn disks_type_guid_and_guid() {
    let (_dir, path) = blank();
    let guid = "0b3c6f9e-2d4a-4e5b-8c7d-112233445566";
    let config = serde_json::json!({"device": "/dev/vdb", "partitions": [
        {"number": 1, "label": "esp", "sizeMiB": 8,
         "typeGuid": ESP.to_lowercase(), "guid": guid},
    ]});
    run(&path, config.clone()).expect("partition");
    verify(&path);
    let esp = info(&path, 1).expect("partition 1");
    assert_eq!(esp.type_guid, ESP);
    assert_eq!(esp.guid, guid.to_uppercase());
    // GUIDs compare without regard to case.
    let o = run(&path, config).expect("rerun");
    assert!(!o.written);
    let e = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "typeGuid": upper(LINUX_DATA)},
        ]}),
    )
    .expect_err("type differs");
    assert!(e.to_string().contains("type GUID did not match"), "{e}");
}

#[test]
fn disks_corrupt_table_is_an_error() {
    let (_dir, path) = blank();
    sgdisk(&["-n", "1:0:+8M"], &path);
    let f = File::options().write(true).open(&path).expect("open");
    f.write_all_at(b"X", 512 + 100).expect("corrupt");
    f.write_all_at(&[0xFF], 512 + 48).expect("corrupt");
    let e = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": []}),
    )
    .expect_err("corrupt");
    let text = e.to_string();
    assert!(matches!(e, DiskError::BadTable { .. }), "{text}");
    assert!(text.starts_with("$.storage.disks.0: "), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    // wipeTable starts over regardless.
    run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "wipeTable": true, "partitions": [
            {"number": 1}]}),
    )
    .expect("wipe");
    verify(&path);
}

#[test]
fn disks_grown_disk_moves_backup_to_end() {
    let (_dir, path) = blank();
    sgdisk(&["-n", "1:0:+8M"], &path);
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(2 * DISK_MIB * MIB))
        .expect("grow");
    let o = run(
        &path,
        serde_json::json!({"device": "/dev/vdb", "partitions": [
            {"number": 1, "sizeMiB": 0, "resize": true}]}),
    )
    .expect("partition");
    assert_eq!(actions(&o), [(1, PartitionAction::Resized)]);
    verify(&path);
    let p = info(&path, 1).expect("partition 1");
    assert_eq!((p.first, p.last), (2048, 2 * SECTORS - 34));
}

#[test]
fn disks_4k_sectors_are_self_consistent() {
    let (_dir, path) = blank();
    let config = serde_json::json!({"device": "/dev/vdb", "partitions": [
        {"number": 1, "sizeMiB": 4}, {"label": "rest"}]});
    let o = partition_disk_with_sector_size(&path, &disk(config.clone()), &at(), 4096)
        .expect("partition");
    assert!(o.written);
    let o = partition_disk_with_sector_size(&path, &disk(config), &at(), 4096).expect("rerun");
    assert!(!o.written);
    let f = File::open(&path).expect("open");
    let t = read_table(
        &f,
        &Geometry {
            sector: 4096,
            sectors: DISK_MIB * MIB / 4096,
            align: 256,
        },
    )
    .expect("valid")
    .expect("present");
    let spans: Vec<(u64, u64)> = t.entries.values().map(|e| (e.first(), e.last())).collect();
    assert_eq!(spans, [(256, 256 + 1024 - 1), (1280, DISK_MIB * 256 - 6)]);
}
