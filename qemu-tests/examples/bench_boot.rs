//! Boot benchmark (docs/performance.md, "Boot"): boots an image several
//! times under QEMU and reports, per boot and as medians, the times of
//! keel-init's `startup:` line (kernel, initramfs, units up, boot complete,
//! in seconds since the kernel started), the wall time from starting QEMU
//! to the boot-complete line (firmware and boot loader included), init's
//! resident memory (VmRSS of PID 1) and the memory in use (`free`).
//!
//! Each guest is booted twice: its first boot (a new disk: /var grows,
//! machine-id and SSH host keys are made) and one `keelctl reboot` later.
//! With `--ignition FILE` the first boot applies that config from fw_cfg,
//! and the wall time of keel-init's first-boot step (from `first boot:
//! running keel-firstboot` to keel-firstboot's `applied` line) is
//! reported too; `--extra-disk-mib N` gives each guest a blank second disk
//! (`/dev/vdb`) for the config's `storage.disks`.
//! `qemu-tests/examples/bench-storage.ign` partitions such a disk (512 MiB)
//! into ext4, swap and xfs.
//!
//! ```sh
//! cargo run --release -p qemu-tests --example bench_boot -- [--boots N] [--image NAME] \
//!     [--ignition FILE] [--extra-disk-mib N]
//! ```
//! `make bench-boot` runs it on the default image. It needs the image in
//! `out/` (`make image`) and, like the tests, uses TCG unless
//! `KEEL_QEMU_KVM=1`.

use std::process::ExitCode;
use std::time::Instant;

use qemu_tests::{find_image, Guest, GuestBuilder, HarnessError, BOOT_TIMEOUT, COMMAND_TIMEOUT};

/// Boots an image several times under QEMU and reports boot times and
/// memory (see docs/performance.md).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Guests to boot; each boots twice (first boot, then a reboot).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    boots: u32,
    /// The image in out/ (or $KEEL_OUT) to boot.
    #[arg(long, default_value = "containerd")]
    image: String,
    /// An Ignition config for each first boot (QEMU fw_cfg).
    #[arg(long, value_name = "FILE")]
    ignition: Option<std::path::PathBuf>,
    /// A blank second disk of this many MiB for each guest.
    #[arg(long, value_name = "N")]
    extra_disk_mib: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    kernel: f64,
    initramfs: f64,
    units_up: f64,
    complete: f64,
    wall: f64,
    init_rss_kib: f64,
    used_kib: f64,
    /// Wall time of the first-boot step (NaN when not measured).
    firstboot: f64,
}

fn field(line: &str, after: &str) -> Option<f64> {
    let rest = &line[line.find(after)? + after.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn parse_startup(line: &str) -> Option<(f64, f64, f64, f64)> {
    Some((
        field(line, "kernel ")?,
        field(line, "initramfs ")?,
        field(line, "units up at ")?,
        field(line, "boot complete at ")?,
    ))
}

/// The wall time from keel-init starting keel-firstboot to its `applied`
/// line (the host sees serial lines as they are written).
fn firstboot_step(g: &Guest) -> Result<f64, String> {
    let e = |e: HarnessError| format!("{e:?}");
    let ran = g
        .wait_for_match(
            "keel-init: first boot: running keel-firstboot",
            0,
            BOOT_TIMEOUT,
        )
        .map_err(e)?;
    let t = Instant::now();
    g.wait_for_match("keel-firstboot: applied ", ran.end, BOOT_TIMEOUT)
        .map_err(e)?;
    Ok(t.elapsed().as_secs_f64())
}

fn measure(g: &Guest, from: usize, t0: Instant) -> Result<Sample, String> {
    let e = |e: HarnessError| format!("{e:?}");
    let done = g
        .wait_for_match("keel-init: boot complete: ", from, BOOT_TIMEOUT)
        .map_err(e)?;
    let wall = t0.elapsed().as_secs_f64();
    let line = g
        // The line's end: the whole line has arrived.
        .wait_for_line_after(
            "(seconds since the kernel started)",
            done.end,
            COMMAND_TIMEOUT,
        )
        .map_err(e)?;
    let (kernel, initramfs, units_up, complete) =
        parse_startup(&line).ok_or_else(|| format!("unreadable startup line {line:?}"))?;
    let rss = g
        .run_ok("grep VmRSS /proc/1/status", COMMAND_TIMEOUT)
        .map_err(e)?;
    let init_rss_kib = field(&rss, "VmRSS:").ok_or_else(|| format!("VmRSS? {rss:?}"))?;
    let free = g.run_ok("free -k", COMMAND_TIMEOUT).map_err(e)?;
    let used_kib = free
        .lines()
        .find(|l| l.trim_start().starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .ok_or_else(|| format!("free -k? {free:?}"))?;
    Ok(Sample {
        kernel,
        initramfs,
        units_up,
        complete,
        wall,
        init_rss_kib,
        used_kib,
        firstboot: f64::NAN,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn print_row(label: &str, s: &Sample) {
    let step = if s.firstboot.is_nan() {
        "–".to_string()
    } else {
        format!("{:.1}", s.firstboot)
    };
    println!(
        "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {:.0} | {step} |",
        s.kernel,
        s.initramfs,
        s.units_up,
        s.complete,
        s.wall,
        s.init_rss_kib,
        s.used_kib / 1024.0
    );
}

fn summary(label: &str, v: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let s = Sample {
        kernel: m(|s| s.kernel),
        initramfs: m(|s| s.initramfs),
        units_up: m(|s| s.units_up),
        complete: m(|s| s.complete),
        wall: m(|s| s.wall),
        init_rss_kib: m(|s| s.init_rss_kib),
        used_kib: m(|s| s.used_kib),
        firstboot: m(|s| s.firstboot),
    };
    print_row(&format!("**median {label}** (n={})", v.len()), &s);
    s
}

fn run(args: &Args) -> Result<(), String> {
    let path = find_image(&args.image).map_err(|e| format!("{e:?}"))?;
    eprintln!("bench_boot: {} boots x 2 of {}", args.boots, path.display());
    let (mut first, mut again) = (Vec::new(), Vec::new());
    println!("| boot | kernel (s) | initramfs (s) | units up (s) | boot complete (s) | QEMU start to complete (s) | init RSS (KiB) | used memory (MiB) | first-boot step (s) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for i in 1..=args.boots {
        // The debug copy's console shell reads the figures of each boot.
        let mut b = GuestBuilder::new(&path)
            .name(&format!("bench-{i}"))
            .console_shell()
            .disk_size(3 << 30);
        if let Some(config) = &args.ignition {
            b = b.ignition(config);
        }
        if let Some(mib) = args.extra_disk_mib {
            b = b.extra_disk(mib << 20);
        }
        // From QEMU's start: making the debug copy is not part of the boot.
        let mut g = b.boot().map_err(|e| format!("{e:?}"))?;
        let t0 = Instant::now();
        let step = match &args.ignition {
            Some(_) => firstboot_step(&g).map_err(|e| format!("boot {i}: {e}"))?,
            None => f64::NAN,
        };
        let mut s = measure(&g, 0, t0).map_err(|e| format!("boot {i}: {e}"))?;
        s.firstboot = step;
        print_row(&format!("{i} first"), &s);
        first.push(s);
        let mark = g.serial_offset();
        let t1 = Instant::now();
        g.send("keelctl reboot\n").map_err(|e| format!("{e:?}"))?;
        let s = measure(&g, mark, t1).map_err(|e| format!("boot {i} again: {e}"))?;
        print_row(&format!("{i} reboot"), &s);
        again.push(s);
        g.kill();
    }
    summary("first boot", &first);
    summary("reboot", &again);
    Ok(())
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_boot: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_startup_line_and_medians() {
        let line = "keel-init: startup: kernel 3.52 s, initramfs 1.10 s, units up at 12.84 s, \
                    boot complete at 22.85 s (seconds since the kernel started)";
        assert_eq!(parse_startup(line), Some((3.52, 1.10, 12.84, 22.85)));
        assert_eq!(parse_startup("keel-init: startup: units up at 1 s"), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
