//! Self-tests of the QEMU harness, without a Keel image.
//!
//! The direct-kernel tests need `vmlinuz` and `modules/*.ko` of Debian's cloud
//! kernel in `$KEEL_TEST_KERNEL_DIR` (default `~/.cache/keel/test-kernel`; run
//! `qemu-tests/fetch-test-kernel.sh` once) and a static busybox at
//! `/usr/bin/busybox` (package busybox-static). They fail, never skip, when
//! those are missing. Nothing here needs the network at test time; guests only
//! talk to 127.0.0.1 of the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use osbuild::cpio::CpioWriter;
use qemu_tests::{GuestBuilder, HarnessError, BOOT_TIMEOUT, COMMAND_TIMEOUT};

const READY: &str = "KEEL-HARNESS-READY";

/// The guest's /init: mount the basics, announce readiness, run a shell on the
/// console; when that shell exits, power off so QEMU exits.
const INIT: &str = "#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \\
    failover net_failover virtio_net qemu_fw_cfg; do insmod /lib/modules/$m.ko; done
echo \"$(cat /proc/sys/kernel/random/boot_id | cut -c1-8) KEEL-HARNESS-READY\"
sh
poweroff -f
";

/// In load order (dependencies first).
const MODULES: [&str; 9] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "qemu_fw_cfg",
];

fn kernel_dir() -> PathBuf {
    let dir = std::env::var_os("KEEL_TEST_KERNEL_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/keel/test-kernel"),
        PathBuf::from,
    );
    assert!(
        dir.join("vmlinuz").is_file(),
        "{}/vmlinuz missing: run qemu-tests/fetch-test-kernel.sh (or set KEEL_TEST_KERNEL_DIR)",
        dir.display()
    );
    dir
}

/// An uncompressed initramfs with busybox and [`INIT`], written into `dir`.
fn initramfs(dir: &Path) -> PathBuf {
    let busybox = fs::read("/usr/bin/busybox")
        .expect("/usr/bin/busybox missing: apt-get install -y busybox-static");
    let mut cpio = CpioWriter::new(Vec::new(), 0);
    for name in ["bin", "proc", "sys", "dev", "lib", "lib/modules"] {
        cpio.dir(name, 0o755).unwrap();
    }
    cpio.file("bin/busybox", 0o755, &busybox).unwrap();
    cpio.file("init", 0o755, INIT.as_bytes()).unwrap();
    let modules = kernel_dir().join("modules");
    for m in MODULES {
        let path = modules.join(format!("{m}.ko"));
        let data = fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run qemu-tests/fetch-test-kernel.sh",
                path.display()
            )
        });
        cpio.file(&format!("lib/modules/{m}.ko"), 0o644, &data)
            .unwrap();
    }
    let cpio = cpio.finish().unwrap();
    let path = dir.join("initramfs.cpio");
    fs::write(&path, cpio).unwrap();
    path
}

fn busybox_guest(name: &str, fixture: &Path) -> GuestBuilder {
    GuestBuilder::blank(16 << 20)
        .name(name)
        .memory_mib(256)
        .cpus(1)
        .kernel_direct(
            &kernel_dir().join("vmlinuz"),
            &initramfs(fixture),
            "console=ttyS0 panic=-1 quiet keel.harness=1",
        )
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn shell_commands_reboot_and_poweroff() {
    let fixture = tempfile::tempdir().unwrap();
    let mut guest = busybox_guest("busybox", fixture.path())
        .no_network()
        .boot()
        .unwrap();
    let first = guest.wait_for_match(READY, 0, BOOT_TIMEOUT).unwrap();

    let out = guest.run("echo hi; false", COMMAND_TIMEOUT).unwrap();
    assert_eq!(out.exit_code, 1, "{out:?}");
    assert_eq!(out.output, "hi\n");

    let out = guest
        .run("printf 'a\\nb'; echo err >&2; (exit 7)", COMMAND_TIMEOUT)
        .unwrap();
    assert_eq!((out.exit_code, out.output.as_str()), (7, "a\nberr\n"));

    let cmdline = guest.run_ok("cat /proc/cmdline", COMMAND_TIMEOUT).unwrap();
    assert!(cmdline.contains("keel.harness=1"), "{cmdline:?}");
    let err = guest
        .run_ok("ls /nonexistent", COMMAND_TIMEOUT)
        .unwrap_err();
    assert!(
        matches!(err, HarnessError::CommandFailed { exit_code: 1, .. }),
        "{err}"
    );
    assert!(guest.run("echo a\necho b", COMMAND_TIMEOUT).is_err());
    // A syntax error is an exit code, not a hang; quotes and `&` pass through.
    assert_eq!(guest.run("if", COMMAND_TIMEOUT).unwrap().exit_code, 2);
    let out = guest.run_ok("X='a b'; echo \"$X\" 'it'\\''s' >/bg &", COMMAND_TIMEOUT);
    assert_eq!(out.unwrap(), "");
    assert_eq!(
        guest
            .run_ok("wait; cat /bg; echo $X", COMMAND_TIMEOUT)
            .unwrap(),
        "a b it's\na b\n"
    );

    // A timeout names what was awaited and shows the console.
    let err = guest
        .wait_for_line("no such line", Duration::from_secs(1))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("timed out after 1s waiting for \"no such line\""),
        "{msg}"
    );
    assert!(msg.contains("KEEL-RUN-") && msg.contains("a b\n"), "{msg}");

    // A reboot: the second READY line comes after the first one.
    guest.send("reboot -f\n").unwrap();
    let second = guest
        .wait_for_match(READY, first.end, BOOT_TIMEOUT)
        .unwrap();
    assert!(second.start > first.end);
    assert_ne!(first.line, second.line, "boot ids must differ");
    assert_eq!(
        guest.run_ok("echo again", COMMAND_TIMEOUT).unwrap(),
        "again\n"
    );

    // Leaving the console shell makes /init power off, and QEMU exits.
    guest.send("exit\n").unwrap();
    let status = guest.wait_for_exit(BOOT_TIMEOUT).unwrap();
    assert!(status.success(), "{status}");
    assert!(guest.run("true", COMMAND_TIMEOUT).is_err());
    let log = fs::read_to_string(guest.serial_log_path()).unwrap();
    assert_eq!(log.matches(READY).count(), 2, "one READY line per boot");
}

#[test]
fn power_cycle_boots_again_and_drop_kills_qemu() {
    let fixture = tempfile::tempdir().unwrap();
    let mut guest = busybox_guest("cycle", fixture.path()).boot().unwrap();
    guest.wait_for_line(READY, BOOT_TIMEOUT).unwrap();
    let first_pid = guest.pid().unwrap();
    let dir = guest.temp_dir().to_path_buf();
    let offset = guest.serial_offset();
    guest.power_cycle().unwrap();
    assert!(!alive(first_pid), "killed qemu {first_pid} still exists");
    guest
        .wait_for_line_after(READY, offset, BOOT_TIMEOUT)
        .unwrap();
    let pid = guest.pid().unwrap();
    assert_ne!(pid, first_pid);
    drop(guest);
    assert!(!alive(pid), "qemu {pid} survived the guest");
    assert!(
        !dir.exists(),
        "guest directory {} left behind",
        dir.display()
    );
}

#[test]
fn ovmf_starts_on_an_empty_disk() {
    let mut guest = GuestBuilder::blank(64 << 20)
        .name("ovmf")
        .memory_mib(512)
        .cpus(1)
        .boot()
        .unwrap();
    // Nothing to boot on the disk: OVMF says so and falls back to its shell.
    guest.wait_for_line("BdsDxe:", BOOT_TIMEOUT).unwrap();
    guest.wait_for_line("Shell>", BOOT_TIMEOUT).unwrap();
    guest.send("reset -s\r\n").unwrap();
    let status = guest.wait_for_exit(BOOT_TIMEOUT).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn qemu_failing_to_start_is_reported_with_its_stderr() {
    let missing = Path::new("/nonexistent/kernel");
    let guest = GuestBuilder::blank(1 << 20)
        .name("broken")
        .kernel_direct(missing, missing, "")
        .boot()
        .unwrap();
    let err = guest.wait_for_line("anything", BOOT_TIMEOUT).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("qemu exited while waiting for \"anything\""),
        "{msg}"
    );
    assert!(msg.contains("/nonexistent/kernel"), "{msg}");
}

#[test]
fn fw_cfg_and_user_networking() {
    let fixture = tempfile::tempdir().unwrap();
    let config = fixture.path().join("config.ign");
    fs::write(&config, "{\"ignition\":{\"version\":\"3.4.0\"}}\n").unwrap();
    let guest = busybox_guest("net", fixture.path())
        .ignition(&config)
        .hostfwd_tcp(8080)
        .boot()
        .unwrap();
    guest.wait_for_line(READY, BOOT_TIMEOUT).unwrap();

    let raw = "/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw";
    let seen = guest
        .run_ok(&format!("cat {raw}"), COMMAND_TIMEOUT)
        .unwrap();
    assert_eq!(seen, fs::read_to_string(&config).unwrap());

    // QEMU user networking: static address, the host's loopback is 10.0.2.2.
    guest
        .run_ok(
            "ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0",
            COMMAND_TIMEOUT,
        )
        .unwrap();

    // Host -> guest through the forwarded port.
    guest
        .run_ok(
            "(echo hello-from-guest | nc -l -p 8080) >/dev/null 2>&1 &",
            COMMAND_TIMEOUT,
        )
        .unwrap();
    guest
        .run_ok(
            "until netstat -ltn | grep -q ':8080 '; do sleep 0.1; done",
            COMMAND_TIMEOUT,
        )
        .unwrap();
    let port = guest.host_port(8080).unwrap();
    assert_eq!(guest.host_port(22), None);
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    conn.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello-from-guest\n");

    // Guest -> host loopback.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut got = String::new();
            let _ = conn.read_to_string(&mut got);
            let _ = tx.send(got);
        }
    });
    guest
        .run_ok(
            &format!("echo hello-from-host-side | nc 10.0.2.2 {host_port}"),
            COMMAND_TIMEOUT,
        )
        .unwrap();
    let got = rx.recv_timeout(COMMAND_TIMEOUT).unwrap();
    assert_eq!(got, "hello-from-host-side\n");
}
