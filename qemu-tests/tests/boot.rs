//! Boots the default image (`containerd`, built by `make image`) and
//! checks the promises of the foundation: a verified read-only root, a
//! writable /var that grows to the disk and persists, and an /etc whose
//! changes persist. The image as built gives no shell on the console; the
//! other tests boot a debug copy with one ([`GuestBuilder::console_shell`]).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use qemu_tests::releases::partition;
use qemu_tests::{find_image, Guest, GuestBuilder, HarnessError, BOOT_TIMEOUT, COMMAND_TIMEOUT};

const IMAGE: &str = "containerd";
/// The full line, so a wait never ends on a half-printed one.
const DONE: &str = "keel-init: boot complete: version 0.1.0, slot a";
/// keel-init's line when the console has no shell.
const NO_SHELL: &str =
    "keel-init: no shell on the console (keel.console=shell adds one for debugging); log in over SSH";

fn boot(disk_size: u64) -> Guest {
    let image = find_image(IMAGE).unwrap();
    let guest = GuestBuilder::new(&image)
        .name(IMAGE)
        .console_shell()
        .disk_size(disk_size)
        .no_network()
        .boot()
        .unwrap();
    guest.wait_for_line(DONE, BOOT_TIMEOUT).unwrap();
    guest
}

fn run(g: &Guest, cmd: &str) -> String {
    g.run_ok(cmd, COMMAND_TIMEOUT).unwrap()
}

/// The image as built: it boots, the console says there is no shell there
/// and how to get in, and a command typed on the console is not run. (The
/// same probe on a debug copy answers at once: every `run` in these tests
/// is one.)
#[test]
fn the_image_as_built_has_no_console_shell() {
    let image = find_image(IMAGE).unwrap();
    let g = GuestBuilder::new(&image)
        .name("no-shell")
        .no_network()
        .boot()
        .unwrap();
    g.wait_for_line(DONE, BOOT_TIMEOUT).unwrap();
    let log = g.serial_log();
    assert!(log.contains(NO_SHELL), "no hint on the console:\n{log}");
    // The console echoes what is typed (the tty does), but nothing runs it:
    // $((6*7)) is never expanded, and no prompt comes back.
    let mark = g.serial_offset();
    g.send("\necho keel-probe-$((6*7))\n").unwrap();
    match g.wait_for_line_after("keel-probe-42", mark, Duration::from_secs(30)) {
        Err(HarnessError::Timeout { .. }) => {}
        other => panic!("a shell answered on the console: {other:?}"),
    }
    let after = g.serial_log()[mark..].to_string();
    assert!(
        !after
            .lines()
            .any(|l| l.trim_end().ends_with(" #") || l.contains(" # ")),
        "a prompt on the console:\n{after}"
    );
    // Typing on the console did not disturb init.
    assert!(!after.contains("keel-init: error"), "{after}");
}

#[test]
fn root_is_verified_and_read_only() {
    let g = boot(4 << 30);
    assert!(!g.serial_log().contains(NO_SHELL), "{}", g.serial_log());
    // / is the dm-verity device, mounted read-only.
    let mounts = run(&g, "cat /proc/mounts");
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .unwrap_or_else(|| panic!("no / in /proc/mounts:\n{mounts}"));
    let f: Vec<&str> = root.split_whitespace().collect();
    assert_eq!(f[0], "/dev/mapper/keel-root", "{root}");
    assert_eq!(f[2], "erofs", "{root}");
    assert!(f[3].split(',').any(|o| o == "ro"), "{root}");
    // The device-mapper device really is a verity target named keel-root.
    assert_eq!(run(&g, "cat /sys/block/dm-0/dm/name").trim(), "keel-root");
    let table_target = run(
        &g,
        "cat /sys/block/dm-0/dm/uuid; ls /sys/module | grep -x dm_verity",
    );
    assert!(table_target.contains("dm_verity"), "{table_target}");
    // Writes fail with EROFS, both at / and deep in /usr.
    for path in ["/keel-test", "/usr/bin/keel-test"] {
        let out = g.run(&format!("echo x > {path}"), COMMAND_TIMEOUT).unwrap();
        assert_ne!(out.exit_code, 0, "writing {path} succeeded");
        assert!(
            out.output.contains("Read-only file system"),
            "{path}: {}",
            out.output
        );
    }
    // os-release identifies Keel and the version.
    let osr = run(&g, "cat /etc/os-release");
    assert!(
        osr.contains("ID=keel") && osr.contains("IMAGE_VERSION=\"0.1.0\""),
        "{osr}"
    );
    // No per-machine identity was baked in: the machine-id was generated
    // on this first boot, so it lives in the /etc overlay's upper layer.
    let id = run(&g, "cat /var/lib/keel/etc/upper/machine-id");
    let id = id.trim();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id:?}"
    );
    assert_eq!(run(&g, "cat /etc/machine-id").trim(), id);

    // /dev/disk links as udev makes them: by GPT label and GUID, and by
    // file system UUID and label, each pointing at the device in use.
    let var = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/var"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no /var in /proc/mounts:\n{mounts}"))
        .to_string();
    assert_eq!(
        run(&g, "readlink -f /dev/disk/by-partlabel/var").trim(),
        var
    );
    let links = run(
        &g,
        "cd /dev/disk && for d in by-partuuid by-uuid by-label; do echo $d: $(ls $d | wc -l); done; readlink by-label/ESP",
    );
    assert!(links.contains("by-partuuid: 6"), "{links}");
    assert!(links.contains("../../vda1"), "{links}");
    let uuid = run(&g, "ls -1 /dev/disk/by-uuid");
    assert!(
        uuid.lines()
            .any(|u| run(&g, &format!("readlink -f /dev/disk/by-uuid/{u}")).trim() == var),
        "no by-uuid link to {var}: {uuid}"
    );
}

#[test]
fn var_etc_and_homes_persist_across_reboot_and_var_fills_the_disk() {
    let mut g = boot(3 << 30);
    // /var grew from the image's 512 MiB to the end of the 3 GiB disk
    // (the ESP and the four slot partitions take about 0.7 GiB).
    let df = run(&g, "df -k /var | tail -n 1");
    let kib: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(kib > 1_600_000, "/var is only {kib} KiB: {df}");
    let token = format!("{:x}", std::process::id() as u64 * 7919 + 17);
    run(
        &g,
        &format!("mkdir -p /var/lib/keel-test && echo {token} > /var/lib/keel-test/state"),
    );
    run(
        &g,
        &format!("echo {token} > /etc/keel-test.conf && echo changed >> /etc/hostname"),
    );
    // Home directories are writable and on /var (the root is read-only).
    run(
        &g,
        &format!("mkdir -p /home/core/.ssh && echo {token} > /home/core/.ssh/x && echo {token} > /root/.keel-test"),
    );
    assert_eq!(
        run(
            &g,
            "readlink /home; readlink /root; stat -c %a /var/roothome"
        )
        .trim(),
        "var/home\nvar/roothome\n700"
    );
    run(&g, "sync");
    let mark = g.serial_offset();
    g.send("reboot -f\n").unwrap();
    g.wait_for_line_after(DONE, mark, BOOT_TIMEOUT).unwrap();
    assert_eq!(run(&g, "cat /var/lib/keel-test/state").trim(), token);
    assert_eq!(run(&g, "cat /etc/keel-test.conf").trim(), token);
    assert!(run(&g, "cat /etc/hostname").contains("changed"));
    assert_eq!(
        run(&g, "cat /home/core/.ssh/x /root/.keel-test").trim(),
        format!("{token}\n{token}")
    );
    // The change lives in the overlay's upper layer on /var, and the image's
    // own /etc still shows through.
    assert_eq!(
        run(&g, "cat /var/lib/keel/etc/upper/keel-test.conf").trim(),
        token
    );
    assert!(run(&g, "cat /etc/os-release").contains("ID=keel"));
    // A second boot does not grow again; the size is stable.
    let df2 = run(&g, "df -k /var | tail -n 1");
    assert_eq!(df2.split_whitespace().nth(1), df.split_whitespace().nth(1));
    g.kill();
}

/// One changed byte in the root partition is caught by dm-verity: the
/// boot stops in stage 1 with a message naming the failure, and no
/// boot-complete line appears.
#[test]
fn tampered_root_is_refused() {
    let image = find_image(IMAGE).unwrap();
    let raw = image.with_extension("raw");
    let offset = partition(&raw, "root-a").unwrap().offset + 1024 + 16;
    let tmp = tempfile::tempdir().unwrap();
    let tampered = tmp.path().join("tampered.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&image)
        .arg(&tampered)
        .status()
        .unwrap();
    assert!(st.success());
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", &format!("write -P 0x5a {offset} 1")])
        .arg(&tampered)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-io: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = GuestBuilder::new(&tampered)
        .name("tampered")
        .no_network()
        .boot()
        .unwrap();
    let line = g.wait_for_line("keel-init: error: ", BOOT_TIMEOUT).unwrap();
    g.wait_for_line("keel-init: halted", COMMAND_TIMEOUT)
        .unwrap();
    let log = g.serial_log();
    assert!(!log.contains("boot complete"), "{line}");
    assert!(
        log.contains("verification failed")
            || log.contains("Input/output error")
            || log.contains("os error 5"),
        "stage 1 did not name a verification failure:\n{line}"
    );
}
