//! Step 7 of stage 1: grow the `var` partition and its ext4 file system to
//! fill the disk (first boot), then mount it at /sysroot/var.
//!
//! Growth problems are reported as warnings and the boot goes on with the
//! size `var` has: a node with a small /var beats a node that does not boot.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use keel_core::layout;

use crate::error::{chain, BootError};
use crate::ext4::Ext4Size;
use crate::gpt_grow::{self, GrowOutcome};
use crate::partitions::BlockDev;
use crate::stage1::{at, say, SYSROOT};
use crate::sys::{MountFlags, Sys};

const MIB: u64 = 1 << 20;

pub fn setup_var(
    sys: &dyn Sys,
    root: &Path,
    var: &BlockDev,
    min_gain: u64,
    log: &mut dyn Write,
) -> Result<(), BootError> {
    let grown_len = match grow_partition(sys, root, var, min_gain, log) {
        Ok(len) => len,
        Err(e) => {
            say(
                log,
                &format!("warning: {}; keeping /var at its size", chain(&e)),
            );
            None
        }
    };

    let dev = at(root, &format!("/dev/{}", var.name));
    let target = root.join(SYSROOT).join("var");
    sys.mount(
        &dev.to_string_lossy(),
        &target,
        "ext4",
        MountFlags::NONE,
        "",
    )
    .map_err(BootError::sys(
        format!("mounting {} (ext4) on {}", dev.display(), target.display()),
        "mount",
    ))?;
    say(log, &format!("mounted /dev/{} on /{SYSROOT}/var", var.name));

    if let Err(e) = grow_fs(sys, root, var, grown_len, &target, log) {
        say(
            log,
            &format!(
                "warning: {}; keeping the file system at its size",
                chain(&e)
            ),
        );
    }
    Ok(())
}

/// Extends `var` in the GPT and tells the kernel; returns its new length
/// in bytes when it grew.
fn grow_partition(
    sys: &dyn Sys,
    root: &Path,
    var: &BlockDev,
    min_gain: u64,
    log: &mut dyn Write,
) -> Result<Option<u64>, BootError> {
    let disk_name = var.disk.as_deref().ok_or_else(|| {
        BootError::Invalid(format!("cannot tell which disk /dev/{} is on", var.name))
    })?;
    let disk = at(root, &format!("/dev/{disk_name}"));
    let ss_path = at(
        root,
        &format!("/sys/class/block/{disk_name}/queue/logical_block_size"),
    );
    let sector_size = fs::read_to_string(&ss_path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|s| s.is_power_of_two() && *s >= 512)
        .unwrap_or(512);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .map_err(BootError::io_path("opening", &disk))?;
    let outcome =
        gpt_grow::grow_last_partition(&mut file, sector_size, layout::VAR_LABEL, min_gain)
            .map_err(|source| BootError::Gpt {
                part: layout::VAR_LABEL.to_string(),
                disk: disk.clone(),
                source,
            })?;
    file.sync_all()
        .map_err(BootError::io_path("syncing", &disk))?;
    drop(file);
    let g = match outcome {
        GrowOutcome::NotLast { after } => {
            say(
                log,
                &format!(
                    "{} is not the last partition (partition {after} follows), not growing it",
                    var.name
                ),
            );
            return Ok(None);
        }
        GrowOutcome::NoRoom { .. } => return Ok(None),
        GrowOutcome::Grown(g) => g,
    };
    if Some(g.number) != var.number {
        return Err(BootError::Invalid(format!(
            "GPT says {} is partition {}, the kernel says {:?}",
            layout::VAR_LABEL,
            g.number,
            var.number
        )));
    }
    sys.blkpg_resize_partition(&disk, g.number, g.start, g.length)
        .map_err(BootError::sys(
            format!(
                "telling the kernel that partition {} of {} grew",
                g.number,
                disk.display()
            ),
            "BLKPG_RESIZE_PARTITION",
        ))?;
    say(
        log,
        &format!(
            "grew partition {} from {} MiB to {} MiB",
            var.name,
            g.old_length / MIB,
            g.length / MIB
        ),
    );
    Ok(Some(g.length))
}

/// Grows the mounted ext4 on `var` to fill the partition.
fn grow_fs(
    sys: &dyn Sys,
    root: &Path,
    var: &BlockDev,
    grown_len: Option<u64>,
    mountpoint: &Path,
    log: &mut dyn Write,
) -> Result<(), BootError> {
    let part_len = match grown_len {
        Some(l) => l,
        None => {
            let size = at(root, &format!("/sys/class/block/{}/size", var.name));
            let text = fs::read_to_string(&size).map_err(BootError::io_path("reading", &size))?;
            let sectors: u64 = text.trim().parse().map_err(|_| {
                BootError::Invalid(format!(
                    "{} holds {:?}, not a number",
                    size.display(),
                    text.trim()
                ))
            })?;
            sectors * 512
        }
    };
    let dev = at(root, &format!("/dev/{}", var.name));
    let fs_size = File::open(&dev)
        .map_err(BootError::io_path("opening", &dev))
        .and_then(|mut f| {
            Ext4Size::read(&mut f).map_err(|source| BootError::Ext4 {
                dev: dev.clone(),
                source,
            })
        })?;
    let Some(blocks) = fs_size.grow_target(part_len) else {
        return Ok(());
    };
    sys.ext4_resize(mountpoint, blocks).map_err(BootError::sys(
        format!("growing ext4 on {} to {blocks} blocks", dev.display()),
        "EXT4_IOC_RESIZE_FS",
    ))?;
    say(
        log,
        &format!(
            "grew ext4 on /dev/{} from {} MiB to {} MiB",
            var.name,
            fs_size.blocks * fs_size.block_size / MIB,
            blocks * fs_size.block_size / MIB
        ),
    );
    Ok(())
}
