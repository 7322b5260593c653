//! `keel-firstboot`: Ignition v3 configs for Keel nodes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_firstboot::provision::Fetchers;

/// Reads Ignition configs (spec 3.0.0 through 3.6.0) for Keel nodes and
/// applies them: to a directory tree (`apply`), or to the node itself at
/// its first boot (`run`, which keel-init starts before any unit).
#[derive(Parser)]
#[command(name = "keel-firstboot", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config as Keel would before a first boot.
    ///
    /// Prints every finding as `error at $.json.path: message` or
    /// `warning at …` (Ignition's wording), and exits 0 when the config is
    /// valid (warnings allowed), 1 when it is not, 2 on bad usage.
    Validate {
        /// The config file (JSON), or `-` for standard input.
        file: PathBuf,
    },
    /// Apply a config to a directory tree, all or nothing.
    ///
    /// The config is validated first (as `validate` does; any error stops
    /// here). Then files, directories, links, users and groups (in
    /// ROOT/etc/passwd and friends) and systemd units are written below
    /// ROOT; on any failure ROOT is put back as it was. Configs named in
    /// `ignition.config.merge` and `replace` are fetched, checked and
    /// merged first, then every source (`data:`, http, https; 5xx and
    /// network errors retried six times, with the config's
    /// `ignition.timeouts`) is fetched and checked before the first write.
    /// https trusts ROOT/etc/ssl/certs/ca-certificates.crt plus the
    /// config's `ignition.security.tls` CAs when it lists any; the
    /// config's `ignition.proxy` is used. Disks, filesystems and kernel
    /// arguments are refused before anything is written: they are a
    /// node's (see `run`), and a tree has neither disks nor a boot entry;
    /// so are RAID, LUKS and btrfs, which Keel does not build. Setting
    /// owners needs root.
    Apply {
        /// The tree to apply to (a node's `/`, or an image tree).
        #[arg(long)]
        root: PathBuf,
        /// The config file (JSON), or `-` for standard input.
        #[arg(long)]
        config: PathBuf,
        /// The most that the fetched contents of files (after
        /// decompression) may add up to, in bytes; they are also kept to
        /// half the free space of the file system they wait on (ROOT/var/tmp,
        /// ROOT/var or ROOT). More is an error naming the resource.
        #[arg(long, value_name = "BYTES", default_value_t = keel_firstboot::apply::contents::MAX_TOTAL)]
        max_fetched: u64,
    },
    /// Provision a node once: find its config, validate it, apply it, and
    /// record that in ROOT/var/lib/keel/firstboot.json.
    ///
    /// The config comes from the first of: `ignition.config.url=` on the
    /// kernel command line (http, https, data, or an absolute path), QEMU
    /// fw_cfg `opt/com.coreos/config`, the ESP file keel/ignition.json; none
    /// is an empty config. If the record exists, nothing is done (exit 0).
    /// On any failure nothing is applied, no record is written (the next
    /// run starts again), the reason is printed as `keel-firstboot: failed:
    /// …`, and the exit code is 1. keel-init runs this before any unit on
    /// every boot until the record exists.
    ///
    /// The network is brought up (with --network-up) only when a config or
    /// a resource has an http or https source.
    ///
    /// After everything is fetched and before the first file is written,
    /// `storage.disks` are partitioned (GPT; extra disks only, never one
    /// with a mounted partition) and `storage.filesystems` made or kept
    /// (mkfs.ext4, mkfs.xfs, mkfs.vfat, mkswap, as Ignition runs them);
    /// those with a `path` are mounted below ROOT while the files are
    /// written and get an enabled mount unit in
    /// ROOT/etc/systemd/system unless the config has one. Partitions and
    /// file systems are not rolled back on a later failure.
    Run {
        /// The node's root.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The kernel command line to read `ignition.config.url=` from.
        #[arg(long, default_value = "/proc/cmdline")]
        cmdline: PathBuf,
        /// fw_cfg's directory of named entries.
        #[arg(long, default_value = keel_firstboot::provision::FW_CFG_DIR)]
        fw_cfg: PathBuf,
        /// Where the ESP is mounted.
        #[arg(long, default_value = "/run/keel/esp")]
        esp: PathBuf,
        /// The command that brings the network up and exits once it is up,
        /// run before the first http or https fetch (words split on
        /// spaces; empty: the network is up already). The default takes
        /// a DHCP lease on every link and leaves it configured.
        #[arg(
            long,
            default_value = "dhcpcd --oneshot --waitip=4 --timeout=30 --noipv4ll --noarp"
        )]
        network_up: String,
        /// The booted boot entry on the mounted ESP, whose options
        /// `kernelArguments` edit (keel-init passes it). When the kernel
        /// command line changes, the exit code is 100: the config is
        /// applied and recorded, and the node must reboot to use it.
        #[arg(long, value_name = "FILE")]
        boot_entry: Option<PathBuf>,
    },
}

/// `run`'s exit code when the node must reboot (keel-init's
/// `firstboot::EXIT_REBOOT`).
const EXIT_REBOOT: u8 = 100;

/// What a command asks the process to exit with.
enum Done {
    Ok,
    Failed,
    Reboot,
}

fn read(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    use keel_firstboot::apply::fetch::read_config;
    if file.as_os_str() == "-" {
        return read_config(std::io::stdin().lock())
            .context("reading the config from standard input");
    }
    std::fs::File::open(file)
        .and_then(read_config)
        .with_context(|| format!("reading config {}", file.display()))
}

/// Reads, parses and validates a config, printing every finding; `None`
/// when it is not valid.
fn checked(file: &PathBuf) -> anyhow::Result<Option<keel_firstboot::config::Parsed>> {
    let bytes = read(file)?;
    let parsed = match keel_firstboot::config::parse(&bytes) {
        Ok(p) => p,
        Err(e) => {
            println!("{e}");
            return Ok(None);
        }
    };
    let report = keel_firstboot::validate::validate(&parsed);
    print!("{report}");
    Ok((!report.is_fatal()).then_some(parsed))
}

fn validate(file: &PathBuf) -> anyhow::Result<bool> {
    Ok(checked(file)?.is_some())
}

fn apply(root: &std::path::Path, file: &PathBuf, max_fetched: u64) -> anyhow::Result<bool> {
    let Some(parsed) = checked(file)? else {
        return Ok(false);
    };
    anyhow::ensure!(root.is_dir(), "root {} is not a directory", root.display());
    let fetchers = keel_firstboot::provision::NodeFetchers::new(
        root,
        keel_firstboot::apply::NetworkUp::new(Vec::new()),
    );
    let origin = keel_firstboot::provision::Origin::File(file.clone());
    let config = match keel_firstboot::provision::prepare(&origin, parsed, &fetchers) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return Ok(false);
        }
    };
    let net = fetchers.for_config(Some(&config));
    keel_firstboot::apply::apply_limited(
        root,
        &config,
        net.as_ref(),
        &keel_firstboot::apply::RealSys,
        max_fetched,
    )
    .with_context(|| format!("applying {} to {}", file.display(), root.display()))?;
    println!("applied {} to {}", file.display(), root.display());
    Ok(true)
}

fn provision(
    root: &std::path::Path,
    cmdline: &std::path::Path,
    fw_cfg: &std::path::Path,
    esp: &std::path::Path,
    network_up: &str,
    boot_entry: Option<&std::path::Path>,
) -> anyhow::Result<Done> {
    use keel_firstboot::provision::{self, Outcome, Sources};
    let cmdline = std::fs::read_to_string(cmdline)
        .with_context(|| format!("reading the kernel command line {}", cmdline.display()))?;
    let sources = Sources {
        cmdline,
        fw_cfg: fw_cfg.join(provision::FW_CFG_NAME).join("raw"),
        esp: esp.join(provision::ESP_CONFIG),
    };
    let fetchers = provision::NodeFetchers::new(
        root,
        keel_firstboot::apply::NetworkUp::new(
            network_up.split_whitespace().map(str::to_string).collect(),
        ),
    );
    let entry = boot_entry.ok_or("the booted boot entry is not known (no --boot-entry)");
    match provision::run(
        root,
        &sources,
        &fetchers,
        &keel_firstboot::apply::RealSys,
        keel_firstboot::apply::Node {
            boot_entry: entry,
            storage: Some(&keel_firstboot::apply::Tools::new("/")),
        },
    ) {
        Ok(Outcome::AlreadyProvisioned) => {
            println!(
                "keel-firstboot: already provisioned ({})",
                root.join(provision::STATE_FILE).display()
            );
            Ok(Done::Ok)
        }
        Ok(Outcome::Applied {
            origin,
            sha256,
            reboot,
        }) => {
            println!("keel-firstboot: applied {origin} (sha256 {sha256})");
            if reboot {
                println!("keel-firstboot: the kernel command line changed; the node must reboot");
                return Ok(Done::Reboot);
            }
            Ok(Done::Ok)
        }
        Err(e) => {
            println!("keel-firstboot: failed: {e}");
            Ok(Done::Failed)
        }
    }
}

fn done(ok: bool) -> Done {
    if ok {
        Done::Ok
    } else {
        Done::Failed
    }
}

/// Found by osbuild's `--firstboot-binary` check: this file is keel-firstboot.
#[used]
static KEEL_FIRSTBOOT_BINARY: &str =
    concat!("KEEL-FIRSTBOOT-BINARY v", env!("CARGO_PKG_VERSION"), "\0");

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Validate { file } => validate(file).map(done),
        Command::Apply {
            root,
            config,
            max_fetched,
        } => apply(root, config, *max_fetched).map(done),
        Command::Run {
            root,
            cmdline,
            fw_cfg,
            esp,
            network_up,
            boot_entry,
        } => provision(
            root,
            cmdline,
            fw_cfg,
            esp,
            network_up,
            boot_entry.as_deref(),
        ),
    };
    match result {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Failed) => ExitCode::FAILURE,
        Ok(Done::Reboot) => ExitCode::from(EXIT_REBOOT),
        Err(e) => {
            eprintln!("keel-firstboot: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
