//! `keel-init`: Keel's PID 1.
//!
//! Stage 1 runs in the initramfs (where `/etc/initrd-release` exists): it
//! sets up the dm-verity root, /var and /etc and switches to the real root.
//! Stage 2 is PID 1 of the real root. Root-only system calls go through
//! [`sys::Sys`], so both stages run against a temporary directory in tests.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod bless;
pub mod boottime;
pub mod cgroup;
pub mod control;
pub mod early;
pub mod error;
pub mod ext4;
pub mod firstboot;
pub mod gpt_grow;
pub mod halt;
pub mod keelctl;
pub mod logs;
pub mod mountinfo;
pub mod partitions;
pub mod plan;
pub mod recording;
pub mod runtime;
pub mod shutdown;
pub mod stage1;
pub mod stage2;
pub mod supervise;
pub mod switch_root;
pub mod sys;
#[cfg(test)]
mod testutil;
/// The unit-file library, under the name init has always used for it.
pub(crate) use keel_units as unit;
pub mod var;
