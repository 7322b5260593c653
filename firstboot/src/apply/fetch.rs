//! Getting a resource's bytes before anything is written: the source,
//! then `compression`, then `verification.hash` over the contents (after
//! decompression, as Ignition checks it), streamed from the source into a
//! [`Budget`] so that neither what arrives nor what it inflates to can
//! grow without bound.

use std::io::{self, Read};

use ignition_config::v3_6::Resource;
use sha2::{Digest, Sha256, Sha512};

use super::contents::{human, Budget, Contents, Refused};
use crate::url::{self, decode_data_url};

pub use super::network::{bypasses_proxy, host_port, pem_certificates, Client, Network};

/// What a config, a referenced config or a certificate may be, at most
/// (they are parsed in memory).
pub const MAX_CONFIG: u64 = 32 << 20;

/// Why a resource could not be had. Each message is complete: none has a
/// source error to print again after it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Source { url: String, reason: String },
    #[error("{url}: hash mismatch: expected {expected}, got {actual}")]
    Hash {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: gzip: {reason}")]
    Gzip { url: String, reason: String },
    /// More bytes than the limit arrived, or would be kept.
    #[error("{url}: {what} larger than the limit of {} ({why})", human(*limit))]
    TooLarge {
        url: String,
        what: String,
        limit: u64,
        why: String,
    },
}

/// How many bytes a fetcher may hand over, and why that many.
#[derive(Debug, Clone, Copy)]
pub struct Limit<'a> {
    /// What may still come.
    pub bytes: u64,
    /// The limit that is, for messages.
    pub total: u64,
    pub why: &'a str,
}

impl Limit<'_> {
    /// The error for `what` (at `url`) going past this limit.
    pub fn exceeded(&self, url: &str, what: impl Into<String>) -> FetchError {
        FetchError::TooLarge {
            url: shown(url),
            what: what.into(),
            limit: self.total,
            why: self.why.to_string(),
        }
    }
}

/// Takes a source's raw bytes as they arrive.
pub type Consume<'c> = dyn FnMut(&mut dyn Read) -> Result<(), FetchError> + 'c;

/// Where bytes come from; the network fetcher implements this too.
pub trait Fetch {
    /// Hands the raw bytes at `source` (no verification, no
    /// decompression) to `consume` as a reader, which fails once more
    /// than `limit` bytes came (or when the source says in advance that
    /// it has more). A fetcher that retries after a failure to read calls
    /// `consume` again with a new reader: `consume` starts over each time.
    fn get(
        &self,
        source: &str,
        resource: &Resource,
        limit: Limit<'_>,
        consume: &mut Consume<'_>,
    ) -> Result<(), FetchError>;
}

/// The raw bytes at `source`, at most [`MAX_CONFIG`] of them.
pub fn bytes(f: &dyn Fetch, source: &str, r: &Resource) -> Result<Vec<u8>, FetchError> {
    let limit = Limit {
        bytes: MAX_CONFIG,
        total: MAX_CONFIG,
        why: CONFIG_LIMIT,
    };
    let mut out = Vec::new();
    f.get(source, r, limit, &mut |body| {
        out.clear();
        // The fetcher's reader stops at the limit.
        body.read_to_end(&mut out)
            .map(drop)
            .map_err(|e| FetchError::Source {
                url: shown(source),
                reason: format!("reading: {e}"),
            })
    })?;
    Ok(out)
}

const CONFIG_LIMIT: &str = "Keel's limit for configs and certificates";

/// Everything `from` has (a config file, standard input), at most
/// [`MAX_CONFIG`] bytes: more is an error.
pub fn read_config(from: impl Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    from.take(MAX_CONFIG + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_CONFIG {
        return Err(io::Error::other(format!(
            "larger than the limit of {} ({CONFIG_LIMIT})",
            human(MAX_CONFIG)
        )));
    }
    Ok(out)
}

/// `data:` URLs only: what a config carries inline (where nothing may
/// be fetched from the network).
pub struct InlineOnly;

impl Fetch for InlineOnly {
    fn get(
        &self,
        source: &str,
        _resource: &Resource,
        limit: Limit<'_>,
        consume: &mut Consume<'_>,
    ) -> Result<(), FetchError> {
        let scheme = url::parse(source).map(|u| u.scheme).unwrap_or_default();
        if scheme != "data" {
            return Err(FetchError::Source {
                url: source.to_string(),
                reason: format!("only inline (data:) sources here, not {scheme}"),
            });
        }
        let data = decode_data_url(source).map_err(|e| FetchError::Source {
            url: shown(source),
            reason: e.to_string(),
        })?;
        if data.len() as u64 > limit.bytes {
            return Err(limit.exceeded(source, "the data is"));
        }
        consume(&mut data.as_slice())
    }
}

/// Brings the network up, once, the first time a source needs it (as
/// Ignition's fetch-offline stage asks for networking only when a config
/// needs it). The command runs with our stdout and stderr; a failure is
/// kept and reported for every later source too.
pub struct NetworkUp {
    command: Vec<String>,
    done: std::sync::OnceLock<Result<(), String>>,
}

impl NetworkUp {
    /// `command` (program and arguments) brings the network up and exits
    /// once it is; empty means the network needs no bringing up.
    pub fn new(command: Vec<String>) -> Self {
        Self {
            command,
            done: std::sync::OnceLock::new(),
        }
    }

    fn ensure(&self, source: &str) -> Result<(), String> {
        self.done
            .get_or_init(|| {
                let Some((program, args)) = self.command.split_first() else {
                    return Ok(());
                };
                eprintln!(
                    "keel-firstboot: {} needs the network; bringing it up: {}",
                    shown(source),
                    self.command.join(" ")
                );
                match std::process::Command::new(program)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .status()
                {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(format!("{program} {s}")),
                    Err(e) => Err(format!("running {program}: {e}")),
                }
            })
            .clone()
    }
}

/// A fetcher whose every fetch fails for one reason (a client that could
/// not be set up, say).
pub struct Failing {
    pub url: String,
    pub reason: String,
}

impl Fetch for Failing {
    fn get(
        &self,
        _source: &str,
        _r: &Resource,
        _limit: Limit<'_>,
        _consume: &mut Consume<'_>,
    ) -> Result<(), FetchError> {
        Err(FetchError::Source {
            url: self.url.clone(),
            reason: self.reason.clone(),
        })
    }
}

/// A fetcher that brings the network up (see [`NetworkUp`]) before its
/// first http or https source.
pub struct Online<'a, F> {
    pub inner: F,
    pub up: &'a NetworkUp,
}

impl<F: Fetch> Fetch for Online<'_, F> {
    fn get(
        &self,
        source: &str,
        r: &Resource,
        limit: Limit<'_>,
        consume: &mut Consume<'_>,
    ) -> Result<(), FetchError> {
        let scheme = url::parse(source).map(|u| u.scheme).unwrap_or_default();
        if scheme == "http" || scheme == "https" {
            self.up.ensure(source).map_err(|e| FetchError::Source {
                url: source.to_string(),
                reason: format!("bringing up the network: {e}"),
            })?;
        }
        self.inner.get(source, r, limit, consume)
    }
}

/// A source as messages name it (a long `data:` URL by its start).
pub fn shown(source: &str) -> String {
    // data: URLs can be long; name them by their start.
    if source.starts_with("data:") && source.len() > 40 {
        format!(
            "{}…",
            &source[..source
                .char_indices()
                .nth(40)
                .map_or(source.len(), |(i, _)| i)]
        )
    } else {
        source.to_string()
    }
}

/// A running `verification.hash` (`sha512-<hex>` or `sha256-<hex>`,
/// already validated).
enum Hasher {
    None,
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn new(hash: Option<&str>) -> Self {
        match hash.and_then(|h| h.split_once('-')) {
            None => Self::None,
            Some(("sha256", _)) => Self::Sha256(Sha256::new()),
            Some(_) => Self::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::None => {}
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn check(self, source: &str, hash: &str) -> Result<(), FetchError> {
        let (function, expected) = hash.split_once('-').unwrap_or((hash, ""));
        let actual = match self {
            Self::None => return Ok(()),
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        };
        if actual.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(FetchError::Hash {
                url: shown(source),
                expected: hash.to_string(),
                actual: format!("{function}-{actual}"),
            })
        }
    }
}

/// Checks `data` against `hash` (`sha512-<hex>` or `sha256-<hex>`, already
/// validated).
pub fn verify(source: &str, hash: &str, data: &[u8]) -> Result<(), FetchError> {
    let mut h = Hasher::new(Some(hash));
    h.update(data);
    h.check(source, hash)
}

/// The resource's final contents, kept in `budget`; `None` when it has no
/// source. What arrives and what it decompresses to are each bounded by
/// what the budget has left; the hash is checked over the decompressed
/// bytes as they stream by, before anything is kept for good.
pub fn contents(
    f: &dyn Fetch,
    r: &Resource,
    budget: &mut Budget,
) -> Result<Option<Contents>, FetchError> {
    let Some(source) = r.source.as_deref() else {
        return Ok(None);
    };
    let gzip = r.compression.as_deref() == Some("gzip");
    let hash = r.verification.as_ref().and_then(|v| v.hash.as_deref());
    let (total, why) = budget.limit();
    let why = match total - budget.remaining() {
        0 => why.to_string(),
        taken => format!("{why}; earlier resources took {}", human(taken)),
    };
    let limit = Limit {
        bytes: budget.remaining(),
        total,
        why: &why,
    };
    let spool = budget
        .spool_dir()
        .map_or_else(|| "memory".to_string(), |d| d.display().to_string());
    let mut kept = None;
    f.get(source, r, limit, &mut |body| {
        let mut collector = budget.collect();
        let mut hasher = Hasher::new(hash);
        let mut input: Box<dyn Read + '_> = if gzip {
            // Go's gzip reader, which Ignition uses, reads every member.
            Box::new(flate2::read::MultiGzDecoder::new(body))
        } else {
            Box::new(body)
        };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if gzip => {
                    return Err(FetchError::Gzip {
                        url: shown(source),
                        reason: e.to_string(),
                    })
                }
                Err(e) => {
                    return Err(FetchError::Source {
                        url: shown(source),
                        reason: format!("reading: {e}"),
                    })
                }
            };
            hasher.update(&buf[..n]);
            collector.push(&buf[..n]).map_err(|refused| match refused {
                Refused::Limit { limit, .. } => FetchError::TooLarge {
                    url: shown(source),
                    what: if gzip {
                        "the decompressed contents are".into()
                    } else {
                        "the contents are".into()
                    },
                    limit,
                    why: why.clone(),
                },
                Refused::Io(e) => FetchError::Source {
                    url: shown(source),
                    reason: format!("keeping the contents in {spool}: {e}"),
                },
            })?;
        }
        if let Some(h) = hash {
            // As Ignition does: the hash is of the (decompressed) contents.
            hasher.check(source, h)?;
        }
        kept = Some(collector.finish());
        Ok(())
    })?;
    Ok(kept)
}

/// The resource's final bytes in memory, at most [`MAX_CONFIG`] of them
/// (configs and certificates); `None` when it has no source.
pub fn resource(f: &dyn Fetch, r: &Resource) -> Result<Option<Vec<u8>>, FetchError> {
    let mut budget = Budget::memory(MAX_CONFIG, CONFIG_LIMIT);
    let Some(c) = contents(f, r, &mut budget)? else {
        return Ok(None);
    };
    c.into_vec().map(Some).map_err(|e| FetchError::Source {
        url: shown(r.source.as_deref().unwrap_or_default()),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn res(source: &str, hash: Option<String>, gzip: bool) -> Resource {
        Resource {
            compression: gzip.then(|| "gzip".to_string()),
            http_headers: None,
            source: Some(source.to_string()),
            verification: Some(ignition_config::v3_6::Verification { hash }),
        }
    }

    #[test]
    fn the_network_comes_up_once_and_only_for_remote_sources() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let up = NetworkUp::new(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("echo x >> {}", count.display()),
        ]);
        let f = Online {
            inner: InlineOnly,
            up: &up,
        };
        assert_eq!(bytes(&f, "data:,a", &Resource::default()).unwrap(), b"a");
        assert!(!count.exists());
        for _ in 0..2 {
            // InlineOnly refuses http, but only after the network came up.
            let e = bytes(&f, "http://10.0.2.2/c", &Resource::default()).unwrap_err();
            assert!(e.to_string().contains("only inline"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\n");

        let down = NetworkUp::new(vec!["/bin/false".into()]);
        let f = Online {
            inner: InlineOnly,
            up: &down,
        };
        let e = bytes(&f, "https://10.0.2.2/c", &Resource::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "https://10.0.2.2/c: bringing up the network: /bin/false exit status: 1"
        );
    }

    #[test]
    fn inflating_past_the_budget_stops_there_naming_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 8 << 20]).unwrap();
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            gz.finish().unwrap(),
        );
        let src = format!("data:;base64,{b64}");
        // A wrong hash too: the limit is met before the hash is known.
        let r = res(&src, Some(format!("sha512-{}", "0".repeat(128))), true);
        let mut budget = Budget::memory(1 << 20, "a test's limit");
        let e = contents(&InlineOnly, &r, &mut budget).unwrap_err();
        assert!(
            e.to_string().ends_with(
                ": the decompressed contents are larger than the limit of 1048576 bytes (1.0 MiB) (a test's limit)"
            ),
            "{e}"
        );
        assert!(e.to_string().starts_with("data:;base64,H4sI"), "{e}");
        // The raw bytes are bounded too.
        let mut budget = Budget::memory(4, "four bytes");
        let e = contents(&InlineOnly, &res("data:,12345", None, false), &mut budget).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data:,12345: the data is larger than the limit of 4 bytes (four bytes)"
        );
        let mut budget = Budget::memory(5, "five bytes");
        let ok = contents(&InlineOnly, &res("data:,12345", None, false), &mut budget);
        assert_eq!(ok.unwrap().unwrap().into_vec().unwrap(), b"12345");
    }

    #[test]
    fn data_sources_hashes_and_gzip() {
        let r = res("data:,hello", None, false);
        assert_eq!(resource(&InlineOnly, &r).unwrap().unwrap(), b"hello");
        let good = format!("sha256-{}", hex::encode(Sha256::digest(b"hello")));
        assert!(resource(&InlineOnly, &res("data:,hello", Some(good), false)).is_ok());
        let bad = format!("sha512-{}", "0".repeat(128));
        let e = resource(&InlineOnly, &res("data:,hello", Some(bad), false)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("data:,hello: hash mismatch: expected sha512-000"),
            "{e}"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"inflated").unwrap();
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            gz.finish().unwrap(),
        );
        let src = format!("data:;base64,{b64}");
        assert_eq!(
            resource(&InlineOnly, &res(&src, None, true))
                .unwrap()
                .unwrap(),
            b"inflated"
        );
        assert!(matches!(
            resource(&InlineOnly, &res("data:,plain", None, true)),
            Err(FetchError::Gzip { .. })
        ));
        let e = resource(&InlineOnly, &res("http://10.0.2.2/x", None, false)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://10.0.2.2/x: only inline (data:) sources here, not http"
        );
        let none = Resource::default();
        assert!(resource(&InlineOnly, &none).unwrap().is_none());
    }
}
