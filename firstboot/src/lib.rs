//! keel-firstboot: applies an Ignition v3 config once, all or nothing.
//!
//! Reading configs of spec 3.0.0 through 3.6.0 ([`config`]), validating
//! them with Ignition's rules and Keel's limits ([`validate`]), reporting
//! findings at their JSON path ([`report`]), merged and replacing configs
//! ([`merge`], [`provision::render`]), applying them to a tree or a node
//! ([`apply`]: files, users, units, kernel arguments, disks and file
//! systems), and a node's first boot ([`provision`]). docs/ignition.md has
//! the support matrix.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod apply;
pub mod config;
pub mod merge;
pub mod provision;
pub mod report;
pub mod url;
pub mod validate;
