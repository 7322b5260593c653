//! The content-addressed cache: files named by their SHA-256, written to a temp file
//! in the same directory, verified, then renamed into place.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::net::{Client, NetError, NetMode};
use crate::Error;

/// What to download and how to check it.
pub(crate) struct Wanted<'a> {
    /// Human name for messages, e.g. `package bash` or `index main/binary-amd64/Packages.xz`.
    pub what: &'a str,
    /// URLs to try in order; a 404 moves on to the next.
    pub urls: &'a [String],
    pub sha256: &'a str,
    pub size: u64,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 (hex) and size of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64), Error> {
    let mut f = File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Returns the path of the verified file `dir/name`, downloading it if it is not
/// cached (or the cached copy is damaged). `progress` gets byte counts.
pub(crate) fn ensure(
    client: &Client,
    dir: &Path,
    name: &str,
    want: &Wanted<'_>,
    mode: NetMode,
    progress: &dyn Fn(u64),
) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    if path.is_file() {
        let (sha, size) = hash_file(&path)?;
        if sha == want.sha256 && size == want.size {
            progress(size);
            return Ok(path);
        }
        log::warn!("cached {} is damaged, fetching it again", path.display());
        std::fs::remove_file(&path).map_err(write_err(&path))?;
    }
    let first_url = want.urls.first().map(String::as_str).unwrap_or("");
    if mode == NetMode::Offline {
        return Err(Error::NotCached {
            what: want.what.to_string(),
            url: first_url.to_string(),
            cache: dir.to_path_buf(),
        });
    }
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut last = None;
    for url in want.urls {
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err(dir))?;
        let mut hashing = HashingWriter {
            file: tmp.as_file_mut(),
            hasher: Sha256::new(),
            size: 0,
        };
        let result = {
            let hw = std::cell::RefCell::new(&mut hashing);
            let mut w = RefHashing(&hw);
            let mut reset = || hw.borrow_mut().reset();
            client.download(url, &mut w, &mut reset, progress)
        };
        match result {
            Ok(()) => {}
            Err(NetError::Status(404)) => {
                last = Some(NetError::Status(404).into_error(url));
                continue;
            }
            Err(e) => return Err(e.into_error(url)),
        }
        let actual = hex::encode(std::mem::take(&mut hashing.hasher).finalize());
        let actual_size = hashing.size;
        if actual != want.sha256 || actual_size != want.size {
            // dropping `tmp` deletes the temp file
            return Err(Error::Mismatch {
                what: want.what.to_string(),
                url: url.clone(),
                expected: want.sha256.to_string(),
                expected_size: want.size,
                actual,
                actual_size,
            });
        }
        tmp.as_file().sync_all().map_err(write_err(&path))?;
        tmp.persist(&path).map_err(|e| Error::Write {
            path: path.clone(),
            source: e.error,
        })?;
        return Ok(path);
    }
    Err(last.unwrap_or_else(|| Error::Fetch {
        url: first_url.to_string(),
        message: "no URL to fetch from".to_string(),
    }))
}

/// Atomically writes `data` to `path` (temp file in the same directory + rename).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err(dir))?;
    tmp.write_all(data).map_err(write_err(path))?;
    tmp.persist(path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

struct HashingWriter<'a> {
    file: &'a mut File,
    hasher: Sha256,
    size: u64,
}

impl HashingWriter<'_> {
    fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.hasher = Sha256::new();
        self.size = 0;
        Ok(())
    }
}

struct RefHashing<'a, 'b>(&'a std::cell::RefCell<&'a mut HashingWriter<'b>>);

impl Write for RefHashing<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut w = self.0.borrow_mut();
        let n = w.file.write(data)?;
        w.hasher.update(&data[..n]);
        w.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().file.flush()
    }
}
