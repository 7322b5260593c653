//! `/etc/resolv.conf`: make sure a DHCP client has a file to write.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{follow_in_root, Log};
use crate::stage1::at;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Creates an empty `<root>/etc/resolv.conf` (mode 0644) when there is
/// none or it is a symbolic link to nothing (the link is replaced). An
/// existing file or a link that resolves is left alone.
pub fn ensure(root: &Path, log: &mut Log) {
    let path = at(root, RESOLV_CONF);
    let dangling = match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            if follow_in_root(root, &path).exists() {
                return;
            }
            fs::read_link(&path).ok()
        }
        Ok(_) => return,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            log.warn(&format!("checking {RESOLV_CONF}: {e}"));
            return;
        }
    };
    match create_empty(&path) {
        Ok(()) => match dangling {
            Some(target) => log.info(&format!(
                "replaced {RESOLV_CONF} (a link to missing {}) with an empty file",
                target.display()
            )),
            None => log.info(&format!("created empty {RESOLV_CONF}")),
        },
        Err(e) => log.warn(&format!("creating {RESOLV_CONF}: {e}")),
    }
}

fn create_empty(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(".resolv.conf.keel-tmp");
    let _ = fs::remove_file(&tmp);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    f.set_permissions(fs::Permissions::from_mode(0o644))?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn etc() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        t
    }

    fn ensure_in(root: &Path) -> (Vec<String>, String) {
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        ensure(root, &mut log);
        let w = log.into_warnings();
        assert!(w.is_empty(), "{w:?}");
        (w, String::from_utf8(out).unwrap())
    }

    #[test]
    fn creates_a_missing_file() {
        let t = etc();
        let (_, text) = ensure_in(t.path());
        let p = t.path().join("etc/resolv.conf");
        let m = fs::symlink_metadata(&p).unwrap();
        assert!(m.is_file());
        assert_eq!(m.len(), 0);
        assert_eq!(m.mode() & 0o7777, 0o644);
        assert_eq!(text, "keel-init: created empty /etc/resolv.conf\n");
    }

    #[test]
    fn replaces_a_dangling_link() {
        let t = etc();
        let p = t.path().join("etc/resolv.conf");
        symlink("/run/systemd/resolve/stub-resolv.conf", &p).unwrap();
        let (_, text) = ensure_in(t.path());
        assert!(fs::symlink_metadata(&p).unwrap().is_file());
        assert!(text.contains("a link to missing /run/systemd/resolve/stub-resolv.conf"));
    }

    #[test]
    fn leaves_files_and_valid_links_alone() {
        let t = etc();
        let p = t.path().join("etc/resolv.conf");
        fs::write(&p, "nameserver 10.0.2.3\n").unwrap();
        let (_, text) = ensure_in(t.path());
        assert_eq!(fs::read_to_string(&p).unwrap(), "nameserver 10.0.2.3\n");
        assert!(text.is_empty());

        let t = etc();
        let p = t.path().join("etc/resolv.conf");
        fs::create_dir_all(t.path().join("run/dhcp")).unwrap();
        fs::write(t.path().join("run/dhcp/resolv.conf"), "x").unwrap();
        // Absolute target: resolved inside the root, not on the host.
        symlink("/run/dhcp/resolv.conf", &p).unwrap();
        let (_, text) = ensure_in(t.path());
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert!(text.is_empty());
    }
}
