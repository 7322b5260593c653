//! What the harness takes from the build host: programs, firmware paths and the
//! environment variables that tune it. All default paths live here.

use std::path::PathBuf;
use std::time::Duration;

use crate::HarnessError;

/// The QEMU system emulator that runs guests.
pub const QEMU_SYSTEM: &str = "qemu-system-x86_64";
/// The tool that creates overlay and blank disks.
pub const QEMU_IMG: &str = "qemu-img";
/// Read-only OVMF code (Debian package `ovmf`); override with `KEEL_OVMF_CODE`.
pub const DEFAULT_OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template, copied per guest; override with `KEEL_OVMF_VARS`.
pub const DEFAULT_OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// A timeout long enough for a full boot under TCG (before scaling).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// A timeout for a shell command in a booted guest (before scaling).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// `KEEL_QEMU_KVM=1` selects KVM; anything else (or unset) selects TCG.
pub const ENV_KVM: &str = "KEEL_QEMU_KVM";
/// A positive number every timeout given to a [`crate::Guest`] is multiplied by.
pub const ENV_TIMEOUT_SCALE: &str = "KEEL_QEMU_TIMEOUT_SCALE";
/// `KEEL_QEMU_KEEP=1` keeps each guest's temporary directory after the test.
pub const ENV_KEEP: &str = "KEEL_QEMU_KEEP";
/// Where built images are looked for by [`crate::find_image`].
pub const ENV_OUT: &str = "KEEL_OUT";

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// OVMF code image: `$KEEL_OVMF_CODE` or [`DEFAULT_OVMF_CODE`].
pub fn ovmf_code() -> PathBuf {
    env_path("KEEL_OVMF_CODE", DEFAULT_OVMF_CODE)
}

/// OVMF variable store template: `$KEEL_OVMF_VARS` or [`DEFAULT_OVMF_VARS`].
pub fn ovmf_vars() -> PathBuf {
    env_path("KEEL_OVMF_VARS", DEFAULT_OVMF_VARS)
}

/// True when `KEEL_QEMU_KVM=1`.
pub fn use_kvm() -> bool {
    std::env::var(ENV_KVM).is_ok_and(|v| v == "1")
}

/// True when `KEEL_QEMU_KEEP=1`.
pub fn keep_tempdirs() -> bool {
    std::env::var(ENV_KEEP).is_ok_and(|v| v == "1")
}

/// The factor from `KEEL_QEMU_TIMEOUT_SCALE` (1.0 when unset).
pub fn timeout_scale() -> Result<f64, HarnessError> {
    match std::env::var(ENV_TIMEOUT_SCALE) {
        Err(_) => Ok(1.0),
        Ok(value) => parse_scale(&value).ok_or(HarnessError::BadEnv {
            var: ENV_TIMEOUT_SCALE,
            value,
            reason: "expected a positive number such as 2 or 0.5",
        }),
    }
}

fn parse_scale(value: &str) -> Option<f64> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f > 0.0 && *f < 1000.0)
}

#[cfg(test)]
mod tests {
    use super::parse_scale;

    #[test]
    fn scale_accepts_positive_numbers_only() {
        assert_eq!(parse_scale("2"), Some(2.0));
        assert_eq!(parse_scale(" 0.5 "), Some(0.5));
        assert_eq!(parse_scale("0"), None);
        assert_eq!(parse_scale("-1"), None);
        assert_eq!(parse_scale("fast"), None);
        assert_eq!(parse_scale("inf"), None);
    }
}
