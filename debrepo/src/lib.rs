//! Debian repository client: mirror discovery from apt configuration, signed
//! InRelease verification, Packages indexes, dependency resolution and a verified,
//! content-addressed .deb cache.
//!
//! ```no_run
//! # fn main() -> Result<(), debrepo::Error> {
//! use std::path::Path;
//! use debrepo::{apt_sources, NetMode, Repository};
//! let suites = vec!["bookworm".to_string(), "bookworm-updates".to_string()];
//! let sources = apt_sources(Path::new("/"), &suites)?;
//! let cache = Path::new("/var/cache/keel");
//! let repo = Repository::open(&sources, "amd64", cache, NetMode::Online)?;
//! let pkgs = repo.resolve(&["busybox-static".to_string()])?;
//! let debs = repo.fetch(&pkgs, cache, NetMode::Online)?;
//! # let _ = debs; Ok(()) }
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cache;
pub mod deb822;
mod deps;
mod error;
mod fetch;
mod net;
mod openpgp;
mod packages;
mod release;
mod repository;
mod resolve;
mod sources;
mod version;

pub use deps::{group_to_string, parse_depends, parse_request, Dep, DepGroup, Provide};
pub use error::Error;
pub use net::NetMode;
pub use openpgp::{load_keys, verify_cleartext, KeySet};
pub use packages::{parse_packages, MultiArch, Package};
pub use release::{parse_date, parse_release, verify_inrelease, FileEntry, Release};
pub use repository::Repository;
pub use sources::{apt_sources, default_keyrings, Keyring, Source};
pub use version::{compare_versions, Relation};
