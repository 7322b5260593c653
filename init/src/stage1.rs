//! Stage 1: PID 1 in the initramfs. Mounts the verified root at /sysroot,
//! /var and the /etc overlay, then switches root and execs stage 2.
//!
//! Every path is taken relative to `root` (the initramfs root, `/` for
//! real), so the whole sequence runs in a temporary directory in tests.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_core::cmdline::Cmdline;
use keel_core::layout::{self, Slot};
use keel_core::verity::{self, Superblock};

use crate::error::BootError;
use crate::partitions::{self, BlockDev};
use crate::sys::{DmTarget, MountFlags, NodeKind, Sys};

use crate::boottime;
pub use crate::switch_root::switch_root;
pub use crate::var::setup_var;

/// Tunables of stage 1; the defaults are what a real boot uses.
#[derive(Debug, Clone)]
pub struct Stage1Config {
    /// How long to wait for the root, verity and var partitions.
    pub device_timeout: Duration,
    pub device_poll: Duration,
    /// Grow `var` only when at least this much would be gained.
    pub min_var_gain: u64,
}

impl Default for Stage1Config {
    fn default() -> Self {
        Stage1Config {
            device_timeout: Duration::from_secs(30),
            device_poll: Duration::from_millis(100),
            min_var_gain: 1 << 20,
        }
    }
}

/// Where the initramfs mounts the real root.
pub const SYSROOT: &str = "sysroot";
/// Kernel modules to load, one absolute `.ko` path per line.
pub const MODULE_LIST: &str = "etc/keel/initrd-modules";
/// Stage-2 arguments; none today.
const STAGE2_ARGS: [&str; 0] = [];

/// `root` joined with an absolute path from inside it.
pub fn at(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Writes one `keel-init: ...` line; a broken console must not stop the boot.
pub fn say(log: &mut dyn Write, msg: &str) {
    let _ = writeln!(log, "keel-init: {msg}");
    let _ = log.flush();
}

/// The partitions stage 1 works with.
#[derive(Debug, Clone)]
pub struct RootDevices {
    pub root: BlockDev,
    pub verity: BlockDev,
    pub var: BlockDev,
}

/// Runs stage 1 to the end: on success the process image has been replaced
/// by stage 2 (with the real [`Sys`]); a recording `Sys` returns `Ok`.
pub fn run(
    sys: &dyn Sys,
    root: &Path,
    log: &mut dyn Write,
    cfg: &Stage1Config,
) -> Result<(), BootError> {
    mount_api_filesystems(sys, root, log)?;
    let started = boottime::uptime(root);

    let cmdline_path = at(root, "/proc/cmdline");
    let text =
        fs::read_to_string(&cmdline_path).map_err(BootError::io_path("reading", &cmdline_path))?;
    let cmdline = Cmdline::parse(&text);
    let slot = cmdline.slot()?;
    let roothash = cmdline.roothash()?;
    say(
        log,
        &format!("slot {slot}, root hash {}", hex::encode(roothash)),
    );

    load_modules(sys, root, log)?;
    let devs = find_devices(root, slot, cfg, log)?;
    let dm_node = create_verity_device(sys, root, &devs, &roothash, log)?;

    let sysroot = root.join(SYSROOT);
    let source = dm_node.to_string_lossy();
    sys.mount(&source, &sysroot, "erofs", MountFlags::RDONLY, "")
        .map_err(BootError::sys(
            format!(
                "mounting {} (erofs) on {}",
                dm_node.display(),
                sysroot.display()
            ),
            "mount",
        ))?;
    say(
        log,
        &format!(
            "mounted verified root {} read-only on /{SYSROOT}",
            dm_node.display()
        ),
    );

    setup_var(sys, root, &devs.var, cfg.min_var_gain, log)?;
    setup_etc(sys, root, log)?;
    if let (Some(started), Some(switched)) = (started, boottime::uptime(root)) {
        boottime::Stage1Times { started, switched }.write(root);
    }
    switch_root(sys, root, log)?;

    say(log, &format!("starting {}", layout::INIT_PATH));
    let init = Path::new(layout::INIT_PATH);
    sys.exec(init, &STAGE2_ARGS).map_err(BootError::sys(
        format!("starting stage 2 {}", init.display()),
        "execve",
    ))
}

/// Step 1: /proc, /sys, /dev (devtmpfs) and /run.
pub fn mount_api_filesystems(
    sys: &dyn Sys,
    root: &Path,
    log: &mut dyn Write,
) -> Result<(), BootError> {
    let nsnd = MountFlags::NOSUID | MountFlags::NODEV;
    let mounts: [(&str, &str, MountFlags, &str); 4] = [
        ("proc", "/proc", nsnd | MountFlags::NOEXEC, ""),
        ("sysfs", "/sys", nsnd | MountFlags::NOEXEC, ""),
        ("devtmpfs", "/dev", MountFlags::NOSUID, "mode=0755"),
        ("tmpfs", "/run", nsnd, "mode=0755"),
    ];
    for (fstype, dir, flags, data) in mounts {
        let target = at(root, dir);
        fs::create_dir_all(&target).map_err(BootError::io_path("creating", &target))?;
        sys.mount(fstype, &target, fstype, flags, data)
            .map_err(BootError::sys(
                format!("mounting {fstype} on {}", target.display()),
                "mount",
            ))?;
    }
    say(log, "mounted /proc /sys /dev /run");
    Ok(())
}

/// Step 3: finit_module every file in the module list, in order.
pub fn load_modules(sys: &dyn Sys, root: &Path, log: &mut dyn Write) -> Result<(), BootError> {
    let list = root.join(MODULE_LIST);
    let text = match fs::read_to_string(&list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            say(
                log,
                &format!("no module list {}, loading no modules", list.display()),
            );
            return Ok(());
        }
        Err(e) => return Err(BootError::io_path("reading", &list)(e)),
    };
    let modules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for m in &modules {
        let path = at(root, m);
        let file = File::open(&path).map_err(BootError::io_path("opening kernel module", &path))?;
        match sys.finit_module(&file) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(BootError::sys(
                    format!("loading kernel module {}", path.display()),
                    "finit_module",
                )(e))
            }
        }
    }
    say(log, &format!("loaded {} kernel modules", modules.len()));
    Ok(())
}

/// Step 4: wait until the slot's root, its verity partition and `var`
/// show up on one disk.
pub fn find_devices(
    root: &Path,
    slot: Slot,
    cfg: &Stage1Config,
    log: &mut dyn Write,
) -> Result<RootDevices, BootError> {
    let labels = [slot.root_label(), slot.verity_label(), layout::VAR_LABEL];
    say(
        log,
        &format!("waiting for partitions {}", labels.join(", ")),
    );
    let class = at(root, "/sys/class/block");
    let found = partitions::wait_for(&class, &labels, cfg.device_timeout, cfg.device_poll)
        .map_err(BootError::Partitions)?;
    let [root_dev, verity, var]: [BlockDev; 3] = found
        .try_into()
        .map_err(|_| BootError::Invalid("partition lookup returned the wrong count".into()))?;
    say(
        log,
        &format!(
            "found {}=/dev/{} {}=/dev/{} {}=/dev/{}",
            labels[0], root_dev.name, labels[1], verity.name, labels[2], var.name
        ),
    );
    Ok(RootDevices {
        root: root_dev,
        verity,
        var,
    })
}

/// Reads the verity superblock at the start of the hash partition.
pub fn read_verity_superblock(dev: &Path) -> Result<Superblock, BootError> {
    let mut buf = vec![0u8; verity::SUPERBLOCK_SIZE];
    File::open(dev)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(BootError::io_path("reading the verity superblock on", dev))?;
    Superblock::parse(&buf).map_err(|source| BootError::Verity {
        dev: dev.to_path_buf(),
        source,
    })
}

/// Makes sure `/dev/mapper/control` exists (devtmpfs creates it when
/// dm-mod is loaded; fall back to the number sysfs gives).
fn dm_control(sys: &dyn Sys, root: &Path) -> Result<PathBuf, BootError> {
    let control = at(root, "/dev/mapper/control");
    if control.exists() {
        return Ok(control);
    }
    let devfile = at(root, "/sys/class/misc/device-mapper/dev");
    let text = fs::read_to_string(&devfile).map_err(BootError::io(format!(
        "{} is missing and reading {} failed (is dm-mod loaded?)",
        control.display(),
        devfile.display()
    )))?;
    let (major, minor) = parse_devno(text.trim()).ok_or_else(|| {
        BootError::Invalid(format!(
            "{} holds {:?}, not major:minor",
            devfile.display(),
            text.trim()
        ))
    })?;
    let dir = at(root, "/dev/mapper");
    fs::create_dir_all(&dir).map_err(BootError::io_path("creating", &dir))?;
    sys.mknod(&control, NodeKind::Char, major, minor)
        .map_err(BootError::sys(
            format!("creating {}", control.display()),
            "mknod",
        ))?;
    Ok(control)
}

fn parse_devno(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Step 5: dm-verity device `keel-root` over the slot's root partition;
/// returns the path of its device node.
pub fn create_verity_device(
    sys: &dyn Sys,
    root: &Path,
    devs: &RootDevices,
    roothash: &[u8; 32],
    log: &mut dyn Write,
) -> Result<PathBuf, BootError> {
    let hash_path = at(root, &format!("/dev/{}", devs.verity.name));
    let sb = read_verity_superblock(&hash_path)?;
    let params = verity::dm_table_params(&sb, &devs.root.devno(), &devs.verity.devno(), roothash);
    let sectors = sb
        .data_blocks
        .checked_mul(u64::from(sb.data_block_size) / 512)
        .ok_or_else(|| {
            BootError::Invalid(format!(
                "verity superblock on {} is too large",
                hash_path.display()
            ))
        })?;
    let target = DmTarget {
        start: 0,
        length: sectors,
        target_type: "verity".into(),
        params,
    };
    let name = layout::ROOT_DM_NAME;
    let what = format!(
        "creating dm-verity device {name} on /dev/{} with hash /dev/{} (table: 0 {} verity {})",
        devs.root.name, devs.verity.name, target.length, target.params
    );
    let control = dm_control(sys, root)?;
    let (major, minor) = sys
        .dm_create(&control, name, true)
        .map_err(BootError::sys(&what, "DM_DEV_CREATE"))?;
    sys.dm_load_table(&control, name, true, std::slice::from_ref(&target))
        .map_err(BootError::sys(&what, "DM_TABLE_LOAD"))?;
    sys.dm_resume(&control, name)
        .map_err(BootError::sys(&what, "DM_DEV_SUSPEND (resume)"))?;

    let mapper = at(root, "/dev/mapper");
    fs::create_dir_all(&mapper).map_err(BootError::io_path("creating", &mapper))?;
    let node = mapper.join(name);
    if !node.exists() {
        sys.mknod(&node, NodeKind::Block, major, minor)
            .map_err(BootError::sys(
                format!("creating {}", node.display()),
                "mknod",
            ))?;
    }
    say(
        log,
        &format!(
            "dm-verity device {name} ({major}:{minor}) active: 0 {} verity {}",
            target.length, target.params
        ),
    );
    Ok(node)
}

/// Step 8: /etc as an overlay, lower: the image's /etc, upper on /var.
pub fn setup_etc(sys: &dyn Sys, root: &Path, log: &mut dyn Write) -> Result<(), BootError> {
    let sysroot = root.join(SYSROOT);
    let etc = sysroot.join("etc");
    let upper = sysroot.join("var").join(layout::ETC_UPPER);
    let work = sysroot.join("var").join(layout::ETC_WORK);
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(BootError::io_path("creating", d))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        etc.display(),
        upper.display(),
        work.display()
    );
    if [&etc, &upper, &work]
        .iter()
        .any(|p| p.to_string_lossy().contains([',', ':']))
    {
        return Err(BootError::Invalid(format!(
            "overlay paths may not contain ',' or ':': {opts}"
        )));
    }
    sys.mount("overlay", &etc, "overlay", MountFlags::NONE, &opts)
        .map_err(BootError::sys(
            format!("mounting the /etc overlay on {} ({opts})", etc.display()),
            "mount",
        ))?;
    say(log, "mounted /etc overlay (changes persist in /var)");
    Ok(())
}

#[cfg(test)]
#[path = "stage1_tests.rs"]
mod tests;
