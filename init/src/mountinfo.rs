//! What is mounted and which swap areas are on: `/proc/self/mountinfo`
//! and `/proc/swaps`, read below a root directory (`/` except in tests).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::stage1::at;

/// One line of `/proc/self/mountinfo` (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 3: major and minor of the file system's device (`st_dev`).
    pub device: (u32, u32),
    /// Field 5: where it is mounted.
    pub mount_point: PathBuf,
    /// The file system type (after the ` - ` separator).
    pub fs_type: String,
    /// The mount source, e.g. `/dev/vdb1` or `tmpfs`.
    pub source: String,
}

/// The kernel's octal escapes in these files: `\040` is a space, `\011` a
/// tab, `\012` a newline, `\134` a backslash.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`, in its order (a mount comes after the
/// one it is mounted on); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let head: Vec<&str> = head.split(' ').collect();
            let mut tail = tail.split(' ');
            let (major, minor) = head.get(2)?.split_once(':')?;
            Some(MountEntry {
                device: (major.parse().ok()?, minor.parse().ok()?),
                mount_point: PathBuf::from(unescape(head.get(4)?)),
                fs_type: unescape(tail.next()?),
                source: unescape(tail.next()?),
            })
        })
        .collect()
}

/// The file names in `/proc/swaps` (after its header line).
pub fn parse_swaps(text: &str) -> Vec<PathBuf> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|f| PathBuf::from(unescape(f)))
        .collect()
}

/// Reads and parses `/proc/self/mountinfo` below `root`.
pub fn mounts(root: &Path) -> Vec<MountEntry> {
    parse_mountinfo(&fs::read_to_string(at(root, "/proc/self/mountinfo")).unwrap_or_default())
}

/// Reads and parses `/proc/swaps` below `root`.
pub fn swaps(root: &Path) -> Vec<PathBuf> {
    parse_swaps(&fs::read_to_string(at(root, "/proc/swaps")).unwrap_or_default())
}

/// The names `what` goes by: itself and, when it is a path, the path its
/// symlinks lead to (`/dev/disk/by-partlabel/data` → `/dev/vdb1`), seen
/// from `root`; and the device numbers when it is a block device.
fn identities(root: &Path, what: &str) -> (Vec<String>, Option<(u32, u32)>) {
    let mut names = vec![what.to_string()];
    if !what.starts_with('/') {
        return (names, None);
    }
    let path = at(root, what);
    if let (Ok(real), Ok(croot)) = (fs::canonicalize(&path), fs::canonicalize(root)) {
        let real = match real.strip_prefix(&croot) {
            Ok(r) => Path::new("/").join(r),
            Err(_) => real,
        };
        names.push(real.to_string_lossy().into_owned());
    }
    let device = fs::metadata(&path)
        .ok()
        .filter(|m| m.file_type().is_block_device())
        .map(|m| (libc::major(m.rdev()), libc::minor(m.rdev())));
    (names, device)
}

/// Whether `what` is mounted on `where_` (by name, by the path its
/// symlinks lead to, or by device number).
pub fn is_mounted(root: &Path, mounts: &[MountEntry], what: &str, where_: &Path) -> bool {
    let (names, device) = identities(root, what);
    mounts
        .iter()
        .any(|m| m.mount_point == where_ && (names.contains(&m.source) || Some(m.device) == device))
}

/// Whether `what` (by name or the path its symlinks lead to) is among
/// the active swap areas.
pub fn is_swap_on(root: &Path, swaps: &[PathBuf], what: &str) -> bool {
    let (names, _) = identities(root, what);
    swaps
        .iter()
        .any(|s| names.iter().any(|n| Path::new(n) == s.as_path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / ro,relatime shared:1 - erofs /dev/mapper/keel-root ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 22 254:17 / /var rw,relatime shared:8 - ext4 /dev/vda6 rw
40 31 254:33 / /var/data rw,noatime shared:20 - ext4 /dev/vdb1 rw
41 31 0:45 / /var/lib/my\\040dir rw master:3 - tmpfs tmp\\134fs rw,size=1024k
bogus line
";

    #[test]
    fn parses_mountinfo_with_escapes_and_optional_fields() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[3],
            MountEntry {
                device: (254, 33),
                mount_point: PathBuf::from("/var/data"),
                fs_type: "ext4".into(),
                source: "/dev/vdb1".into(),
            }
        );
        assert_eq!(m[4].mount_point, PathBuf::from("/var/lib/my dir"));
        assert_eq!(m[4].source, "tmp\\fs");
        assert_eq!(m[4].device, (0, 45));
    }

    #[test]
    fn a_mount_is_found_by_source_link_target_or_not_at_all() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        fs::create_dir_all(root.join("dev/disk/by-partlabel")).expect("mkdir");
        fs::write(root.join("dev/vdb1"), "").expect("write");
        std::os::unix::fs::symlink("../../vdb1", root.join("dev/disk/by-partlabel/data"))
            .expect("symlink");
        let m = parse_mountinfo(SAMPLE);
        let data = Path::new("/var/data");
        assert!(is_mounted(root, &m, "/dev/vdb1", data));
        assert!(is_mounted(root, &m, "/dev/disk/by-partlabel/data", data));
        assert!(!is_mounted(
            root,
            &m,
            "/dev/disk/by-partlabel/data",
            Path::new("/var")
        ));
        assert!(!is_mounted(root, &m, "/dev/vdc1", data));
        assert!(is_mounted(
            root,
            &m,
            "tmp\\fs",
            Path::new("/var/lib/my dir")
        ));
    }

    #[test]
    fn swaps_are_listed_without_the_header() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/vda3                               partition\t1048572\t\t0\t\t-2\n\
                    /var/swap\\040file                        file\t\t65532\t\t0\t\t-3\n";
        let s = parse_swaps(text);
        assert_eq!(
            s,
            [PathBuf::from("/dev/vda3"), PathBuf::from("/var/swap file")]
        );
        let t = tempfile::tempdir().expect("tempdir");
        assert!(is_swap_on(t.path(), &s, "/dev/vda3"));
        assert!(!is_swap_on(t.path(), &s, "/dev/vda4"));
    }
}
