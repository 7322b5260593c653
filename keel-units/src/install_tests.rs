//! enable/disable against unit files in a temporary root.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::load::load_units;
use crate::tests::{link, machine, write, ETC, LIB};

fn loaded(root: &Path) -> Loaded {
    load_units(root, &machine())
}

fn on(
    root: &Path,
    f: fn(&Path, &Loaded, &str) -> Result<Vec<InstallChange>, InstallError>,
    name: &str,
) -> Vec<String> {
    f(root, &loaded(root), name)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Where the link at `rel` (relative to the root) points; `None` if absent.
fn points(root: &Path, rel: &str) -> Option<PathBuf> {
    fs::read_link(root.join(rel)).ok()
}

const SSH: &str = "[Unit]\nDescription=ssh\n[Service]\nExecStart=/usr/sbin/sshd -D\n\
                   [Install]\nWantedBy=multi-user.target\nRequiredBy=net.target\nAlias=sshd.service\n";

fn targets(root: &Path) {
    write(
        root,
        &format!("{LIB}/multi-user.target"),
        "[Unit]\nDescription=m\n",
    );
    write(
        root,
        &format!("{LIB}/net.target"),
        "[Unit]\nDescription=n\n",
    );
}

#[test]
fn enable_creates_links_like_systemctl_and_disable_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    targets(root);
    write(root, &format!("{LIB}/ssh.service"), SSH);
    assert_eq!(is_enabled(root, &loaded(root), "ssh.service"), Some(false));

    let changes = on(root, enable, "ssh.service");
    assert_eq!(
        changes,
        [
            "Created symlink /etc/systemd/system/multi-user.target.wants/ssh.service → /usr/lib/systemd/system/ssh.service.",
            "Created symlink /etc/systemd/system/net.target.requires/ssh.service → /usr/lib/systemd/system/ssh.service.",
            "Created symlink /etc/systemd/system/sshd.service → /usr/lib/systemd/system/ssh.service.",
        ]
    );
    let target = PathBuf::from("/usr/lib/systemd/system/ssh.service");
    for rel in [
        "multi-user.target.wants/ssh.service",
        "net.target.requires/ssh.service",
        "sshd.service",
    ] {
        assert_eq!(
            points(root, &format!("{ETC}/{rel}")).as_ref(),
            Some(&target),
            "{rel}"
        );
    }
    // The loader sees what systemd would.
    let l = loaded(root);
    assert!(l.units["multi-user.target"]
        .unit
        .wants
        .contains(&"ssh.service".to_string()));
    assert!(l.units["net.target"]
        .unit
        .requires
        .contains(&"ssh.service".to_string()));
    assert_eq!(
        l.aliases.get("sshd.service").map(String::as_str),
        Some("ssh.service")
    );
    assert_eq!(is_enabled(root, &l, "ssh.service"), Some(true));
    assert_eq!(is_enabled(root, &l, "sshd.service"), Some(true));

    // Idempotent, also through the alias.
    assert!(on(root, enable, "ssh.service").is_empty());
    assert!(on(root, enable, "sshd.service").is_empty());

    let removed = on(root, disable, "ssh.service");
    assert_eq!(
        removed,
        [
            "Removed \"/etc/systemd/system/multi-user.target.wants/ssh.service\".",
            "Removed \"/etc/systemd/system/net.target.requires/ssh.service\".",
            "Removed \"/etc/systemd/system/sshd.service\".",
        ]
    );
    assert!(points(root, &format!("{ETC}/sshd.service")).is_none());
    assert_eq!(is_enabled(root, &loaded(root), "ssh.service"), Some(false));
    assert!(on(root, disable, "ssh.service").is_empty());
}

#[test]
fn also_is_followed_both_ways_without_looping() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &format!("{LIB}/a.service"),
        "[Service]\nExecStart=/a\n[Install]\nWantedBy=x.target\nAlso=b.service\n",
    );
    write(
        root,
        &format!("{LIB}/b.service"),
        "[Service]\nExecStart=/b\n[Install]\nWantedBy=y.target\nAlso=a.service c.service\n",
    );
    // c has no [Install]: fine when reached through Also=.
    write(
        root,
        &format!("{LIB}/c.service"),
        "[Service]\nExecStart=/c\n",
    );
    // Only Also=: enables the others.
    write(
        root,
        &format!("{LIB}/helper.service"),
        "[Service]\nExecStart=/h\n[Install]\nAlso=a.service\n",
    );
    assert_eq!(on(root, enable, "helper.service").len(), 2);
    assert!(points(root, &format!("{ETC}/x.target.wants/a.service")).is_some());
    assert!(points(root, &format!("{ETC}/y.target.wants/b.service")).is_some());
    assert_eq!(
        is_enabled(root, &loaded(root), "helper.service"),
        Some(true)
    );
    assert!(on(root, enable, "a.service").is_empty());
    assert_eq!(on(root, disable, "b.service").len(), 2);
    assert!(!root.join(ETC).join("x.target.wants/a.service").exists());
}

#[test]
fn templates_enable_their_default_instance_and_instances() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &format!("{LIB}/getty@.service"),
        "[Service]\nExecStart=/sbin/agetty %I\n[Install]\nWantedBy=getty.target\n\
         RequiredBy=tty-%i.target\nDefaultInstance=tty1\n",
    );
    let template = PathBuf::from("/usr/lib/systemd/system/getty@.service");
    let changes = on(root, enable, "getty@.service");
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        points(
            root,
            &format!("{ETC}/getty.target.wants/getty@tty1.service")
        )
        .as_ref(),
        Some(&template)
    );
    assert_eq!(
        points(
            root,
            &format!("{ETC}/tty-tty1.target.requires/getty@tty1.service")
        )
        .as_ref(),
        Some(&template)
    );
    on(root, enable, "getty@tty2.service");
    on(root, enable, "getty@ttyS0.service");
    assert_eq!(
        points(
            root,
            &format!("{ETC}/getty.target.wants/getty@tty2.service")
        )
        .as_ref(),
        Some(&template)
    );
    let l = loaded(root);
    assert!(l.units.contains_key("getty@tty2.service"));
    assert_eq!(is_enabled(root, &l, "getty@tty2.service"), Some(true));
    assert_eq!(is_enabled(root, &l, "getty@tty9.service"), Some(false));

    // Disabling an instance leaves the others alone.
    let removed = on(root, disable, "getty@tty2.service");
    assert_eq!(
        removed,
        [
            "Removed \"/etc/systemd/system/getty.target.wants/getty@tty2.service\".",
            "Removed \"/etc/systemd/system/tty-tty2.target.requires/getty@tty2.service\".",
        ]
    );
    assert!(points(
        root,
        &format!("{ETC}/getty.target.wants/getty@tty1.service")
    )
    .is_some());
    // Disabling the template removes every instance.
    let removed = on(root, disable, "getty@.service");
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert!(fs::read_dir(root.join(ETC).join("getty.target.wants"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn a_template_without_default_instance_needs_an_instance() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &format!("{LIB}/worker@.service"),
        "[Service]\nExecStart=/w %i\n[Install]\nWantedBy=multi-user.target\n",
    );
    let err = enable(root, &loaded(root), "worker@.service").unwrap_err();
    assert!(
        matches!(err, InstallError::TemplateWithoutInstance { .. }),
        "{err}"
    );
    assert_eq!(is_enabled(root, &loaded(root), "worker@.service"), None);
    assert_eq!(on(root, enable, "worker@a.service").len(), 1);
}

#[test]
fn units_without_install_rules_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &format!("{LIB}/static.service"),
        "[Service]\nExecStart=/s\n",
    );
    write(
        root,
        &format!("{LIB}/empty.service"),
        "[Service]\nExecStart=/s\n[Install]\nWantedBy=\n",
    );
    for name in ["static.service", "empty.service"] {
        let err = enable(root, &loaded(root), name).unwrap_err();
        assert!(
            matches!(err, InstallError::NoInstallSection { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("have no installation config"),
            "{err}"
        );
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(is_enabled(root, &loaded(root), name), None);
    }
    assert!(!root.join(ETC).exists());
}

#[test]
fn masked_missing_and_invalid_units() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, &format!("{LIB}/m.service"), SSH);
    link(root, &format!("{ETC}/m.service"), "/dev/null");
    let err = enable(root, &loaded(root), "m.service").unwrap_err();
    assert!(matches!(err, InstallError::Masked { .. }), "{err}");
    // A masked unit can still be disabled: its links go by name.
    link(
        root,
        &format!("{ETC}/multi-user.target.wants/m.service"),
        "/usr/lib/systemd/system/m.service",
    );
    assert_eq!(on(root, disable, "m.service").len(), 1);
    assert_eq!(
        fs::read_link(root.join(ETC).join("m.service")).unwrap(),
        Path::new("/dev/null")
    );

    let err = enable(root, &loaded(root), "nope.service").unwrap_err();
    assert!(matches!(err, InstallError::NotFound { .. }), "{err}");
    assert_eq!(err.to_string(), "unit file nope.service does not exist");
    let err = enable(root, &loaded(root), "no/pe.service").unwrap_err();
    assert!(matches!(err, InstallError::InvalidName { .. }), "{err}");
}

#[test]
fn disable_removes_stray_links_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, &format!("{LIB}/ssh.service"), SSH);
    write(
        root,
        &format!("{LIB}/other.service"),
        SSH.replace("sshd", "otherd").as_str(),
    );
    let lib_ssh = "/usr/lib/systemd/system/ssh.service";
    // Made by hand or by an old package: other directories, relative
    // targets, an old unit directory, another name pointing to the file.
    link(
        root,
        &format!("{ETC}/custom.target.wants/ssh.service"),
        lib_ssh,
    );
    link(
        root,
        &format!("{ETC}/custom.target.requires/ssh.service"),
        "../../../../lib/systemd/system/ssh.service",
    );
    link(
        root,
        &format!("{ETC}/old.target.wants/ssh.service"),
        "/lib/systemd/system/ssh.service",
    );
    link(
        root,
        &format!("{ETC}/x.target.wants/secure-shell.service"),
        lib_ssh,
    );
    link(root, &format!("{ETC}/secure-shell.service"), lib_ssh);
    // Not ours: another unit's links, and a linked unit file of our name.
    link(
        root,
        &format!("{ETC}/multi-user.target.wants/other.service"),
        "/usr/lib/systemd/system/other.service",
    );
    link(
        root,
        &format!("{ETC}/otherd.service"),
        "/usr/lib/systemd/system/other.service",
    );
    let removed = on(root, disable, "ssh.service");
    assert_eq!(
        removed,
        [
            "Removed \"/etc/systemd/system/custom.target.requires/ssh.service\".",
            "Removed \"/etc/systemd/system/custom.target.wants/ssh.service\".",
            "Removed \"/etc/systemd/system/old.target.wants/ssh.service\".",
            "Removed \"/etc/systemd/system/secure-shell.service\".",
            "Removed \"/etc/systemd/system/x.target.wants/secure-shell.service\".",
        ]
    );
    assert!(points(
        root,
        &format!("{ETC}/multi-user.target.wants/other.service")
    )
    .is_some());
    assert!(points(root, &format!("{ETC}/otherd.service")).is_some());
}

#[test]
fn existing_paths_conflict_or_are_updated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, &format!("{LIB}/ssh.service"), SSH);
    // An old link to the same unit file name elsewhere is replaced.
    link(
        root,
        &format!("{ETC}/multi-user.target.wants/ssh.service"),
        "/lib/systemd/system/ssh.service",
    );
    // A real file where the alias goes is not touched.
    write(
        root,
        &format!("{ETC}/sshd.service"),
        "[Service]\nExecStart=/x\n",
    );
    let err = enable(root, &loaded(root), "ssh.service").unwrap_err();
    match &err {
        InstallError::Conflict { link, target } => {
            assert_eq!(link, Path::new("/etc/systemd/system/sshd.service"));
            assert_eq!(target, Path::new("/usr/lib/systemd/system/ssh.service"));
        }
        other => panic!("{other}"),
    }
    // Nothing changed.
    assert_eq!(
        points(root, &format!("{ETC}/multi-user.target.wants/ssh.service")).unwrap(),
        Path::new("/lib/systemd/system/ssh.service")
    );
    assert!(!root.join(ETC).join("net.target.requires").exists());
    // Without the file in the way, the old link is replaced.
    fs::remove_file(root.join(ETC).join("sshd.service")).unwrap();
    let changes = on(root, enable, "ssh.service");
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert_eq!(
        changes[0],
        "Removed \"/etc/systemd/system/multi-user.target.wants/ssh.service\"."
    );
    assert_eq!(
        points(root, &format!("{ETC}/multi-user.target.wants/ssh.service")).unwrap(),
        Path::new("/usr/lib/systemd/system/ssh.service")
    );
    // A link to a different unit file is a conflict too.
    fs::remove_file(root.join(ETC).join("sshd.service")).unwrap();
    link(
        root,
        &format!("{ETC}/sshd.service"),
        "/usr/lib/systemd/system/dropbear.service",
    );
    let err = enable(root, &loaded(root), "ssh.service").unwrap_err();
    assert!(matches!(err, InstallError::Conflict { .. }), "{err}");
}

#[test]
fn units_in_etc_link_to_etc_and_aliases_must_keep_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &format!("{ETC}/mine.service"),
        "[Service]\nExecStart=/m\n[Install]\nWantedBy=multi-user.target\n",
    );
    on(root, enable, "mine.service");
    assert_eq!(
        points(root, &format!("{ETC}/multi-user.target.wants/mine.service")).unwrap(),
        Path::new("/etc/systemd/system/mine.service")
    );
    write(
        root,
        &format!("{LIB}/bad.service"),
        "[Service]\nExecStart=/b\n[Install]\nAlias=bad.target\n",
    );
    let err = enable(root, &loaded(root), "bad.service").unwrap_err();
    assert!(matches!(err, InstallError::BadAlias { .. }), "{err}");
    assert!(
        err.to_string().contains("bad.service: Alias=bad.target"),
        "{err}"
    );
}

/// Every symlink below `root`/etc, as (path, target).
fn all_links(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if let Ok(t) = fs::read_link(&p) {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, t.display().to_string()));
            } else if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &root.join("etc"), &mut out);
    out.sort();
    out
}

/// Cross-check with `systemctl --root` (which works without a running
/// systemd): the same steps must leave the same links.
#[test]
fn links_match_systemctl() {
    let units: &[(&str, &str)] = &[
        ("ssh.service", &format!("{SSH}Also=getty@.service\n")),
        (
            "getty@.service",
            "[Service]\nExecStart=/sbin/agetty %I\n[Install]\nWantedBy=getty.target\n\
             RequiredBy=tty-%i.target\nDefaultInstance=tty1\n",
        ),
        (
            "helper.service",
            "[Service]\nExecStart=/h\n[Install]\nAlso=worker.service\n",
        ),
        (
            "worker.service",
            "[Service]\nExecStart=/w\n[Install]\nWantedBy=multi-user.target\nAlias=w.service\n",
        ),
    ];
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    for (name, text) in units {
        write(ours.path(), &format!("{LIB}/{name}"), text);
        write(theirs.path(), &format!("{LIB}/{name}"), text);
    }
    let steps: &[(&str, &str)] = &[
        ("enable", "ssh.service"),
        ("enable", "getty@tty2.service"),
        ("enable", "helper.service"),
        ("enable", "ssh.service"),
        ("disable", "getty@tty2.service"),
        ("disable", "ssh.service"),
        ("disable", "w.service"),
    ];
    for (verb, name) in steps {
        let f = if *verb == "enable" { enable } else { disable };
        f(ours.path(), &loaded(ours.path()), name).unwrap();
        let root_arg = format!("--root={}", theirs.path().display());
        let out = std::process::Command::new("systemctl")
            .args([root_arg.as_str(), "--no-reload", verb, name])
            .output()
            .unwrap_or_else(|e| panic!("systemctl: {e} (apt-get install systemd)"));
        assert!(
            out.status.success(),
            "systemctl {verb} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            all_links(ours.path()),
            all_links(theirs.path()),
            "after {verb} {name}"
        );
    }
}

#[test]
fn links_are_made_and_removed_inside_the_root_whatever_links_the_root_holds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    targets(&root);
    write(&root, &format!("{LIB}/ssh.service"), SSH);
    fs::create_dir_all(root.join(ETC)).unwrap();
    // The wants directory is an absolute link to the host's `outside`, the
    // requires directory a relative one that climbs out of the root.
    std::os::unix::fs::symlink(&outside, root.join(ETC).join("multi-user.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../outside",
        root.join(ETC).join("net.target.requires"),
    )
    .unwrap();
    let mut made = Vec::new();
    let changes = enable_recording(&root, &loaded(&root), "ssh.service", &mut |d| {
        made.push(d.strip_prefix(&root).unwrap().to_path_buf());
        Ok(())
    })
    .unwrap();
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    // Both resolve inside the root, as they would after chroot.
    let abs_out = outside.strip_prefix("/").unwrap();
    let mut want = Vec::new();
    let mut p = PathBuf::new();
    for c in abs_out.components() {
        p.push(c);
        want.push(p.clone());
    }
    want.push(PathBuf::from("outside"));
    assert_eq!(made, want);
    assert_eq!(
        changes[0].to_string(),
        format!(
            "Created symlink /{}/ssh.service → /usr/lib/systemd/system/ssh.service.",
            abs_out.display()
        )
    );
    assert_eq!(
        changes[1].to_string(),
        "Created symlink /outside/ssh.service → /usr/lib/systemd/system/ssh.service."
    );
    assert_eq!(is_enabled(&root, &loaded(&root), "ssh.service"), Some(true));
    // Disabling finds them where they are.
    let removed = on(&root, disable, "ssh.service");
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert!(!root.join("outside/ssh.service").exists());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}
