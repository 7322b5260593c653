//! Unpacking packages into the staging tree: merged /usr, no maintainer
//! scripts, no documentation, manuals or translations.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

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
        let dest = root.join(&rel);
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
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        let entry_err = |reason: String| UnpackError::Entry {
            deb: deb.to_path_buf(),
            path: raw_path.clone(),
            reason,
        };
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    // A package's directory where merged /usr already put a
                    // symlink (e.g. /lib64) keeps the symlink.
                    Ok(m) if m.file_type().is_symlink() => continue,
                    Ok(_) => {
                        return Err(entry_err("a file is in the way of this directory".into()))
                    }
                    Err(_) => fs::create_dir(&dest).map_err(io_err("creating", &dest))?,
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_non_dir(&dest).map_err(io_err("replacing", &dest))?;
                if dest.is_dir() {
                    return Err(entry_err("a directory is in the way of this file".into()));
                }
                let mut out = fs::File::create(&dest).map_err(io_err("creating", &dest))?;
                stats.bytes += io::copy(&mut entry, &mut out).map_err(io_err("writing", &dest))?;
                stats.files += 1;
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
                remove_non_dir(&dest).map_err(io_err("replacing", &dest))?;
                symlink(&target, &dest).map_err(io_err("creating symlink", &dest))?;
                if chown {
                    std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32))
                        .map_err(io_err("setting owner of", &dest))?;
                }
                stats.files += 1;
                continue;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io_err("reading link of", &raw_path))?
                    .ok_or_else(|| entry_err("hard link without a target".into()))?;
                let target = image_path(&target)
                    .ok_or_else(|| entry_err("hard link to a path the image leaves out".into()))?;
                remove_non_dir(&dest).map_err(io_err("replacing", &dest))?;
                fs::hard_link(root.join(&target), &dest).map_err(io_err("linking", &dest))?;
                stats.files += 1;
                continue;
            }
            other => {
                return Err(entry_err(format!(
                    "unsupported entry type {other:?} (packages may not ship device nodes or fifos)"
                )))
            }
        }
        if chown {
            std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32))
                .map_err(io_err("setting owner of", &dest))?;
        }
        // After chown, which clears set-id bits.
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
            .map_err(io_err("setting mode of", &dest))?;
    }
    Ok(stats)
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

    #[test]
    fn garbage_is_not_a_package() {
        let tmp = tempfile::tempdir().unwrap();
        let deb = tmp.path().join("x.deb");
        fs::write(&deb, "not an ar archive").unwrap();
        let e = unpack(&deb, tmp.path(), false).unwrap_err().to_string();
        assert!(e.contains("x.deb"), "{e}");
    }
}
