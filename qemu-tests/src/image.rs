//! Finding the images that `make image` built.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{host, HarnessError};

/// The directory images are looked for in: `$KEEL_OUT`, else `<workspace>/out`.
pub fn out_dir() -> PathBuf {
    std::env::var_os(host::ENV_OUT).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("out"),
        PathBuf::from,
    )
}

/// The newest (by modification time) `<name>-*.qcow2` in [`out_dir`].
///
/// A missing image is an error telling to run `make image`: tests fail, they
/// never skip, when there is nothing to boot.
pub fn find_image(name: &str) -> Result<PathBuf, HarnessError> {
    find_image_in(&out_dir(), name)
}

/// [`find_image`] in a given directory.
pub fn find_image_in(dir: &Path, name: &str) -> Result<PathBuf, HarnessError> {
    let missing = || HarnessError::ImageMissing {
        name: name.to_string(),
        dir: dir.to_path_buf(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(source) => {
            return Err(HarnessError::ReadImageDir {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    let prefix = format!("{name}-");
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|source| HarnessError::ReadImageDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if !file_name.starts_with(&prefix) || !file_name.ends_with(".qcow2") {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|source| HarnessError::ReadImageDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        let path = entry.path();
        // Newest wins; equal times are broken by name so the choice is stable.
        if best
            .as_ref()
            .is_none_or(|(t, p)| (modified, &path) > (*t, p))
        {
            best = Some((modified, path));
        }
    }
    best.map(|(_, path)| path).ok_or_else(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::Duration;

    #[test]
    fn missing_image_says_make_image() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_image_in(dir.path(), "keel").unwrap_err();
        assert!(err.to_string().contains("run `make image` first"), "{err}");
        let err = find_image_in(&dir.path().join("absent"), "keel").unwrap_err();
        assert!(matches!(err, HarnessError::ImageMissing { .. }), "{err}");
    }

    #[test]
    fn newest_matching_image_wins() {
        let dir = tempfile::tempdir().unwrap();
        let base = SystemTime::now() - Duration::from_secs(1000);
        for (file, age) in [
            ("keel-1.0.qcow2", 30),
            ("keel-1.1.qcow2", 10),
            ("keel-2.0.raw", 0),
            ("other-9.qcow2", 0),
        ] {
            let f = File::create(dir.path().join(file)).unwrap();
            f.set_modified(base - Duration::from_secs(age)).unwrap();
        }
        let found = find_image_in(dir.path(), "keel").unwrap();
        assert_eq!(found, dir.path().join("keel-1.1.qcow2"));
    }
}
