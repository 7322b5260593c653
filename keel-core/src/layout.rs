//! Partition labels, GPT type GUIDs and the paths shared between the image
//! builder and the running system.
//!
//! Type GUIDs follow the Discoverable Partitions Specification (x86-64).

use std::fmt;
use std::str::FromStr;

/// EFI System Partition.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// DPS "Root Partition (x86-64)".
pub const ROOT_TYPE: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
/// DPS "Root Verity Partition (x86-64)".
pub const ROOT_VERITY_TYPE: &str = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5";
/// DPS "Variable Data Partition".
pub const VAR_TYPE: &str = "4d21b016-b534-45c2-a9fb-5c16e091fd2d";

pub const ESP_LABEL: &str = "esp";
pub const VAR_LABEL: &str = "var";

/// Where the ESP keeps one directory per release (`/keel/<version>/`).
pub const ESP_RELEASE_DIR: &str = "keel";
pub const ESP_KERNEL_NAME: &str = "vmlinuz";
pub const ESP_INITRD_NAME: &str = "initrd";
/// Boot Loader Specification entries.
pub const ESP_ENTRIES_DIR: &str = "loader/entries";
/// systemd-boot as the removable-media default loader.
pub const ESP_BOOT_LOADER_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// Stage 2 of `keel-init`, inside the root filesystem.
pub const INIT_PATH: &str = "/usr/lib/keel/keel-init";
/// `keel-firstboot`, which stage 2 runs before any unit on a first boot.
pub const FIRSTBOOT_PATH: &str = "/usr/bin/keel-firstboot";
/// Written by `keel-firstboot` when a node is provisioned; while it is
/// missing, every boot is a first boot.
pub const FIRSTBOOT_STATE: &str = "/var/lib/keel/firstboot.json";
/// The default first-boot config on the ESP (`osbuild build --ignition`).
pub const ESP_IGNITION_CONFIG: &str = "keel/ignition.json";
/// Present only in the initramfs; tells `keel-init` it is stage 1.
pub const INITRD_RELEASE: &str = "/etc/initrd-release";
/// Name of the device-mapper device that carries the verified root.
pub const ROOT_DM_NAME: &str = "keel-root";
/// Persistent state for /etc: overlay upper and work directories on /var.
pub const ETC_UPPER: &str = "lib/keel/etc/upper";
pub const ETC_WORK: &str = "lib/keel/etc/work";

/// Data and hash block size of the dm-verity tree.
pub const VERITY_BLOCK_SIZE: u32 = 4096;

/// One of the two A/B root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// GPT label of the slot's root partition (`root-a`).
    pub fn root_label(self) -> &'static str {
        match self {
            Slot::A => "root-a",
            Slot::B => "root-b",
        }
    }

    /// GPT label of the slot's dm-verity hash partition (`root-a-verity`).
    pub fn verity_label(self) -> &'static str {
        match self {
            Slot::A => "root-a-verity",
            Slot::B => "root-b-verity",
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown slot {0:?} (expected \"a\" or \"b\")")]
pub struct UnknownSlot(pub String);

impl FromStr for Slot {
    type Err = UnknownSlot;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "a" => Ok(Slot::A),
            "b" => Ok(Slot::B),
            other => Err(UnknownSlot(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_round_trip() {
        for slot in Slot::ALL {
            assert_eq!(slot.name().parse::<Slot>().ok(), Some(slot));
            assert_eq!(slot.other().other(), slot);
        }
        assert!("c".parse::<Slot>().is_err());
    }

    #[test]
    fn labels_fit_gpt_name_field() {
        // GPT names hold 36 UTF-16 code units.
        for slot in Slot::ALL {
            assert!(slot.verity_label().len() <= 36);
        }
    }
}
