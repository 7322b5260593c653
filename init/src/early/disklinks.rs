//! `/dev/disk/by-*` links, as udev's persistent-storage rules make them
//! for the block devices present at boot (there is no udev; devices that
//! appear later get none):
//!
//! - `by-id/virtio-<serial>` (and `-part<N>`) from the disk's `serial`;
//! - `by-partlabel/<label>` and `by-partuuid/<guid>` from the GPT;
//! - `by-uuid/<uuid>` and `by-label/<label>` from the file system's
//!   superblock: ext2/3/4, xfs, vfat and swap.
//!
//! Names are escaped as udev escapes them (`\x2f` for `/`, and so on).
//! Links are relative (`../../vdb1`), as udev's. A name two devices claim
//! goes to the first in kernel order; problems are warnings.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::Log;
use crate::stage1::at;

/// Where the links go.
pub const DISK_DIR: &str = "/dev/disk";

/// What is known about one block device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Dev {
    name: String,
    /// For a partition: its disk and number.
    disk: Option<String>,
    number: Option<u32>,
}

/// udev's `encode_devnode_name`: anything but `[A-Za-z0-9#+-.:=@_]` (and
/// bytes above ASCII) becomes `\xNN`.
pub fn escape(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) || b >= 0x80 {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn devices(root: &Path) -> Vec<Dev> {
    let class = at(root, "/sys/class/block");
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&class) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Loop, RAM and device-mapper devices get no such links from udev.
        if ["loop", "ram", "dm-", "zram", "sr"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let uevent = fs::read_to_string(e.path().join("uevent")).unwrap_or_default();
        let number = uevent
            .lines()
            .find_map(|l| l.strip_prefix("PARTN="))
            .and_then(|n| n.parse().ok());
        let disk = number.and_then(|_| {
            fs::canonicalize(e.path())
                .ok()
                .and_then(|p| p.parent().map(|d| d.to_path_buf()))
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        });
        out.push(Dev { name, disk, number });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn read_at(path: &Path, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut f = fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Up to the first 64 KiB of a device (less if it is smaller).
fn head(path: &Path) -> Option<Vec<u8>> {
    let f = fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(64 * 1024).read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

fn uuid(b: &[u8]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn text(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64le(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(x)
}

/// The file system's UUID and label, from the first 64 KiB of the device.
fn filesystem(head: &[u8]) -> Option<(Option<String>, Option<String>)> {
    // ext2/3/4: the superblock at 1024, magic 0xEF53 at 0x38.
    if head.len() >= 2048 && u16le(head, 1024 + 0x38) == 0xEF53 {
        let sb = &head[1024..2048];
        return Some((Some(uuid(&sb[0x68..0x78])), text(&sb[0x78..0x88])));
    }
    // xfs: "XFSB", the UUID at 32, the label at 108.
    if head.len() >= 120 && &head[..4] == b"XFSB" {
        return Some((Some(uuid(&head[32..48])), text(&head[108..120])));
    }
    // swap: the signature at the end of the first 4 KiB page.
    if head.len() >= 4096 && &head[4086..4096] == b"SWAPSPACE2" {
        return Some((Some(uuid(&head[1036..1052])), text(&head[1052..1068])));
    }
    // vfat: a boot sector with the FAT32 or FAT12/16 type string.
    if head.len() >= 512 && head[510] == 0x55 && head[511] == 0xAA {
        let (id, label) = if &head[82..87] == b"FAT32" {
            (67, 71)
        } else if &head[54..57] == b"FAT" {
            (39, 43)
        } else {
            return None;
        };
        let serial = u32le(head, id);
        let uuid = format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF);
        let label = text(&head[label..label + 11]).filter(|l| l != "NO NAME");
        return Some((Some(uuid), label));
    }
    None
}

/// The GPT entries of a disk: (number, unique GUID).
fn gpt(disk: &Path, sector: u64) -> Vec<(u32, String)> {
    let Some(header) = read_at(disk, sector, 92) else {
        return Vec::new();
    };
    if &header[..8] != b"EFI PART" {
        return Vec::new();
    }
    let (lba, count, size) = (
        u64le(&header, 72),
        u32le(&header, 80),
        u32le(&header, 84) as usize,
    );
    if !(128..=4096).contains(&size) || count > 1024 {
        return Vec::new();
    }
    let Some(table) = read_at(disk, lba * sector, count as usize * size) else {
        return Vec::new();
    };
    table
        .chunks_exact(size)
        .enumerate()
        .filter(|(_, e)| e[..16].iter().any(|b| *b != 0))
        .map(|(i, e)| (i as u32 + 1, guid(&e[16..32])))
        .collect()
}

/// The links every device present gets: (directory, name, device name).
fn links(root: &Path) -> Vec<(&'static str, String, String)> {
    let devs = devices(root);
    let mut out = Vec::new();
    for d in &devs {
        let node = at(root, &format!("/dev/{}", d.name));
        let disk = d.disk.as_deref().unwrap_or(&d.name);
        let serial = fs::read_to_string(at(root, &format!("/sys/block/{disk}/serial")))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if let (Some(serial), true) = (serial, disk.starts_with("vd")) {
            let base = format!("virtio-{}", escape(&serial));
            let name = match d.number {
                Some(n) => format!("{base}-part{n}"),
                None => base,
            };
            out.push(("by-id", name, d.name.clone()));
        }
        if let Some(n) = d.number {
            let uevent =
                fs::read_to_string(at(root, &format!("/sys/class/block/{}/uevent", d.name)))
                    .unwrap_or_default();
            if let Some(label) = uevent.lines().find_map(|l| l.strip_prefix("PARTNAME=")) {
                out.push(("by-partlabel", escape(label), d.name.clone()));
            }
            let sector = fs::read_to_string(at(
                root,
                &format!("/sys/block/{disk}/queue/logical_block_size"),
            ))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(512);
            if let Some((_, g)) = gpt(&at(root, &format!("/dev/{disk}")), sector)
                .into_iter()
                .find(|(num, _)| *num == n)
            {
                out.push(("by-partuuid", g, d.name.clone()));
            }
        }
        if let Some((uuid, label)) = head(&node).as_deref().and_then(filesystem) {
            if let Some(u) = uuid {
                out.push(("by-uuid", escape(&u), d.name.clone()));
            }
            if let Some(l) = label {
                out.push(("by-label", escape(&l), d.name.clone()));
            }
        }
    }
    out
}

/// Makes the links below `root`'s `/dev/disk`.
pub fn make(root: &Path, log: &mut Log) {
    let mut made = 0;
    for (dir, name, dev) in links(root) {
        let d = at(root, &format!("{DISK_DIR}/{dir}"));
        if let Err(e) = fs::create_dir_all(&d) {
            log.warn(&format!("creating {}: {e}", d.display()));
            return;
        }
        let link = d.join(&name);
        if fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        match std::os::unix::fs::symlink(format!("../../{dev}"), &link) {
            Ok(()) => made += 1,
            Err(e) => log.warn(&format!("linking {}: {e}", link.display())),
        }
    }
    if made > 0 {
        log.info(&format!("{DISK_DIR}: {made} links"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(root: &Path, name: &str, disk: Option<&str>, uevent: &str) {
        let real = match disk {
            Some(d) => root.join(format!("sys/devices/virtual/{d}/{name}")),
            None => root.join(format!("sys/devices/virtual/{name}")),
        };
        fs::create_dir_all(&real).unwrap();
        fs::write(real.join("uevent"), uevent).unwrap();
        fs::create_dir_all(root.join("sys/class/block")).unwrap();
        std::os::unix::fs::symlink(&real, root.join(format!("sys/class/block/{name}"))).unwrap();
    }

    #[test]
    fn links_from_serials_the_gpt_and_superblocks() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::create_dir_all(root.join("sys/block/vdb/queue")).unwrap();
        fs::write(root.join("sys/block/vdb/serial"), "data disk\n").unwrap();
        fs::write(root.join("sys/block/vdb/queue/logical_block_size"), "512\n").unwrap();
        block(root, "vdb", None, "DEVTYPE=disk\n");
        block(root, "vdb1", Some("vdb"), "PARTN=1\nPARTNAME=my/data\n");
        block(root, "loop0", None, "DEVTYPE=disk\n");
        // The disk: a GPT header at LBA 1, entries at LBA 2.
        let mut disk = vec![0u8; 34 * 512];
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024;
        disk[e..e + 16].copy_from_slice(&[0xaf; 16]);
        let unique = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        disk[e + 16..e + 32].copy_from_slice(&unique);
        fs::write(root.join("dev/vdb"), &disk).unwrap();
        // The partition: an ext4 superblock.
        let mut part = vec![0u8; 4096];
        part[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        part[1024 + 0x68..1024 + 0x78].copy_from_slice(&[0x12; 16]);
        part[1024 + 0x78..1024 + 0x7d].copy_from_slice(b"stuff");
        fs::write(root.join("dev/vdb1"), &part).unwrap();

        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        make(root, &mut log);
        assert!(log.warnings().is_empty(), "{:?}", log.warnings());
        let link = |p: &str| {
            fs::read_link(root.join("dev/disk").join(p))
                .map(|t| t.display().to_string())
                .unwrap_or_else(|e| format!("{p}: {e}"))
        };
        assert_eq!(link("by-id/virtio-data\\x20disk"), "../../vdb");
        assert_eq!(link("by-id/virtio-data\\x20disk-part1"), "../../vdb1");
        assert_eq!(link("by-partlabel/my\\x2fdata"), "../../vdb1");
        assert_eq!(
            link("by-partuuid/00112233-4455-6677-8899-aabbccddeeff"),
            "../../vdb1"
        );
        assert_eq!(
            link("by-uuid/12121212-1212-1212-1212-121212121212"),
            "../../vdb1"
        );
        assert_eq!(link("by-label/stuff"), "../../vdb1");
        assert!(!root.join("dev/disk/by-id/loop0").exists());
        // Made once: a second run adds nothing and warns about nothing.
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        make(root, &mut log);
        assert!(log.warnings().is_empty());
        drop(log);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    }

    /// What blkid (util-linux) reads from the same images.
    fn blkid(path: &Path) -> (Option<String>, Option<String>) {
        let get = |tag: &str| {
            let out = std::process::Command::new("blkid")
                .args(["-p", "-o", "value", "-s", tag])
                .arg(path)
                .output()
                .unwrap();
            let v = String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_string();
            (!v.is_empty()).then_some(v)
        };
        (get("UUID"), get("LABEL"))
    }

    #[test]
    fn superblocks_read_as_blkid_reads_them() {
        let t = tempfile::tempdir().unwrap();
        let tools: [(&str, &[&str]); 3] = [
            (
                "mkfs.ext4",
                &[
                    "-q",
                    "-F",
                    "-L",
                    "keel data",
                    "-U",
                    "6e1f3c2a-0b7d-4c55-9f0e-2d8a1b3c4d5e",
                ],
            ),
            ("mkfs.vfat", &["-n", "KEELESP", "-i", "1234ABCD"]),
            (
                "mkswap",
                &["-L", "swp", "-U", "0f0e0d0c-0b0a-0908-0706-050403020100"],
            ),
        ];
        for (tool, args) in tools {
            let img = t.path().join(tool);
            fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
            let program = ["/usr/sbin", "/sbin", "/usr/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} missing (e2fsprogs, dosfstools, util-linux)"));
            let out = std::process::Command::new(program)
                .args(args)
                .arg(&img)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{tool}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (uuid, label) = filesystem(&head(&img).unwrap()).unwrap();
            assert_eq!((uuid, label), blkid(&img), "{tool}");
        }
    }

    #[test]
    fn vfat_xfs_and_swap_superblocks() {
        let mut fat = vec![0u8; 512];
        fat[510] = 0x55;
        fat[511] = 0xAA;
        fat[82..87].copy_from_slice(b"FAT32");
        fat[67..71].copy_from_slice(&0x1234ABCDu32.to_le_bytes());
        fat[71..82].copy_from_slice(b"ESP        ");
        assert_eq!(
            filesystem(&fat),
            Some((Some("1234-ABCD".into()), Some("ESP".into())))
        );
        let mut xfs = vec![0u8; 512];
        xfs[..4].copy_from_slice(b"XFSB");
        xfs[32..48].copy_from_slice(&[0xab; 16]);
        xfs[108..112].copy_from_slice(b"logs");
        assert_eq!(filesystem(&xfs).unwrap().1.as_deref(), Some("logs"));
        let mut swap = vec![0u8; 4096];
        swap[4086..].copy_from_slice(b"SWAPSPACE2");
        swap[1036..1052].copy_from_slice(&[1; 16]);
        assert_eq!(
            filesystem(&swap).unwrap().0.as_deref(),
            Some("01010101-0101-0101-0101-010101010101")
        );
        assert_eq!(filesystem(&[0u8; 8192]), None);
        assert_eq!(escape("a b/c"), "a\\x20b\\x2fc");
    }
}
