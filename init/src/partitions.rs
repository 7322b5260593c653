//! Finding partitions by GPT label through sysfs (`/sys/class/block`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A block device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Kernel name, e.g. `vda2`; the node is `/dev/<name>`.
    pub name: String,
    /// GPT partition label (`PARTNAME=`), if any.
    pub label: Option<String>,
    /// Partition number (`PARTN=`), if this is a partition.
    pub number: Option<u32>,
    pub major: u32,
    pub minor: u32,
    /// Kernel name of the whole disk a partition lives on.
    pub disk: Option<String>,
}

impl BlockDev {
    /// `major:minor`, how device-mapper tables name devices.
    pub fn devno(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }

    fn describe(&self) -> String {
        match &self.label {
            Some(l) => format!("{} ({l})", self.name),
            None => format!("{} (no label)", self.name),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("timed out after {}s waiting for partitions labelled {}; found: {}", waited.as_secs_f32(), labels.join(", "), found)]
    Timeout {
        waited: Duration,
        labels: Vec<String>,
        found: String,
    },
    #[error("partitions labelled {} exist on more than one disk ({}); refusing to guess", labels.join(", "), disks.join(", "))]
    Ambiguous {
        labels: Vec<String>,
        disks: Vec<String>,
    },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> PartitionError + '_ {
    move |source| PartitionError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn parse_uevent(text: &str, fallback_name: &str) -> BlockDev {
    let mut dev = BlockDev {
        name: fallback_name.to_string(),
        label: None,
        number: None,
        major: 0,
        minor: 0,
        disk: None,
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "DEVNAME" => dev.name = v.to_string(),
            "PARTNAME" => dev.label = Some(v.to_string()),
            "PARTN" => dev.number = v.parse().ok(),
            "MAJOR" => dev.major = v.parse().unwrap_or(0),
            "MINOR" => dev.minor = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    dev
}

/// Lists the block devices under `class_block` (`<root>/sys/class/block`).
/// Devices whose uevent vanished while scanning are skipped.
pub fn scan(class_block: &Path) -> Result<Vec<BlockDev>, PartitionError> {
    let mut devs = Vec::new();
    let entries = fs::read_dir(class_block).map_err(read_err(class_block))?;
    for entry in entries {
        let entry = entry.map_err(read_err(class_block))?;
        let dir = entry.path();
        let uevent = dir.join("uevent");
        let text = match fs::read_to_string(&uevent) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_err(&uevent)(e)),
        };
        let mut dev = parse_uevent(&text, &entry.file_name().to_string_lossy());
        if dev.number.is_some() {
            // /sys/class/block/vda2 -> ../../devices/.../block/vda/vda2
            dev.disk = fs::canonicalize(&dir).ok().and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            });
        }
        devs.push(dev);
    }
    devs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(devs)
}

/// Picks, from `devs`, one partition per label in `labels`, all on the same
/// disk. `Ok(None)` when no disk has all of them (yet).
pub fn find_on_one_disk(
    devs: &[BlockDev],
    labels: &[&str],
) -> Result<Option<Vec<BlockDev>>, PartitionError> {
    let mut disks: Vec<&str> = devs
        .iter()
        .filter(|d| d.label.as_deref() == labels.first().copied())
        .filter_map(|d| d.disk.as_deref())
        .collect();
    disks.sort_unstable();
    disks.dedup();
    let mut matches = Vec::new();
    for disk in &disks {
        let found: Option<Vec<BlockDev>> = labels
            .iter()
            .map(|l| {
                devs.iter()
                    .find(|d| d.disk.as_deref() == Some(*disk) && d.label.as_deref() == Some(*l))
                    .cloned()
            })
            .collect();
        if let Some(found) = found {
            matches.push((disk.to_string(), found));
        }
    }
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.pop().map(|(_, f)| f)),
        _ => Err(PartitionError::Ambiguous {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            disks: matches.into_iter().map(|(d, _)| d).collect(),
        }),
    }
}

/// Polls `class_block` until [`find_on_one_disk`] succeeds or `timeout`
/// passes; the timeout error lists every block device seen last.
pub fn wait_for(
    class_block: &Path,
    labels: &[&str],
    timeout: Duration,
    poll: Duration,
) -> Result<Vec<BlockDev>, PartitionError> {
    let start = Instant::now();
    loop {
        // The directory itself may appear late only if sysfs is missing,
        // which is an error worth reporting at once.
        let devs = scan(class_block)?;
        if let Some(found) = find_on_one_disk(&devs, labels)? {
            return Ok(found);
        }
        if start.elapsed() >= timeout {
            let found = if devs.is_empty() {
                "no block devices".to_string()
            } else {
                devs.iter()
                    .map(BlockDev::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(PartitionError::Timeout {
                waited: start.elapsed(),
                labels: labels.iter().map(|s| s.to_string()).collect(),
                found,
            });
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Creates a sysfs-like tree: `<root>/sys/devices/virtual/block/<disk>/<part>`
    /// with uevent files and `<root>/sys/class/block/<name>` symlinks.
    pub fn add_disk(root: &Path, disk: &str, major: u32, parts: &[(u32, &str)]) {
        let class = root.join("sys/class/block");
        let disk_dir = root.join("sys/devices/virtual/block").join(disk);
        fs::create_dir_all(&class).unwrap();
        fs::create_dir_all(&disk_dir).unwrap();
        fs::write(
            disk_dir.join("uevent"),
            format!("MAJOR={major}\nMINOR=0\nDEVNAME={disk}\nDEVTYPE=disk\n"),
        )
        .unwrap();
        std::os::unix::fs::symlink(&disk_dir, class.join(disk)).unwrap();
        for (n, label) in parts {
            let name = format!("{disk}{n}");
            let dir = disk_dir.join(&name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join("uevent"),
                format!("MAJOR={major}\nMINOR={n}\nDEVNAME={name}\nDEVTYPE=partition\nPARTN={n}\nPARTNAME={label}\n"),
            )
            .unwrap();
            std::os::unix::fs::symlink(&dir, class.join(&name)).unwrap();
        }
    }

    const LABELS: [&str; 3] = ["root-a", "root-a-verity", "var"];

    #[test]
    fn finds_labels_on_one_disk() {
        let t = tempfile::tempdir().unwrap();
        add_disk(
            t.path(),
            "vda",
            254,
            &[(1, "esp"), (2, "root-a"), (3, "root-a-verity"), (6, "var")],
        );
        add_disk(t.path(), "vdb", 253, &[(1, "var")]);
        let class = t.path().join("sys/class/block");
        let found = wait_for(&class, &LABELS, Duration::ZERO, Duration::ZERO).unwrap();
        let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["vda2", "vda3", "vda6"]);
        assert_eq!(found[2].disk.as_deref(), Some("vda"));
        assert_eq!(found[2].number, Some(6));
        assert_eq!(found[0].devno(), "254:2");
    }

    #[test]
    fn times_out_listing_what_it_saw() {
        let t = tempfile::tempdir().unwrap();
        add_disk(t.path(), "vda", 254, &[(1, "esp"), (2, "root-a")]);
        let class = t.path().join("sys/class/block");
        let start = Instant::now();
        let err = wait_for(
            &class,
            &LABELS,
            Duration::from_millis(200),
            Duration::from_millis(50),
        )
        .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(200));
        let msg = err.to_string();
        assert!(msg.contains("root-a, root-a-verity, var"), "{msg}");
        assert!(
            msg.contains("found: vda (no label), vda1 (esp), vda2 (root-a)"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_two_candidate_disks() {
        let t = tempfile::tempdir().unwrap();
        let parts = [(2, "root-a"), (3, "root-a-verity"), (6, "var")];
        add_disk(t.path(), "vda", 254, &parts);
        add_disk(t.path(), "vdb", 253, &parts);
        let class = t.path().join("sys/class/block");
        let err = wait_for(&class, &LABELS, Duration::ZERO, Duration::ZERO).unwrap_err();
        assert!(matches!(err, PartitionError::Ambiguous { .. }), "{err}");
        assert!(err.to_string().contains("vda, vdb"), "{err}");
    }

    #[test]
    fn missing_sysfs_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let err = wait_for(
            &t.path().join("nope"),
            &LABELS,
            Duration::ZERO,
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("reading "), "{err}");
    }
}
