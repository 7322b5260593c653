//! Unpacking packages into the staging tree: merged /usr, no maintainer
//! scripts, no documentation, manuals or translations.
//!
//! Every entry's directory is resolved inside the tree as the image will
//! see it ([`keel_core::beneath`]): a symlink an earlier entry (or
//! package) made is followed relative to the tree, and the entry's own
//! name is replaced, never written through. So an archive that holds a
//! link to `/etc` or `../../..` and then a file below that link puts the
//! file in the image's /etc, never on the build host.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use keel_core::beneath;

use crate::deb::{self, DebError};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error("unpacking {deb}: {what} {path}")]
    Io {
        deb: PathBuf,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unpacking {deb}: {path}: {reason}")]
    Entry {
        deb: PathBuf,
        path: PathBuf,
        reason: String,
    },
}

/// Top-level directories that merged /usr folds into `usr/`.
const MERGED: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Directories left out of the image entirely.
const DROPPED: &[&str] = &[
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "usr/share/doc-base",
    "usr/share/bug",
    "usr/share/gtk-doc",
];

#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub files: u64,
    pub bytes: u64,
    pub dropped: u64,
}

/// Maps a path inside a package to its place in the image, or `None` when
/// the image leaves it out. Only `usr/share/doc/<pkg>/copyright` survives
/// from the documentation: licences travel with the binaries.
pub fn image_path(pkg_path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&str> = Vec::new();
    for c in pkg_path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    if parts.is_empty() {
        return None;
    }
    if MERGED.contains(&parts[0]) {
        parts.insert(0, "usr");
    }
    let joined = parts.join("/");
    if DROPPED
        .iter()
        .any(|d| joined == *d || joined.starts_with(&format!("{d}/")))
    {
        return None;
    }
    if joined.starts_with("usr/share/doc/") {
        // usr/share/doc/<pkg> and usr/share/doc/<pkg>/copyright only.
        let keep = parts.len() == 4 || (parts.len() == 5 && parts[4] == "copyright");
        if !keep {
            return None;
        }
    }
    Some(PathBuf::from(joined))
}

/// Lexically resolves `target` of a symlink found at `link` (both relative
/// to the image root) to an absolute path.
fn absolute_target(link: &Path, target: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    let base = if target.is_absolute() {
        PathBuf::new()
    } else {
        link.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    for c in base.components().chain(target.components()) {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Unpacks the `data.tar` of `deb` into `root`. With `chown`, file owners
/// are set from the archive (needs root); without, the caller must map
/// ownership another way.
pub fn unpack(deb: &Path, root: &Path, chown: bool) -> Result<UnpackStats, UnpackError> {
    deb::with_data_tar(deb, |reader| Ok(reader_to_root(reader, deb, root, chown)))?
}

fn reader_to_root(
    reader: &mut dyn Read,
    deb: &Path,
    root: &Path,
    chown: bool,
) -> Result<UnpackStats, UnpackError> {
    let mut stats = UnpackStats::default();
    let mut archive = tar::Archive::new(reader);
    let io_err = |what: &'static str, path: &Path| {
        let deb = deb.to_path_buf();
        let path = path.to_path_buf();
        move |source| UnpackError::Io {
            deb,
            what,
            path,
            source,
        }
    };
    let entries = archive
        .entries()
        .map_err(io_err("reading data.tar of", deb))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading data.tar of", deb))?;
        let raw_path = entry
            .path()
            .map_err(io_err("reading entry in", deb))?
            .into_owned();
        let Some(rel) = image_path(&raw_path) else {
            if !raw_path.as_os_str().is_empty() && raw_path != Path::new("./") {
                stats.dropped += 1;
            }
            continue;
        };
        let relocated = rel.as_path() != strip_dot(&raw_path);
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(io_err("reading mode of", &raw_path))?
            & 0o7777;
        let uid = header
            .uid()
            .map_err(io_err("reading owner of", &raw_path))?;
        let gid = header
            .gid()
            .map_err(io_err("reading group of", &raw_path))?;
        let kind = header.entry_type();
        let in_root = Path::new("/").join(&rel);
        let (dir, name) = beneath::make_parents(root, &in_root, &mut |_| Ok(()))
            .map_err(io_err("creating the directories of", &in_root))?;
        let dest = dir.join(name);
        let entry_err = |reason: String| UnpackError::Entry {
            deb: deb.to_path_buf(),
            path: raw_path.clone(),
            reason,
        };
        let owner = |f: &fs::File| {
            if chown {
                std::os::unix::fs::fchown(f, Some(uid as u32), Some(gid as u32))
                    .map_err(io_err("setting owner of", &in_root))?;
            }
            Ok::<_, UnpackError>(())
        };
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    // A package's directory where merged /usr or another
                    // package already put a symlink (e.g. /lib64) keeps the
                    // symlink; what is below it is resolved through it.
                    Ok(m) if m.file_type().is_symlink() => continue,
                    Ok(_) => {
                        return Err(entry_err("a file is in the way of this directory".into()))
                    }
                    Err(_) => fs::create_dir(&dest).map_err(io_err("creating", &in_root))?,
                }
                // Opened without following: `dest` is the directory itself.
                let d = open_dir_nofollow(&dest).map_err(io_err("opening", &in_root))?;
                owner(&d)?;
                // After chown, which clears set-id bits.
                d.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .map_err(io_err("setting mode of", &in_root))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    return Err(entry_err("a directory is in the way of this file".into()));
                }
                remove_non_dir(&dest).map_err(io_err("replacing", &in_root))?;
                let mut out =
                    beneath::create_new(&dest, 0o600).map_err(io_err("creating", &in_root))?;
                stats.bytes +=
                    io::copy(&mut entry, &mut out).map_err(io_err("writing", &in_root))?;
                stats.files += 1;
                owner(&out)?;
                out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .map_err(io_err("setting mode of", &in_root))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_err("reading link of", &raw_path))?
                    .ok_or_else(|| entry_err("symlink without a target".into()))?
                    .into_owned();
                let target = if relocated && target.is_relative() {
                    absolute_target(strip_dot(&raw_path), &target)
                } else {
                    target
                };
                if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    return Err(entry_err(
                        "a directory is in the way of this symlink".into(),
                    ));
                }
                remove_non_dir(&dest).map_err(io_err("replacing", &in_root))?;
                symlink(&target, &dest).map_err(io_err("creating symlink", &in_root))?;
                if chown {
                    std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32))
                        .map_err(io_err("setting owner of", &in_root))?;
                }
                stats.files += 1;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io_err("reading link of", &raw_path))?
                    .ok_or_else(|| entry_err("hard link without a target".into()))?;
                let target = image_path(&target)
                    .ok_or_else(|| entry_err("hard link to a path the image leaves out".into()))?;
                let target_in_root = Path::new("/").join(&target);
                // The node itself (a hard link to a symlink links the symlink).
                let (tdir, tname) = beneath::resolve_parent(root, &target_in_root)
                    .map_err(io_err("reading", &target_in_root))?
                    .ok_or_else(|| {
                        entry_err(format!(
                            "hard link to {} before it exists",
                            target_in_root.display()
                        ))
                    })?;
                if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    return Err(entry_err(
                        "a directory is in the way of this hard link".into(),
                    ));
                }
                remove_non_dir(&dest).map_err(io_err("replacing", &in_root))?;
                fs::hard_link(tdir.join(tname), &dest).map_err(io_err("linking", &in_root))?;
                stats.files += 1;
            }
            other => {
                return Err(entry_err(format!(
                    "unsupported entry type {other:?} (packages may not ship device nodes or fifos)"
                )))
            }
        }
    }
    Ok(stats)
}

/// Opens the directory `path` itself, failing on a symlink.
fn open_dir_nofollow(path: &Path) -> io::Result<fs::File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(fs::File::from(rustix::fs::open(
        path,
        flags,
        Mode::empty(),
    )?))
}

fn strip_dot(p: &Path) -> &Path {
    let p = p.strip_prefix(".").unwrap_or(p);
    p.strip_prefix("/").unwrap_or(p)
}

fn remove_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => fs::remove_file(path),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn merged_usr_and_filters() {
        let p = |s: &str| image_path(Path::new(s));
        assert_eq!(p("./bin/sh"), Some("usr/bin/sh".into()));
        assert_eq!(
            p("./lib/x86_64-linux-gnu/libc.so.6"),
            Some("usr/lib/x86_64-linux-gnu/libc.so.6".into())
        );
        assert_eq!(p("./usr/sbin/x"), Some("usr/sbin/x".into()));
        assert_eq!(p("./etc/passwd"), Some("etc/passwd".into()));
        assert_eq!(p("./usr/share/man/man1/ls.1.gz"), None);
        assert_eq!(p("./usr/share/locale"), None);
        assert_eq!(p("./usr/share/doc/busybox/changelog.gz"), None);
        assert_eq!(
            p("./usr/share/doc/busybox/copyright"),
            Some("usr/share/doc/busybox/copyright".into())
        );
        assert_eq!(
            p("./usr/share/doc/busybox"),
            Some("usr/share/doc/busybox".into())
        );
        assert_eq!(p("./"), None);
        assert_eq!(p("../etc"), None);
    }

    #[test]
    fn relocated_relative_symlinks_keep_their_target() {
        assert_eq!(
            absolute_target(Path::new("lib/x/y"), Path::new("../z")),
            PathBuf::from("/lib/z")
        );
        assert_eq!(
            absolute_target(Path::new("bin/a"), Path::new("/usr/bin/b")),
            PathBuf::from("/usr/bin/b")
        );
    }

    #[test]
    fn unpacks_a_real_deb_built_by_dpkg_deb() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = tmp.path().join("pkg");
        fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
        fs::write(
            pkg.join("DEBIAN/control"),
            "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: x <x@example.invalid>\nDescription: t\n",
        )
        .unwrap();
        fs::create_dir_all(pkg.join("bin")).unwrap();
        fs::write(pkg.join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(pkg.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink("tool", pkg.join("bin/alias")).unwrap();
        fs::create_dir_all(pkg.join("lib")).unwrap();
        symlink("../etc/conf", pkg.join("lib/conf-link")).unwrap();
        fs::create_dir_all(pkg.join("usr/share/man/man1")).unwrap();
        fs::write(pkg.join("usr/share/man/man1/tool.1"), "x").unwrap();
        let deb = tmp.path().join("t.deb");
        let st = std::process::Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&pkg)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        let stats = unpack(&deb, &root, rustix::process::geteuid().is_root()).unwrap();
        assert_eq!(stats.dropped, 3, "man dirs and page");
        let m = fs::metadata(root.join("usr/bin/tool")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(
            fs::read_link(root.join("usr/bin/alias")).unwrap(),
            PathBuf::from("/bin/tool")
        );
        assert_eq!(
            fs::read_link(root.join("usr/lib/conf-link")).unwrap(),
            PathBuf::from("/etc/conf")
        );
        assert!(!root.join("usr/share/man").exists());
        assert!(!root.join("bin").exists());
    }

    /// An archive with links to a sibling directory of the root (absolute,
    /// relative, and one the merged-/usr mapping moves), then entries
    /// below and at those links.
    #[test]
    fn entries_through_planted_links_stay_in_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), "keep").unwrap();
        fs::set_permissions(outside.join("victim"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o750)).unwrap();

        let mut b = tar::Builder::new(Vec::new());
        let link = |b: &mut tar::Builder<Vec<u8>>, path: &str, target: &Path| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            b.append_link(&mut h, path, target).unwrap();
        };
        link(&mut b, "./usr/lib/abs", &outside);
        link(&mut b, "./etc", Path::new("../../../../../outside"));
        link(
            &mut b,
            "./lib/rel",
            &Path::new("../../..").join(outside.strip_prefix("/").unwrap()),
        );
        link(&mut b, "./usr/share/victim", &outside.join("victim"));
        let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, mode| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(if kind == tar::EntryType::Regular {
                3
            } else {
                0
            });
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            let data: &[u8] = if kind == tar::EntryType::Regular {
                b"bad"
            } else {
                b""
            };
            b.append_data(&mut h, path, data).unwrap();
        };
        file(&mut b, "./usr/lib/abs/evil", tar::EntryType::Regular, 0o644);
        file(&mut b, "./usr/lib/abs", tar::EntryType::Directory, 0o777);
        file(&mut b, "./etc/passwd", tar::EntryType::Regular, 0o644);
        file(&mut b, "./lib/rel/victim", tar::EntryType::Regular, 0o777);
        file(&mut b, "./usr/share/victim", tar::EntryType::Regular, 0o777);
        let data = b.into_inner().unwrap();

        let deb = Path::new("test.deb");
        reader_to_root(&mut data.as_slice(), deb, &root, false).unwrap();

        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&outside.join("victim")), 0o600);
        assert_eq!(mode(&outside), 0o750);
        // Everything went where the image's own view of the links says.
        let mirrored = root.join(outside.strip_prefix("/").unwrap());
        assert_eq!(fs::read(mirrored.join("evil")).unwrap(), b"bad");
        assert_eq!(fs::read(root.join("outside/passwd")).unwrap(), b"bad");
        // The link at usr/share/victim was replaced by the file.
        assert!(fs::symlink_metadata(root.join("usr/share/victim"))
            .unwrap()
            .is_file());

        // A hard link through such a link links the file inside the root.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_link(&mut h, "./usr/share/hard", "usr/lib/abs/victim")
            .unwrap();
        let data = b.into_inner().unwrap();
        reader_to_root(&mut data.as_slice(), deb, &root, false).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&root.join("usr/share/hard")),
            ino(&mirrored.join("victim"))
        );
        assert_ne!(
            ino(&root.join("usr/share/hard")),
            ino(&outside.join("victim"))
        );
        assert_eq!(fs::metadata(outside.join("victim")).unwrap().nlink(), 1);
    }

    #[test]
    fn garbage_is_not_a_package() {
        let tmp = tempfile::tempdir().unwrap();
        let deb = tmp.path().join("x.deb");
        fs::write(&deb, "not an ar archive").unwrap();
        let e = unpack(&deb, tmp.path(), false).unwrap_err().to_string();
        assert!(e.contains("x.deb"), "{e}");
    }
}
