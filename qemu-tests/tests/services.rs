//! keel-init as PID 1 on a real boot of the default (containerd) image: units written to
//! /etc/systemd/system after boot are started with keelctl; a crashing
//! service is restarted with backoff and its crash is in its log; a failing
//! oneshot is failed; a notify service is active only after READY=1; only
//! root may control init; `keelctl reboot` comes back and `keelctl
//! poweroff` ends QEMU with /var cleanly unmounted.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use qemu_tests::{find_image, Guest, GuestBuilder, BOOT_TIMEOUT, COMMAND_TIMEOUT};

const IMAGE: &str = "containerd";
const DONE: &str = "keel-init: boot complete: version 0.1.0, slot a";

fn boot() -> Guest {
    let image = find_image(IMAGE).unwrap();
    let guest = GuestBuilder::new(&image)
        .name("services")
        .console_shell()
        .disk_size(2 << 30)
        .no_network()
        .boot()
        .unwrap();
    guest.wait_for_line(DONE, BOOT_TIMEOUT).unwrap();
    guest
}

fn run(g: &Guest, cmd: &str) -> String {
    g.run_ok(cmd, COMMAND_TIMEOUT).unwrap()
}

/// Writes a unit file into /etc/systemd/system (the writable overlay).
fn unit(g: &Guest, name: &str, text: &str) {
    // One shell line: newlines travel as \n for printf's %b.
    let escaped = text
        .replace('\\', r"\\")
        .replace('\n', r"\n")
        .replace('\'', r"'\''");
    run(
        g,
        &format!(
            "mkdir -p /etc/systemd/system && printf '%b' '{escaped}' > /etc/systemd/system/{name}"
        ),
    );
}

/// The one unit of `keelctl status UNIT --json`, as JSON.
fn status(g: &Guest, name: &str) -> serde_json::Value {
    let out = g
        .run(&format!("keelctl status {name} --json"), COMMAND_TIMEOUT)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(out.output.trim())
        .unwrap_or_else(|e| panic!("keelctl status {name} --json: {e}: {}", out.output));
    match v {
        serde_json::Value::Array(mut a) if a.len() == 1 => a.remove(0),
        other => other,
    }
}

#[test]
fn units_run_restart_fail_notify_and_the_machine_shuts_down_cleanly() {
    let mut g = boot();

    // Everything keelctl lists is well-formed; the goal is up.
    let all: serde_json::Value =
        serde_json::from_str(run(&g, "keelctl status --json").trim()).unwrap();
    let mu = all
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "multi-user.target")
        .unwrap();
    assert_eq!(mu["active"], "active", "{mu}");

    // A crashing service is restarted with growing delays, and its output
    // and each crash are in its log.
    unit(
        &g,
        "crashy.service",
        "[Service]\nExecStart=/bin/sh -c 'echo crash-now; exit 3'\nRestart=on-failure\nRestartSec=1\n",
    );
    let started = run(&g, "keelctl start crashy");
    assert!(started.contains("started crashy.service"), "{started}");
    run(&g, "sleep 8");
    let st = status(&g, "crashy");
    assert!(st["restarts"].as_u64().unwrap() >= 2, "{st}");
    let logs = run(&g, "keelctl logs crashy -n 100");
    assert!(logs.contains("crash-now"), "{logs}");
    assert!(
        logs.contains("Main process exited, code=exited, status=3/FAILURE"),
        "{logs}"
    );
    assert!(logs.contains("Scheduling restart in 1000 ms"), "{logs}");
    assert!(logs.contains("Scheduling restart in 2000 ms"), "{logs}");
    run(&g, "keelctl stop crashy");
    assert_eq!(status(&g, "crashy")["active"], "inactive");

    // A oneshot that fails is failed, and the start says so.
    unit(
        &g,
        "broken.service",
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo about to fail; exit 7'\n",
    );
    let out = g.run("keelctl start broken", COMMAND_TIMEOUT).unwrap();
    assert_eq!(out.exit_code, 1, "{}", out.output);
    assert!(out.output.contains("exit code 7"), "{}", out.output);
    let st = status(&g, "broken");
    assert_eq!(st["active"], "failed", "{st}");

    // A notify service is activating until it sends READY=1.
    unit(
        &g,
        "ready.service",
        "[Service]\nType=notify\nNotifyAccess=all\n\
         ExecStart=/bin/sh -c 'sleep 4; keelctl notify --ready --status=serving; exec sleep 1000'\n",
    );
    run(
        &g,
        "(keelctl start ready > /tmp/ready.out 2>&1 &) ; sleep 1",
    );
    let st = status(&g, "ready");
    assert_eq!(st["active"], "activating", "{st}");
    // READY=1 comes 4 s after the start; under TCG on a loaded host the
    // guest may take longer, so poll (at most 30 tries, 1 s apart).
    let mut st = status(&g, "ready");
    for _ in 0..30 {
        if st["active"] != "activating" {
            break;
        }
        run(&g, "sleep 1");
        st = status(&g, "ready");
    }
    assert_eq!(
        (&st["active"], &st["sub"]),
        (&"active".into(), &"running".into()),
        "{st}"
    );
    assert!(run(&g, "cat /tmp/ready.out").contains("started ready.service"));

    // Only root controls init: keelctl run by a service as nobody (which
    // also shows User= at work) is refused.
    unit(
        &g,
        "probe.service",
        "[Service]\nType=oneshot\nUser=nobody\nExecStart=/bin/sh -c 'id -u; keelctl status'\n",
    );
    let out = g.run("keelctl start probe", COMMAND_TIMEOUT).unwrap();
    assert_eq!(out.exit_code, 1, "{}", out.output);
    let logs = run(&g, "keelctl logs probe");
    assert!(
        logs.contains("probe[") && logs.contains("]: 65534"),
        "{logs}"
    );
    assert!(logs.contains("keelctl: error: permission denied"), "{logs}");

    // keelctl reboot stops everything and comes back.
    let mark = g.serial_offset();
    g.send("keelctl reboot\n").unwrap();
    g.wait_for_line_after("keel-init: rebooting", mark, BOOT_TIMEOUT)
        .unwrap();
    g.wait_for_line_after(DONE, mark, BOOT_TIMEOUT).unwrap();

    // keelctl poweroff ends QEMU; /var was unmounted cleanly, so the next
    // boot needs no journal recovery.
    let mark = g.serial_offset();
    g.send("keelctl poweroff\n").unwrap();
    g.wait_for_line_after("keel-init: unmounted /var", mark, BOOT_TIMEOUT)
        .unwrap();
    let status = g.wait_for_exit(Duration::from_secs(120)).unwrap();
    assert!(status.success(), "qemu: {status}");
    let mark = g.serial_offset();
    g.power_cycle().unwrap();
    g.wait_for_line_after(DONE, mark, BOOT_TIMEOUT).unwrap();
    let dmesg = run(&g, "dmesg");
    assert!(dmesg.contains("EXT4-fs"), "{dmesg}");
    assert!(!dmesg.contains("recovery complete"), "{dmesg}");
    g.kill();
}
