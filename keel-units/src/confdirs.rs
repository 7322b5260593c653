//! `*.d` configuration directories read the way systemd reads them
//! (modules-load.d, sysctl.d and tmpfiles.d share these rules).
//!
//! Unit files follow the same precedence (see [`crate::load_units`]).
//!
//! The directories are given highest precedence first. A file name found
//! in an earlier directory masks the same name in the later ones; a
//! symbolic link to `/dev/null` masks without contributing anything. The
//! surviving files are processed in lexical order of their file names,
//! whatever directory they are in.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use keel_core::beneath;

/// Where systemd looks for `NAME.d`, highest precedence first.
pub const CONF_ROOTS: [&str; 4] = ["/etc", "/run", "/usr/local/lib", "/usr/lib"];

/// The directories of a `*.d` configuration, e.g. `["/etc/sysctl.d", ...]`.
pub fn dirs(name: &str) -> Vec<String> {
    CONF_ROOTS.iter().map(|r| format!("{r}/{name}")).collect()
}

/// One configuration file that survived masking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    /// The path inside the system (`/etc/sysctl.d/10-x.conf`), for messages.
    pub shown: String,
    /// The same path below the root, for reading.
    pub path: PathBuf,
}

impl ConfFile {
    /// Reads the file; symbolic links are followed inside the root.
    pub fn read(&self, root: &Path) -> io::Result<String> {
        match beneath::resolve(root, Path::new(&self.shown))? {
            Some(p) => fs::read_to_string(p),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} leads to nothing in the root", self.shown),
            )),
        }
    }
}

/// Lists the files ending in `suffix` in `dirs` (absolute paths inside
/// `root`, highest precedence first), with masking applied, sorted by file
/// name. Hidden files and directories are skipped; an unreadable directory
/// is a warning, returned with the files. Directories and links are
/// resolved inside the root.
pub fn list(root: &Path, dirs: &[String], suffix: &str) -> (Vec<ConfFile>, Vec<String>) {
    // file name -> the file, or None when masked by a /dev/null link.
    let mut found: BTreeMap<String, Option<ConfFile>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for dir in dirs {
        let real_dir = match beneath::resolve(root, Path::new(dir)) {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => {
                warnings.push(format!("reading directory {dir}: {e}"));
                continue;
            }
        };
        let entries = match fs::read_dir(&real_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
            Err(e) => {
                warnings.push(format!("reading directory {dir}: {e}"));
                continue;
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(suffix) && !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            if found.contains_key(&name) {
                continue;
            }
            let path = real_dir.join(&name);
            let link = fs::read_link(&path).ok();
            if link.as_deref() == Some(Path::new("/dev/null")) {
                found.insert(name, None);
                continue;
            }
            let shown = format!("{}/{name}", dir.trim_end_matches('/'));
            if beneath::resolve(root, Path::new(&shown))
                .ok()
                .flatten()
                .is_some_and(|p| p.is_dir())
            {
                continue;
            }
            found.insert(name, Some(ConfFile { shown, path }));
        }
    }
    (found.into_values().flatten().collect(), warnings)
}

/// The lines of `text` that are neither blank nor comments (first
/// non-blank character in `comments`), trimmed, with 1-based numbers.
pub fn lines<'t>(
    text: &'t str,
    comments: &'t [char],
) -> impl Iterator<Item = (usize, &'t str)> + 't {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(move |(_, l)| !l.is_empty() && !l.starts_with(comments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn masks_by_name_and_sorts_by_name() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        put(root, "usr/lib/x.d/10-vendor.conf", "vendor");
        put(root, "usr/lib/x.d/20-masked.conf", "masked");
        put(root, "usr/lib/x.d/30-same.conf", "usr");
        put(root, "usr/local/lib/x.d/30-same.conf", "local");
        put(root, "run/x.d/05-run.conf", "run");
        put(root, "etc/x.d/30-same.conf", "etc");
        put(root, "etc/x.d/40-local.conf", "local");
        put(root, "etc/x.d/README", "not a conf");
        put(root, "etc/x.d/.hidden.conf", "hidden");
        fs::create_dir_all(root.join("etc/x.d/dir.conf")).unwrap();
        symlink("/dev/null", root.join("etc/x.d/20-masked.conf")).unwrap();
        let (files, warnings) = list(root, &dirs("x.d"), ".conf");
        let shown: Vec<&str> = files.iter().map(|f| f.shown.as_str()).collect();
        assert_eq!(
            shown,
            [
                "/run/x.d/05-run.conf",
                "/usr/lib/x.d/10-vendor.conf",
                "/etc/x.d/30-same.conf",
                "/etc/x.d/40-local.conf",
            ]
        );
        assert_eq!(files[2].read(root).unwrap(), "etc");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn reads_links_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        put(root, "etc/sysctl.conf", "a = 1");
        fs::create_dir_all(root.join("etc/sysctl.d")).unwrap();
        symlink("../sysctl.conf", root.join("etc/sysctl.d/99-rel.conf")).unwrap();
        symlink("/etc/sysctl.conf", root.join("etc/sysctl.d/98-abs.conf")).unwrap();
        let (files, _) = list(root, &dirs("sysctl.d"), ".conf");
        assert_eq!(files.len(), 2);
        for f in &files {
            assert_eq!(f.read(root).unwrap(), "a = 1");
        }
    }

    #[test]
    fn skips_blank_and_comment_lines() {
        let text = "# c\n\n  a = 1  \n; c2\n\tb\n";
        let got: Vec<(usize, &str)> = lines(text, &['#', ';']).collect();
        assert_eq!(got, [(3, "a = 1"), (5, "b")]);
        let got: Vec<(usize, &str)> = lines(text, &['#']).collect();
        assert_eq!(got, [(3, "a = 1"), (4, "; c2"), (5, "b")]);
    }
}
