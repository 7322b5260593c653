//! Reading .deb files: the `ar` container and its `data.tar.*` member.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a Debian package: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// Calls `f` with a reader over the decompressed `data.tar` of `deb`.
pub fn with_data_tar<T>(
    deb: &Path,
    f: impl FnOnce(&mut dyn Read) -> Result<T, DebError>,
) -> Result<T, DebError> {
    let io = |source| DebError::Io {
        path: deb.to_path_buf(),
        source,
    };
    let format = |reason: String| DebError::Format {
        path: deb.to_path_buf(),
        reason,
    };
    let file = File::open(deb).map_err(io)?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    let mut seen_binary = false;
    while let Some(entry) = archive.next_entry() {
        let entry = entry.map_err(io)?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let name = name.trim_end_matches('/');
        match name {
            "debian-binary" => seen_binary = true,
            n if n.starts_with("control.tar") => {}
            n if n.starts_with("data.tar") => {
                if !seen_binary {
                    return Err(format("data.tar before debian-binary".into()));
                }
                let mut reader: Box<dyn Read> = match &n["data.tar".len()..] {
                    ".xz" => Box::new(liblzma::read::XzDecoder::new(entry)),
                    ".zst" => Box::new(zstd::stream::read::Decoder::new(entry).map_err(io)?),
                    ".gz" => Box::new(flate2::read::GzDecoder::new(entry)),
                    "" => Box::new(entry),
                    other => {
                        return Err(format(format!(
                            "unsupported data.tar compression {other:?}"
                        )))
                    }
                };
                return f(&mut reader);
            }
            _ => {}
        }
    }
    Err(format("no data.tar member".into()))
}
