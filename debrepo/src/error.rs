//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while talking to a Debian repository.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: unsupported signed-by value {value:?} (only key files and inline keys are supported)")]
    UnsupportedSignedBy { path: PathBuf, value: String },
    #[error("keyring {name}: {message}")]
    Keyring { name: String, message: String },
    #[error("no usable OpenPGP key in the keyrings of suite {suite}")]
    EmptyKeyring { suite: String },
    #[error("InRelease of suite {suite} from {url}: {reason}")]
    Signature {
        suite: String,
        url: String,
        reason: String,
    },
    #[error("InRelease of suite {suite} from {url}: {message}")]
    Release {
        suite: String,
        url: String,
        message: String,
    },
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("fetching {url}: HTTP status {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("offline mode: {what} ({url}) is not in the cache {cache}")]
    NotCached {
        what: String,
        url: String,
        cache: PathBuf,
    },
    #[error("{what} from {url}: expected {expected_size} bytes with sha256 {expected}, got {actual_size} bytes with sha256 {actual}")]
    Mismatch {
        what: String,
        url: String,
        expected: String,
        expected_size: u64,
        actual: String,
        actual_size: u64,
    },
    #[error("{file}: not listed in the Release file of suite {suite}")]
    NotInRelease { suite: String, file: String },
    #[error("decompressing {file}: {message}")]
    Decompress { file: String, message: String },
    #[error("invalid package request {request:?}: {message}")]
    BadRequest { request: String, message: String },
    #[error("no package satisfies {request:?}")]
    NoSuchPackage { request: String },
    #[error("excluded package {name:?} {why}")]
    BadExclude { name: String, why: &'static str },
    #[error("unsatisfiable dependency {dependency:?} of {package} (needed by: {chain})")]
    Unsatisfiable {
        dependency: String,
        package: String,
        chain: String,
    },
    #[error("{package} {version} needed by {chain} conflicts with the selected version {selected} (requirement {dependency:?})")]
    VersionClash {
        dependency: String,
        package: String,
        version: String,
        selected: String,
        chain: String,
    },
    #[error("creating worker thread: {0}")]
    Thread(#[source] std::io::Error),
}
