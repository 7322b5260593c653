//! The EFI System Partition: systemd-boot, its configuration and one
//! directory per release with the kernel and initramfs.

use keel_core::entry::EntryName;
use keel_core::layout::{
    ESP_BOOT_LOADER_PATH, ESP_ENTRIES_DIR, ESP_IGNITION_CONFIG, ESP_INITRD_NAME, ESP_KERNEL_NAME,
    ESP_RELEASE_DIR,
};
use keel_core::Slot;

use crate::fat::{FatError, FatImage};

/// systemd-boot's configuration: no menu unless a key is held, no editing
/// of the kernel command line (it carries the verity root hash), no
/// automatic entries.
pub const LOADER_CONF: &str =
    "timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n";

pub struct Release<'a> {
    pub version: &'a str,
    pub image_name: &'a str,
    pub slot: Slot,
    pub roothash: &'a [u8; 32],
    pub extra_cmdline: &'a [String],
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    /// The default first-boot Ignition config.
    pub ignition: Option<Vec<u8>>,
}

impl Release<'_> {
    pub fn entry_name(&self) -> EntryName {
        // check_version ran when the config was loaded.
        EntryName::fresh(self.version).unwrap_or_else(|_| EntryName {
            version: self.version.to_string(),
            counter: None,
        })
    }

    pub fn options(&self) -> String {
        let mut opts = keel_core::cmdline::contract_options(self.slot, self.roothash);
        for a in self.extra_cmdline {
            opts.push(' ');
            opts.push_str(a);
        }
        opts
    }

    /// The Boot Loader Specification type #1 entry.
    pub fn entry(&self) -> String {
        let dir = format!("/{ESP_RELEASE_DIR}/{}", self.version);
        format!(
            "title Keel {v} ({img})\nversion {v}\nsort-key keel\nlinux {dir}/{ESP_KERNEL_NAME}\ninitrd {dir}/{ESP_INITRD_NAME}\noptions {opts}\n",
            v = self.version,
            img = self.image_name,
            opts = self.options(),
        )
    }
}

/// Builds the ESP file tree for one release in slot `release.slot`.
pub fn build(
    systemd_boot: Vec<u8>,
    release: Release<'_>,
    volume_id: u32,
    mtime: u64,
) -> Result<FatImage, FatError> {
    let mut fat = FatImage::new("ESP", volume_id, mtime);
    fat.add_file(ESP_BOOT_LOADER_PATH, systemd_boot)?;
    fat.add_file("loader/loader.conf", LOADER_CONF.as_bytes().to_vec())?;
    fat.add_file(
        &format!("{ESP_ENTRIES_DIR}/{}", release.entry_name()),
        release.entry().into_bytes(),
    )?;
    let dir = format!("{ESP_RELEASE_DIR}/{}", release.version);
    fat.add_file(&format!("{dir}/{ESP_KERNEL_NAME}"), release.kernel)?;
    fat.add_file(&format!("{dir}/{ESP_INITRD_NAME}"), release.initrd)?;
    if let Some(config) = release.ignition {
        fat.add_file(ESP_IGNITION_CONFIG, config)?;
    }
    Ok(fat)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entry_carries_the_contract() {
        let r = Release {
            version: "1.2",
            image_name: "minimal",
            slot: Slot::A,
            roothash: &[0x11; 32],
            extra_cmdline: &["console=ttyS0".to_string()],
            kernel: vec![],
            initrd: vec![],
            ignition: None,
        };
        assert_eq!(r.entry_name().to_string(), "keel-1.2+3.conf");
        let e = r.entry();
        assert!(e.contains("linux /keel/1.2/vmlinuz\n"), "{e}");
        assert!(e.contains("initrd /keel/1.2/initrd\n"), "{e}");
        let opts = e.lines().find_map(|l| l.strip_prefix("options ")).unwrap();
        let c = keel_core::cmdline::Cmdline::parse(opts);
        assert_eq!(c.slot().unwrap(), Slot::A);
        assert_eq!(c.roothash().unwrap(), [0x11; 32]);
        assert_eq!(c.get("console"), Some("ttyS0"));
    }
}
