//! First boot on the default image, proven on real boots: an Ignition
//! config from QEMU's fw_cfg (as Fedora CoreOS reads it) provisions the
//! node before any unit starts, exactly once; its resources and a merged
//! config come from an HTTP server on the host loopback with sha512
//! hashes. A config that cannot be used (a wrong hash, an invalid config)
//! leaves the node unprovisioned with no unit started, says why on the
//! console, and keeps the emergency shell; a later boot tries again. A
//! config that partitions an extra disk and makes file systems on it gets
//! them mounted (and swap on) at every boot, its files on them.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::http::{HttpServer, Response};
use qemu_tests::{find_image, oci, Guest, GuestBuilder, BOOT_TIMEOUT, COMMAND_TIMEOUT};
use serde_json::json;
use sha2::{Digest, Sha512};

const IMAGE: &str = "containerd";
const DONE: &str = "keel-init: boot complete: version 0.1.0, slot a";
const RAN: &str = "keel-init: first boot: running keel-firstboot";
const FAILED: &str = "keel-init: first boot failed";
const REF: &str = "docker.io/keel/busybox:test";
const BUSYBOX: &str = "/bin/busybox";

fn sha512(data: &[u8]) -> String {
    format!("sha512-{}", hex::encode(Sha512::digest(data)))
}

fn run(g: &Guest, cmd: &str) -> String {
    g.run_ok(cmd, COMMAND_TIMEOUT).unwrap()
}

fn write_config(dir: &Path, config: &serde_json::Value) -> std::path::PathBuf {
    let path = dir.join("config.ign");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    path
}

/// Runs `cmd` as `user` over SSH on the forwarded port; sshd may still be
/// starting, so a refused connection is retried for up to a minute.
fn ssh(key: &Path, port: u16, user: &str, cmd: &str) -> String {
    let start = Instant::now();
    loop {
        let out = Command::new("ssh")
            .arg("-i")
            .arg(key)
            .args(["-p", &port.to_string()])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .arg(cmd)
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "ssh {user}@127.0.0.1:{port} {cmd:?} failed: {err}"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// keel-firstboot's `failed:` line (call after keel-init's `FAILED`).
fn failure(g: &Guest) -> String {
    let log = g.serial_log();
    log.lines()
        .find(|l| l.starts_with("keel-firstboot: failed: "))
        .unwrap_or_else(|| panic!("no failure line:\n{log}"))
        .trim_end()
        .to_string()
}

fn no_units(g: &Guest) {
    let status = run(g, "keelctl status --json");
    let units: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    let units = units.as_array().unwrap();
    assert!(
        units
            .iter()
            .all(|u| u["name"].as_str().unwrap().ends_with(".target") && u["active"] == "inactive"),
        "units started after a failed first boot: {units:?}"
    );
    let files = run(g, "ls /var/lib/keel/");
    assert!(!files.contains("firstboot.json"), "{files}");
}

#[test]
fn a_fw_cfg_config_provisions_a_user_files_and_a_container_unit_once() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "keel-test", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();

    let tar = tmp.path().join("busybox-oci.tar");
    oci::write_image(Path::new(BUSYBOX), REF, &tar).unwrap();
    let tar = std::fs::read(&tar).unwrap();
    let extra = serde_json::to_vec(&json!({
        "ignition": {"version": "3.0.0"},
        "storage": {"files": [{
            "path": "/etc/keel-test/merged",
            "mode": 0o644,
            "contents": {"source": "data:,from%20the%20merged%20config%0A"}
        }]}
    }))
    .unwrap();
    let http = HttpServer::start().unwrap();
    http.route("/busybox-oci.tar", Response::ok(tar.clone()));
    http.route("/extra.ign", Response::ok(extra.clone()));

    let unit = format!(
        "[Unit]\nDescription=A container started by the Ignition config\n\
         Requires=containerd.service\nAfter=containerd.service\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStartPre=/usr/bin/ctr image import /var/lib/keel-test/busybox-oci.tar\n\
         ExecStart=/usr/bin/ctr run --rm {REF} hello echo hello from the container\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    );
    let config = json!({
        "ignition": {
            "version": "3.4.0",
            "config": {"merge": [{
                "source": http.guest_url("/extra.ign"),
                "verification": {"hash": sha512(&extra)}
            }]}
        },
        "kernelArguments": {"shouldExist": ["keel.test.karg=1"], "shouldNotExist": ["panic=10"]},
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [pubkey.trim()]}]},
        "storage": {"files": [
            {
                "path": "/etc/motd",
                "overwrite": true,
                "mode": 0o644,
                "contents": {"source": "data:,provisioned%20by%20Ignition%0A"}
            },
            {
                "path": "/var/lib/keel-test/busybox-oci.tar",
                "mode": 0o600,
                "contents": {
                    "source": http.guest_url("/busybox-oci.tar"),
                    "verification": {"hash": sha512(&tar)}
                }
            }
        ]},
        "systemd": {"units": [{"name": "hello.service", "enabled": true, "contents": unit}]}
    });
    let config = write_config(tmp.path(), &config);

    let image = find_image(IMAGE).unwrap();
    let mut g = GuestBuilder::new(&image)
        .name("firstboot")
        .console_shell()
        .disk_size(3 << 30)
        .ignition(&config)
        .hostfwd_tcp(22)
        .boot()
        .unwrap();
    g.wait_for_line(RAN, BOOT_TIMEOUT).unwrap();
    g.wait_for_line(
        "keel-firstboot: applied fw_cfg opt/com.coreos/config",
        BOOT_TIMEOUT,
    )
    .unwrap();
    // The new kernel command line needs a boot of its own: keel-init
    // reboots at once, before any unit.
    let reboot = g
        .wait_for_line(
            "keel-init: first boot: the kernel command line changed; rebooting to use it",
            BOOT_TIMEOUT,
        )
        .unwrap();
    g.wait_for_line(DONE, BOOT_TIMEOUT).unwrap();
    let log = g.serial_log();
    assert_eq!(log.matches(RAN).count(), 1, "{log}");
    assert!(log.find(&reboot).unwrap() < log.find(DONE).unwrap());
    // No unit ran before that reboot: containerd started once, after it.
    let starts = run(
        &g,
        "grep -c 'starting containerd' /var/log/keel/containerd.service.log",
    );
    assert_eq!(starts, "1\n");
    let cmdline = run(&g, "cat /proc/cmdline");
    assert!(
        cmdline.contains(" keel.test.karg=1") && !cmdline.contains("panic=10"),
        "{cmdline}"
    );
    let requests = http.requests();
    for path in ["/extra.ign", "/busybox-oci.tar"] {
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with(&format!("GET {path} "))),
            "{requests:?}"
        );
    }

    // The user logs in with the key from the config.
    let port = g.host_port(22).unwrap();
    let out = ssh(
        &key,
        port,
        "core",
        "id -un; cat /etc/motd /etc/keel-test/merged; cd && pwd -P && stat -c %U:%G .",
    );
    assert!(out.starts_with("core\n"), "{out}");
    assert!(out.contains("provisioned by Ignition\n"), "{out}");
    assert!(out.contains("from the merged config\n"), "{out}");
    assert!(out.ends_with("/var/home/core\ncore:core\n"), "{out}");

    // The unit from the config ran a container; its output is in its log.
    let logs = run(&g, "keelctl logs hello.service");
    assert!(logs.contains("hello from the container"), "{logs}");
    let state = run(&g, "cat /var/lib/keel/firstboot.json");
    assert!(
        state.contains("fw_cfg") && state.contains("sha256"),
        "{state}"
    );

    // A second boot applies nothing: a local change stays.
    run(&g, "echo changed here > /etc/motd");
    let mark = g.serial_offset();
    g.send("keelctl reboot\n").unwrap();
    g.wait_for_line_after(DONE, mark, BOOT_TIMEOUT).unwrap();
    let second = &g.serial_log()[mark..];
    assert!(!second.contains(RAN), "first boot ran again:\n{second}");
    assert_eq!(run(&g, "cat /etc/motd"), "changed here\n");
    let again = http.requests().len();
    assert_eq!(again, requests.len(), "{:?}", http.requests());
    let out = ssh(&key, port, "core", "id -un");
    assert_eq!(out, "core\n");
    g.kill();
}

#[test]
fn a_wrong_hash_fails_closed_and_the_next_boot_tries_again() {
    let tmp = tempfile::tempdir().unwrap();
    let good = serde_json::to_vec(&json!({
        "ignition": {"version": "3.3.0"},
        "storage": {"files": [{
            "path": "/etc/keel-test/replaced",
            "contents": {"source": "data:,from%20the%20replacing%20config%0A"}
        }]}
    }))
    .unwrap();
    let mut tampered = good.clone();
    tampered.extend_from_slice(b"\n ");
    let http = HttpServer::start().unwrap();
    http.route("/config.ign", Response::ok(tampered));
    let config = json!({
        "ignition": {
            "version": "3.3.0",
            "config": {"replace": {
                "source": http.guest_url("/config.ign"),
                "verification": {"hash": sha512(&good)}
            }}
        }
    });
    let config = write_config(tmp.path(), &config);

    let image = find_image(IMAGE).unwrap();
    let mut g = GuestBuilder::new(&image)
        .name("firstboot-hash")
        .console_shell()
        .ignition(&config)
        .boot()
        .unwrap();
    // keel-init's line comes after keel-firstboot's, which is whole then.
    g.wait_for_line(FAILED, BOOT_TIMEOUT).unwrap();
    let line = failure(&g);
    assert!(
        line.contains(&http.guest_url("/config.ign"))
            && line.contains(": hash mismatch: expected sha512-"),
        "{line}"
    );
    no_units(&g);
    let log = g.serial_log();
    assert!(!log.contains("boot complete"), "{log}");

    // The server now has the config the hash names: the next boot uses it.
    http.route("/config.ign", Response::ok(good));
    let mark = g.serial_offset();
    g.send("keelctl reboot\n").unwrap();
    g.wait_for_line_after("keel-firstboot: applied", mark, BOOT_TIMEOUT)
        .unwrap();
    g.wait_for_line_after(DONE, mark, BOOT_TIMEOUT).unwrap();
    assert_eq!(
        run(&g, "cat /etc/keel-test/replaced"),
        "from the replacing config\n"
    );
    g.kill();
}

#[test]
fn an_invalid_config_fails_closed_with_no_units_started() {
    let tmp = tempfile::tempdir().unwrap();
    let config = json!({
        "ignition": {"version": "3.4.0"},
        "storage": {"files": [
            {"path": "/etc/keel-test/fine", "contents": {"source": "data:,x"}},
            {"path": "etc/motd"}
        ]},
        "systemd": {"units": [{
            "name": "never.service",
            "enabled": true,
            "contents": "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
        }]}
    });
    let config = write_config(tmp.path(), &config);
    // The image as built, without the debug console shell: `run` below
    // talks to the emergency shell a failed first boot gives.
    let image = find_image(IMAGE).unwrap();
    let mut g = GuestBuilder::new(&image)
        .name("firstboot-invalid")
        .ignition(&config)
        .no_network()
        .boot()
        .unwrap();
    g.wait_for_line(FAILED, BOOT_TIMEOUT).unwrap();
    assert!(failure(&g).ends_with("is invalid:"), "{}", failure(&g));
    let log = g.serial_log();
    assert!(
        log.contains("\nerror at $.storage.files.1.path: path not absolute"),
        "{log}"
    );
    no_units(&g);
    // Nothing of the config was written.
    let out = run(
        &g,
        "ls /etc/keel-test /etc/systemd/system/never.service 2>&1; true",
    );
    assert!(out.matches("No such file").count() == 2, "{out}");
    g.kill();
}

/// Butane's `with_mount_unit` for a mount, as it writes it.
fn butane_mount_unit(device: &str, escaped: &str, path: &str, format: &str) -> String {
    format!(
        "# Generated by Butane\n[Unit]\nRequires=systemd-fsck@{escaped}.service\n\
         After=systemd-fsck@{escaped}.service\n\n[Mount]\nWhere={path}\nWhat={device}\n\
         Type={format}\n\n[Install]\nRequiredBy=local-fs.target"
    )
}

#[test]
fn an_extra_disk_is_partitioned_formatted_and_mounted_at_every_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let config = json!({
        "ignition": {"version": "3.4.0"},
        "storage": {
            "disks": [{
                "device": "/dev/vdb",
                "wipeTable": true,
                "partitions": [
                    {"label": "data", "sizeMiB": 64},
                    {"label": "swap", "sizeMiB": 32, "typeGuid": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"},
                    {"label": "bulk"}
                ]
            }],
            "filesystems": [
                // Keel writes the mount unit for this one.
                {"device": "/dev/disk/by-partlabel/data", "format": "ext4", "label": "data",
                 "path": "/var/data", "mountOptions": ["noatime"]},
                {"device": "/dev/disk/by-partlabel/swap", "format": "swap", "label": "swap"},
                // This one comes with Butane's unit.
                {"device": "/dev/disk/by-partlabel/bulk", "format": "xfs", "path": "/var/bulk"}
            ],
            "files": [
                {"path": "/var/data/hello", "contents": {"source": "data:,on%20the%20data%20disk"}},
                {"path": "/var/bulk/note", "contents": {"source": "data:,on%20xfs"}}
            ]
        },
        "systemd": {"units": [
            {"name": "var-bulk.mount", "enabled": true, "contents": butane_mount_unit(
                "/dev/disk/by-partlabel/bulk", "dev-disk-by\\x2dpartlabel-bulk", "/var/bulk", "xfs")},
            {"name": "dev-disk-by\\x2dpartlabel-swap.swap", "enabled": true,
             "contents": "# Generated by Butane\n[Swap]\nWhat=/dev/disk/by-partlabel/swap\n\n[Install]\nRequiredBy=swap.target"}
        ]}
    });
    let config = write_config(tmp.path(), &config);
    let image = find_image(IMAGE).unwrap();
    let mut g = GuestBuilder::new(&image)
        .name("firstboot-disks")
        .console_shell()
        .ignition(&config)
        .extra_disk(512 << 20)
        .no_network()
        .boot()
        .unwrap();
    g.wait_for_line(DONE, BOOT_TIMEOUT).unwrap();

    let mounted = |g: &Guest| {
        let mounts = run(g, "cat /proc/mounts");
        let data = mounts
            .lines()
            .find(|l| l.starts_with("/dev/vdb1 /var/data ext4 "))
            .unwrap_or_else(|| panic!("/var/data is not mounted:\n{mounts}"));
        assert!(data.contains("noatime"), "{data}");
        assert!(
            mounts
                .lines()
                .any(|l| l.starts_with("/dev/vdb3 /var/bulk xfs ")),
            "/var/bulk is not mounted:\n{mounts}"
        );
        let swaps = run(g, "cat /proc/swaps");
        assert!(swaps.contains("/dev/vdb2 "), "{swaps}");
        let status = run(g, "keelctl status");
        for unit in [
            "var-data.mount",
            "var-bulk.mount",
            "systemd-fsck@dev-disk-by\\x2dpartlabel-data.service",
        ] {
            assert!(
                status
                    .lines()
                    .any(|l| l.contains(unit) && l.contains("active")),
                "{unit}:\n{status}"
            );
        }
    };
    mounted(&g);
    // The files of the config are on the new file systems.
    assert_eq!(run(&g, "cat /var/data/hello"), "on the data disk");
    assert_eq!(run(&g, "cat /var/bulk/note"), "on xfs");
    let unit = run(&g, "cat /etc/systemd/system/var-data.mount");
    assert!(
        unit.contains("What=/dev/disk/by-partlabel/data\nType=ext4\nOptions=noatime\n"),
        "{unit}"
    );
    let parts = run(&g, "ls -1 /dev/disk/by-partlabel/ /dev/disk/by-label/");
    for name in ["data", "swap", "bulk"] {
        assert!(parts.lines().any(|l| l == name), "{parts}");
    }

    // Another boot mounts them again and formats nothing.
    run(&g, "echo kept > /var/data/later");
    let mark = g.serial_offset();
    g.send("keelctl reboot\n").unwrap();
    g.wait_for_line_after(DONE, mark, BOOT_TIMEOUT).unwrap();
    let second = &g.serial_log()[mark..];
    assert!(!second.contains(RAN), "first boot ran again:\n{second}");
    mounted(&g);
    assert_eq!(
        run(&g, "cat /var/data/later /var/data/hello"),
        "kept\non the data disk"
    );
    g.kill();
}
