//! The initramfs: `keel-init` as /init, the kernel modules stage 1 loads,
//! and nothing else.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::cpio::CpioWriter;
use crate::modules::ModuleSet;

/// Lists the modules stage 1 loads, in order (see keel-init).
pub const MODULE_LIST: &str = "etc/keel/initrd-modules";

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error(transparent)]
    Modules(#[from] crate::modules::ModulesError),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub struct Contents<'a> {
    pub init_binary: &'a [u8],
    pub modules: &'a ModuleSet,
    pub requested: &'a [String],
    /// `IMAGE_VERSION` of the release, for initrd-release.
    pub version: &'a str,
    pub mtime: u32,
}

/// Builds the gzip-compressed cpio archive and returns it with the list
/// of modules it carries.
pub fn build(c: &Contents<'_>) -> Result<(Vec<u8>, Vec<String>), InitramfsError> {
    let io_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| InitramfsError::Io { what, path, source }
    };
    let closure = c.modules.closure(c.requested)?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let mut w = CpioWriter::new(gz, c.mtime);
    let wrap = |e| io_err("writing initramfs entry", Path::new("(memory)"))(e);
    let moddir = format!("usr/lib/modules/{}", c.modules.kver);
    let mut dirs = BTreeSet::new();
    for d in [
        "dev",
        "etc",
        "etc/keel",
        "proc",
        "run",
        "sys",
        "sysroot",
        "usr",
        "usr/lib",
        "usr/lib/modules",
        moddir.as_str(),
    ] {
        dirs.insert(d.to_string());
    }
    for m in &closure {
        let mut p = PathBuf::from(&moddir).join(&m.rel);
        while p.pop() && p.as_os_str().len() > moddir.len() {
            dirs.insert(p.to_string_lossy().into_owned());
        }
    }
    for d in &dirs {
        w.dir(d, 0o755).map_err(wrap)?;
    }
    w.char_device("dev/console", 0o600, 5, 1).map_err(wrap)?;
    w.symlink("bin", "usr/bin").map_err(wrap)?;
    w.symlink("lib", "usr/lib").map_err(wrap)?;
    w.file(
        "etc/initrd-release",
        0o644,
        format!(
            "NAME=\"Keel initrd\"\nID=keel\nVERSION_ID=\"{}\"\n",
            c.version
        )
        .as_bytes(),
    )
    .map_err(wrap)?;
    let mut list = String::new();
    let mut names = Vec::new();
    for m in &closure {
        let src = c.modules.dir.join(&m.rel);
        let data = std::fs::read(&src).map_err(io_err("reading", &src))?;
        let dest = format!("{moddir}/{}", m.rel.to_string_lossy());
        w.file(&dest, 0o644, &data).map_err(wrap)?;
        list.push('/');
        list.push_str(&dest);
        list.push('\n');
        names.push(m.rel.to_string_lossy().into_owned());
    }
    w.file(MODULE_LIST, 0o644, list.as_bytes()).map_err(wrap)?;
    w.file("init", 0o755, c.init_binary).map_err(wrap)?;
    let gz = w.finish().map_err(wrap)?;
    let mut bytes = gz.finish().map_err(wrap)?;
    bytes.flush().map_err(wrap)?;
    Ok((bytes, names))
}
