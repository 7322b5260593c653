//! The default image is a container host, proven on a real boot: containerd,
//! ssh and the DHCP client run from their packaged units; containerd
//! answers `ctr version`; a busybox OCI image built on the host is fetched
//! over HTTP from the host's loopback (10.0.2.2), imported and run with CNI
//! bridge networking; the container reaches a server on the host loopback;
//! the image is still in /var/lib/containerd after a reboot.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use qemu_tests::http::{HttpServer, Response};
use qemu_tests::{find_image, oci, Guest, GuestBuilder, BOOT_TIMEOUT, COMMAND_TIMEOUT};

const IMAGE: &str = "containerd";
const DONE: &str = "keel-init: boot complete: version 0.1.0, slot a";
const REF: &str = "docker.io/keel/busybox:test";
/// Host busybox (Debian's busybox-static, installed by install-deps).
const BUSYBOX: &str = "/bin/busybox";
/// Container runs under TCG take a while (runc, CNI, iptables).
const CTR_TIMEOUT: Duration = Duration::from_secs(240);

fn run(g: &Guest, cmd: &str) -> String {
    g.run_ok(cmd, COMMAND_TIMEOUT).unwrap()
}

fn active_units(g: &Guest) -> Vec<(String, String)> {
    let all: serde_json::Value =
        serde_json::from_str(run(g, "keelctl status --json").trim()).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["active"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn containers_run_with_cni_networking_and_their_images_persist() {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} missing: install busybox-static (scripts/install-deps.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("busybox-oci.tar");
    oci::write_image(Path::new(BUSYBOX), REF, &tar).unwrap();
    let http = HttpServer::start().unwrap();
    http.route(
        "/busybox-oci.tar",
        Response::ok(std::fs::read(&tar).unwrap()),
    );
    http.route("/hello", Response::ok("hello from the host loopback\n"));

    let image = find_image(IMAGE).unwrap();
    let mut g = GuestBuilder::new(&image)
        .name("containers")
        .console_shell()
        .disk_size(3 << 30)
        .boot()
        .unwrap();
    g.wait_for_line(DONE, BOOT_TIMEOUT).unwrap();

    // The packaged services are active, as the boot's health judgement saw.
    let units = active_units(&g);
    for want in ["containerd.service", "ssh.service", "dhcpcd.service"] {
        assert!(
            units.iter().any(|(n, a)| n == want && a == "active"),
            "{want} not active: {units:?}"
        );
    }
    let version = run(&g, "ctr version");
    assert!(
        version.contains("Server:") && version.contains("Revision:"),
        "{version}"
    );

    // dhcpcd configured eth0 from QEMU's DHCP server.
    run(
        &g,
        "i=0; until ip -4 route | grep -q '^default via 10.0.2.2'; do \
         i=$((i+1)); [ $i -gt 60 ] && ip addr && ip route && exit 1; sleep 1; done",
    );

    // The image comes in over HTTP from the host and is imported.
    run(
        &g,
        &format!(
            "wget -q -O /var/tmp/busybox-oci.tar {}",
            http.guest_url("/busybox-oci.tar")
        ),
    );
    let imported = g
        .run_ok(
            "ctr image import /var/tmp/busybox-oci.tar && ctr image ls -q",
            CTR_TIMEOUT,
        )
        .unwrap();
    assert!(imported.contains(REF), "{imported}");

    // A container on the CNI bridge: its address is from the keel network
    // (10.88.0.0/16) and it reaches the host loopback through the node's NAT.
    let out = g
        .run_ok(
            &format!(
                "ctr run --rm --cni {REF} probe sh -c 'ip -4 addr show eth0; wget -q -O - {}'",
                http.guest_url("/hello")
            ),
            CTR_TIMEOUT,
        )
        .unwrap();
    assert!(out.contains("inet 10.88."), "{out}");
    assert!(out.contains("hello from the host loopback"), "{out}");
    assert!(
        http.requests().iter().any(|r| r.starts_with("GET /hello ")),
        "{:?}",
        http.requests()
    );
    // The CNI bridge is on the node, with the network's gateway address.
    let bridge = run(&g, "ip -4 addr show cni0");
    assert!(bridge.contains("inet 10.88.0.1/16"), "{bridge}");

    // containerd's state is on /var: the image survives a reboot.
    let mark = g.serial_offset();
    g.send("keelctl reboot\n").unwrap();
    g.wait_for_line_after(DONE, mark, BOOT_TIMEOUT).unwrap();
    let after = g.run_ok("ctr image ls -q", CTR_TIMEOUT).unwrap();
    assert!(after.contains(REF), "{after}");
    let out = g
        .run_ok(
            &format!("ctr run --rm {REF} again echo ran-after-reboot"),
            CTR_TIMEOUT,
        )
        .unwrap();
    assert!(out.contains("ran-after-reboot"), "{out}");
    g.kill();
}
