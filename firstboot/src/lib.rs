//! keel-firstboot: applies an Ignition v3 config once, all or nothing.
//!
//! So far: reading configs of spec 3.0.0 through 3.6.0 ([`config`]),
//! validating them with Ignition's rules and Keel's limits ([`validate`]),
//! reporting findings at their JSON path ([`report`]), and applying the
//! storage nodes with inline sources to a root ([`apply`]). Fetching over
//! the network, the other sections and the first boot itself are not
//! built yet; images built today contain no first-boot program, and
//! nothing in them claims to apply Ignition configs.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod apply;
pub mod config;
pub mod merge;
pub mod provision;
pub mod report;
pub mod url;
pub mod validate;
