//! [`GuestBuilder`]: everything that decides the QEMU command line of a guest.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::guest::Guest;
use crate::{debug, host, net, HarnessError};

/// Where the guest's first disk comes from.
#[derive(Debug, Clone)]
enum MainDisk {
    /// A copy-on-write overlay over this image (qcow2 or raw).
    Overlay(PathBuf),
    /// An empty disk of [`GuestBuilder::disk_size`] bytes.
    Blank,
}

#[derive(Debug, Clone)]
struct DirectKernel {
    kernel: PathBuf,
    initrd: PathBuf,
    append: String,
}

/// Builds the QEMU command line for one guest and boots it.
///
/// Defaults: q35, OVMF (UEFI), TCG (KVM with `KEEL_QEMU_KVM=1`), 2 CPUs,
/// 1024 MiB, serial console on ttyS0 captured by the harness, virtio disk,
/// virtio-net on QEMU user networking (the guest reaches the host's loopback as
/// 10.0.2.2), a virtio RNG, UTC clock.
#[derive(Debug, Clone)]
pub struct GuestBuilder {
    name: String,
    disk: MainDisk,
    disk_size: Option<u64>,
    extra_disks: Vec<u64>,
    cdrom: Option<PathBuf>,
    memory_mib: u32,
    cpus: u32,
    fw_cfg: Vec<(String, PathBuf)>,
    hostfwd: Vec<u16>,
    kernel: Option<DirectKernel>,
    network: bool,
    console_shell: bool,
}

impl GuestBuilder {
    /// A guest whose first disk is a fresh qcow2 overlay over `base_image`
    /// (qcow2 or raw); the base image is never written.
    pub fn new(base_image: &Path) -> Self {
        Self::with_disk(MainDisk::Overlay(base_image.to_path_buf()))
    }

    /// A guest whose first disk is empty, `bytes` large.
    pub fn blank(bytes: u64) -> Self {
        Self::with_disk(MainDisk::Blank).disk_size(bytes)
    }

    fn with_disk(disk: MainDisk) -> Self {
        Self {
            name: "guest".to_string(),
            disk,
            disk_size: None,
            extra_disks: Vec::new(),
            cdrom: None,
            memory_mib: 1024,
            cpus: 2,
            fw_cfg: Vec::new(),
            hostfwd: Vec::new(),
            kernel: None,
            network: true,
            console_shell: false,
        }
    }

    /// A name for logs and error messages (default `guest`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Virtual size of the first disk (grows the overlay beyond the base image).
    pub fn disk_size(mut self, bytes: u64) -> Self {
        self.disk_size = Some(bytes);
        self
    }

    /// Attach one more empty virtio disk of `bytes` (e.g. an install target).
    pub fn extra_disk(mut self, bytes: u64) -> Self {
        self.extra_disks.push(bytes);
        self
    }

    /// Attach an ISO as a read-only CD-ROM that the firmware boots first.
    pub fn cdrom(mut self, iso: &Path) -> Self {
        self.cdrom = Some(iso.to_path_buf());
        self
    }

    /// Guest memory in MiB (default 1024).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Number of virtual CPUs (default 2).
    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }

    /// Expose `path` to the guest as fw_cfg file `name` (e.g. `opt/com.coreos/config`).
    pub fn fw_cfg_file(mut self, name: &str, path: &Path) -> Self {
        self.fw_cfg.push((name.to_string(), path.to_path_buf()));
        self
    }

    /// Pass an Ignition config the way Keel reads it on QEMU: fw_cfg `opt/com.coreos/config`.
    pub fn ignition(self, config: &Path) -> Self {
        self.fw_cfg_file("opt/com.coreos/config", config)
    }

    /// Forward a free port on 127.0.0.1 to TCP `guest_port`; see [`Guest::host_port`].
    pub fn hostfwd_tcp(mut self, guest_port: u16) -> Self {
        self.hostfwd.push(guest_port);
        self
    }

    /// No network device at all.
    pub fn no_network(mut self) -> Self {
        self.network = false;
        self
    }

    /// A root shell on the serial console, which is how [`Guest::run`] gets
    /// in: the first disk is then a raw copy of the image, made in the
    /// guest's directory, whose boot entries also carry
    /// [`debug::CONSOLE_SHELL`] (the image stays as it is). Images have no
    /// console shell; without this, only a failed first boot (the emergency
    /// shell) answers `run`. Needs an image (not [`GuestBuilder::blank`]);
    /// a [`GuestBuilder::kernel_direct`] command line is not changed.
    pub fn console_shell(mut self) -> Self {
        self.console_shell = true;
        self
    }

    /// Boot `kernel` and `initrd` directly with command line `append` instead of
    /// going through UEFI firmware (SeaBIOS loads them). Include `console=ttyS0`
    /// in `append` to see the guest on the captured serial console.
    pub fn kernel_direct(mut self, kernel: &Path, initrd: &Path, append: &str) -> Self {
        self.kernel = Some(DirectKernel {
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            append: append.to_string(),
        });
        self
    }

    /// Create the guest's disks and firmware copy in a new temporary directory
    /// and start QEMU. Returns as soon as QEMU runs; use the `wait_*` methods of
    /// [`Guest`] to follow the boot.
    pub fn boot(self) -> Result<Guest, HarnessError> {
        let scale = host::timeout_scale()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("keel-qemu-{}-", self.name))
            .tempdir()
            .map_err(|source| HarnessError::TempDir {
                guest: self.name.clone(),
                source,
            })?;
        let mut ports = Vec::with_capacity(self.hostfwd.len());
        for &guest_port in &self.hostfwd {
            ports.push((guest_port, net::free_local_port()?));
        }
        let args = self.prepare(dir.path(), &ports)?;
        Guest::start(self.name, dir, args, ports, scale)
    }

    /// Create the files under `dir` and return QEMU's arguments.
    fn prepare(&self, dir: &Path, ports: &[(u16, u16)]) -> Result<Vec<OsString>, HarnessError> {
        let mut a = Args::default();
        a.push_all(["-name", &format!("keel-{},debug-threads=on", self.name)]);
        a.push_all(["-no-user-config", "-nodefaults", "-display", "none"]);
        a.push_all(["-monitor", "none", "-machine", "q35", "-rtc", "base=utc"]);
        if host::use_kvm() {
            a.push_all(["-accel", "kvm", "-cpu", "host"]);
        } else {
            a.push_all(["-accel", "tcg", "-cpu", "max"]);
        }
        a.push_all(["-m", &self.memory_mib.to_string()]);
        a.push_all(["-smp", &self.cpus.to_string()]);
        a.push_all([
            "-chardev",
            "stdio,id=serial0,signal=off",
            "-serial",
            "chardev:serial0",
        ]);
        a.push_all(["-object", "rng-random,id=rng0,filename=/dev/urandom"]);
        a.push_all(["-device", "virtio-rng-pci,rng=rng0"]);

        if let Some(k) = &self.kernel {
            a.push("-kernel")
                .push(&k.kernel)
                .push("-initrd")
                .push(&k.initrd);
            a.push_all(["-append", &k.append]);
        } else {
            let vars = dir.join("OVMF_VARS.fd");
            let template = host::ovmf_vars();
            std::fs::copy(&template, &vars).map_err(|source| HarnessError::CopyFirmwareVars {
                from: template,
                to: vars.clone(),
                source,
            })?;
            let code = host::ovmf_code();
            a.push("-drive")
                .push(drive_opt("if=pflash,format=raw,unit=0,readonly=on", &code));
            a.push("-drive")
                .push(drive_opt("if=pflash,format=raw,unit=1", &vars));
        }

        let main = dir.join("disk0.qcow2");
        match &self.disk {
            MainDisk::Overlay(base) if self.console_shell => {
                let copy = dir.join("debug.raw");
                debug::with_kernel_args(base, &copy, &[debug::CONSOLE_SHELL], dir)?;
                create_overlay(&copy, &main, self.disk_size)?
            }
            MainDisk::Overlay(base) => create_overlay(base, &main, self.disk_size)?,
            MainDisk::Blank if self.console_shell => {
                return Err(HarnessError::Fixture {
                    what: format!(
                        "guest {}: a console shell needs an image to boot, not a blank disk",
                        self.name
                    ),
                })
            }
            MainDisk::Blank => create_blank(&main, self.disk_size.unwrap_or(1 << 30))?,
        }
        // The CD-ROM, when there is one, is what the firmware boots first.
        if let Some(iso) = &self.cdrom {
            a.push("-drive").push(drive_opt(
                "if=none,id=cd0,media=cdrom,readonly=on,format=raw",
                iso,
            ));
            a.push_all(["-device", "ide-cd,drive=cd0,bus=ide.0,bootindex=0"]);
        }
        add_virtio_disk(&mut a, "disk0", &main, 1);
        for (i, &size) in self.extra_disks.iter().enumerate() {
            let id = format!("disk{}", i + 1);
            let path = dir.join(format!("{id}.qcow2"));
            create_blank(&path, size)?;
            add_virtio_disk(&mut a, &id, &path, i + 2);
        }

        if self.network {
            let mut netdev = "user,id=net0".to_string();
            for (guest, host) in ports {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            a.push_all(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
        }
        for (name, path) in &self.fw_cfg {
            let mut opt = OsString::from(format!("name={},file=", escape(name)));
            opt.push(escape_os(path));
            a.push("-fw_cfg").push(opt);
        }
        Ok(a.0)
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl Into<OsString>) -> &mut Self {
        self.0.push(arg.into());
        self
    }

    fn push_all<const N: usize>(&mut self, args: [&str; N]) -> &mut Self {
        self.0.extend(args.iter().map(OsString::from));
        self
    }
}

fn add_virtio_disk(a: &mut Args, id: &str, path: &Path, bootindex: usize) {
    let opts = format!("if=none,id={id},format=qcow2,cache=writeback,discard=unmap");
    a.push("-drive").push(drive_opt(&opts, path));
    a.push("-device")
        .push(format!("virtio-blk-pci,drive={id},bootindex={bootindex}"));
}

/// `OPTS,file=PATH` with the path escaped for QEMU's option syntax.
fn drive_opt(opts: &str, path: &Path) -> OsString {
    let mut s = OsString::from(format!("{opts},file="));
    s.push(escape_os(path));
    s
}

/// QEMU option values escape a comma by doubling it.
fn escape(s: &str) -> String {
    s.replace(',', ",,")
}

fn escape_os(p: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// qcow2 files start with `QFI\xfb`; anything else is taken as raw.
pub(crate) fn image_format(path: &Path) -> Result<&'static str, HarnessError> {
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    read.map_err(|source| HarnessError::ReadImage {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(if &magic == b"QFI\xfb" { "qcow2" } else { "raw" })
}

fn create_overlay(base: &Path, overlay: &Path, size: Option<u64>) -> Result<(), HarnessError> {
    let format = image_format(base)?;
    let base = std::fs::canonicalize(base).map_err(|source| HarnessError::ReadImage {
        path: base.to_path_buf(),
        source,
    })?;
    let mut cmd = Command::new(host::QEMU_IMG);
    cmd.args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(&base)
        .arg(overlay);
    if let Some(size) = size {
        cmd.arg(size.to_string());
    }
    run_qemu_img(cmd, overlay)
}

fn create_blank(path: &Path, size: u64) -> Result<(), HarnessError> {
    let mut cmd = Command::new(host::QEMU_IMG);
    cmd.args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size.to_string());
    run_qemu_img(cmd, path)
}

fn run_qemu_img(mut cmd: Command, target: &Path) -> Result<(), HarnessError> {
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        program: host::QEMU_IMG.to_string(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(HarnessError::CreateDisk {
        program: host::QEMU_IMG.to_string(),
        path: target.to_path_buf(),
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(b: &GuestBuilder, dir: &Path, ports: &[(u16, u16)]) -> Vec<String> {
        let args = b.prepare(dir, ports).unwrap();
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn uefi_guest_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let b = GuestBuilder::blank(64 << 20)
            .memory_mib(512)
            .cpus(1)
            .extra_disk(1 << 20)
            .fw_cfg_file("opt/com.coreos/config", Path::new("/tmp/a,b.ign"))
            .hostfwd_tcp(22);
        let args = args_of(&b, dir.path(), &[(22, 40022)]);
        assert_eq!(after(&args, "-m"), ["512"]);
        assert_eq!(after(&args, "-smp"), ["1"]);
        assert!(args.contains(&"-nodefaults".to_string()));
        let drives = after(&args, "-drive");
        assert!(drives[0].starts_with("if=pflash,format=raw,unit=0,readonly=on,file="));
        assert!(drives[1].ends_with("OVMF_VARS.fd"));
        assert!(dir.path().join("OVMF_VARS.fd").exists());
        assert!(dir.path().join("disk0.qcow2").exists());
        assert!(dir.path().join("disk1.qcow2").exists());
        assert_eq!(
            after(&args, "-fw_cfg"),
            ["name=opt/com.coreos/config,file=/tmp/a,,b.ign"]
        );
        assert_eq!(
            after(&args, "-netdev"),
            ["user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22"]
        );
    }

    #[test]
    fn overlay_keeps_base_untouched_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        let overlay = dir.path().join("overlay.qcow2");
        create_overlay(&base, &overlay, Some(8 << 20)).unwrap();
        let info = Command::new(host::QEMU_IMG)
            .args(["info", "--output=json"])
            .arg(&overlay)
            .output()
            .unwrap();
        let info = String::from_utf8(info.stdout).unwrap();
        assert!(info.contains("\"virtual-size\": 8388608"), "{info}");
        assert!(
            info.contains("\"backing-filename-format\": \"raw\""),
            "{info}"
        );
    }

    #[test]
    fn a_console_shell_needs_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let err = GuestBuilder::blank(1 << 20)
            .name("empty")
            .console_shell()
            .prepare(dir.path(), &[])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("guest empty: a console shell needs an image"),
            "{err}"
        );
    }

    #[test]
    fn missing_base_image_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = create_overlay(
            Path::new("/nonexistent/x.qcow2"),
            &dir.path().join("o"),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.qcow2"), "{err}");
    }
}
