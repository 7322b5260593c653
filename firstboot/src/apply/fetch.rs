//! Getting a resource's bytes before anything is written: the source,
//! then `compression`, then `verification.hash` over the contents (after
//! decompression, as Ignition checks it).

use std::io::Read;

use ignition_config::v3_6::Resource;
use sha2::{Digest, Sha256, Sha512};

use crate::url::{self, decode_data_url};

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
    #[error("{url}: gzip: {source}")]
    Gzip {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where bytes come from; the network fetcher implements this too.
pub trait Fetch {
    /// The raw bytes at `source` (no verification, no decompression).
    fn get(&self, source: &str, resource: &Resource) -> Result<Vec<u8>, FetchError>;
}

/// `data:` URLs only: what a config carries inline (where nothing may
/// be fetched from the network).
pub struct InlineOnly;

impl Fetch for InlineOnly {
    fn get(&self, source: &str, _resource: &Resource) -> Result<Vec<u8>, FetchError> {
        let scheme = url::parse(source).map(|u| u.scheme).unwrap_or_default();
        if scheme != "data" {
            return Err(FetchError::Source {
                url: source.to_string(),
                reason: format!("only inline (data:) sources here, not {scheme}"),
            });
        }
        decode_data_url(source).map_err(|e| FetchError::Source {
            url: source.to_string(),
            reason: e.to_string(),
        })
    }
}

/// http, https and data sources, with retries: transport errors,
/// timeouts and 5xx answers are retried with a doubling delay, a bounded
/// number of times; any other status is final. `httpHeaders` are sent.
pub struct Network {
    agent: ureq::Agent,
    tries: u32,
    first_delay: std::time::Duration,
}

impl Network {
    /// `tries` attempts per source, the first retry after `first_delay`;
    /// `response_headers` bounds the wait for an answer, `total` (if any)
    /// each whole request (Ignition's `timeouts.httpResponseHeaders` and
    /// `httpTotal`).
    pub fn new(
        tries: u32,
        first_delay: std::time::Duration,
        response_headers: std::time::Duration,
        total: Option<std::time::Duration>,
    ) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(response_headers))
            .timeout_recv_response(Some(response_headers))
            .timeout_global(total)
            .http_status_as_error(false)
            .user_agent(concat!("keel-firstboot/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            agent,
            tries: tries.max(1),
            first_delay,
        }
    }

    /// Ignition's defaults: 10 s for the answer's headers, no total limit;
    /// six tries, the first retry after a second (about a minute in all
    /// for a server that stays down).
    pub fn with_defaults() -> Self {
        Self::new(
            6,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(10),
            None,
        )
    }

    fn once(&self, source: &str, r: &Resource) -> Result<Vec<u8>, (bool, String)> {
        let mut req = self.agent.get(source);
        for h in r.http_headers.iter().flatten() {
            if let Some(v) = &h.value {
                req = req.header(h.name.as_str(), v.as_str());
            }
        }
        let resp = req.call().map_err(|e| (true, e.to_string()))?;
        let status = resp.status().as_u16();
        if status >= 500 {
            return Err((true, format!("server answered {status}")));
        }
        if status >= 300 {
            return Err((false, format!("server answered {status}")));
        }
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .read_to_end(&mut body)
            .map_err(|e| (true, format!("reading the answer: {e}")))?;
        Ok(body)
    }
}

impl Fetch for Network {
    fn get(&self, source: &str, r: &Resource) -> Result<Vec<u8>, FetchError> {
        let scheme = url::parse(source).map(|u| u.scheme).unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return InlineOnly.get(source, r);
        }
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match self.once(source, r) {
                Ok(body) => return Ok(body),
                Err((true, why)) if attempt < self.tries => {
                    eprintln!(
                        "keel-firstboot: fetching {source}: {why}; retrying in {} ms",
                        delay.as_millis()
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                    attempt += 1;
                }
                Err((retried, why)) => {
                    let tries = if retried {
                        format!(" (after {attempt} tries)")
                    } else {
                        String::new()
                    };
                    return Err(FetchError::Source {
                        url: source.to_string(),
                        reason: format!("{why}{tries}"),
                    });
                }
            }
        }
    }
}

fn shown(source: &str) -> String {
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

/// Checks `data` against `hash` (`sha512-<hex>` or `sha256-<hex>`, already
/// validated).
pub fn verify(source: &str, hash: &str, data: &[u8]) -> Result<(), FetchError> {
    let (function, expected) = hash.split_once('-').unwrap_or((hash, ""));
    let actual = match function {
        "sha256" => hex::encode(Sha256::digest(data)),
        _ => hex::encode(Sha512::digest(data)),
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

/// The resource's final bytes; `None` when it has no source.
pub fn resource(f: &dyn Fetch, r: &Resource) -> Result<Option<Vec<u8>>, FetchError> {
    let Some(source) = r.source.as_deref() else {
        return Ok(None);
    };
    let raw = f.get(source, r)?;
    let data = match r.compression.as_deref() {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .map_err(|source_err| FetchError::Gzip {
                    url: shown(source),
                    source: source_err,
                })?;
            out
        }
        _ => raw,
    };
    if let Some(hash) = r.verification.as_ref().and_then(|v| v.hash.as_deref()) {
        // As Ignition does: the hash is of the (decompressed) contents.
        verify(source, hash, &data)?;
    }
    Ok(Some(data))
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
