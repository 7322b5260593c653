//! `keel-init`: Keel's PID 1 (stage 1 in the initramfs, stage 2 in the root).

use std::ffi::OsStr;
use std::path::Path;

use keel_core::layout::INITRD_RELEASE;
use keel_init::error::chain;
use keel_init::stage1::{self, at, Stage1Config};
use keel_init::sys::RealSys;
use keel_init::{halt, runtime};

const HELP: &str = "\
keel-init: Keel's init system (PID 1)

It is started by the kernel, never by hand:
  stage 1  as /init in the initramfs (where /etc/initrd-release exists):
           mounts /proc /sys /dev /run, loads the listed kernel modules, finds
           the slot's partitions by GPT label, opens the dm-verity root with
           keel.slot= and keel.roothash= from the kernel command line, mounts
           it at /sysroot, grows and mounts /var, mounts /etc as an overlay,
           switches root and runs /usr/lib/keel/keel-init (stage 2).
  stage 2  as PID 1 of the real root: early setup (cgroup v2, machine-id,
           hostname, modules-load.d, sysctl.d, tmpfiles.d), then runs the
           systemd units of multi-user.target, supervises them, judges boot
           health, prints the boot-complete line, and shuts down cleanly.
           See keelctl --help for its control commands.

On failure it prints the reason and halts; with keel.debug=shell on the kernel
command line it starts a shell instead.

Run as anything but PID 1, it prints this text and exits with status 2.
Run under the name keelctl (/usr/bin/keelctl links here), it is the control
client of the running init: see `keelctl --help`.
";

/// Found by osbuild's `--init-binary` check: this file is keel-init.
#[used]
static KEEL_INIT_BINARY: &str = concat!("KEEL-INIT-BINARY v", env!("CARGO_PKG_VERSION"), "\0");

/// The name `keel-init` answers to as the control client.
const KEELCTL: &str = "keelctl";

fn main() {
    // Multi-call: /usr/bin/keelctl is a link to this binary.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if Path::new(&argv0).file_name() == Some(OsStr::new(KEELCTL)) {
        std::process::exit(keel_init::keelctl::main(std::env::args_os().collect()));
    }
    if std::process::id() != 1 {
        let asked = std::env::args().skip(1).any(|a| a == "--help" || a == "-h");
        if asked {
            print!("{HELP}");
        } else {
            eprint!("{HELP}");
        }
        std::process::exit(2);
    }

    let root = Path::new("/");
    std::panic::set_hook(Box::new(|info| {
        let mut err = std::io::stderr();
        halt::fail(Path::new("/"), &format!("panic: {info}"), &mut err)
    }));
    let mut console = std::io::stderr();
    if at(root, INITRD_RELEASE).exists() {
        let message = match stage1::run(&RealSys, root, &mut console, &Stage1Config::default()) {
            Ok(()) => "stage 2 did not start".to_string(),
            Err(e) => chain(&e),
        };
        halt::fail(root, &message, &mut console)
    } else {
        runtime::run(&RealSys, root)
    }
}
