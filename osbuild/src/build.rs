//! The build pipeline: from an image config to disk images.
//!
//! Containment and failure hygiene: the build holds the lock of its output
//! name ([`OutputLock`]) for its whole run, composes in `OUT/.work-NAME`
//! (removed on every way out, SIGINT and SIGTERM included, see
//! [`crate::cancel`]), writes every output under a partial name and makes
//! them final together at the very end, the manifest last ([`Outputs`]).

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use keel_core::layout::{self, Slot};
use keel_core::osrelease::OsRelease;
use keel_core::verity;
use sha2::Digest;

use crate::cancel::Cancel;
use crate::config::ImageConfig;
use crate::disk::{derived_uuid, Layout, PartitionSpec, MIB};
use crate::inputs::{self, KEEL_FIRSTBOOT, KEEL_INIT};
use crate::outputs::{OutputLock, Outputs, RemoveOnDrop};
use crate::{cacerts, esp, initramfs, modules, rootfs, stage, sysusers, tools, trees, unpack};

/// Output formats `osbuild build` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

pub struct BuildOptions {
    pub config_path: PathBuf,
    pub out_dir: PathBuf,
    pub formats: Vec<Format>,
    pub cache_dir: PathBuf,
    /// Root of the host whose apt configuration names mirror and keyring.
    pub apt_root: PathBuf,
    pub mirror: Option<String>,
    pub keyring: Option<PathBuf>,
    pub offline: bool,
    pub init_binary: PathBuf,
    /// The statically linked `keel-firstboot`.
    pub firstboot_binary: PathBuf,
    /// An Ignition config to put on the ESP as the default first-boot
    /// config (validated here first).
    pub ignition: Option<PathBuf>,
    pub keep_work: bool,
    /// Stops the build, cleaning up, when a signal came
    /// ([`Cancel::with_signal_handlers`]).
    pub cancel: Cancel,
}

/// What a build produced.
#[derive(Debug)]
pub struct BuildOutput {
    pub images: Vec<PathBuf>,
    pub manifest: PathBuf,
    pub roothash: [u8; 32],
}

/// The signal that stopped the build, when one did (`e` from [`build`]).
pub fn interrupted_by(e: &anyhow::Error) -> Option<crate::cancel::Interrupted> {
    e.chain().find_map(|c| {
        c.downcast_ref::<crate::cancel::Interrupted>()
            .copied()
            .or_else(|| match c.downcast_ref::<tools::ToolError>() {
                Some(tools::ToolError::Interrupted(i)) => Some(*i),
                _ => None,
            })
    })
}

fn step(name: &str) -> Instant {
    eprintln!("osbuild: {name}");
    Instant::now()
}

pub fn build(opts: &BuildOptions) -> Result<BuildOutput> {
    let t0 = Instant::now();
    let cfg = ImageConfig::load(&opts.config_path)?;
    let stem = format!("{}-{}", cfg.image.name, cfg.image.version);
    let tree_dirs = cfg.tree_dirs(&opts.config_path)?;
    let mut required_tools = vec!["mkfs.erofs", "mkfs.ext4", "debugfs", "depmod"];
    if opts.formats.contains(&Format::Qcow2) {
        required_tools.push("qemu-img");
    }
    tools::check_available(&required_tools)?;
    let init_bytes = inputs::read_static_binary(&opts.init_binary, KEEL_INIT)?;
    let firstboot_bytes = inputs::read_static_binary(&opts.firstboot_binary, KEEL_FIRSTBOOT)?;
    let ignition = opts
        .ignition
        .as_deref()
        .map(inputs::read_ignition)
        .transpose()?;
    let cancel = &opts.cancel;

    fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating output directory {}", opts.out_dir.display()))?;
    tempfile::tempfile_in(&opts.out_dir).with_context(|| {
        format!(
            "output directory {} is not writable",
            opts.out_dir.display()
        )
    })?;
    // Held until the build returns: no other build of this name touches
    // the work tree or the outputs meanwhile.
    let _lock = OutputLock::acquire(&opts.out_dir, &stem, cancel)?;

    // 1. Resolve. Until the work tree exists a signal just ends osbuild.
    let t = step("resolving packages");
    let sources = package_sources(&cfg, opts)?;
    let mode = if opts.offline {
        debrepo::NetMode::Offline
    } else {
        debrepo::NetMode::Online
    };
    let repo = debrepo::Repository::open(&sources, "amd64", &opts.cache_dir, mode)
        .context("opening the package repositories")?;
    let root_pkgs = repo
        .resolve_excluding(&cfg.packages.include, &cfg.packages.exclude)
        .context("resolving packages.include (with packages.exclude)")?;
    let kernel_pkgs: Vec<_> = repo
        .resolve(std::slice::from_ref(&cfg.kernel.package))
        .context("resolving kernel.package")?
        .into_iter()
        .filter(|p| p.name.starts_with("linux-image-"))
        .collect();
    let boot_pkgs = repo
        .resolve(&["systemd-boot-efi".to_string()])
        .context("resolving the boot loader (systemd-boot-efi)")?
        .into_iter()
        .filter(|p| p.name == "systemd-boot-efi")
        .collect::<Vec<_>>();
    eprintln!(
        "osbuild:   {} packages, kernel {}, boot loader {} ({:.1}s)",
        root_pkgs.len(),
        kernel_pkgs
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(", "),
        boot_pkgs.first().map(|p| p.version.as_str()).unwrap_or("?"),
        t.elapsed().as_secs_f64()
    );
    let epoch = source_date_epoch(&cfg, &repo)?;

    // 2. Fetch.
    let t = step("fetching packages");
    // One call: one progress bar and one pool of download threads.
    let all: Vec<_> = root_pkgs
        .iter()
        .chain(&kernel_pkgs)
        .chain(&boot_pkgs)
        .cloned()
        .collect();
    let mut debs = repo
        .fetch(&all, &opts.cache_dir, mode)
        .context("fetching packages")?;
    let boot_debs = debs.split_off(root_pkgs.len() + kernel_pkgs.len());
    let kernel_debs = debs.split_off(root_pkgs.len());
    let root_debs = debs;
    eprintln!("osbuild:   done ({:.1}s)", t.elapsed().as_secs_f64());

    // From here on there is something to clean up: a signal is only
    // recorded, and the build stops at its next check.
    cancel.set_immediate(false);
    let work = opts.out_dir.join(format!(".work-{stem}"));
    if fs::symlink_metadata(&work).is_ok() {
        // Left by a build that was killed (this one holds the lock).
        fs::remove_dir_all(&work).with_context(|| format!("removing stale {}", work.display()))?;
    }
    fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut work_guard = RemoveOnDrop::new(&work);
    cancel.check()?;

    // 3. Compose.
    let t = step("composing the root filesystem");
    let root = work.join("root");
    let var_dir = work.join("var");
    rootfs::prepare(&root).with_context(|| format!("preparing {}", root.display()))?;
    let chown = rustix::process::geteuid().is_root();
    if !chown {
        eprintln!("osbuild: warning: not running as root: package file owners are not preserved, every file in the image will be owned by root");
    }
    let kdir = work.join("kernel");
    let bdir = work.join("bootloader");
    for dir in [&root, &kdir, &bdir] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (dir, pkgs, debs) in [
        (&root, &root_pkgs, &root_debs),
        (&kdir, &kernel_pkgs, &kernel_debs),
        (&bdir, &boot_pkgs, &boot_debs),
    ] {
        for (pkg, deb) in pkgs.iter().zip(debs) {
            cancel.check()?;
            unpack::unpack(deb, dir, chown)
                .with_context(|| format!("unpacking {} {}", pkg.name, pkg.version))?;
        }
    }
    let kernel_names: Vec<String> = kernel_pkgs
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    let (kver, kernel_image) = inputs::find_kernel(&kdir, &cfg.kernel.package, &kernel_names)?;
    let moddir_rel = format!("usr/lib/modules/{kver}");
    let kernel_moddir = stage::resolve(&kdir, &moddir_rel)
        .ok()
        .flatten()
        .filter(|d| d.is_dir())
        .with_context(|| {
            format!(
                "kernel.package {:?}: {} ship /boot/vmlinuz-{kver} but no /{moddir_rel}",
                cfg.kernel.package,
                kernel_names.join(", ")
            )
        })?;
    // Nothing of the root is in the way yet but what packages put there;
    // resolved inside it like everything else.
    let moddir = stage::clear_for_new(&root, &moddir_rel)
        .with_context(|| format!("making room for /{moddir_rel} in the root"))?;
    fs::rename(&kernel_moddir, &moddir)
        .with_context(|| format!("moving kernel modules of {kver} into the root"))?;
    for tree in &tree_dirs {
        cancel.check()?;
        let st = trees::copy_tree(tree, &root)
            .with_context(|| format!("copying files.trees of {}", opts.config_path.display()))?;
        eprintln!(
            "osbuild:   tree {}: {} files, {} symlinks, {} directories",
            tree.display(),
            st.files,
            st.symlinks,
            st.dirs
        );
    }
    // depmod and the module scan are not confined to the root: what they
    // write and read must be real directories there (trees cannot change
    // that, see rootfs::reserved_paths; packages could).
    for path in [format!("{moddir_rel}/kernel"), "lib".into()] {
        if path == "lib" {
            let target = fs::read_link(root.join("lib")).ok();
            if target.as_deref() != Some(Path::new("usr/lib")) {
                bail!("/lib in the root is no longer the merged-/usr link to usr/lib (changed by a package)");
            }
        } else {
            stage::check_no_links(&root, &path)
                .with_context(|| format!("kernel modules of {kver} in the root"))?;
        }
    }
    let mods = modules::ModuleSet::scan(&moddir, &kver)?;
    let depmod_dirs: Vec<PathBuf> = tools::DEPMOD_CONFIG_DIRS
        .iter()
        .filter_map(|d| stage::resolve(&root, d).ok().flatten())
        .collect();
    tools::depmod(&root, &kver, &depmod_dirs, cancel)?;
    cancel.check()?;
    let os_release = OsRelease {
        image_id: cfg.image.name.clone(),
        version: cfg.image.version.clone(),
    };
    rootfs::finish(
        &root,
        &var_dir,
        &rootfs::Finish {
            os_release: &os_release,
            init_binary: &init_bytes,
            firstboot_binary: &firstboot_bytes,
        },
    )?;
    let accounts = sysusers::apply(&root).context("creating the sysusers.d accounts")?;
    for u in &accounts.users {
        eprintln!(
            "osbuild:   user {} ({}:{})",
            u.name,
            u.uid.unwrap_or_default(),
            u.gid
        );
    }
    for g in &accounts.groups {
        eprintln!("osbuild:   group {} ({})", g.name, g.gid);
    }
    if root_pkgs.iter().any(|p| p.name == "ca-certificates") {
        let bundle = cacerts::update(&root).context("making the CA bundle")?;
        eprintln!(
            "osbuild:   {}: {} certificates",
            cacerts::BUNDLE,
            bundle.certificates.len()
        );
    }
    rootfs::clamp_times(&root, epoch)?;
    rootfs::clamp_times(&var_dir, epoch)?;
    eprintln!("osbuild:   done ({:.1}s)", t.elapsed().as_secs_f64());
    cancel.check()?;

    // 4. Root filesystem and 5. integrity.
    let t = step("making the erofs root and its dm-verity tree");
    let seed = format!("keel:{stem}");
    let erofs = work.join("root.erofs");
    tools::mkfs_erofs(
        &root,
        &erofs,
        &derived_uuid(&seed, "root-a-fs"),
        epoch,
        !chown,
        cancel,
    )?;
    let erofs_size = fs::metadata(&erofs)
        .with_context(|| format!("reading {}", erofs.display()))?
        .len();
    let root_part = cfg.partitions.root.0;
    if erofs_size > root_part {
        bail!(
            "the root filesystem is {} MiB but partitions.root in {} is {}: raise it or remove packages",
            erofs_size.div_ceil(MIB),
            opts.config_path.display(),
            cfg.partitions.root
        );
    }
    if erofs_size % u64::from(layout::VERITY_BLOCK_SIZE) != 0 {
        bail!("mkfs.erofs wrote {erofs_size} bytes, not a whole number of 4 KiB blocks");
    }
    let verity_img = work.join("root.verity");
    let params = verity::VerityParams {
        salt: sha2::Sha256::digest(format!("{seed}\0verity-salt")).to_vec(),
        uuid: *derived_uuid(&seed, "verity-uuid").as_bytes(),
    };
    let tree = {
        let data = File::open(&erofs).with_context(|| format!("opening {}", erofs.display()))?;
        let mut out = File::create(&verity_img)
            .with_context(|| format!("creating {}", verity_img.display()))?;
        verity::build(std::io::BufReader::new(data), erofs_size, &params, &mut out)
            .context("computing the dm-verity hash tree")?
    };
    eprintln!(
        "osbuild:   erofs {} MiB, root hash {} ({:.1}s)",
        erofs_size.div_ceil(MIB),
        hex::encode(tree.root_hash),
        t.elapsed().as_secs_f64()
    );
    cancel.check()?;

    // 6. initramfs.
    let t = step("making the initramfs");
    let (initrd, initrd_mods) = initramfs::build(&initramfs::Contents {
        init_binary: &init_bytes,
        modules: &mods,
        requested: &cfg.kernel.initrd_modules,
        version: &cfg.image.version,
        mtime: u32::try_from(epoch).unwrap_or(u32::MAX),
    })?;
    eprintln!(
        "osbuild:   {} KiB, {} modules ({:.1}s)",
        initrd.len() / 1024,
        initrd_mods.len(),
        t.elapsed().as_secs_f64()
    );

    // 7. Disk.
    let t = step("assembling the disk");
    let var_img = work.join("var.ext4");
    tools::mkfs_ext4(
        &var_dir,
        &var_img,
        cfg.partitions.var.0,
        layout::VAR_LABEL,
        &derived_uuid(&seed, "var-fs"),
        epoch,
        cancel,
    )?;
    tools::ext4_fix_inodes(&var_img, &var_dir, epoch, !chown, cancel)?;
    let verity_part = verity::hash_device_size(root_part);
    let specs = vec![
        PartitionSpec {
            label: layout::ESP_LABEL,
            type_guid: layout::ESP_TYPE,
            size: cfg.partitions.esp.0,
        },
        PartitionSpec {
            label: Slot::A.root_label(),
            type_guid: layout::ROOT_TYPE,
            size: root_part,
        },
        PartitionSpec {
            label: Slot::A.verity_label(),
            type_guid: layout::ROOT_VERITY_TYPE,
            size: verity_part,
        },
        PartitionSpec {
            label: Slot::B.root_label(),
            type_guid: layout::ROOT_TYPE,
            size: root_part,
        },
        PartitionSpec {
            label: Slot::B.verity_label(),
            type_guid: layout::ROOT_VERITY_TYPE,
            size: verity_part,
        },
        PartitionSpec {
            label: layout::VAR_LABEL,
            type_guid: layout::VAR_TYPE,
            size: cfg.partitions.var.0,
        },
    ];
    let disk_layout = Layout::plan(&specs, &seed)
        .with_context(|| format!("the partitions of {}", opts.config_path.display()))?;
    let kernel_bytes =
        fs::read(&kernel_image).with_context(|| format!("reading {}", kernel_image.display()))?;
    let sdboot_path = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";
    let sdboot = stage::read(&bdir, sdboot_path)
        .with_context(|| format!("reading /{sdboot_path} of systemd-boot-efi"))?
        .with_context(|| format!("systemd-boot-efi ships no /{sdboot_path}"))?;
    let fat = esp::build(
        sdboot,
        esp::Release {
            version: &cfg.image.version,
            image_name: &cfg.image.name,
            slot: Slot::A,
            roothash: &tree.root_hash,
            extra_cmdline: &cfg.kernel.cmdline,
            kernel: kernel_bytes,
            initrd,
            ignition,
        },
        u32::from_le_bytes(
            derived_uuid(&seed, "esp-fs").as_bytes()[..4]
                .try_into()
                .unwrap_or([0; 4]),
        ),
        epoch,
    )
    .context("building the ESP")?;
    cancel.check()?;

    // The outputs, under partial names until all are written. The raw
    // disk is assembled in the work tree when it is only qcow2's input.
    let mut outputs = Outputs::new(&opts.out_dir);
    let raw_tmp = if opts.formats.contains(&Format::Raw) {
        outputs.add(&format!("{stem}.raw"))?
    } else {
        work.join("disk.raw")
    };
    {
        let mut disk = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&raw_tmp)
            .with_context(|| format!("creating {}", raw_tmp.display()))?;
        disk.set_len(disk_layout.disk_size)
            .with_context(|| format!("sizing {}", raw_tmp.display()))?;
        disk_layout
            .write_gpt(&mut disk)
            .with_context(|| format!("writing the partition table to {}", raw_tmp.display()))?;
        let part = |label: &str| {
            disk_layout
                .get(label)
                .with_context(|| format!("partition {label} missing from the layout"))
        };
        let esp_part = part(layout::ESP_LABEL)?;
        fat.write_to(&mut disk, esp_part.offset, esp_part.size)
            .with_context(|| format!("writing the ESP into {}", raw_tmp.display()))?;
        copy_into(&erofs, &mut disk, part(Slot::A.root_label())?)?;
        copy_into(&verity_img, &mut disk, part(Slot::A.verity_label())?)?;
        copy_into(&var_img, &mut disk, part(layout::VAR_LABEL)?)?;
        disk.sync_all()
            .with_context(|| format!("syncing {}", raw_tmp.display()))?;
    }
    eprintln!("osbuild:   done ({:.1}s)", t.elapsed().as_secs_f64());

    // 8. Formats.
    if opts.formats.contains(&Format::Qcow2) {
        cancel.check()?;
        let t = step("converting to qcow2");
        let q_tmp = outputs.add(&format!("{stem}.qcow2"))?;
        tools::qemu_img_convert(&raw_tmp, &q_tmp, cancel)?;
        eprintln!("osbuild:   done ({:.1}s)", t.elapsed().as_secs_f64());
    }
    let manifest_tmp = outputs.add(&format!("{stem}.manifest.json"))?;
    write_manifest(
        &manifest_tmp,
        &cfg,
        &kver,
        &tree.root_hash,
        epoch,
        &root_pkgs,
        &kernel_pkgs,
        &boot_pkgs,
        &initrd_mods,
    )?;
    // The last check: after it the build completes whatever comes.
    cancel.check()?;
    let mut finals = outputs.commit()?;
    let manifest = finals
        .pop()
        .context("the manifest is missing from the outputs")?;
    let images = finals;
    if opts.keep_work {
        work_guard.disarm();
        eprintln!("osbuild: work tree kept at {}", work.display());
    }
    drop(work_guard);
    eprintln!(
        "osbuild: built {stem} in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    for i in &images {
        eprintln!("osbuild:   {}", i.display());
    }
    Ok(BuildOutput {
        images,
        manifest,
        roothash: tree.root_hash,
    })
}

fn package_sources(cfg: &ImageConfig, opts: &BuildOptions) -> Result<Vec<debrepo::Source>> {
    let mirror = opts.mirror.clone().or_else(|| cfg.packages.mirror.clone());
    let keyring = opts
        .keyring
        .clone()
        .or_else(|| cfg.packages.keyring.clone());
    let suites = &cfg.packages.suites;
    let mut sources = match &mirror {
        Some(uri) => suites
            .iter()
            .map(|suite| debrepo::Source {
                uri: uri.trim_end_matches('/').to_string(),
                suite: suite.clone(),
                components: cfg.packages.components.clone(),
                keyrings: Vec::new(),
            })
            .collect(),
        None => debrepo::apt_sources(&opts.apt_root, suites)
            .with_context(|| format!("reading apt sources under {}", opts.apt_root.display()))?,
    };
    for s in &mut sources {
        if let Some(k) = &keyring {
            s.keyrings = vec![debrepo::Keyring::File(k.clone())];
        } else if s.keyrings.is_empty() {
            s.keyrings = debrepo::default_keyrings(&opts.apt_root).with_context(|| {
                format!("finding apt's keyrings under {}", opts.apt_root.display())
            })?;
        }
        s.components.retain(|c| cfg.packages.components.contains(c));
    }
    for suite in suites {
        if !sources.iter().any(|s| &s.suite == suite) {
            bail!(
                "no apt source on this host provides suite {suite:?} (named in packages.suites of {}); pass --mirror",
                opts.config_path.display()
            );
        }
    }
    Ok(sources)
}

fn source_date_epoch(cfg: &ImageConfig, repo: &debrepo::Repository) -> Result<u64> {
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let v = v.to_string_lossy();
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"));
    }
    if let Some(e) = cfg.image.source_date_epoch {
        return Ok(e);
    }
    repo.releases()
        .iter()
        .filter_map(|(_, r)| r.date)
        .max()
        .context(
            "no SOURCE_DATE_EPOCH, no image.source-date-epoch and no Release date to fall back on",
        )
}

fn copy_into(src: &Path, disk: &mut File, part: &crate::disk::Placed) -> Result<()> {
    let mut f = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("reading {}", src.display()))?
        .len();
    if len > part.size {
        bail!(
            "{} ({} bytes) does not fit partition {} ({} bytes)",
            src.display(),
            len,
            part.label,
            part.size
        );
    }
    disk.seek(SeekFrom::Start(part.offset))
        .with_context(|| format!("seeking to partition {}", part.label))?;
    sparse_copy(&mut f, disk)
        .with_context(|| format!("writing {} into partition {}", src.display(), part.label))
}

/// Copies, skipping all-zero 64 KiB blocks so the raw image stays sparse
/// (the target is freshly allocated and reads as zeros there).
fn sparse_copy(src: &mut File, dst: &mut File) -> std::io::Result<()> {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = src.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(());
        }
        if buf[..filled].iter().all(|b| *b == 0) {
            dst.seek(SeekFrom::Current(filled as i64))?;
        } else {
            dst.write_all(&buf[..filled])?;
        }
        if filled < buf.len() {
            return Ok(());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_manifest(
    path: &Path,
    cfg: &ImageConfig,
    kver: &str,
    roothash: &[u8; 32],
    epoch: u64,
    root: &[debrepo::Package],
    kernel: &[debrepo::Package],
    boot: &[debrepo::Package],
    initrd_mods: &[String],
) -> Result<()> {
    let pkgs = |ps: &[debrepo::Package]| -> Vec<serde_json::Value> {
        ps.iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "version": p.version, "architecture": p.architecture, "sha256": p.sha256,
                })
            })
            .collect()
    };
    let doc = serde_json::json!({
        "name": cfg.image.name,
        "version": cfg.image.version,
        "source-date-epoch": epoch,
        "kernel": kver,
        "root-hash": hex::encode(roothash),
        "packages": pkgs(root),
        "kernel-packages": pkgs(kernel),
        "boot-loader-packages": pkgs(boot),
        "initrd-modules": initrd_mods,
    });
    let text = serde_json::to_string_pretty(&doc).context("serializing the manifest")?;
    fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::Interrupted;

    #[test]
    fn an_interruption_is_found_through_tool_errors_and_context() {
        let i = Interrupted { signal: 15 };
        let e = anyhow::Error::from(tools::ToolError::Interrupted(i)).context("making the root");
        assert_eq!(interrupted_by(&e), Some(i));
        let e = anyhow::Error::from(i).context("unpacking");
        assert_eq!(interrupted_by(&e), Some(i));
        assert_eq!(interrupted_by(&anyhow::anyhow!("mkfs.erofs failed")), None);
    }
}
