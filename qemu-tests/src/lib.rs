//! Test harness that boots Keel images in QEMU, modelled on cloud-hypervisor's
//! `test_infra`: a [`GuestBuilder`] makes the QEMU command line, a [`Guest`]
//! owns its temporary directory (qcow2 overlay, firmware variables, serial log),
//! waits on console output instead of sleeping, and is always killed when
//! dropped, printing its serial log if the test failed.
//!
//! ```no_run
//! use std::time::Duration;
//! use qemu_tests::{find_image, GuestBuilder, BOOT_TIMEOUT};
//!
//! # fn main() -> Result<(), qemu_tests::HarnessError> {
//! let guest = GuestBuilder::new(&find_image("containerd")?)
//!     .console_shell()
//!     .hostfwd_tcp(22)
//!     .boot()?;
//! guest.wait_for_line("keel-init: boot complete", BOOT_TIMEOUT)?;
//! let out = guest.run("cat /etc/os-release", Duration::from_secs(30))?;
//! assert_eq!(out.exit_code, 0);
//! # Ok(())
//! # }
//! ```
//!
//! Environment: `KEEL_QEMU_KVM=1` uses KVM instead of TCG,
//! `KEEL_QEMU_TIMEOUT_SCALE` multiplies every timeout, `KEEL_QEMU_KEEP=1` keeps
//! guest directories, `KEEL_OUT` is where images are found, `KEEL_OVMF_CODE` and
//! `KEEL_OVMF_VARS` replace the firmware files.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod builder;
mod command;
mod console;
pub mod debug;
mod error;
mod guest;
pub mod host;
pub mod http;
mod image;
pub mod net;
pub mod oci;
pub mod releases;

pub use builder::GuestBuilder;
pub use command::CmdOutput;
pub use error::HarnessError;
pub use guest::{ConsoleMatch, Guest};
pub use host::{BOOT_TIMEOUT, COMMAND_TIMEOUT};
pub use image::{find_image, find_image_in, out_dir};
