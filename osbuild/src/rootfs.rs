//! Finishing the staged root: what maintainer scripts would have done that
//! the image needs, done declaratively, plus Keel's own files.
//!
//! Every write goes through [`crate::stage`], so a symlink a package or an
//! image tree left in the root is followed inside the root or replaced,
//! never out of it; [`reserved_paths`] are the paths an image tree may not
//! turn into symlinks at all.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use keel_core::beneath;
use keel_core::layout::{FIRSTBOOT_PATH, INIT_PATH};
use keel_core::osrelease::OsRelease;

use crate::stage;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("/{path} must be a directory, but the image has {found} there (from a package or an image tree)")]
    NotADir { path: String, found: &'static str },
}

fn err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io { what, path, source }
}

/// As [`err`], for a path inside the root (shown as the image sees it).
fn err_in(what: &'static str, path: &str) -> impl FnOnce(io::Error) -> RootfsError {
    let path = Path::new("/").join(path);
    move |source| RootfsError::Io { what, path, source }
}

/// Directories that must exist on the read-only root as mount points.
const MOUNT_POINTS: &[&str] = &["proc", "sys", "dev", "run", "tmp", "var", "etc", "mnt"];

/// Home directories must be writable, and the root is not: `/home` and
/// `/root` are links into /var, as on Fedora CoreOS. (link, target, mode)
const HOME_LINKS: &[(&str, &str, u32)] =
    &[("home", "var/home", 0o755), ("root", "var/roothome", 0o700)];

/// Creates the home directories on /var when a /var made by an older
/// release lacks them (keel-init applies tmpfiles.d at every boot).
pub const HOMES_TMPFILES: &str = "usr/lib/tmpfiles.d/keel-homes.conf";

/// Merged /usr: the top-level compatibility links.
const USR_LINKS: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

/// Keel's own nodes outside the merged-/usr links and the homes.
const OS_RELEASE: &str = "usr/lib/os-release";
const ETC_OS_RELEASE: &str = "etc/os-release";
const SBIN_INIT: &str = "usr/sbin/init";
const KEELCTL: &str = "usr/bin/keelctl";
const ACCOUNT_FILES: &[&str] = &["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"];

/// The paths osbuild writes, or needs as directories, after the image
/// trees are copied (relative to the root). An image tree that puts a
/// symlink at one of them, or at a directory above one, is refused
/// ([`crate::trees`]): osbuild would replace its link, or its own files
/// would land where the link points instead of where the image needs them.
pub fn reserved_paths() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut add = |p: &str| v.push(p.trim_start_matches('/').to_string());
    for d in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "usr/lib/modules",
    ] {
        add(d);
    }
    MOUNT_POINTS.iter().for_each(|m| add(m));
    USR_LINKS.iter().for_each(|(l, _)| add(l));
    for (link, target, _) in HOME_LINKS {
        add(link);
        add(target);
    }
    for p in [
        INIT_PATH,
        FIRSTBOOT_PATH,
        OS_RELEASE,
        ETC_OS_RELEASE,
        SBIN_INIT,
    ] {
        add(p);
    }
    add(KEELCTL);
    add(HOMES_TMPFILES);
    ACCOUNT_FILES.iter().for_each(|f| add(f));
    add(crate::cacerts::BUNDLE);
    v
}

/// Creates the merged-/usr links before any package is unpacked.
pub fn prepare(root: &Path) -> Result<(), RootfsError> {
    for dir in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"] {
        let p = root.join(dir);
        fs::create_dir_all(&p).map_err(err("creating", &p))?;
    }
    for (link, target) in USR_LINKS {
        let p = root.join(link);
        symlink(target, &p).map_err(err("creating symlink", &p))?;
    }
    Ok(())
}

pub struct Finish<'a> {
    pub os_release: &'a OsRelease,
    /// The statically linked `keel-init`.
    pub init_binary: &'a [u8],
    /// The statically linked `keel-firstboot`.
    pub firstboot_binary: &'a [u8],
}

/// `path` (a top-level name) as a real directory, created when missing.
fn real_dir(root: &Path, path: &str) -> Result<PathBuf, RootfsError> {
    let p = root.join(path);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(m) => Err(RootfsError::NotADir {
            path: path.to_string(),
            found: if m.file_type().is_symlink() {
                "a symlink"
            } else {
                "a file"
            },
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(&p).map_err(err("creating", &p))?;
            Ok(p)
        }
        Err(e) => Err(err("reading", &p)(e)),
    }
}

/// Completes the root and moves its /var content to `var_dir`, which
/// becomes the initial content of the `var` partition.
pub fn finish(root: &Path, var_dir: &Path, f: &Finish<'_>) -> Result<(), RootfsError> {
    for m in MOUNT_POINTS {
        real_dir(root, m)?;
    }
    let tmp = root.join("tmp");
    beneath::set_mode(&tmp, 0o1777).map_err(err("setting mode of", &tmp))?;
    homes(root)?;

    // os-release identifies Keel and the image version.
    write(root, OS_RELEASE, f.os_release.render().as_bytes(), 0o644)?;
    link(root, ETC_OS_RELEASE, "../usr/lib/os-release")?;

    // Keel's init, as stage 2 and as the conventional /sbin/init; keelctl
    // is the same binary under another name.
    write(root, INIT_PATH, f.init_binary, 0o755)?;
    link(root, SBIN_INIT, INIT_PATH)?;
    link(root, KEELCTL, INIT_PATH)?;
    write(root, FIRSTBOOT_PATH, f.firstboot_binary, 0o755)?;

    accounts(root)?;

    // busybox-static ships only /bin/busybox; its shell is the debug shell.
    let has_busybox = stage::resolve(root, "usr/bin/busybox")
        .map_err(err_in("reading", "usr/bin/busybox"))?
        .is_some();
    let sh_exists = beneath::resolve_parent(root, Path::new("usr/bin/sh"))
        .map_err(err_in("reading", "usr/bin/sh"))?
        .is_some_and(|(d, n)| fs::symlink_metadata(d.join(n)).is_ok());
    if has_busybox && !sh_exists {
        link(root, "usr/bin/sh", "busybox")?;
    }

    // Never bake per-machine identity into an image.
    for secret in ["etc/machine-id", "var/lib/dbus/machine-id"] {
        stage::remove_file(root, secret).map_err(err_in("removing", secret))?;
    }
    if let Some(ssh) = stage::resolve(root, "etc/ssh").map_err(err_in("reading", "etc/ssh"))? {
        remove_matching(&ssh, |n| n.starts_with("ssh_host_"))?;
    }

    // /var lives on its own partition.
    let var = real_dir(root, "var")?;
    fs::create_dir_all(var_dir).map_err(err("creating", var_dir))?;
    for entry in fs::read_dir(&var).map_err(err("reading", &var))? {
        let entry = entry.map_err(err("reading", &var))?;
        let to = var_dir.join(entry.file_name());
        fs::rename(entry.path(), &to).map_err(err("moving /var content to", &to))?;
    }
    Ok(())
}

/// Moves what packages put in /home and /root to their places on /var and
/// makes the links; writes the tmpfiles.d lines that recreate the
/// directories on an older /var.
fn homes(root: &Path) -> Result<(), RootfsError> {
    let mut tmpfiles =
        String::from("# Home directories live on /var; /home and /root link there.\n");
    let var = real_dir(root, "var")?;
    for (link, target, mode) in HOME_LINKS {
        let name = target.trim_start_matches("var/");
        let t = real_dir(&var, name).map_err(|e| match e {
            RootfsError::NotADir { found, .. } => RootfsError::NotADir {
                path: target.to_string(),
                found,
            },
            e => e,
        })?;
        beneath::set_mode(&t, *mode).map_err(err("setting mode of", &t))?;
        let l = root.join(link);
        match fs::symlink_metadata(&l) {
            Ok(m) if m.is_dir() => {
                for entry in fs::read_dir(&l).map_err(err("reading", &l))? {
                    let entry = entry.map_err(err("reading", &l))?;
                    let to = t.join(entry.file_name());
                    fs::rename(entry.path(), &to).map_err(err("moving to", &to))?;
                }
                fs::remove_dir(&l).map_err(err("removing", &l))?;
            }
            Ok(_) => fs::remove_file(&l).map_err(err("removing", &l))?,
            Err(_) => {}
        }
        symlink(target, &l).map_err(err("creating symlink", &l))?;
        tmpfiles.push_str(&format!("d /{target} {mode:04o} root root -\n"));
    }
    write(root, HOMES_TMPFILES, tmpfiles.as_bytes(), 0o644).map(drop)
}

/// /etc/passwd and /etc/group from base-passwd's master files (what its
/// postinst would install), with a locked root account.
fn accounts(root: &Path) -> Result<(), RootfsError> {
    let master = |name: &str| {
        let p = format!("usr/share/base-passwd/{name}");
        stage::read_to_string(root, &p).map_err(err_in("reading", &p))
    };
    let passwd =
        master("passwd.master")?.unwrap_or_else(|| "root:x:0:0:root:/root:/bin/sh\n".to_string());
    let group = master("group.master")?.unwrap_or_else(|| "root:x:0:\n".to_string());
    let has_bash = stage::resolve(root, "usr/bin/bash")
        .map_err(err_in("reading", "usr/bin/bash"))?
        .is_some();
    let passwd = if has_bash {
        passwd
    } else {
        passwd.replace(":/root:/bin/bash", ":/root:/bin/sh")
    };
    write(root, "etc/passwd", passwd.as_bytes(), 0o644)?;
    write(root, "etc/group", group.as_bytes(), 0o644)?;
    // An empty date of the last password change turns password aging off;
    // 0 would mean "must change the password now", which makes PAM refuse
    // even key-based SSH logins of these (locked) accounts.
    let shadow: String = passwd
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(|u| format!("{u}:*::0:99999:7:::\n"))
        .collect();
    let gshadow: String = group
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(|g| format!("{g}:*::\n"))
        .collect();
    // group.master writes `shadow:*:42:`, so match the name field only.
    let shadow_gid = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"shadow"))
        .and_then(|f| f.get(2).and_then(|g| g.parse::<u32>().ok()))
        .unwrap_or(0);
    for (name, text) in [("etc/shadow", shadow), ("etc/gshadow", gshadow)] {
        let file = write(root, name, text.as_bytes(), 0o640)?;
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::fchown(&file, Some(0), Some(shadow_gid))
                .map_err(err_in("setting owner of", name))?;
        }
    }
    Ok(())
}

/// A new file at `path` in the root (see [`stage::write_file`]).
fn write(root: &Path, path: &str, data: &[u8], mode: u32) -> Result<fs::File, RootfsError> {
    stage::write_file(root, path, data, mode).map_err(err_in("writing", path))
}

/// A symlink at `path` in the root, replacing what is there.
fn link(root: &Path, path: &str, target: &str) -> Result<(), RootfsError> {
    stage::symlink(root, path, target).map_err(err_in("creating symlink", path))
}

/// Removes the files (not directories) in the real directory `dir` whose
/// names match.
fn remove_matching(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<(), RootfsError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(err("reading", dir))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir && pred(&entry.file_name().to_string_lossy()) {
            fs::remove_file(entry.path()).map_err(err("removing", &entry.path()))?;
        }
    }
    Ok(())
}

/// Sets every timestamp under `dir` (not following symlinks) to `epoch`.
pub fn clamp_times(dir: &Path, epoch: u64) -> Result<(), RootfsError> {
    let t = filetime::FileTime::from_unix_time(epoch as i64, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(err("reading", &d))? {
            let entry = entry.map_err(err("reading", &d))?;
            let p = entry.path();
            if entry.file_type().map_err(err("reading", &p))?.is_dir() {
                stack.push(p.clone());
            }
            filetime::set_symlink_file_times(&p, t, t).map_err(err("setting times of", &p))?;
        }
    }
    filetime::set_symlink_file_times(dir, t, t).map_err(err("setting times of", dir))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finish_builds_a_keel_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        prepare(&root).unwrap();
        fs::write(root.join("usr/bin/busybox"), "bb").unwrap();
        fs::create_dir_all(root.join("var/lib/x")).unwrap();
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "secret").unwrap();
        fs::write(root.join("etc/ssh/sshd_config"), "x").unwrap();
        fs::write(root.join("etc/machine-id"), "abc").unwrap();
        fs::create_dir_all(root.join("root")).unwrap();
        fs::write(root.join("root/.profile"), "p").unwrap();
        let rel = OsRelease {
            image_id: "t".into(),
            version: "1.0".into(),
        };
        let var = tmp.path().join("var");
        finish(
            &root,
            &var,
            &Finish {
                os_release: &rel,
                init_binary: b"ELF",
                firstboot_binary: b"ELF",
            },
        )
        .unwrap();
        assert_eq!(
            OsRelease::parse(&fs::read_to_string(root.join("etc/os-release")).unwrap()),
            Some(rel)
        );
        assert_eq!(
            fs::read(root.join("usr/lib/keel/keel-init")).unwrap(),
            b"ELF"
        );
        assert_eq!(
            fs::read_link(root.join("usr/bin/sh")).unwrap(),
            PathBuf::from("busybox")
        );
        assert_eq!(
            fs::read_link(root.join("lib")).unwrap(),
            PathBuf::from("usr/lib")
        );
        assert!(!root.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(root.join("etc/ssh/sshd_config").exists());
        assert!(!root.join("etc/machine-id").exists());
        assert!(var.join("lib/x").is_dir());
        // Homes are on /var, and what a package put in /root moved along.
        assert_eq!(
            fs::read_link(root.join("home")).unwrap(),
            PathBuf::from("var/home")
        );
        assert_eq!(
            fs::read_link(root.join("root")).unwrap(),
            PathBuf::from("var/roothome")
        );
        assert_eq!(fs::read(var.join("roothome/.profile")).unwrap(), b"p");
        let mode = fs::metadata(var.join("roothome"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700);
        assert_eq!(
            fs::read_to_string(root.join(HOMES_TMPFILES)).unwrap(),
            "# Home directories live on /var; /home and /root link there.\n\
             d /var/home 0755 root root -\nd /var/roothome 0700 root root -\n"
        );
        assert_eq!(fs::read_dir(root.join("var")).unwrap().count(), 0);
        assert!(fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .starts_with("root:x:0:0:"));
        assert!(fs::read_to_string(root.join("etc/shadow"))
            .unwrap()
            .starts_with("root:*:"));
        clamp_times(&root, 1_000_000_000).unwrap();
        let m = fs::symlink_metadata(root.join("usr/lib/os-release")).unwrap();
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&m).unix_seconds(),
            1_000_000_000
        );
    }
}
