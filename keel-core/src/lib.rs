//! The on-disk contract that Keel's programs must agree on.
//!
//! `osbuild` writes images that follow it, `keel-init` boots them, and later
//! `keel-update` rewrites slots under the same rules. Nothing here touches a
//! disk: it only names things and parses the names back, except
//! [`beneath`], the one way every program resolves paths inside a root
//! it was given.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod beneath;
pub mod cmdline;
pub mod entry;
pub mod layout;
pub mod osrelease;
pub mod verity;

pub use layout::Slot;
