//! `osbuild`: builds Keel images from Debian packages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use osbuild::build::{self, BuildOptions, Format};
use osbuild::cancel::Cancel;

/// Builds Keel images: a dm-verity protected, read-only erofs root composed
/// from Debian packages, with A/B root slots, systemd-boot and a /var
/// partition, written as raw and qcow2 disk images.
#[derive(Parser)]
#[command(name = "osbuild", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the image described by CONFIG (see docs/image-config.md).
    ///
    /// Writes OUT/<name>-<version>.<format> and
    /// OUT/<name>-<version>.manifest.json, all made final together at the
    /// end. When the build fails, or SIGINT or SIGTERM stops it, the work
    /// tree and partial files are removed and no new file is left under a
    /// final name (a previous build's outputs stay as they were). A second
    /// build of the same name into the same OUT fails at once with "another
    /// build of NAME is running in OUT".
    Build {
        /// The image config (e.g. image-configs/minimal.toml).
        config: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Output formats, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "raw,qcow2")]
        format: Vec<Format>,
        /// Debian mirror URL for every suite (http, https or file).
        /// Default: the mirrors of the host's apt sources.
        #[arg(long)]
        mirror: Option<String>,
        /// OpenPGP keyring that signs the mirror's Release files.
        /// Default: the keyring the host's apt sources name.
        #[arg(long)]
        keyring: Option<PathBuf>,
        /// Download cache (content-addressed .debs and indexes).
        /// Default: $XDG_CACHE_HOME/keel or ~/.cache/keel.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Use only the download cache; fail if something is missing.
        #[arg(long)]
        offline: bool,
        /// The statically linked keel-init to put in the image.
        /// Default: $KEEL_INIT_BINARY, else keel-init next to osbuild.
        #[arg(long)]
        init_binary: Option<PathBuf>,
        /// The statically linked keel-firstboot to put in the image.
        /// Default: $KEEL_FIRSTBOOT_BINARY, else keel-firstboot next to
        /// osbuild.
        #[arg(long)]
        firstboot_binary: Option<PathBuf>,
        /// An Ignition config (spec 3.0.0-3.6.0) to put on the ESP as
        /// keel/ignition.json: the config a node applies at its first boot
        /// when the kernel command line and QEMU's fw_cfg give none. It is
        /// validated here; an invalid config fails the build.
        #[arg(long, value_name = "FILE")]
        ignition: Option<PathBuf>,
        /// Root of the host whose apt configuration names mirrors and keyrings.
        #[arg(long, default_value = "/")]
        apt_root: PathBuf,
        /// Keep the staging tree (OUT/.work-<name>-<version>) for inspection.
        #[arg(long)]
        keep_work: bool,
    },
}

fn default_cache() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("keel");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/keel"),
        None => PathBuf::from(".cache/keel"),
    }
}

/// `$<env>`, else `<name>` next to osbuild.
fn default_binary(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cancel = match Cancel::with_signal_handlers() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("osbuild: error: installing the SIGINT and SIGTERM handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Build {
            config,
            out,
            mut format,
            mirror,
            keyring,
            cache,
            offline,
            init_binary,
            firstboot_binary,
            ignition,
            apt_root,
            keep_work,
        } => {
            format.sort();
            format.dedup();
            build::build(&BuildOptions {
                config_path: config,
                out_dir: out,
                formats: format,
                cache_dir: cache.unwrap_or_else(default_cache),
                apt_root,
                mirror,
                keyring,
                offline,
                init_binary: init_binary
                    .unwrap_or_else(|| default_binary("KEEL_INIT_BINARY", "keel-init")),
                firstboot_binary: firstboot_binary
                    .unwrap_or_else(|| default_binary("KEEL_FIRSTBOOT_BINARY", "keel-firstboot")),
                ignition,
                keep_work,
                cancel,
            })
            .map(|_| ())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osbuild: error: {e:#}");
            match build::interrupted_by(&e) {
                Some(i) => ExitCode::from(i.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
