//! `keel-firstboot apply --root DIR` never writes outside DIR, whatever
//! symlinks DIR already holds, and a failed apply leaves DIR exactly as it
//! was.
//!
//! Each case plants one symlink in a fresh root — an absolute link to a
//! sibling directory `outside` on the host, or a relative one that climbs
//! out with `..` — where apply will work (`/etc`, `/etc/passwd`, homes,
//! `.ssh`, the skeleton, the unit directory, a `*.wants` directory, a
//! drop-in directory, a unit's own file, `/var/lib`), then runs the real
//! binary with a config that touches every section (files, directories,
//! links, groups, users with homes and SSH keys, units with contents,
//! drop-ins, a mask and enablement). `outside` holds the same kinds of
//! files an escape would change; it is compared byte for byte, mode for
//! mode, before and after. Resolution inside the root (as after chroot)
//! is what Keel promises, so an apply may succeed, writing inside DIR, or
//! fail with a message; it must never leave DIR.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every node below `dir`: path, kind, mode, owner, and bytes or target.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else {
                format!("{:?}", String::from_utf8_lossy(&fs::read(&p).unwrap()))
            };
            out.push(format!(
                "{} {:o} {}:{} {what}",
                p.strip_prefix(dir).unwrap().display(),
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ));
        }
    }
    out.sort();
    out
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A small image-like root.
fn base_root(root: &Path) {
    write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    write(root, "etc/group", "root:x:0:\nwheel:x:10:\n", 0o644);
    write(root, "etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640);
    write(root, "etc/gshadow", "root:*::\nwheel:*::\n", 0o640);
    write(root, "etc/skel/.profile", "# profile\n", 0o644);
    write(root, "etc/motd", "image motd\n", 0o644);
    write(
        root,
        "usr/lib/systemd/system/multi-user.target",
        "[Unit]\nDescription=Multi-User\n",
        0o644,
    );
    write(
        root,
        "usr/lib/systemd/system/base.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    );
    fs::create_dir_all(root.join("home")).unwrap();
    fs::create_dir_all(root.join("var/lib")).unwrap();
    fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
}

/// What an escape would find and change outside.
fn base_outside(outside: &Path) {
    write(
        outside,
        "passwd",
        "outsider:x:5000:5000::/x:/bin/sh\n",
        0o600,
    );
    write(outside, "group", "outsider:x:5000:\n", 0o600);
    write(outside, "shadow", "outsider:!:::::::\n", 0o600);
    write(outside, "gshadow", "outsider:!::\n", 0o600);
    write(outside, "motd", "host motd\n", 0o600);
    write(outside, "secret", "host secret\n", 0o600);
    write(
        outside,
        "victim.service",
        "[Service]\nExecStart=/x\n",
        0o600,
    );
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::set_permissions(outside.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(outside, fs::Permissions::from_mode(0o700)).unwrap();
}

const CONFIG: &str = r#"{
  "ignition": {"version": "3.4.0"},
  "storage": {
    "files": [
      {"path": "/etc/motd", "overwrite": true, "mode": 420, "contents": {"source": "data:,node%20motd%0A"}},
      {"path": "/var/lib/app/config", "mode": 384, "contents": {"source": "data:,x%3D1%0A"}},
      {"path": "/etc/keel/note", "append": [{"source": "data:,appended%0A"}]}
    ],
    "directories": [{"path": "/var/lib/app/data", "mode": 488}],
    "links": [{"path": "/etc/keel/link", "target": "/etc/motd"}]
  },
  "passwd": {
    "groups": [{"name": "ops", "gid": 2000}],
    "users": [{"name": "core", "uid": 1000, "groups": ["wheel", "ops"],
               "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeel core@test"]}]
  },
  "systemd": {
    "units": [
      {"name": "app.service", "enabled": true,
       "contents": "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
       "dropins": [{"name": "10-env.conf", "contents": "[Service]\nEnvironment=A=1\n"}]},
      {"name": "base.service", "enabled": true},
      {"name": "victim.service", "mask": true}
    ]
  }
}"#;

fn apply(root: &Path, config: &str) -> (bool, String) {
    let dir = root.parent().unwrap();
    let file = dir.join("config.ign");
    fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel-firstboot"))
        .args(["apply", "--root"])
        .arg(root)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

struct Case {
    name: &'static str,
    /// Plants the link: (root, outside).
    plant: fn(&Path, &Path),
}

/// A relative link for the place `at` (below the root) that climbs out of
/// the root into `outside` (a sibling of the root).
fn climbing(at: &str) -> PathBuf {
    let depth = Path::new(at).components().count();
    let mut p = PathBuf::new();
    for _ in 0..depth {
        p.push("..");
    }
    p.join("outside")
}

fn replace_with_link(path: &Path, target: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => fs::create_dir_all(path.parent().unwrap()).unwrap(),
    }
    symlink(target, path).unwrap();
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "/etc -> outside (absolute)",
            plant: |r, o| replace_with_link(&r.join("etc"), o),
        },
        Case {
            name: "/etc -> ../outside (relative)",
            plant: |r, _| replace_with_link(&r.join("etc"), &climbing("etc")),
        },
        Case {
            name: "/etc/passwd -> outside/passwd",
            plant: |r, o| replace_with_link(&r.join("etc/passwd"), &o.join("passwd")),
        },
        Case {
            name: "/etc/shadow -> ../../outside/shadow",
            plant: |r, _| {
                replace_with_link(
                    &r.join("etc/shadow"),
                    &climbing("etc/shadow").join("shadow"),
                )
            },
        },
        Case {
            name: "/etc/motd -> outside/motd",
            plant: |r, o| replace_with_link(&r.join("etc/motd"), &o.join("motd")),
        },
        Case {
            name: "/home -> outside",
            plant: |r, o| replace_with_link(&r.join("home"), o),
        },
        Case {
            name: "/home/core -> outside",
            plant: |r, o| replace_with_link(&r.join("home/core"), o),
        },
        Case {
            name: "/home/core/.ssh -> outside",
            plant: |r, o| {
                fs::create_dir_all(r.join("home/core")).unwrap();
                replace_with_link(&r.join("home/core/.ssh"), o)
            },
        },
        Case {
            name: "/home/core/.ssh/authorized_keys.d -> ../../../../outside",
            plant: |r, _| {
                let at = "home/core/.ssh/authorized_keys.d";
                fs::create_dir_all(r.join("home/core/.ssh")).unwrap();
                replace_with_link(&r.join(at), &climbing(at))
            },
        },
        Case {
            name: "/etc/skel -> outside",
            plant: |r, o| replace_with_link(&r.join("etc/skel"), o),
        },
        Case {
            name: "/etc/skel/.profile -> outside/secret",
            plant: |r, o| replace_with_link(&r.join("etc/skel/.profile"), &o.join("secret")),
        },
        Case {
            name: "/etc/systemd/system -> outside",
            plant: |r, o| replace_with_link(&r.join("etc/systemd/system"), o),
        },
        Case {
            name: "multi-user.target.wants -> outside",
            plant: |r, o| {
                replace_with_link(&r.join("etc/systemd/system/multi-user.target.wants"), o)
            },
        },
        Case {
            name: "multi-user.target.wants -> ../../../../outside/sub",
            plant: |r, _| {
                let at = "etc/systemd/system/multi-user.target.wants";
                replace_with_link(&r.join(at), &climbing(at).join("sub"))
            },
        },
        Case {
            name: "app.service.d -> outside",
            plant: |r, o| replace_with_link(&r.join("etc/systemd/system/app.service.d"), o),
        },
        Case {
            name: "app.service -> outside/victim.service",
            plant: |r, o| {
                replace_with_link(
                    &r.join("etc/systemd/system/app.service"),
                    &o.join("victim.service"),
                )
            },
        },
        Case {
            name: "victim.service (masked) -> outside/victim.service",
            plant: |r, o| {
                replace_with_link(
                    &r.join("etc/systemd/system/victim.service"),
                    &o.join("victim.service"),
                )
            },
        },
        Case {
            name: "/var/lib -> outside",
            plant: |r, o| replace_with_link(&r.join("var/lib"), o),
        },
        Case {
            name: "/etc/keel -> ../outside/sub",
            plant: |r, _| replace_with_link(&r.join("etc/keel"), &climbing("etc/keel").join("sub")),
        },
    ]
}

#[test]
fn apply_never_writes_outside_the_root_through_a_planted_symlink() {
    let mut report = Vec::new();
    for case in cases() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        base_root(&root);
        base_outside(&outside);
        (case.plant)(&root, &outside);
        let before_out = snapshot(&outside);
        let before_root = snapshot(&root);
        let (ok, text) = apply(&root, CONFIG);
        assert_eq!(
            snapshot(&outside),
            before_out,
            "{}: the directory outside the root changed; apply said: {text}",
            case.name
        );
        // Nothing beside the root and outside appeared either.
        let mut siblings: Vec<String> = fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        siblings.sort();
        assert_eq!(siblings, ["config.ign", "outside", "root"], "{}", case.name);
        if ok {
            // What was written is inside: the keys and the unit exist
            // somewhere below the root.
            let all = snapshot(&root).join("\n");
            assert!(all.contains("ssh-ed25519"), "{}: {all}", case.name);
            assert!(all.contains("Environment=A=1"), "{}: {all}", case.name);
        } else {
            assert!(
                text.contains("nothing was changed"),
                "{}: a failed apply must say the root is as it was: {text}",
                case.name
            );
            assert_eq!(snapshot(&root), before_root, "{}: {text}", case.name);
        }
        report.push(format!(
            "{}: {}",
            case.name,
            if ok { "applied inside" } else { "refused" }
        ));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn the_skeleton_is_read_inside_the_root_only() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    base_root(&root);
    base_outside(&outside);
    replace_with_link(&root.join("etc/skel"), &outside);
    let (ok, text) = apply(&root, CONFIG);
    assert!(ok, "{text}");
    // The host directory's files were not copied into the new home.
    let home = snapshot(&root.join("home/core")).join("\n");
    assert!(!home.contains("host secret"), "{home}");
    assert!(!home.contains("outsider"), "{home}");
}

#[test]
fn a_failed_apply_removes_the_directories_it_made_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    base_root(&root);
    let before = snapshot(&root);
    // A new `*.wants` directory, a new unit directory, new homes; then a
    // unit that cannot be enabled fails the apply at its very end.
    let config = r#"{
      "ignition": {"version": "3.4.0"},
      "storage": {"files": [{"path": "/var/lib/new/deep/file", "contents": {"source": "data:,x"}}]},
      "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA core"]}]},
      "systemd": {"units": [
        {"name": "app.service", "enabled": true,
         "contents": "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=custom.target\nRequiredBy=other.target\n"},
        {"name": "missing.service", "enabled": true}
      ]}
    }"#;
    let (ok, text) = apply(&root, config);
    assert!(!ok, "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(snapshot(&root), before, "{text}");
}

#[test]
fn unit_and_dropin_names_that_are_paths_are_refused_at_their_json_path() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    base_root(&root);
    base_outside(&outside);
    let before_out = snapshot(&outside);
    let before_root = snapshot(&root);
    for (name, dropin, at) in [
        ("../../x.service", "10.conf", "$.systemd.units.0.name"),
        ("a/b.service", "10.conf", "$.systemd.units.0.name"),
        (
            "../../../../outside/x.service",
            "10.conf",
            "$.systemd.units.0.name",
        ),
        (
            "ok.service",
            "../../x.conf",
            "$.systemd.units.0.dropins.0.name",
        ),
        ("ok.service", "a/b.conf", "$.systemd.units.0.dropins.0.name"),
    ] {
        let config = format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"systemd":{{"units":[
              {{"name":"{name}","mask":true,"contents":"[Unit]\n",
                "dropins":[{{"name":"{dropin}","contents":"[Unit]\n"}}]}}]}}}}"#
        );
        let (ok, text) = apply(&root, &config);
        assert!(!ok, "{name} {dropin}: {text}");
        assert!(
            text.contains(&format!("error at {at}: invalid ")),
            "{name} {dropin}: {text}"
        );
        // validate says the same.
        let file = t.path().join("v.ign");
        fs::write(&file, &config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_keel-firstboot"))
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap();
        let v = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{v}");
        assert!(v.contains(&format!("error at {at}: invalid ")), "{v}");
    }
    fs::remove_file(t.path().join("v.ign")).unwrap();
    assert_eq!(snapshot(&outside), before_out);
    assert_eq!(snapshot(&root), before_root);
}
