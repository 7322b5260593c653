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

/// How the network client is set up: Ignition's `timeouts` and, from
/// `ignition.security.tls.certificateAuthorities`, the certificates to
/// trust.
#[derive(Debug, Clone)]
pub struct Client {
    /// Bound on connecting and on waiting for an answer's headers.
    pub response_headers: std::time::Duration,
    /// Bound on each whole request, if any.
    pub total: Option<std::time::Duration>,
    /// DER certificates to trust instead of the built-in Mozilla roots
    /// (`None`: those roots).
    pub roots: Option<Vec<Vec<u8>>>,
}

impl Default for Client {
    /// Ignition's defaults: 10 s for the answer's headers, no total limit.
    fn default() -> Self {
        Self {
            response_headers: std::time::Duration::from_secs(10),
            total: None,
            roots: None,
        }
    }
}

/// Every certificate in PEM `text`, as DER; an error names what is wrong.
pub fn pem_certificates(text: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(text) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c.der().to_vec()),
            Ok(_) => {}
            Err(e) => return Err(format!("not PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(out)
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
        Self::with_client(
            tries,
            first_delay,
            &Client {
                response_headers,
                total,
                roots: None,
            },
        )
    }

    /// As [`Network::new`], set up as `client` says.
    pub fn with_client(tries: u32, first_delay: std::time::Duration, client: &Client) -> Self {
        let mut builder = ureq::Agent::config_builder()
            .timeout_connect(Some(client.response_headers))
            .timeout_recv_response(Some(client.response_headers))
            .timeout_global(client.total)
            .http_status_as_error(false)
            .user_agent(concat!("keel-firstboot/", env!("CARGO_PKG_VERSION")));
        if let Some(roots) = &client.roots {
            let certs: Vec<ureq::tls::Certificate<'static>> = roots
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
                .collect();
            builder = builder.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Self {
            agent: builder.build().into(),
            tries: tries.max(1),
            first_delay,
        }
    }

    /// Ignition's defaults ([`Client::default`]); six tries, the first
    /// retry after a second (about a minute in all for a server that
    /// stays down).
    pub fn with_defaults() -> Self {
        Self::with_client(6, std::time::Duration::from_secs(1), &Client::default())
    }

    fn once(&self, source: &str, r: &Resource) -> Result<Vec<u8>, (bool, String)> {
        let mut req = self.agent.get(source);
        for h in r.http_headers.iter().flatten() {
            if let Some(v) = &h.value {
                req = req.header(h.name.as_str(), v.as_str());
            }
        }
        // A certificate the client does not trust will not become trusted
        // by asking again: TLS errors are final.
        let resp = req.call().map_err(|e| {
            let tls = match &e {
                ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
                // rustls reports a refused certificate through the socket.
                ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
                _ => false,
            };
            let retry = !tls;
            (retry, e.to_string())
        })?;
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
    fn get(&self, _source: &str, _r: &Resource) -> Result<Vec<u8>, FetchError> {
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
    fn get(&self, source: &str, r: &Resource) -> Result<Vec<u8>, FetchError> {
        let scheme = url::parse(source).map(|u| u.scheme).unwrap_or_default();
        if scheme == "http" || scheme == "https" {
            self.up.ensure(source).map_err(|e| FetchError::Source {
                url: source.to_string(),
                reason: format!("bringing up the network: {e}"),
            })?;
        }
        self.inner.get(source, r)
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
        assert_eq!(f.get("data:,a", &Resource::default()).unwrap(), b"a");
        assert!(!count.exists());
        for _ in 0..2 {
            // InlineOnly refuses http, but only after the network came up.
            let e = f
                .get("http://10.0.2.2/c", &Resource::default())
                .unwrap_err();
            assert!(e.to_string().contains("only inline"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\n");

        let down = NetworkUp::new(vec!["/bin/false".into()]);
        let f = Online {
            inner: InlineOnly,
            up: &down,
        };
        let e = f
            .get("https://10.0.2.2/c", &Resource::default())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "https://10.0.2.2/c: bringing up the network: /bin/false exit status: 1"
        );
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
