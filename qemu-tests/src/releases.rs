//! Test disks that hold two releases, as a node has after an update: the
//! disk of one image (its release in slot A, its boot entry the newest),
//! with the release of a second image copied into slot B and given its own
//! boot entry, kernel and initrd on the ESP.
//!
//! Partitions are found with `sgdisk` and the ESP is edited with mtools, so
//! the result is also a check that both read and write what osbuild makes.
//! Both images must come from configs with the same `[partitions]`.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_core::layout::{ESP_ENTRIES_DIR, ESP_LABEL, ESP_RELEASE_DIR};
use keel_core::Slot;

use crate::HarnessError;

/// A partition's place in a raw disk image, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub size: u64,
}

pub(crate) fn fixture(what: impl Into<String>) -> HarnessError {
    HarnessError::Fixture { what: what.into() }
}

pub(crate) fn tool(cmd: &mut Command) -> Result<Vec<u8>, HarnessError> {
    let program = format!("{cmd:?}");
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|source| HarnessError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(fixture(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The partition labelled `label` in `raw`, from `sgdisk -p`.
pub fn partition(raw: &Path, label: &str) -> Result<Extent, HarnessError> {
    let text =
        String::from_utf8_lossy(&tool(Command::new("sgdisk").arg("-p").arg(raw))?).into_owned();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().last() == Some(label))
        .ok_or_else(|| fixture(format!("no partition {label} in {}", raw.display())))?;
    let mut words = line.split_whitespace().skip(1);
    let mut num = || -> Result<u64, HarnessError> {
        words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| fixture(format!("unreadable sgdisk line {line:?}")))
    };
    let (start, end) = (num()?, num()?);
    Ok(Extent {
        offset: start * 512,
        size: (end + 1 - start) * 512,
    })
}

/// Copies `from` of `src` into `to` of `dst` and zeroes the rest of `to`.
/// Blocks of zeros are skipped where the target is still sparse.
fn copy_extent(src: &Path, from: Extent, dst: &Path, to: Extent) -> Result<(), HarnessError> {
    if from.size > to.size {
        return Err(fixture(format!(
            "partition of {} bytes does not fit into one of {} bytes",
            from.size, to.size
        )));
    }
    let io = |what: &str, e: std::io::Error| fixture(format!("{what}: {e}"));
    let mut r = File::open(src).map_err(|e| io(&src.display().to_string(), e))?;
    let mut w = fs::OpenOptions::new()
        .write(true)
        .open(dst)
        .map_err(|e| io(&dst.display().to_string(), e))?;
    r.seek(SeekFrom::Start(from.offset))
        .map_err(|e| io("seek", e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < to.size {
        let n = buf.len().min((to.size - done) as usize);
        if done < from.size {
            let m = n.min((from.size - done) as usize);
            r.read_exact(&mut buf[..m])
                .map_err(|e| io("reading partition", e))?;
            buf[m..n].fill(0);
        } else {
            buf[..n].fill(0);
        }
        w.seek(SeekFrom::Start(to.offset + done))
            .map_err(|e| io("seek", e))?;
        w.write_all(&buf[..n])
            .map_err(|e| io("writing partition", e))?;
        done += n as u64;
    }
    w.sync_all().map_err(|e| io("sync", e))
}

pub(crate) fn esp_image(raw: &Path, esp: Extent) -> String {
    format!("{}@@{}", raw.display(), esp.offset)
}

/// The names of the boot entries on the ESP of `raw`.
pub fn entries(raw: &Path) -> Result<Vec<String>, HarnessError> {
    let esp = partition(raw, ESP_LABEL)?;
    let out = tool(
        Command::new("mdir")
            .args(["-b", "-i"])
            .arg(esp_image(raw, esp))
            .arg(format!("::/{ESP_ENTRIES_DIR}")),
    )?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter(|n| n.ends_with(".conf"))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

fn mcopy_out(raw: &Path, esp: Extent, path: &str, to: &Path) -> Result<(), HarnessError> {
    tool(
        Command::new("mcopy")
            .args(["-n", "-i"])
            .arg(esp_image(raw, esp))
            .arg(format!("::/{path}"))
            .arg(to),
    )
    .map(drop)
}

fn mcopy_in(raw: &Path, esp: Extent, from: &Path, path: &str) -> Result<(), HarnessError> {
    tool(
        Command::new("mcopy")
            .args(["-o", "-i"])
            .arg(esp_image(raw, esp))
            .arg(from)
            .arg(format!("::/{path}")),
    )
    .map(drop)
}

/// Writes to `out` the disk `newer` (release in slot A) with the release of
/// `older` in slot B: its root and verity partitions copied, its kernel and
/// initrd under `keel/<version>/`, and its boot entry pointed at slot B.
/// Returns the name of the entry added (as `older` had it, with its boot
/// counter). The two releases must have different versions.
pub fn with_second_release(
    newer: &Path,
    older: &Path,
    out: &Path,
    work: &Path,
) -> Result<String, HarnessError> {
    tool(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(newer)
            .arg(out),
    )?;
    for (from, to) in [
        (Slot::A.root_label(), Slot::B.root_label()),
        (Slot::A.verity_label(), Slot::B.verity_label()),
    ] {
        copy_extent(older, partition(older, from)?, out, partition(out, to)?)?;
    }
    let names = entries(older)?;
    let [name] = names.as_slice() else {
        return Err(fixture(format!(
            "{} has boot entries {names:?}, not one",
            older.display()
        )));
    };
    let (old_esp, new_esp) = (partition(older, ESP_LABEL)?, partition(out, ESP_LABEL)?);
    let local = work.join(name);
    mcopy_out(older, old_esp, &format!("{ESP_ENTRIES_DIR}/{name}"), &local)?;
    let text = fs::read_to_string(&local).map_err(|e| fixture(format!("{name}: {e}")))?;
    let slot_a = format!("keel.slot={}", Slot::A.name());
    if !text.contains(&slot_a) {
        return Err(fixture(format!("{name} does not boot slot A:\n{text}")));
    }
    let text = text.replace(&slot_a, &format!("keel.slot={}", Slot::B.name()));
    fs::write(&local, text).map_err(|e| fixture(format!("{name}: {e}")))?;
    let version = text_version(&fs::read_to_string(&local).unwrap_or_default())
        .ok_or_else(|| fixture(format!("{name} has no version line")))?;
    let dir = format!("{ESP_RELEASE_DIR}/{version}");
    if entries(out)?.iter().any(|n| n == name) {
        return Err(fixture(format!("both disks have boot entry {name}")));
    }
    tool(
        Command::new("mmd")
            .arg("-i")
            .arg(esp_image(out, new_esp))
            .arg(format!("::/{dir}")),
    )?;
    for file in [
        keel_core::layout::ESP_KERNEL_NAME,
        keel_core::layout::ESP_INITRD_NAME,
    ] {
        let tmp: PathBuf = work.join(file);
        mcopy_out(older, old_esp, &format!("{dir}/{file}"), &tmp)?;
        mcopy_in(out, new_esp, &tmp, &format!("{dir}/{file}"))?;
    }
    mcopy_in(out, new_esp, &local, &format!("{ESP_ENTRIES_DIR}/{name}"))?;
    Ok(name.clone())
}

fn text_version(entry: &str) -> Option<String> {
    entry
        .lines()
        .find_map(|l| l.strip_prefix("version "))
        .map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_label_and_copies_between_them() {
        let t = tempfile::tempdir().unwrap();
        let disk = t.path().join("d.raw");
        File::create(&disk).unwrap().set_len(8 << 20).unwrap();
        tool(
            Command::new("sgdisk")
                .args([
                    "-n",
                    "1:2048:+2M",
                    "-c",
                    "1:one",
                    "-n",
                    "2:0:+3M",
                    "-c",
                    "2:two",
                ])
                .arg(&disk),
        )
        .unwrap();
        let one = partition(&disk, "one").unwrap();
        let two = partition(&disk, "two").unwrap();
        assert_eq!(
            one,
            Extent {
                offset: 1 << 20,
                size: 2 << 20
            }
        );
        assert_eq!(two.size, 3 << 20);
        assert!(partition(&disk, "three").is_err());

        let mut f = fs::OpenOptions::new().write(true).open(&disk).unwrap();
        f.seek(SeekFrom::Start(one.offset)).unwrap();
        f.write_all(&[0xab; 4096]).unwrap();
        f.seek(SeekFrom::Start(two.offset + two.size - 1)).unwrap();
        f.write_all(&[0xcd]).unwrap();
        drop(f);
        copy_extent(&disk, one, &disk, two).unwrap();
        let data = fs::read(&disk).unwrap();
        let at = two.offset as usize;
        assert!(data[at..at + 4096].iter().all(|b| *b == 0xab));
        // The rest of the target is zeroed, its last byte included.
        assert!(data[at + 4096..(two.offset + two.size) as usize]
            .iter()
            .all(|b| *b == 0));
        // A bigger partition does not fit into a smaller one.
        assert!(copy_extent(&disk, two, &disk, one).is_err());
    }
}
