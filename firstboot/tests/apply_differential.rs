//! Applying storage nodes, against the reference implementation: for each
//! case, the same config is applied to two copies of the same root, once
//! by Ignition's `files` stage (Debian's `ignition` 2.14, `-platform file
//! -root DIR`) and once by keel-firstboot. Both must succeed or both fail;
//! on success the trees must be equal (kind, mode, owner, contents or link
//! target, hard-link count of every node); on failure Keel's root must be
//! exactly as before (Ignition leaves what it wrote so far).
//!
//! Ignition relabels for SELinux after writing; a `setfiles` that does
//! nothing stands in for the real one (SELinux labels are not part of the
//! comparison), and `/etc/selinux/config` in the root says "targeted".
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_firstboot::apply::{self, InlineOnly, RealSys};
use keel_firstboot::config;
use sha2::{Digest, Sha256};

const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// Paths Ignition writes for itself, and the SELinux stand-in.
const IGNORED: &[&str] = &[
    "etc/.ignition-result.json",
    "etc/selinux",
    "etc/selinux/config",
    // Ignition enables units with a preset, Keel with links: compared by
    // `enablement`.
    "etc/systemd/system-preset",
    "etc/systemd/system-preset/20-ignition.preset",
    // useradd's lock file.
    "etc/.pwd.lock",
];

/// Account files are compared by their text, for readable differences.
const ACCOUNT_FILES: &[&str] = &["etc/passwd", "etc/shadow", "etc/group", "etc/gshadow"];

/// `*.wants/`, `*.requires/` and their links: Keel's enablement.
fn is_install_link(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    parts.len() >= 4
        && parts[..3] == ["etc", "systemd", "system"]
        && (parts[3].ends_with(".wants") || parts[3].ends_with(".requires"))
}

/// Units enabled and disabled: from Ignition's preset file, or from
/// Keel's links (enabled: some `*.wants`/`*.requires` link has the name).
fn enablement(root: &Path, keel: bool, names: &[String]) -> Vec<String> {
    if !keel {
        let preset = root.join("etc/systemd/system-preset/20-ignition.preset");
        let mut v: Vec<String> = fs::read_to_string(preset)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        return v;
    }
    let base = root.join("etc/systemd/system");
    let mut linked = std::collections::BTreeSet::new();
    for e in fs::read_dir(&base).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir()
            && is_install_link(&format!(
                "etc/systemd/system/{}",
                e.file_name().to_string_lossy()
            ))
        {
            for l in fs::read_dir(e.path()).unwrap().flatten() {
                linked.insert(l.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut v: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                "{} {n}",
                if linked.contains(n) {
                    "enable"
                } else {
                    "disable"
                }
            )
        })
        .collect();
    v.sort();
    v
}

fn setup_root(root: &Path) {
    fs::create_dir_all(root.join("etc/selinux")).unwrap();
    fs::write(
        root.join("etc/selinux/config"),
        "SELINUX=disabled\nSELINUXTYPE=targeted\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ncore:x:1000:1000::/home/core:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/group"),
        "root:x:0:\ncore:x:1000:\nadm:x:4:\n",
    )
    .unwrap();
    fs::write(root.join("etc/existing"), "old\n").unwrap();
    fs::set_permissions(root.join("etc/existing"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(root.join("var/home")).unwrap();
    fs::create_dir_all(root.join("var/lib/kept")).unwrap();
    symlink("var/home", root.join("home")).unwrap();
    symlink("existing", root.join("etc/old-link")).unwrap();
}

/// Every node below `root`: path → kind, mode, owner, content digest or
/// link target, link count.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if IGNORED.contains(&rel.as_str()) || is_install_link(&rel) {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                let data = fs::read(&p).unwrap();
                if ACCOUNT_FILES.contains(&rel.as_str()) {
                    format!(
                        "file {:?}",
                        dates_as_today(&rel, &String::from_utf8_lossy(&data))
                    )
                } else if ACCOUNT_FILES.contains(&rel.trim_end_matches('-')) {
                    // `passwd-` and the like: shadow's tools back up the
                    // state before each call, Keel the state before the
                    // whole config; only their presence is compared.
                    "backup".to_string()
                } else {
                    format!(
                        "file {} nlink {}",
                        hex::encode(&Sha256::digest(&data)[..8]),
                        m.nlink()
                    )
                }
            };
            let mode = if m.file_type().is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.insert(rel, format!("{what} {mode:o} {}:{}", m.uid(), m.gid()));
        }
    }
    out
}

/// shadow's "last change" day of today (or yesterday, should the two runs
/// straddle midnight) as `TODAY`, so that the comparison does not depend
/// on the clock.
fn dates_as_today(rel: &str, text: &str) -> String {
    if rel != "etc/shadow" {
        return text.to_string();
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let today = secs / 86400;
    let recent = [today.to_string(), (today - 1).to_string()];
    text.lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(':').collect();
            if f.len() > 2 && recent.iter().any(|d| d == f[2]) {
                f[2] = "TODAY";
            }
            format!("{}\n", f.join(":"))
        })
        .collect()
}

/// The nodes where two trees differ, one line each; `None` if equal.
fn tree_diff(ignition_root: &Path, keel_root: &Path) -> Option<String> {
    let (a, b) = (tree(ignition_root), tree(keel_root));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let lines: Vec<String> = keys
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| format!("  {p}: ignition {:?} / keel {:?}", a.get(p), b.get(p)))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// A directory with a `setfiles` that does nothing, for Ignition's PATH.
fn setfiles_shim() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shim = dir.path().join("setfiles");
    fs::write(&shim, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn ignition(config: &Path, root: &Path, shim: &Path) -> Result<(), String> {
    let work = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for stage in ["fetch", "files"] {
        let out = Command::new(IGNITION)
            .args([
                "-platform",
                "file",
                "-stage",
                stage,
                "-log-to-stdout",
                "-root",
            ])
            .arg(root)
            .arg("-config-cache")
            .arg(work.path().join("cache.json"))
            .arg("-state-file")
            .arg(work.path().join("state"))
            .env("IGNITION_CONFIG_FILE", config)
            .env("PATH", &path)
            .output()
            .unwrap_or_else(|e| panic!("{IGNITION}: {e} (Debian package ignition)"));
        if !out.status.success() {
            let log = String::from_utf8_lossy(&out.stdout);
            let critical: Vec<&str> = log.lines().filter(|l| l.contains("CRITICAL")).collect();
            return Err(critical.join("\n"));
        }
    }
    Ok(())
}

/// One config applied by both to two copies of a root made by `setup`.
struct Both {
    _tmp: tempfile::TempDir,
    ig_root: PathBuf,
    keel_root: PathBuf,
    /// Keel's root before applying.
    before: BTreeMap<String, String>,
    ig: Result<(), String>,
    keel: Result<(), String>,
}

fn both(cfg: &str, setup: &dyn Fn(&Path), shim: &Path) -> Both {
    let tmp = tempfile::tempdir().unwrap();
    let cfg_path = tmp.path().join("config.ign");
    fs::write(&cfg_path, cfg).unwrap();
    let (ig_root, keel_root) = (tmp.path().join("ignition"), tmp.path().join("keel"));
    for r in [&ig_root, &keel_root] {
        setup_root(r);
        setup(r);
    }
    let before = tree(&keel_root);
    let ig = ignition(&cfg_path, &ig_root, shim);
    let keel = keel(cfg.as_bytes(), &keel_root);
    Both {
        _tmp: tmp,
        ig_root,
        keel_root,
        before,
        ig,
        keel,
    }
}

fn keel(config: &[u8], root: &Path) -> Result<(), String> {
    let p = config::parse(config).map_err(|e| e.to_string())?;
    apply::apply(root, &p.config, &InlineOnly, &RealSys).map_err(|e| e.to_string())
}

/// (name, storage JSON, whether it must succeed)
const CASES: &[(&str, &str, bool)] = &[
    (
        "new-files-dirs-links",
        r#"{"files":[{"path":"/etc/a/b/c","mode":384,"contents":{"source":"data:,hello"}},
                     {"path":"/var/empty-file"},
                     {"path":"/etc/owned","user":{"id":1000},"group":{"name":"adm"},"contents":{"source":"data:,x"}},
                     {"path":"/etc/named","user":{"name":"core"},"contents":{"source":"data:;base64,aGk="}},
                     {"path":"/etc/appended","contents":{"source":"data:,one%0A"},"append":[{"source":"data:,two%0A"},{"source":"data:,three"}]}],
            "directories":[{"path":"/var/lib/new/deep","mode":448},{"path":"/var/lib/owned-dir","user":{"name":"core"},"group":{"id":4}}],
            "links":[{"path":"/etc/sym","target":"/etc/a/b/c"},{"path":"/etc/rel-sym","target":"a/b"},
                     {"path":"/etc/hard","target":"/etc/a/b/c","hard":true},{"path":"/etc/owned-link","target":"x","user":{"id":1000}}]}"#,
        true,
    ),
    (
        "through-a-symlinked-parent",
        r#"{"files":[{"path":"/home/core/.ssh/authorized_keys","mode":384,"user":{"name":"core"},"contents":{"source":"data:,ssh-ed25519%20AAAA"}}],
            "directories":[{"path":"/home/core/.ssh","mode":448,"user":{"id":1000},"group":{"id":1000}}]}"#,
        true,
    ),
    (
        "gzip-hash-of-the-decompressed-contents",
        r#"{"files":[{"path":"/etc/gz","contents":{"compression":"gzip","source":"data:;base64,H4sIAAAAAAACA8tIzcnJV0ivyizgAgA5fGNWCwAAAA==","verification":{"hash":"sha256-cc19744a9c456a1d13c6a45c61299b20c80952c22e867bdfbecece10bd2ae150"}}}]}"#,
        true,
    ),
    (
        "gzip-hash-of-the-compressed-bytes",
        r#"{"files":[{"path":"/etc/gz","contents":{"compression":"gzip","source":"data:;base64,H4sIAAAAAAACA8tIzcnJV0ivyizgAgA5fGNWCwAAAA==","verification":{"hash":"sha256-b5b74c5b094305e197b02d90dfb1ccfe86e1c1e0d4dd428e843042ec21fd2062"}}}]}"#,
        false,
    ),
    (
        "existing-file-kept-mode-set",
        r#"{"files":[{"path":"/etc/existing","mode":420}]}"#,
        true,
    ),
    (
        "existing-file-appended",
        r#"{"files":[{"path":"/etc/existing","append":[{"source":"data:,more%0A"}]}]}"#,
        true,
    ),
    (
        "existing-file-owner-set",
        r#"{"files":[{"path":"/etc/existing","user":{"name":"core"}}]}"#,
        true,
    ),
    (
        "existing-file-contents-refused",
        r#"{"files":[{"path":"/etc/new-first","contents":{"source":"data:,x"}},{"path":"/etc/existing","contents":{"source":"data:,new"}}]}"#,
        false,
    ),
    (
        "existing-file-overwritten",
        r#"{"files":[{"path":"/etc/existing","overwrite":true,"contents":{"source":"data:,new"}}]}"#,
        true,
    ),
    (
        "existing-directory-mode",
        r#"{"directories":[{"path":"/var/lib/kept","mode":448}]}"#,
        true,
    ),
    (
        "file-where-a-directory-is",
        r#"{"files":[{"path":"/var/lib/kept","contents":{"source":"data:,x"}}]}"#,
        false,
    ),
    (
        "file-over-a-directory-with-overwrite",
        r#"{"files":[{"path":"/var/lib/kept","overwrite":true,"contents":{"source":"data:,x"}}]}"#,
        true,
    ),
    (
        "existing-link-same-target",
        r#"{"links":[{"path":"/etc/old-link","target":"existing"}]}"#,
        true,
    ),
    (
        "existing-link-other-target",
        r#"{"links":[{"path":"/etc/old-link","target":"elsewhere"}]}"#,
        false,
    ),
    (
        "existing-link-overwritten",
        r#"{"links":[{"path":"/etc/old-link","target":"elsewhere","overwrite":true}]}"#,
        true,
    ),
    (
        "unknown-user",
        r#"{"files":[{"path":"/etc/x","user":{"name":"nobody-here"}}]}"#,
        false,
    ),
];

/// (name, systemd JSON, whether it must succeed, the units whose
/// enablement the config sets)
const UNIT_CASES: &[(&str, &str, bool, &[&str])] = &[
    (
        "unit-with-dropin-enabled",
        r#"{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
                      "dropins":[{"name":"10-env.conf","contents":"[Service]\nEnvironment=A=1\n"}]}]}"#,
        true,
        &["a.service"],
    ),
    (
        "dropin-only-and-mask",
        r#"{"units":[{"name":"shipped.service","dropins":[{"name":"x.conf","contents":"[Unit]\nDescription=x\n"}]},
                     {"name":"noisy.service","mask":true}]}"#,
        true,
        &[],
    ),
    (
        "enable-a-shipped-unit-and-disable-another",
        r#"{"units":[{"name":"shipped.service","enabled":true},{"name":"other.service","enabled":false}]}"#,
        true,
        &["shipped.service", "other.service"],
    ),
    (
        "unit-replaces-an-existing-file",
        r#"{"units":[{"name":"existing.service","contents":"[Service]\nExecStart=/bin/false\n"}]}"#,
        true,
        &[],
    ),
];

fn setup_units(root: &Path) {
    let lib = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&lib).unwrap();
    fs::write(
        lib.join("shipped.service"),
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    fs::write(
        lib.join("other.service"),
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let etc = root.join("etc/systemd/system");
    fs::create_dir_all(etc.join("multi-user.target.wants")).unwrap();
    symlink(
        "/usr/lib/systemd/system/other.service",
        etc.join("multi-user.target.wants/other.service"),
    )
    .unwrap();
    fs::write(
        etc.join("existing.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
}

/// A root with useradd's policy files, a skeleton and a few accounts.
fn setup_accounts(root: &Path) {
    let etc = root.join("etc");
    fs::create_dir_all(etc.join("default")).unwrap();
    // A flat skeleton: shadow 4.13's `useradd --root` makes skeleton
    // subdirectories 0700 and empty (Keel copies them whole; see the unit
    // tests of apply::passwd).
    fs::create_dir_all(etc.join("skel")).unwrap();
    fs::write(
        etc.join("login.defs"),
        "UMASK 022\nPASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 7\n\
         UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nUSERGROUPS_ENAB yes\n",
    )
    .unwrap();
    fs::write(etc.join("default/useradd"), "SHELL=/bin/sh\n").unwrap();
    fs::write(etc.join("skel/.profile"), "# profile\n").unwrap();
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nold:x:1000:1000::/home/old:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        etc.join("shadow"),
        "root:*::0:99999:7:::\nold:*:19000:0:99999:7:::\n",
    )
    .unwrap();
    fs::write(
        etc.join("group"),
        "root:x:0:\nadm:x:4:old\nold:x:1000:\nusers:x:100:\ntape:x:26:old\n",
    )
    .unwrap();
    fs::write(
        etc.join("gshadow"),
        "root:*::\nadm:*::old\nold:!::\nusers:*::\ntape:*::old\n",
    )
    .unwrap();
    for f in ["shadow", "gshadow"] {
        fs::set_permissions(etc.join(f), fs::Permissions::from_mode(0o640)).unwrap();
    }
    fs::create_dir_all(root.join("var/home/old")).unwrap();
    fs::set_permissions(root.join("var/home/old"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(root.join("var/home/old"), Some(1000), Some(1000)).unwrap();
}

/// (name, passwd JSON, whether it must succeed)
const PASSWD_CASES: &[(&str, &str, bool)] = &[
    (
        "new-users-and-groups",
        r#"{"users":[{"name":"core","groups":["adm","wheel"],"sshAuthorizedKeys":["ssh-ed25519 AAAA core@x","ssh-rsa BBBB second"]},
                     {"name":"sys1","system":true,"noCreateHome":true},
                     {"name":"nogrp","noUserGroup":true,"uid":1500,"homeDir":"/var/nogrp","passwordHash":"$6$x$y","gecos":"No Group","shell":"/bin/false"}],
            "groups":[{"name":"wheel","gid":10},{"name":"sysg","system":true},{"name":"devs"}]}"#,
        true,
    ),
    (
        "existing-user-modified",
        r#"{"users":[{"name":"old","shell":"/bin/false","gecos":"Old One","groups":["adm","users"],"passwordHash":"$6$new$hash","sshAuthorizedKeys":["ssh-ed25519 CCCC old@y"]}]}"#,
        true,
    ),
    (
        "primary-group-and-no-home",
        r#"{"users":[{"name":"app","primaryGroup":"users","noCreateHome":true,"uid":2000},{"name":"svc","system":true,"homeDir":"/var/lib/svc"}]}"#,
        true,
    ),
    (
        "existing-group-refused",
        r#"{"groups":[{"name":"adm"}]}"#,
        false,
    ),
    (
        "users-and-groups-removed",
        r#"{"users":[{"name":"old","shouldExist":false},{"name":"ghost","shouldExist":false}],
            "groups":[{"name":"tape","shouldExist":false},{"name":"nosuch","shouldExist":false}]}"#,
        true,
    ),
    (
        "a-primary-group-is-not-removed",
        r#"{"groups":[{"name":"old","shouldExist":false}]}"#,
        false,
    ),
    (
        "unknown-supplementary-group-refused",
        r#"{"users":[{"name":"core","groups":["nosuchgroup"]}]}"#,
        false,
    ),
];

#[test]
fn accounts_match_ignitions_files_stage() {
    let shim_dir = setfiles_shim();
    let mut failures = Vec::new();
    for (name, passwd, must_succeed) in PASSWD_CASES {
        // A file owned by a user the same config creates.
        let cfg = format!(
            r#"{{"ignition":{{"version":"3.3.0"}},"passwd":{passwd},
                "storage":{{"files":[{{"path":"/var/owned-by-new-user","user":{{"name":"root"}},"contents":{{"source":"data:,x"}}}}]}}}}"#
        );
        let b = both(&cfg, &setup_accounts, shim_dir.path());
        let (ig, k) = (&b.ig, &b.keel);
        if ig.is_ok() != *must_succeed || k.is_ok() != *must_succeed {
            failures.push(format!(
                "{name}: Ignition {ig:?}, Keel {k:?}, expected success={must_succeed}"
            ));
            continue;
        }
        if *must_succeed {
            if let Some(d) = tree_diff(&b.ig_root, &b.keel_root) {
                failures.push(format!("{name}: trees differ\n{d}"));
            }
        } else if tree(&b.keel_root) != b.before {
            failures.push(format!("{name}: Keel failed ({k:?}) but changed the root"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn units_match_ignitions_files_stage() {
    let shim_dir = setfiles_shim();
    let mut failures = Vec::new();
    for (name, systemd, must_succeed, named) in UNIT_CASES {
        let cfg = format!(r#"{{"ignition":{{"version":"3.3.0"}},"systemd":{systemd}}}"#);
        let b = both(&cfg, &setup_units, shim_dir.path());
        let (ig, k) = (&b.ig, &b.keel);
        if ig.is_ok() != *must_succeed || k.is_ok() != *must_succeed {
            failures.push(format!(
                "{name}: Ignition {ig:?}, Keel {k:?}, expected success={must_succeed}"
            ));
            continue;
        }
        if let Some(d) = tree_diff(&b.ig_root, &b.keel_root) {
            failures.push(format!("{name}: trees differ\n{d}"));
        }
        let names: Vec<String> = named.iter().map(|n| n.to_string()).collect();
        let (ie, ke) = (
            enablement(&b.ig_root, false, &names),
            enablement(&b.keel_root, true, &names),
        );
        if ie != ke {
            failures.push(format!(
                "{name}: enablement differs: Ignition {ie:?}, Keel {ke:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn storage_nodes_match_ignitions_files_stage() {
    let shim_dir = setfiles_shim();
    let mut failures = Vec::new();
    for (name, storage, must_succeed) in CASES {
        let cfg = format!(r#"{{"ignition":{{"version":"3.3.0"}},"storage":{storage}}}"#);
        let b = both(&cfg, &|_| {}, shim_dir.path());
        let (ig, k) = (&b.ig, &b.keel);
        if ig.is_ok() != *must_succeed {
            failures.push(format!(
                "{name}: Ignition: {ig:?}, expected success={must_succeed}"
            ));
        }
        match (ig, k) {
            (Ok(()), Ok(())) => {
                if let Some(d) = tree_diff(&b.ig_root, &b.keel_root) {
                    failures.push(format!("{name}: trees differ\n{d}"));
                }
            }
            (Err(_), Err(_)) => {
                if tree(&b.keel_root) != b.before {
                    failures.push(format!("{name}: Keel failed ({k:?}) but changed the root"));
                }
            }
            _ => failures.push(format!(
                "{name}: outcomes differ: Ignition {ig:?}, Keel {k:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
