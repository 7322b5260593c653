//! What the default image's root holds: its unit files load with keel-init's
//! loader (with exactly the expected warnings), the services are enabled,
//! their programs exist, and what Debian's maintainer scripts would have
//! made (accounts, CA bundle, module indexes, alternatives) is there.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use keel_units::{load_units, ConditionKind, MachineInfo, ServiceType};
use tempfile::TempDir;

use super::{image, run_ok, s};

/// The services `multi-user.target.wants/` enables.
const ENABLED: [&str; 4] = [
    "chrony.service",
    "containerd.service",
    "dhcpcd.service",
    "ssh.service",
];

/// Unit files are named relative to this directory in [`EXPECTED_WARNINGS`].
const UNIT_DIR: &str = "usr/lib/systemd/system/";

/// Every kind of warning keel-init's loader gives for the image's unit
/// files: per file (relative to [`UNIT_DIR`]), the directives it does not
/// support as `[section] directive`, and whole-unit messages. Nearly all are
/// systemd sandboxing. A new unsupported directive, from a package update or
/// a new unit, fails the test with the list to put here.
const EXPECTED_WARNINGS: &[(&str, &[&str])] = &[
    (
        "chrony-wait.service",
        &[
            "[Service] CapabilityBoundingSet",
            "[Service] DevicePolicy",
            "[Service] DynamicUser",
            "[Service] IPAddressAllow",
            "[Service] IPAddressDeny",
            "[Service] LockPersonality",
            "[Service] MemoryDenyWriteExecute",
            "[Service] PrivateDevices",
            "[Service] PrivateUsers",
            "[Service] ProcSubset",
            "[Service] ProtectClock",
            "[Service] ProtectControlGroups",
            "[Service] ProtectHome",
            "[Service] ProtectHostname",
            "[Service] ProtectKernelLogs",
            "[Service] ProtectKernelModules",
            "[Service] ProtectKernelTunables",
            "[Service] ProtectProc",
            "[Service] ProtectSystem",
            "[Service] RestrictAddressFamilies",
            "[Service] RestrictNamespaces",
            "[Service] RestrictRealtime",
            "[Service] SystemCallArchitectures",
            "[Service] SystemCallFilter",
        ],
    ),
    (
        "chrony.service",
        &[
            "[Service] CapabilityBoundingSet",
            "[Service] ConfigurationDirectory",
            "[Service] DeviceAllow",
            "[Service] DevicePolicy",
            "[Service] LockPersonality",
            "[Service] MemoryDenyWriteExecute",
            "[Service] NoNewPrivileges",
            "[Service] PrivateTmp",
            "[Service] ProcSubset",
            "[Service] ProtectControlGroups",
            "[Service] ProtectHome",
            "[Service] ProtectHostname",
            "[Service] ProtectKernelLogs",
            "[Service] ProtectKernelModules",
            "[Service] ProtectKernelTunables",
            "[Service] ProtectProc",
            "[Service] ProtectSystem",
            "[Service] ReadWritePaths",
            "[Service] RestrictAddressFamilies",
            "[Service] RestrictNamespaces",
            "[Service] RestrictSUIDSGID",
            "[Service] SystemCallArchitectures",
            "[Service] SystemCallFilter",
            "[Unit] ConditionCapability",
        ],
    ),
    (
        "cni-dhcp.socket",
        &[
            "[Socket] ListenStream",
            "[Socket] RemoveOnStop",
            "[Socket] SocketGroup",
            "[Socket] SocketMode",
            "[Socket] SocketUser",
            "unsupported unit type socket, loaded for its dependencies only",
        ],
    ),
    (
        "dhcpcd.service",
        &[
            "[Service] LockPersonality",
            "[Service] MemoryDenyWriteExecute",
            "[Service] PrivateDevices",
            "[Service] ProtectClock",
            "[Service] ProtectControlGroups",
            "[Service] ProtectHome",
            "[Service] ProtectKernelLogs",
            "[Service] ProtectKernelModules",
            "[Service] ProtectSystem",
            "[Service] ReadWritePaths",
            "[Service] RestrictNamespaces",
            "[Service] RestrictRealtime",
            "[Service] RestrictSUIDSGID",
            "[Service] SystemCallArchitectures",
            "[Service] SystemCallErrorNumber",
            "[Service] SystemCallFilter",
        ],
    ),
    (
        "dpkg-db-backup.timer",
        &[
            "[Timer] OnCalendar",
            "unsupported unit type timer, loaded for its dependencies only",
        ],
    ),
    (
        "e2scrub_all.service",
        &[
            "[Service] SyslogIdentifier",
            "[Unit] ConditionACPower",
            "[Unit] ConditionCapability",
        ],
    ),
    (
        "e2scrub_all.timer",
        &[
            "[Timer] OnCalendar",
            "[Timer] Persistent",
            "[Timer] RandomizedDelaySec",
            "unsupported unit type timer, loaded for its dependencies only",
        ],
    ),
    (
        "e2scrub_reap.service",
        &[
            "[Service] AmbientCapabilities",
            "[Service] CPUSchedulingPolicy",
            "[Service] IOSchedulingClass",
            "[Service] NoNewPrivileges",
            "[Service] PrivateNetwork",
            "[Service] PrivateTmp",
            "[Service] ProtectHome",
            "[Service] ProtectSystem",
            "[Service] SyslogIdentifier",
            "[Unit] ConditionCapability",
        ],
    ),
    (
        "fstrim.service",
        &[
            "[Service] MemoryDenyWriteExecute",
            "[Service] PrivateDevices",
            "[Service] PrivateNetwork",
            "[Service] PrivateUsers",
            "[Service] ProtectControlGroups",
            "[Service] ProtectKernelModules",
            "[Service] ProtectKernelTunables",
            "[Service] SystemCallFilter",
            "[Unit] ConditionVirtualization",
        ],
    ),
    (
        "fstrim.timer",
        &[
            "[Timer] AccuracySec",
            "[Timer] OnCalendar",
            "[Timer] Persistent",
            "[Timer] RandomizedDelaySec",
            "[Unit] ConditionVirtualization",
            "unsupported unit type timer, loaded for its dependencies only",
        ],
    ),
    ("rescue-ssh.target", &["[Unit] AllowIsolate"]),
    (
        "ssh.socket",
        &[
            "[Socket] Accept",
            "[Socket] ListenStream",
            "unsupported unit type socket, loaded for its dependencies only",
        ],
    ),
];

/// Resolves `path` (absolute in the image) inside `tree`, following
/// symlinks there, never on the host. `None` when it does not exist.
fn resolve(tree: &Path, path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<PathBuf> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(PathBuf::from(p)),
            _ => None,
        })
        .rev()
        .collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(part) = parts.pop() {
        let next = cur.join(&part);
        let meta = fs::symlink_metadata(tree.join(&next)).ok()?;
        if !meta.file_type().is_symlink() {
            cur = next;
            continue;
        }
        links += 1;
        assert!(links < 40, "symlink loop at {}", next.display());
        let target = fs::read_link(tree.join(&next)).ok()?;
        if target.is_absolute() {
            cur = PathBuf::new();
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(p) => parts.push(PathBuf::from(p)),
                Component::ParentDir => parts.push(PathBuf::from("..")),
                _ => {}
            }
        }
        // Apply leading `..` of a relative target.
        while parts.last().is_some_and(|p| p == Path::new("..")) {
            parts.pop();
            cur.pop();
        }
    }
    Some(tree.join(cur))
}

fn read(tree: &Path, rel: &str) -> String {
    fs::read_to_string(tree.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn extract() -> (TempDir, PathBuf) {
    let image = image();
    let dir = TempDir::new().unwrap();
    let tree = image.root_tree(&dir);
    (dir, tree)
}

#[test]
fn units_load_with_exactly_the_expected_warnings() {
    let (_dir, tree) = extract();
    let machine = MachineInfo {
        hostname: "keel".into(),
        machine_id: "0123456789abcdef0123456789abcdef".into(),
    };
    let loaded = load_units(&tree, &machine);
    assert!(
        loaded.errors.is_empty(),
        "unit load errors: {:#?}",
        loaded.errors
    );

    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for w in &loaded.warnings {
        let rel = w.file.strip_prefix(&tree).unwrap_or(&w.file);
        let rel = rel.to_string_lossy();
        let file = rel.strip_prefix(UNIT_DIR).unwrap_or(&rel).to_string();
        let what = if w.directive.is_empty() {
            w.message.clone()
        } else {
            format!("[{}] {}", w.section, w.directive)
        };
        found.entry(file).or_default().insert(what);
    }
    let expected: BTreeMap<String, BTreeSet<String>> = EXPECTED_WARNINGS
        .iter()
        .map(|(file, list)| {
            let set = list.iter().map(|d| d.to_string()).collect();
            (file.to_string(), set)
        })
        .collect();
    if found != expected {
        let mut listing = String::new();
        for (file, list) in &found {
            listing.push_str(&format!("    (\n        {file:?},\n        &[\n"));
            for what in list {
                listing.push_str(&format!("            {what:?},\n"));
            }
            listing.push_str("        ],\n    ),\n");
        }
        let full: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
        panic!(
            "the loader's warnings changed; if that is right, EXPECTED_WARNINGS becomes:\n{listing}\nall warnings:\n{}",
            full.join("\n")
        );
    }

    // Enabled the way `systemctl enable` would (Debian's postinst does).
    let wants_dir = tree.join("etc/systemd/system/multi-user.target.wants");
    let mut wanted: Vec<String> = fs::read_dir(&wants_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", wants_dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    wanted.sort();
    assert_eq!(wanted, ENABLED);
    for name in ENABLED {
        assert!(loaded.get(name).is_some(), "{name} not loaded");
    }
    assert_eq!(loaded.get("sshd.service").unwrap().name, "ssh.service");
    assert_eq!(
        loaded.get("chronyd.service").unwrap().name,
        "chrony.service"
    );

    // Host keys are made on first boot, before sshd starts.
    let ssh = loaded.get("ssh.service").unwrap();
    assert!(
        ssh.unit
            .wants
            .iter()
            .any(|w| w == "keel-ssh-keygen.service"),
        "ssh.service wants {:?}",
        ssh.unit.wants
    );
    let keygen = loaded.get("keel-ssh-keygen.service").unwrap();
    assert_eq!(keygen.service.service_type, ServiceType::Oneshot);
    assert!(keygen.unit.before.iter().any(|b| b == "ssh.service"));
    assert!(keygen
        .unit
        .conditions
        .iter()
        .any(|c| c.kind == ConditionKind::PathExists
            && c.negate
            && c.path == Path::new("/etc/ssh/ssh_host_ed25519_key")));

    // Every program the enabled services run exists in the image.
    let mut units: Vec<&str> = ENABLED.to_vec();
    units.push("keel-ssh-keygen.service");
    for name in units {
        let unit = loaded.get(name).unwrap();
        let svc = &unit.service;
        for cmd in svc
            .exec_start_pre
            .iter()
            .chain(&svc.exec_start)
            .chain(&svc.exec_start_post)
            .chain(&svc.exec_stop)
        {
            assert!(
                cmd.path.starts_with('/'),
                "{name}: {} is not an absolute path",
                cmd.path
            );
            let found = resolve(&tree, Path::new(&cmd.path));
            assert!(
                found.as_deref().is_some_and(Path::is_file),
                "{name}: {} is not in the image",
                cmd.path
            );
        }
    }
}

#[test]
fn root_has_what_maintainer_scripts_would_have_made() {
    let (_dir, tree) = extract();

    // System accounts from sysusers.d, locked.
    let passwd = read(&tree, "etc/passwd");
    let shadow = read(&tree, "etc/shadow");
    let users: BTreeSet<&str> = passwd.lines().filter_map(|l| l.split(':').next()).collect();
    for user in ["root", "sshd", "_chrony", "dhcpcd"] {
        assert!(users.contains(user), "no {user} in /etc/passwd:\n{passwd}");
        let entry = shadow
            .lines()
            .find(|l| l.split(':').next() == Some(user))
            .unwrap_or_else(|| panic!("no {user} in /etc/shadow"));
        let pw = entry.split(':').nth(1).unwrap();
        assert!(
            pw.starts_with('!') || pw == "*",
            "{user} is not locked: {entry}"
        );
    }
    let dhcpcd = passwd.lines().find(|l| l.starts_with("dhcpcd:")).unwrap();
    assert!(
        dhcpcd.contains(":/usr/lib/dhcpcd:"),
        "dhcpcd chroots to its home: {dhcpcd}"
    );
    assert!(read(&tree, "etc/group")
        .lines()
        .any(|l| l.starts_with("_ssh:")));

    // No per-machine secrets.
    let ssh_dir = fs::read_dir(tree.join("etc/ssh")).unwrap();
    for e in ssh_dir {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("ssh_host_"),
            "host key {name} in the image"
        );
    }
    let sshd = read(&tree, "etc/ssh/sshd_config");
    assert!(sshd.contains("Include /etc/ssh/sshd_config.d/*.conf"));
    let keel = read(&tree, "etc/ssh/sshd_config.d/keel.conf");
    for line in [
        "PasswordAuthentication no",
        "PermitRootLogin prohibit-password",
        "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys.d/ignition",
    ] {
        assert!(keel.lines().any(|l| l == line), "keel.conf lacks {line:?}");
    }
    assert!(
        tree.join("etc/pam.d/common-account").is_file(),
        "PAM config for sshd"
    );

    // The CA bundle: every enabled certificate, PEM.
    let conf = read(&tree, "etc/ca-certificates.conf");
    let enabled = conf
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .count();
    let bundle = read(&tree, "etc/ssl/certs/ca-certificates.crt");
    let certs = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(
        enabled > 100 && certs == enabled,
        "{certs} certificates in the bundle, {enabled} enabled"
    );

    // depmod's indexes, and every module of modules-load.d resolvable by an
    // independent modprobe against the image.
    let modules = tree.join("usr/lib/modules");
    let kver = fs::read_dir(&modules)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    for index in [
        "modules.dep.bin",
        "modules.alias.bin",
        "modules.symbols.bin",
    ] {
        assert!(modules.join(&kver).join(index).is_file(), "no {index}");
    }
    let load = read(&tree, "usr/lib/modules-load.d/keel-containerd.conf");
    let wanted: Vec<&str> = load
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for m in [
        "overlay",
        "br_netfilter",
        "bridge",
        "veth",
        "nf_tables",
        "nf_nat",
    ] {
        assert!(wanted.contains(&m), "modules-load.d lacks {m}");
    }
    for m in &wanted {
        run_ok(
            "modprobe",
            &["-d", s(&tree), "-S", &kver, "--show-depends", m],
        );
    }
    // The kernel's module autoloader and containerd.service use /sbin/modprobe.
    assert!(resolve(&tree, Path::new("/sbin/modprobe")).is_some_and(|p| p.is_file()));

    // CNI: ctr looks for plugins in /opt/cni/bin.
    let cni = resolve(&tree, Path::new("/opt/cni/bin")).expect("/opt/cni/bin");
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        assert!(cni.join(plugin).is_file(), "no CNI plugin {plugin}");
    }
    let net = read(&tree, "etc/cni/net.d/10-keel-bridge.conflist");
    let net: serde_json::Value = serde_json::from_str(&net).unwrap();
    let plugins = net["plugins"].as_array().unwrap();
    assert_eq!(plugins[0]["type"], "bridge");
    assert_eq!(plugins[0]["bridge"], "cni0");
    assert_eq!(plugins[0]["ipMasq"], true);
    assert_eq!(plugins[0]["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
    assert_eq!(plugins[1]["type"], "portmap");
    // iptables as update-alternatives would have linked it: the nft variant.
    for tool in ["iptables", "iptables-save", "iptables-restore", "ip6tables"] {
        let p = resolve(&tree, &Path::new("/usr/sbin").join(tool));
        assert_eq!(
            p.as_deref().and_then(Path::file_name),
            Some("xtables-nft-multi".as_ref()),
            "/usr/sbin/{tool}"
        );
    }
    let sysctl = read(&tree, "usr/lib/sysctl.d/keel-containerd.conf");
    for line in [
        "net.ipv4.ip_forward = 1",
        "net.bridge.bridge-nf-call-iptables = 1",
    ] {
        assert!(sysctl.lines().any(|l| l == line), "sysctl.d lacks {line:?}");
    }

    // chrony has no default servers, only configured ones.
    let chrony = read(&tree, "etc/chrony/chrony.conf");
    for line in chrony.lines().map(str::trim) {
        assert!(
            !["pool ", "server ", "peer "]
                .iter()
                .any(|d| line.starts_with(d)),
            "chrony.conf names a time source: {line}"
        );
    }
    for line in [
        "sourcedir /run/chrony-dhcp",
        "sourcedir /etc/chrony/sources.d",
    ] {
        assert!(
            chrony.lines().any(|l| l == line),
            "chrony.conf lacks {line:?}"
        );
    }
}
