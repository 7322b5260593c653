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

fn validate(file: &PathBuf) -> anyhow::Result<bool> {
    let bytes = read(file)?;
    let parsed = match keel_firstboot::config::parse(&bytes) {
        Ok(p) => p,
        Err(e) => {
            println!("{e}");
            return Ok(false);
        }
    };
    let report = keel_firstboot::validate::validate(&parsed);
    print!("{report}");
    Ok(!report.is_fatal())
}

fn apply(root: &std::path::Path, file: &PathBuf) -> anyhow::Result<bool> {
    let bytes = read(file)?;
    let parsed = match keel_firstboot::config::parse(&bytes) {
        Ok(p) => p,
        Err(e) => {
            println!("{e}");
            return Ok(false);
        }
    };
    let report = keel_firstboot::validate::validate(&parsed);
    print!("{report}");
    if report.is_fatal() {
        return Ok(false);
    }
    anyhow::ensure!(root.is_dir(), "root {} is not a directory", root.display());
    let timeouts = parsed.config.ignition.timeouts.as_ref();
    let secs = |v: Option<i64>| v.filter(|s| *s > 0).map(|s| Duration::from_secs(s as u64));
    let net = keel_firstboot::apply::Network::new(
        6,
        Duration::from_secs(1),
        secs(timeouts.and_then(|t| t.http_response_headers)).unwrap_or(Duration::from_secs(10)),
        secs(timeouts.and_then(|t| t.http_total)),
    );
    keel_firstboot::apply::apply(root, &parsed.config, &net, &keel_firstboot::apply::RealSys)
        .with_context(|| format!("applying {} to {}", file.display(), root.display()))?;
    println!("applied {} to {}", file.display(), root.display());
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Validate { file } => validate(file),
        Command::Apply { root, config } => apply(root, config),
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
