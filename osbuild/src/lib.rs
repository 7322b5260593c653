//! osbuild: composes a verified, bootable Keel image from Debian packages.
//!
//! The pipeline (see docs/architecture.md): resolve and fetch packages
//! ([`debrepo`]), unpack them into a staging root ([`unpack`], [`rootfs`]),
//! make the erofs root and its dm-verity tree, the initramfs
//! ([`initramfs`]), the ESP ([`esp`], [`fat`]) and the GPT disk ([`disk`]),
//! then convert to the requested formats. Every write into the staging
//! root stays inside it ([`stage`]); outputs become final together, last
//! ([`outputs`]); SIGINT and SIGTERM clean up ([`cancel`]).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod build;
pub mod cacerts;
pub mod cancel;
pub mod config;
pub mod cpio;
pub mod deb;
pub mod disk;
pub mod esp;
pub mod fat;
pub mod initramfs;
pub mod inputs;
pub mod modules;
pub mod outputs;
pub mod rootfs;
pub mod stage;
pub mod sysusers;
pub mod tools;
pub mod trees;
pub mod unpack;
