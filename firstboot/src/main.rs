//! `keel-firstboot`: Ignition v3 configs for Keel nodes.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Reads Ignition configs (spec 3.0.0 through 3.6.0) for Keel nodes and
/// applies them to a directory tree.
///
/// Applying at a node's first boot is not built yet.
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
    /// ROOT; on any failure ROOT is put back as it was. Every source
    /// (`data:`, http, https; 5xx and network errors retried six times) is
    /// fetched and checked before the first write. Kernel arguments,
    /// disks, filesystems, merged configs, proxies and extra TLS CAs are
    /// refused as not built yet, before anything is written. Setting owners
    /// needs root.
    Apply {
        /// The tree to apply to (a node's `/`, or an image tree).
        #[arg(long)]
        root: PathBuf,
        /// The config file (JSON), or `-` for standard input.
        #[arg(long)]
        config: PathBuf,
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
    /// …`, and the exit code is 1. keel-init does not run this at boot yet.
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
    },
}

fn read(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the config from standard input")?;
        return Ok(buf);
    }
    std::fs::read(file).with_context(|| format!("reading config {}", file.display()))
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

fn apply(root: &std::path::Path, file: &PathBuf) -> anyhow::Result<bool> {
    let Some(parsed) = checked(file)? else {
        return Ok(false);
    };
    anyhow::ensure!(root.is_dir(), "root {} is not a directory", root.display());
    let net = network(Some(&parsed.config));
    keel_firstboot::apply::apply(root, &parsed.config, &net, &keel_firstboot::apply::RealSys)
        .with_context(|| format!("applying {} to {}", file.display(), root.display()))?;
    println!("applied {} to {}", file.display(), root.display());
    Ok(true)
}

fn network(config: Option<&keel_firstboot::config::Config>) -> keel_firstboot::apply::Network {
    let timeouts = config.and_then(|c| c.ignition.timeouts.as_ref());
    let secs = |v: Option<i64>| v.filter(|s| *s > 0).map(|s| Duration::from_secs(s as u64));
    keel_firstboot::apply::Network::new(
        6,
        Duration::from_secs(1),
        secs(timeouts.and_then(|t| t.http_response_headers)).unwrap_or(Duration::from_secs(10)),
        secs(timeouts.and_then(|t| t.http_total)),
    )
}

fn provision(
    root: &std::path::Path,
    cmdline: &std::path::Path,
    fw_cfg: &std::path::Path,
    esp: &std::path::Path,
) -> anyhow::Result<bool> {
    use keel_firstboot::provision::{self, Outcome, Sources};
    let cmdline = std::fs::read_to_string(cmdline)
        .with_context(|| format!("reading the kernel command line {}", cmdline.display()))?;
    let sources = Sources {
        cmdline,
        fw_cfg: fw_cfg.join(provision::FW_CFG_NAME).join("raw"),
        esp: esp.join(provision::ESP_CONFIG),
    };
    match provision::run(
        root,
        &sources,
        &network(None),
        &keel_firstboot::apply::RealSys,
    ) {
        Ok(Outcome::AlreadyProvisioned) => {
            println!(
                "keel-firstboot: already provisioned ({})",
                root.join(provision::STATE_FILE).display()
            );
            Ok(true)
        }
        Ok(Outcome::Applied { origin, sha256 }) => {
            println!("keel-firstboot: applied {origin} (sha256 {sha256})");
            Ok(true)
        }
        Err(e) => {
            println!("keel-firstboot: failed: {e}");
            Ok(false)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Validate { file } => validate(file),
        Command::Apply { root, config } => apply(root, config),
        Command::Run {
            root,
            cmdline,
            fw_cfg,
            esp,
        } => provision(root, cmdline, fw_cfg, esp),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("keel-firstboot: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
