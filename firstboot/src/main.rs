//! `keel-firstboot`: Ignition v3 configs for Keel nodes.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Reads Ignition configs (spec 3.0.0 through 3.6.0) for Keel nodes.
///
/// Only validation is available so far; applying configs at first boot is
/// not built yet.
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Validate { file } => validate(file),
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
