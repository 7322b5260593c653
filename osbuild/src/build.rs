//! The build pipeline: from an image config to disk images.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use keel_core::layout::{self, Slot};
use keel_core::osrelease::OsRelease;
use keel_core::verity;
use sha2::Digest;

use crate::config::ImageConfig;
use crate::disk::{derived_uuid, Layout, PartitionSpec, MIB};
use crate::{cacerts, esp, initramfs, modules, rootfs, sysusers, tools, trees, unpack};

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
}

/// What a build produced.
#[derive(Debug)]
pub struct BuildOutput {
    pub images: Vec<PathBuf>,
    pub manifest: PathBuf,
    pub roothash: [u8; 32],
}

/// Removes a path when dropped, unless disarmed: no half-written output
/// survives a failed build.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
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
    let init_bytes = read_static_binary(&opts.init_binary, "keel-init", "--init-binary")?;
    let firstboot_bytes = read_static_binary(
        &opts.firstboot_binary,
        "keel-firstboot",
        "--firstboot-binary",
    )?;
    let ignition = opts.ignition.as_deref().map(read_ignition).transpose()?;

    fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating output directory {}", opts.out_dir.display()))?;
    tempfile::tempfile_in(&opts.out_dir).with_context(|| {
        format!(
            "output directory {} is not writable",
            opts.out_dir.display()
        )
    })?;
    let work = opts.out_dir.join(format!(".work-{stem}"));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing stale {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut work_guard = Cleanup(Some(work.clone()));

    // 1. Resolve.
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

    // 3. Compose.
    let t = step("composing the root filesystem");
    let root = work.join("root");
    let var_dir = work.join("var");
    rootfs::prepare(&root).with_context(|| format!("preparing {}", root.display()))?;
    let chown = rustix::process::geteuid().is_root();
    if !chown {
        eprintln!("osbuild: warning: not running as root: package file owners are not preserved, every file in the image will be owned by root");
    }
    for (pkg, deb) in root_pkgs.iter().zip(&root_debs) {
        unpack::unpack(deb, &root, chown)
            .with_context(|| format!("unpacking {} {}", pkg.name, pkg.version))?;
    }
    let kdir = work.join("kernel");
    for (pkg, deb) in kernel_pkgs.iter().zip(&kernel_debs) {
        unpack::unpack(deb, &kdir, chown)
            .with_context(|| format!("unpacking {} {}", pkg.name, pkg.version))?;
    }
    let bdir = work.join("bootloader");
    for (pkg, deb) in boot_pkgs.iter().zip(&boot_debs) {
        unpack::unpack(deb, &bdir, chown)
            .with_context(|| format!("unpacking {} {}", pkg.name, pkg.version))?;
    }
    let (kver, kernel_image) = find_kernel(&kdir)?;
    let moddir_rel = format!("usr/lib/modules/{kver}");
    let moddir = root.join(&moddir_rel);
    if let Some(parent) = moddir.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::rename(kdir.join(&moddir_rel), &moddir)
        .with_context(|| format!("moving kernel modules of {kver} into the root"))?;
    for tree in &tree_dirs {
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
    let mods = modules::ModuleSet::scan(&moddir, &kver)?;
    tools::depmod(&root, &kver)?;
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
    )?;
    tools::ext4_fix_inodes(&var_img, &var_dir, epoch, !chown)?;
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
    let disk_layout = Layout::plan(&specs, &seed);
    let kernel_bytes =
        fs::read(&kernel_image).with_context(|| format!("reading {}", kernel_image.display()))?;
    let sdboot_path = bdir.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    let sdboot = fs::read(&sdboot_path)
        .with_context(|| format!("reading {} from systemd-boot-efi", sdboot_path.display()))?;
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

    let raw_final = opts.out_dir.join(format!("{stem}.raw"));
    let raw_tmp = opts.out_dir.join(format!(".{stem}.raw.partial"));
    let mut raw_guard = Cleanup(Some(raw_tmp.clone()));
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
    let mut images = Vec::new();
    if opts.formats.contains(&Format::Qcow2) {
        let t = step("converting to qcow2");
        let q_final = opts.out_dir.join(format!("{stem}.qcow2"));
        let q_tmp = opts.out_dir.join(format!(".{stem}.qcow2.partial"));
        let q_guard = Cleanup(Some(q_tmp.clone()));
        tools::qemu_img_convert(&raw_tmp, &q_tmp)?;
        fs::rename(&q_tmp, &q_final)
            .with_context(|| format!("renaming to {}", q_final.display()))?;
        std::mem::forget(q_guard);
        images.push(q_final);
        eprintln!("osbuild:   done ({:.1}s)", t.elapsed().as_secs_f64());
    }
    if opts.formats.contains(&Format::Raw) {
        fs::rename(&raw_tmp, &raw_final)
            .with_context(|| format!("renaming to {}", raw_final.display()))?;
        raw_guard.0 = None;
        images.insert(0, raw_final);
    }
    drop(raw_guard);

    let manifest = opts.out_dir.join(format!("{stem}.manifest.json"));
    write_manifest(
        &manifest,
        &cfg,
        &kver,
        &tree.root_hash,
        epoch,
        &root_pkgs,
        &kernel_pkgs,
        &boot_pkgs,
        &initrd_mods,
    )?;
    if opts.keep_work {
        work_guard.0 = None;
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

/// The versioned kernel image: `boot/vmlinuz-<kver>` in the unpacked
/// kernel package.
fn find_kernel(kdir: &Path) -> Result<(String, PathBuf)> {
    let boot = kdir.join("boot");
    let mut found = Vec::new();
    for e in fs::read_dir(&boot)
        .with_context(|| format!("the kernel package has no /boot ({})", boot.display()))?
    {
        let e = e.with_context(|| format!("reading {}", boot.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(kver) = name.strip_prefix("vmlinuz-") {
            found.push((kver.to_string(), e.path()));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("the kernel package ships no /boot/vmlinuz-*"),
        _ => bail!(
            "the kernel packages ship several kernels ({}); name one versioned package in kernel.package",
            found.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Checks an Ignition config as a node's first boot would (warnings
/// printed, errors fail the build) and returns its bytes.
fn read_ignition(path: &Path) -> Result<Vec<u8>> {
    let bytes =
        fs::read(path).with_context(|| format!("reading Ignition config {}", path.display()))?;
    let parsed = keel_firstboot::config::parse(&bytes)
        .with_context(|| format!("Ignition config {}", path.display()))?;
    let report = keel_firstboot::validate::validate(&parsed);
    for line in report.to_string().lines() {
        eprintln!("osbuild:   {}: {line}", path.display());
    }
    if report.is_fatal() {
        bail!(
            "Ignition config {} is invalid (see above; `keel-firstboot validate` checks it too)",
            path.display()
        );
    }
    Ok(bytes)
}

/// Reads one of Keel's own binaries once and refuses a dynamically linked
/// one.
fn read_static_binary(path: &Path, name: &str, flag: &str) -> Result<Vec<u8>> {
    let data = fs::read(path).with_context(|| {
        format!(
            "reading {name} binary {} (build it with `make init` or pass {flag})",
            path.display()
        )
    })?;
    use object::Object;
    let obj = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF executable", path.display()))?;
    let dynamic = obj.sections().any(|s| {
        use object::ObjectSection;
        s.name() == Ok(".interp")
    });
    if dynamic {
        bail!(
            "{} is dynamically linked; {name} must be static (RUSTFLAGS='-C target-feature=+crt-static'): keel-init runs before any library exists, and neither may depend on the image's libraries",
            path.display()
        );
    }
    Ok(data)
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
