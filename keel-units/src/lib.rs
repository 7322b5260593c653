//! systemd unit files: parsing, loading, the typed model, names and
//! installing (enable/disable).
//!
//! Keel's init runs the unit files Debian packages ship, unmodified, for a
//! documented subset of directives; keel-firstboot writes and enables the
//! units of Ignition configs. This crate is what both agree on; it only
//! reads unit files and makes links, it runs nothing:
//! [`load_units`] reads the unit directories below a root the way systemd
//! does (precedence, masks, aliases, drop-ins, `*.wants/`, templates) and
//! returns typed [`Unit`]s. Every directive outside the subset produces
//! exactly one [`Warning`] naming file, line, section and directive; a
//! syntax error fails that unit only.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod apply;
pub mod command;
pub mod confdirs;
#[doc(hidden)]
pub mod fixtures;
mod install;
mod load;
pub mod model;
pub mod mount;
pub mod name;
mod service;
pub mod specifier;
pub mod syntax;
pub mod values;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

pub use command::{expand, Command};
pub use install::{disable, enable, enable_recording, is_enabled, InstallChange, InstallError};
pub use load::{load_one, load_units, UNIT_DIRS};
pub use model::*;
pub use specifier::MachineInfo;
pub use values::{ExitStatusSet, Limit, TimeSpan};

/// A directive (or unit) that is accepted but not (fully) honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// File the directive is in.
    pub file: PathBuf,
    /// 1-based line; 0 when the warning is about the whole unit.
    pub line: usize,
    /// Section without brackets; empty for whole-unit warnings.
    pub section: String,
    /// Directive name; empty for whole-unit warnings.
    pub directive: String,
    /// What is not supported.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.directive.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}: [{}] {}=: {}",
                self.file.display(),
                self.line,
                self.section,
                self.directive,
                self.message
            )
        }
    }
}

/// Why a unit could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The unit file or a drop-in has a syntax error.
    #[error(transparent)]
    Syntax(#[from] syntax::SyntaxError),
    /// A unit file or directory could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The name breaks systemd's unit naming rules.
    #[error("invalid unit name {name:?}")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// No unit file (nor template) of that name exists.
    #[error("unit {name} not found")]
    NotFound {
        /// The name.
        name: String,
    },
    /// The unit is masked.
    #[error("unit {name} is masked")]
    Masked {
        /// The name.
        name: String,
    },
    /// The unit's settings contradict each other (systemd refuses it too).
    #[error("{}: {message}", file.display())]
    Invalid {
        /// The unit file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Symlinks in a unit directory loop or nest too deeply.
    #[error("too many levels of symbolic links at {}", path.display())]
    SymlinkLoop {
        /// Where resolution gave up.
        path: PathBuf,
    },
}

/// Everything [`load_units`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Loaded units by canonical name.
    pub units: BTreeMap<String, Unit>,
    /// Masked unit names.
    pub masked: BTreeSet<String>,
    /// Alias name → canonical name.
    pub aliases: BTreeMap<String, String>,
    /// Warnings from all units.
    pub warnings: Vec<Warning>,
    /// Units that failed to load, by name (the empty name when the unit
    /// directories themselves could not be read).
    pub errors: BTreeMap<String, LoadError>,
    /// `OWNER.wants/` and `OWNER.requires/` links of owners without a unit
    /// file (built-in targets such as multi-user.target): owner →
    /// (wanted, required) unit names.
    pub links: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

impl Loaded {
    /// Looks a unit up by its name or one of its aliases.
    pub fn get(&self, name: &str) -> Option<&Unit> {
        let canonical = self.aliases.get(name).map_or(name, String::as_str);
        self.units.get(canonical)
    }
}
