//! Boot health and boot counting on a real boot: a disk with two releases,
//! as after an update. The newer release (0.2.0, slot A, the default entry)
//! has a unit in multi-user.target that always fails; the older one (0.1.0,
//! slot B) is healthy. keel-init must judge each boot of 0.2.0 unhealthy,
//! name the unit, and reboot; systemd-boot counts the tries down and then
//! boots 0.1.0, whose healthy boot keel-init blesses by renaming its entry.
//!
//! Both images are built here with osbuild from the download cache `make
//! image` filled (`--offline`), from the minimal config plus what the test
//! needs.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use qemu_tests::releases::{entries, with_second_release};
use qemu_tests::{Guest, GuestBuilder, BOOT_TIMEOUT, COMMAND_TIMEOUT};

const DOOMED_UNIT: &str = "[Unit]\nDescription=A unit that never succeeds\n\n\
[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo doomed; exit 4'\n\n\
[Install]\nWantedBy=multi-user.target\n";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn from_env_or(var: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(default));
    assert!(
        p.is_file(),
        "{} missing: run `make image` first",
        p.display()
    );
    p
}

/// The minimal config with another version, more kernel arguments and
/// optionally a file tree.
fn config(version: &str, cmdline: &[&str], tree: Option<&str>) -> String {
    let base = fs::read_to_string(workspace().join("image-configs/minimal.toml")).unwrap();
    let mut out = String::new();
    for line in base.lines() {
        if line.starts_with("version = ") {
            out.push_str(&format!("version = \"{version}\"\n"));
        } else if let Some(rest) = line.strip_prefix("cmdline = [") {
            let extra: String = cmdline.iter().map(|a| format!("\"{a}\", ")).collect();
            out.push_str(&format!("cmdline = [{extra}{rest}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some(tree) = tree {
        out.push_str(&format!("\n[files]\ntrees = [\"{tree}\"]\n"));
    }
    assert!(out.contains(&format!("version = \"{version}\"")), "{out}");
    out
}

/// Builds a raw image with osbuild; returns its path.
fn build(dir: &Path, name: &str, config: &str) -> PathBuf {
    let cfg = dir.join(format!("{name}.toml"));
    fs::write(&cfg, config).unwrap();
    let out = dir.join(format!("out-{name}"));
    let res = Command::new(from_env_or("KEEL_OSBUILD", "target/release/osbuild"))
        .arg("build")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .args(["--format", "raw", "--offline", "--init-binary"])
        .arg(from_env_or(
            "KEEL_INIT_BINARY",
            "target/x86_64-unknown-linux-gnu/release/keel-init",
        ))
        .arg("--firstboot-binary")
        .arg(from_env_or(
            "KEEL_FIRSTBOOT_BINARY",
            "target/x86_64-unknown-linux-gnu/release/keel-firstboot",
        ))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "osbuild {name}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let raw: Vec<PathBuf> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "raw"))
        .collect();
    assert_eq!(raw.len(), 1, "{raw:?}");
    raw[0].clone()
}

fn unit_tree(dir: &Path) {
    let sys = dir.join("doomed.tree/etc/systemd/system");
    fs::create_dir_all(sys.join("multi-user.target.wants")).unwrap();
    fs::write(sys.join("doomed.service"), DOOMED_UNIT).unwrap();
    std::os::unix::fs::symlink(
        "../doomed.service",
        sys.join("multi-user.target.wants/doomed.service"),
    )
    .unwrap();
}

/// The boot entries on the guest's ESP, as the guest sees them.
fn guest_entries(g: &Guest) -> String {
    g.run_ok(
        "mkdir -p /run/esp && mount -t vfat -o ro /dev/vda1 /run/esp && \
         ls /run/esp/loader/entries; umount /run/esp",
        COMMAND_TIMEOUT,
    )
    .unwrap()
}

#[test]
fn an_unhealthy_release_falls_back_to_the_previous_one_and_a_healthy_boot_is_blessed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    unit_tree(dir);
    // Short health times keep the three failed tries quick under TCG.
    let health = ["keel.health.grace=3s", "keel.health.deadline=25s"];
    let good = build(dir, "good", &config("0.1.0", &health, None));
    let bad = build(dir, "bad", &config("0.2.0", &health, Some("doomed.tree")));
    let disk = dir.join("two-releases.raw");
    let added = with_second_release(&bad, &good, &disk, dir).unwrap();
    assert_eq!(added, "keel-0.1.0+3.conf");
    assert_eq!(
        entries(&disk).unwrap(),
        ["keel-0.1.0+3.conf", "keel-0.2.0+3.conf"]
    );

    let mut g = GuestBuilder::new(&disk)
        .name("health")
        .console_shell()
        .no_network()
        .boot()
        .unwrap();
    // Three tries of 0.2.0, each judged unhealthy and rebooted.
    let mut mark = 0;
    for attempt in 1..=3 {
        g.wait_for_line_after("keel-init: boot unhealthy:", mark, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("try {attempt} of 0.2.0: {e:?}"));
        // The unit and why it is not up are named.
        g.wait_for_line_after(
            "keel-init:   doomed.service: exit code 4",
            mark,
            COMMAND_TIMEOUT,
        )
        .unwrap();
        g.wait_for_line_after(
            "keel-init: rebooting: boot counting falls back",
            mark,
            COMMAND_TIMEOUT,
        )
        .unwrap();
        mark = g.serial_offset();
    }
    let log = g.serial_log();
    assert!(
        !log.contains("boot complete: version 0.2.0"),
        "0.2.0 was judged healthy"
    );
    // Then systemd-boot prefers 0.1.0 in slot B, whose boot is healthy.
    g.wait_for_line_after(
        "keel-init: boot complete: version 0.1.0, slot b",
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    let after = g.serial_log()[mark..].to_string();
    assert!(
        after.contains("blessed boot entry loader/entries/keel-0.1.0+2-1.conf -> loader/entries/keel-0.1.0.conf"),
        "no blessing in:\n{after}"
    );
    assert!(
        !after.contains("boot unhealthy"),
        "0.1.0 judged unhealthy:\n{after}"
    );
    let listed = guest_entries(&g);
    assert!(
        listed.contains("keel-0.1.0.conf") && listed.contains("keel-0.2.0+0-3.conf"),
        "{listed}"
    );
    g.kill();
}
