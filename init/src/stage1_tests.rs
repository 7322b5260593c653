//! Stage 1 against a temporary root: a fake sysfs tree, a real verity hash
//! device from veritysetup, a real GPT from sgdisk and a real ext4 from
//! mkfs.ext4, with the recording `Sys`.

use super::*;
use crate::error::chain;
use crate::partitions::tests::add_disk;
use crate::recording::RecordingSys;
use crate::testutil::{make_disk, mkfs_ext4, sectors, verity_format, MIB};
use std::fs::OpenOptions;

struct Fixture {
    dir: tempfile::TempDir,
    roothash: String,
    salt: String,
}

impl Fixture {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn set_cmdline(&self, text: &str) {
        fs::write(self.root().join("proc/cmdline"), text).unwrap();
    }
}

const DATA_BLOCKS: u64 = 64;

/// An initramfs-like tree with every partition of slot a present.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in [
        "proc",
        "sys",
        "dev/mapper",
        "run",
        "etc/keel",
        "usr/lib/modules/6.1",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for d in ["proc", "sys", "dev", "run", "etc", "var", "usr/lib/keel"] {
        fs::create_dir_all(root.join("sysroot").join(d)).unwrap();
    }
    fs::write(root.join("etc/initrd-release"), "NAME=Keel\n").unwrap();
    fs::write(root.join("dev/mapper/control"), "").unwrap();
    fs::write(root.join("usr/lib/modules/6.1/virtio_blk.ko"), "ko").unwrap();
    fs::write(root.join("usr/lib/modules/6.1/dm-verity.ko"), "ko").unwrap();
    fs::write(
        root.join(MODULE_LIST),
        "/usr/lib/modules/6.1/virtio_blk.ko\n\n/usr/lib/modules/6.1/dm-verity.ko\n",
    )
    .unwrap();
    add_disk(
        root,
        "vda",
        254,
        &[
            (1, "esp"),
            (2, "root-a"),
            (3, "root-a-verity"),
            (4, "root-b"),
            (5, "root-b-verity"),
            (6, "var"),
        ],
    );
    let data = root.join("dev/vda2");
    let buf: Vec<u8> = (0..DATA_BLOCKS * 4096).map(|i| (i % 251) as u8).collect();
    fs::write(&data, buf).unwrap();
    File::create(root.join("dev/vda3"))
        .unwrap()
        .set_len(MIB)
        .unwrap();
    let (roothash, salt) = verity_format(&data, &root.join("dev/vda3"));
    // The whole disk grew from 64 to 200 MiB; var (8 MiB ext4) is last.
    make_disk(&root.join("dev/vda"), 64 * MIB, "+8M", true);
    OpenOptions::new()
        .write(true)
        .open(root.join("dev/vda"))
        .unwrap()
        .set_len(200 * MIB)
        .unwrap();
    mkfs_ext4(&root.join("dev/vda6"), 8 * MIB, &["-b", "4096"]);
    let fx = Fixture {
        dir,
        roothash,
        salt,
    };
    fx.set_cmdline(&format!(
        "console=ttyS0 keel.slot=a keel.roothash={}\n",
        fx.roothash
    ));
    fx
}

fn fast() -> Stage1Config {
    Stage1Config {
        device_timeout: Duration::from_millis(300),
        device_poll: Duration::from_millis(50),
        min_var_gain: MIB,
    }
}

fn run_fx(fx: &Fixture, sys: &RecordingSys) -> (Result<(), BootError>, String) {
    let mut log = Vec::new();
    let res = run(sys, fx.root(), &mut log, &fast());
    (res, String::from_utf8(log).unwrap())
}

#[test]
fn boots_slot_a_in_order() {
    let fx = fixture();
    let mut sys = RecordingSys::new(fx.root());
    // Not an initramfs: keep the disk image for sgdisk below.
    sys.fs_magic = 0xef53;
    let (res, log) = run_fx(&fx, &sys);
    res.unwrap_or_else(|e| panic!("{}\n{log}", chain(&e)));

    // Independent view of the grown partition: sgdisk on the disk image.
    let (first, last) = sectors(&fx.root().join("dev/vda"), 6);
    let length = (last + 1 - first) * 512;
    assert!(length > 180 * MIB, "{length}");
    let table = format!(
        "0 {} verity 1 254:2 254:3 4096 4096 {DATA_BLOCKS} 1 sha256 {} {}",
        DATA_BLOCKS * 8,
        fx.roothash,
        fx.salt
    );
    let expected = vec![
        "mount -t proc proc /proc -o nosuid,nodev,noexec".to_string(),
        "mount -t sysfs sysfs /sys -o nosuid,nodev,noexec".into(),
        "mount -t devtmpfs devtmpfs /dev -o nosuid,mode=0755".into(),
        "mount -t tmpfs tmpfs /run -o nosuid,nodev,mode=0755".into(),
        "finit_module /usr/lib/modules/6.1/virtio_blk.ko".into(),
        "finit_module /usr/lib/modules/6.1/dm-verity.ko".into(),
        "DM_DEV_CREATE keel-root ro via /dev/mapper/control".into(),
        format!("DM_TABLE_LOAD keel-root ro via /dev/mapper/control: {table}"),
        "DM_DEV_SUSPEND(resume) keel-root via /dev/mapper/control".into(),
        "mknod /dev/mapper/keel-root b 254 0".into(),
        "mount -t erofs /dev/mapper/keel-root /sysroot -o ro".into(),
        format!("BLKPG_RESIZE_PARTITION /dev/vda 6 {} {length}", first * 512),
        "mount -t ext4 /dev/vda6 /sysroot/var -o rw".into(),
        format!("EXT4_IOC_RESIZE_FS /sysroot/var {}", length / 4096),
        "mount -t overlay overlay /sysroot/etc -o rw,lowerdir=/sysroot/etc,\
         upperdir=/sysroot/var/lib/keel/etc/upper,workdir=/sysroot/var/lib/keel/etc/work"
            .into(),
        "mount --move /proc /sysroot/proc".into(),
        "mount --move /sys /sysroot/sys".into(),
        "mount --move /dev /sysroot/dev".into(),
        "mount --move /run /sysroot/run".into(),
        "chdir /sysroot".into(),
        "mount --move /sysroot /".into(),
        "chroot .".into(),
        "chdir /".into(),
        "exec /usr/lib/keel/keel-init".into(),
    ];
    assert_eq!(sys.calls(), expected, "{log}");

    assert!(fx.root().join("sysroot/var/lib/keel/etc/upper").is_dir());
    assert!(fx.root().join("sysroot/var/lib/keel/etc/work").is_dir());
    assert!(
        fx.root().join("etc/initrd-release").exists(),
        "not an initramfs: kept"
    );
    for line in [
        "keel-init: found root-a=/dev/vda2 root-a-verity=/dev/vda3 var=/dev/vda6",
        "keel-init: grew partition vda6 from 8 MiB to ",
        "keel-init: grew ext4 on /dev/vda6 from 8 MiB to ",
        "keel-init: starting /usr/lib/keel/keel-init",
    ] {
        assert!(log.contains(line), "missing {line:?} in\n{log}");
    }
}

#[test]
fn mounts_var_without_growing_a_full_disk() {
    let fx = fixture();
    make_disk(&fx.root().join("dev/vda"), 64 * MIB, "0", true);
    // The partition is as big as the file system: nothing to grow.
    fs::write(
        fx.root().join("sys/class/block/vda6/size"),
        format!("{}\n", 8 * MIB / 512),
    )
    .unwrap();
    let sys = RecordingSys::new(fx.root());
    let (res, log) = run_fx(&fx, &sys);
    res.unwrap_or_else(|e| panic!("{}\n{log}", chain(&e)));
    // The initramfs (a "tmpfs" for the fake) was emptied, /sysroot kept.
    assert!(!fx.root().join("etc/initrd-release").exists());
    assert!(!fx.root().join("dev").exists());
    assert!(fx.root().join("sysroot/usr/lib/keel").is_dir());
    let calls = sys.calls();
    assert!(
        calls
            .iter()
            .all(|c| !c.starts_with("BLKPG") && !c.starts_with("EXT4")),
        "{calls:#?}"
    );
    assert!(calls.contains(&"mount -t ext4 /dev/vda6 /sysroot/var -o rw".to_string()));
}

#[test]
fn growth_failure_is_a_warning() {
    let fx = fixture();
    let sys = RecordingSys::new(fx.root());
    sys.fail_on("BLKPG_RESIZE_PARTITION", libc::EBUSY);
    sys.fail_on("EXT4_IOC_RESIZE_FS", libc::EINVAL);
    fs::write(
        fx.root().join("sys/class/block/vda6/size"),
        format!("{}\n", 16 * MIB / 512),
    )
    .unwrap();
    let (res, log) = run_fx(&fx, &sys);
    res.unwrap_or_else(|e| panic!("{}\n{log}", chain(&e)));
    assert!(
        log.contains(
            "keel-init: warning: telling the kernel that partition 6 of "
        ) && log.contains("/dev/vda grew: BLKPG_RESIZE_PARTITION: Device or resource busy (os error 16); keeping /var at its size"),
        "{log}"
    );
    // Without BLKPG the fs is grown to what sysfs says the partition has.
    assert!(
        log.contains("EXT4_IOC_RESIZE_FS: Invalid argument (os error 22)"),
        "{log}"
    );
    let calls = sys.calls();
    assert!(
        calls.contains(&format!(
            "EXT4_IOC_RESIZE_FS /sysroot/var {}",
            16 * MIB / 4096
        )),
        "{calls:#?}"
    );
    assert!(sys.calls().last().unwrap().starts_with("exec "));
}

#[test]
fn missing_partition_times_out_listing_devices() {
    let fx = fixture();
    fx.set_cmdline(&format!("keel.slot=b keel.roothash={}", fx.roothash));
    fs::remove_file(fx.root().join("sys/class/block/vda5")).unwrap();
    let sys = RecordingSys::new(fx.root());
    let (res, _) = run_fx(&fx, &sys);
    let msg = chain(&res.unwrap_err());
    assert!(
        msg.starts_with("finding the partitions of the root: timed out after 0.3"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "labelled root-b, root-b-verity, var; found: vda (no label), vda1 (esp), vda2 (root-a)"
        ),
        "{msg}"
    );
    assert!(!sys.calls().iter().any(|c| c.starts_with("DM_")));
}

#[test]
fn bad_roothash_stops_before_devices() {
    let fx = fixture();
    fx.set_cmdline("keel.slot=a keel.roothash=zz");
    let sys = RecordingSys::new(fx.root());
    let (res, _) = run_fx(&fx, &sys);
    assert_eq!(
        chain(&res.unwrap_err()),
        "kernel command line has keel.roothash=\"zz\": not hexadecimal"
    );
    assert_eq!(sys.calls().len(), 4, "only the API mounts happened");
    fx.set_cmdline("keel.roothash=00");
    let (res, _) = run_fx(&fx, &RecordingSys::new(fx.root()));
    assert_eq!(
        chain(&res.unwrap_err()),
        "kernel command line has no keel.slot="
    );
}

#[test]
fn missing_module_file_is_named() {
    let fx = fixture();
    fs::remove_file(fx.root().join("usr/lib/modules/6.1/dm-verity.ko")).unwrap();
    let sys = RecordingSys::new(fx.root());
    let (res, _) = run_fx(&fx, &sys);
    let msg = chain(&res.unwrap_err());
    let path = fx.root().join("usr/lib/modules/6.1/dm-verity.ko");
    assert_eq!(
        msg,
        format!(
            "opening kernel module {}: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn already_loaded_module_is_fine_other_errors_are_not() {
    let fx = fixture();
    let sys = RecordingSys::new(fx.root());
    sys.fail_on(
        "finit_module /usr/lib/modules/6.1/virtio_blk.ko",
        libc::EEXIST,
    );
    sys.fail_on(
        "finit_module /usr/lib/modules/6.1/dm-verity.ko",
        libc::ENOEXEC,
    );
    let (res, _) = run_fx(&fx, &sys);
    let msg = chain(&res.unwrap_err());
    assert!(msg.starts_with("loading kernel module "), "{msg}");
    assert!(
        msg.ends_with("dm-verity.ko: finit_module: Exec format error (os error 8)"),
        "{msg}"
    );
}

#[test]
fn dm_failure_names_devices_table_and_errno() {
    let fx = fixture();
    let sys = RecordingSys::new(fx.root());
    sys.fail_on("DM_TABLE_LOAD", libc::EINVAL);
    let (res, _) = run_fx(&fx, &sys);
    let msg = chain(&res.unwrap_err());
    let expected = format!(
        "creating dm-verity device keel-root on /dev/vda2 with hash /dev/vda3 \
         (table: 0 {} verity 1 254:2 254:3 4096 4096 {DATA_BLOCKS} 1 sha256 {} {}): \
         DM_TABLE_LOAD: Invalid argument (os error 22)",
        DATA_BLOCKS * 8,
        fx.roothash,
        fx.salt
    );
    assert_eq!(msg, expected);
    assert!(!sys.calls().iter().any(|c| c.contains("erofs")));
}

#[test]
fn garbage_hash_partition_is_refused() {
    let fx = fixture();
    fs::write(fx.root().join("dev/vda3"), vec![0u8; 4096]).unwrap();
    let sys = RecordingSys::new(fx.root());
    let (res, _) = run_fx(&fx, &sys);
    let msg = chain(&res.unwrap_err());
    assert!(
        msg.starts_with("reading the verity superblock on "),
        "{msg}"
    );
    assert!(
        msg.contains("dev/vda3: no verity superblock signature"),
        "{msg}"
    );
}

#[test]
fn creates_dm_control_from_sysfs_when_missing() {
    let fx = fixture();
    fs::remove_file(fx.root().join("dev/mapper/control")).unwrap();
    fs::create_dir_all(fx.root().join("sys/class/misc/device-mapper")).unwrap();
    fs::write(
        fx.root().join("sys/class/misc/device-mapper/dev"),
        "10:236\n",
    )
    .unwrap();
    let sys = RecordingSys::new(fx.root());
    let (res, log) = run_fx(&fx, &sys);
    res.unwrap_or_else(|e| panic!("{}\n{log}", chain(&e)));
    assert!(sys
        .calls()
        .contains(&"mknod /dev/mapper/control c 10 236".to_string()));
}

#[test]
fn root_without_mount_points_is_refused() {
    let fx = fixture();
    fs::remove_dir(fx.root().join("sysroot/run")).unwrap();
    let sys = RecordingSys::new(fx.root());
    let (res, _) = run_fx(&fx, &sys);
    let msg = chain(&res.unwrap_err());
    assert!(
        msg.starts_with("the root file system has no /run directory"),
        "{msg}"
    );
    assert!(
        fx.root().join("etc/initrd-release").exists(),
        "initramfs kept on failure"
    );
}
