//! `/etc/machine-id`: generated on the first boot, kept afterwards (/etc
//! is an overlay whose upper layer lives on /var).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::Log;
use crate::stage1::at;

pub const MACHINE_ID: &str = "/etc/machine-id";
pub const URANDOM: &str = "/dev/urandom";

/// Formats 16 random bytes as systemd's `sd_id128_randomize` does: a
/// version 4, variant 1 UUID written as 32 lowercase hex digits.
pub fn format_id(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    hex::encode(bytes)
}

/// Whether `s` is a machine ID: 32 hex digits, not all zero.
pub fn is_valid(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()) && s.chars().any(|c| c != '0')
}

/// Makes sure `<root>/etc/machine-id` holds a machine ID and returns it.
/// A missing, empty or `uninitialized` file gets a new random ID from
/// `<root>/dev/urandom`, written atomically with mode 0444. If it cannot
/// be written the new ID is still returned (it then lasts for this boot).
pub fn ensure(root: &Path, log: &mut Log) -> Option<String> {
    let path = at(root, MACHINE_ID);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let cur = text.trim();
            if is_valid(cur) {
                return Some(cur.to_ascii_lowercase());
            }
            if !cur.is_empty() && cur != "uninitialized" {
                log.warn(&format!(
                    "{MACHINE_ID} holds {cur:?}, not a machine ID; generating a new one"
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            log.warn(&format!("reading {MACHINE_ID}: {e}; generating a new one"));
        }
    }
    let mut bytes = [0u8; 16];
    if let Err(e) = File::open(at(root, URANDOM)).and_then(|mut f| f.read_exact(&mut bytes)) {
        log.warn(&format!("reading {URANDOM} for a machine ID: {e}"));
        return None;
    }
    let id = format_id(bytes);
    match write_atomic(&path, &format!("{id}\n")) {
        Ok(()) => log.info(&format!("generated machine-id {id}")),
        Err(e) => log.warn(&format!(
            "writing {MACHINE_ID}: {e}; machine-id {id} lasts for this boot only"
        )),
    }
    Some(id)
}

/// Writes `text` to a temporary file next to `path` and renames it over
/// `path`; mode 0444.
fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let tmp = dir.join(".machine-id.keel-tmp");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&tmp)?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.set_permissions(fs::Permissions::from_mode(0o444)))
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn setup(random: &[u8]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        fs::create_dir_all(t.path().join("dev")).unwrap();
        fs::write(t.path().join("dev/urandom"), random).unwrap();
        t
    }

    #[test]
    fn formats_like_systemd() {
        assert_eq!(format_id([0xff; 16]), "ffffffffffff4fffbfffffffffffffff");
        assert_eq!(format_id([0; 16]), "00000000000040008000000000000000");
        assert!(is_valid(&format_id([0; 16])));
        assert!(!is_valid("00000000000000000000000000000000"));
        assert!(!is_valid("uninitialized"));
    }

    #[test]
    fn generates_once_and_keeps_it() {
        let t = setup(&[0xab; 16]);
        let root = t.path();
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let id = ensure(root, &mut log).unwrap();
        assert_eq!(id, "abababababab4bababababababababab");
        let file = root.join("etc/machine-id");
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{id}\n"));
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o444);
        assert!(!root.join("etc/.machine-id.keel-tmp").exists());

        // Second boot: different randomness, same ID, nothing printed.
        fs::write(root.join("dev/urandom"), [0x11; 16]).unwrap();
        let id2 = ensure(root, &mut log).unwrap();
        assert_eq!(id2, id);
        assert!(log.warnings().is_empty());
        drop(log);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, format!("keel-init: generated machine-id {id}\n"));
    }

    #[test]
    fn replaces_empty_uninitialized_and_garbage() {
        for (content, warns) in [("", 0), ("uninitialized\n", 0), ("xyz\n", 1)] {
            let t = setup(&[0x5a; 16]);
            fs::write(t.path().join("etc/machine-id"), content).unwrap();
            let mut out = Vec::new();
            let mut log = Log::new(&mut out);
            let id = ensure(t.path(), &mut log).unwrap();
            assert!(is_valid(&id));
            assert_eq!(log.warnings().len(), warns, "{content:?}");
            assert_eq!(
                fs::read_to_string(t.path().join("etc/machine-id")).unwrap(),
                format!("{id}\n")
            );
        }
    }

    #[test]
    fn keeps_a_valid_id_and_reports_missing_randomness() {
        let t = setup(&[]);
        fs::write(
            t.path().join("etc/machine-id"),
            "0123456789ABCDEF0123456789abcdef\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        assert_eq!(
            ensure(t.path(), &mut log).as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        fs::remove_file(t.path().join("etc/machine-id")).unwrap();
        assert_eq!(ensure(t.path(), &mut log), None);
        assert!(log.warnings()[0].contains("reading /dev/urandom"));
    }
}
