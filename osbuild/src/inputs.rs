//! Checking what a build is given besides the config and the packages:
//! Keel's own binaries, the Ignition config for the ESP, and the kernel
//! the kernel package unpacked to.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One of Keel's binaries that osbuild puts into the image.
#[derive(Debug, Clone, Copy)]
pub struct KeelBinary {
    /// Its name (`keel-init`).
    pub name: &'static str,
    /// The flag that names it (`--init-binary`).
    pub flag: &'static str,
    /// What the binary carries to say what it is, followed by its version
    /// and a NUL (a `#[used]` static in its `main.rs`).
    pub marker: &'static str,
}

pub const KEEL_INIT: KeelBinary = KeelBinary {
    name: "keel-init",
    flag: "--init-binary",
    marker: "KEEL-INIT-BINARY v",
};

pub const KEEL_FIRSTBOOT: KeelBinary = KeelBinary {
    name: "keel-firstboot",
    flag: "--firstboot-binary",
    marker: "KEEL-FIRSTBOOT-BINARY v",
};

/// Reads one of Keel's own binaries once; refuses a file that is not an
/// ELF executable, one that is dynamically linked, one that is not the
/// program it should be (no marker) and one of another Keel version.
pub fn read_static_binary(path: &Path, bin: KeelBinary) -> Result<Vec<u8>> {
    let KeelBinary { name, flag, marker } = bin;
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
    let ours = env!("CARGO_PKG_VERSION");
    match marker_version(&data, marker) {
        None => bail!(
            "{} is not {name}: it lacks the {marker:?} marker every {name} carries (pass the {name} that `make init` builds to {flag})",
            path.display()
        ),
        Some(v) if v != ours => bail!(
            "{} is {name} {v}, but this osbuild is {ours}: build both from the same tree (`make init osbuild`)",
            path.display()
        ),
        Some(_) => Ok(data),
    }
}

/// The version after `marker` in `data` (up to the NUL), if present.
fn marker_version(data: &[u8], marker: &str) -> Option<String> {
    let m = marker.as_bytes();
    let at = data.windows(m.len()).position(|w| w == m)? + m.len();
    let rest = data.get(at..)?;
    let end = rest.iter().take(64).position(|b| *b == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// Checks an Ignition config as a node's first boot would (warnings
/// printed, errors fail the build) and returns its bytes.
pub fn read_ignition(path: &Path) -> Result<Vec<u8>> {
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

/// The versioned kernel image `boot/vmlinuz-<kver>` in `kdir`, where the
/// packages that `kernel.package` (`wanted`) resolved to were unpacked
/// (`pkgs`: their names and versions, `linux-image-6.1.0-1 6.1.1`). Errors name the package and what it lacks, never the work
/// tree, which is gone when the message is read.
pub fn find_kernel(kdir: &Path, wanted: &str, pkgs: &[String]) -> Result<(String, PathBuf)> {
    let names = pkgs.join(", ");
    if pkgs.is_empty() {
        bail!("kernel.package {wanted:?} is not a kernel: neither it nor its dependencies are a linux-image-* package");
    }
    let mut found = Vec::new();
    let boot = keel_core::beneath::resolve(kdir, Path::new("/boot"))
        .with_context(|| format!("reading /boot of {names}"))?;
    if let Some(boot) = boot.filter(|b| b.is_dir()) {
        for e in fs::read_dir(&boot).with_context(|| format!("reading /boot of {names}"))? {
            let e = e.with_context(|| format!("reading /boot of {names}"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            if let (Some(kver), true) = (name.strip_prefix("vmlinuz-"), is_file) {
                found.push((kver.to_string(), e.path()));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "kernel.package {wanted:?} is not a kernel: {names} ship no /boot/vmlinuz-* (a regular file)"
        ),
        _ => bail!(
            "the kernel packages ({names}) ship several kernels ({}); name one versioned package in kernel.package",
            found.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_carries_the_version() {
        let data = b"\x7fELF....KEEL-INIT-BINARY v0.1.0\0more";
        assert_eq!(
            marker_version(data, KEEL_INIT.marker).as_deref(),
            Some("0.1.0")
        );
        assert_eq!(marker_version(data, KEEL_FIRSTBOOT.marker), None);
        // The marker as a literal in osbuild's own code has no NUL after
        // "v", so osbuild itself never passes as keel-init.
        assert_eq!(
            marker_version(b"KEEL-INIT-BINARY v", KEEL_INIT.marker),
            None
        );
    }

    #[test]
    fn a_package_that_is_no_kernel_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let e = find_kernel(tmp.path(), "busybox-static", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"busybox-static\" is not a kernel"), "{e}");
        let pkg = "linux-image-fake 1.0".to_string();
        std::fs::create_dir_all(tmp.path().join("boot")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("boot/vmlinuz-6.1")).unwrap();
        let e = find_kernel(tmp.path(), "linux-image-fake", &[pkg])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux-image-fake 1.0 ship no /boot/vmlinuz-*"),
            "{e}"
        );
        assert!(!e.contains(&tmp.path().display().to_string()), "{e}");
    }
}
