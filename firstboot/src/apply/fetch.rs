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
    /// `ignition.proxy`: the proxy for http URLs, for https URLs, and the
    /// hosts that bypass both.
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Vec<String>,
}

impl Default for Client {
    /// Ignition's defaults: 10 s for the answer's headers, no total limit.
    fn default() -> Self {
        Self {
            response_headers: std::time::Duration::from_secs(10),
            total: None,
            roots: None,
            http_proxy: None,
            https_proxy: None,
            no_proxy: Vec::new(),
        }
    }
}

/// The host (lower-cased, IPv6 without brackets) and port of an http or
/// https URL.
pub fn host_port(source: &str) -> Option<(String, u16)> {
    let (scheme, rest) = source.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => default,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Whether a request to `host:port` goes around the proxy, by the rules of
/// Go's `httpproxy` (which Ignition uses): never for `localhost` and
/// loopback addresses; `*` for every host; an IP address or CIDR prefix
/// for the addresses it covers; `name` for that name and its subdomains,
/// `.name` and `*.name` for its subdomains only; an entry with `:port`
/// only for that port.
pub fn bypasses_proxy(host: &str, port: u16, no_proxy: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    if host == "localhost" || ip.is_some_and(|i| i.is_loopback()) {
        return true;
    }
    for entry in no_proxy {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return true;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            let (Ok(net), Ok(bits), Some(ip)) =
                (net.parse::<std::net::IpAddr>(), bits.parse::<u32>(), ip)
            else {
                continue;
            };
            if in_prefix(ip, net, bits) {
                return true;
            }
            continue;
        }
        if let Ok(e) = entry.parse::<std::net::IpAddr>() {
            if ip == Some(e) {
                return true;
            }
            continue;
        }
        // host[:port]
        let (name, want_port) = match entry.rsplit_once(':') {
            Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
                (n.to_string(), p.parse::<u16>().ok())
            }
            _ => (entry.clone(), None),
        };
        if want_port.is_some_and(|p| p != port) {
            continue;
        }
        let (suffix, exact) = match name.strip_prefix("*.").or_else(|| name.strip_prefix('.')) {
            Some(base) => (format!(".{base}"), false),
            None => (format!(".{name}"), true),
        };
        if host.ends_with(&suffix) || (exact && host == suffix[1..]) {
            return true;
        }
    }
    false
}

fn in_prefix(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u32) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
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
    /// Through `httpProxy` (http URLs) and `httpsProxy` (https URLs).
    via_http: Option<ureq::Agent>,
    via_https: Option<ureq::Agent>,
    no_proxy: Vec<String>,
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
                ..Client::default()
            },
        )
        .unwrap_or_else(|_| unreachable!("no proxy, nothing to refuse"))
    }

    /// As [`Network::new`], set up as `client` says; an error names a
    /// proxy URL that cannot be used.
    pub fn with_client(
        tries: u32,
        first_delay: std::time::Duration,
        client: &Client,
    ) -> Result<Self, String> {
        let agent = |proxy: Option<&str>| -> Result<ureq::Agent, String> {
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
            if let Some(p) = proxy {
                let proxy =
                    ureq::Proxy::new(p).map_err(|e| format!("proxy {p} cannot be used: {e}"))?;
                builder = builder.proxy(Some(proxy));
            }
            Ok(builder.build().into())
        };
        let proxied = |p: &Option<String>| {
            p.as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| agent(Some(p)))
                .transpose()
        };
        Ok(Self {
            agent: agent(None)?,
            via_http: proxied(&client.http_proxy)?,
            via_https: proxied(&client.https_proxy)?,
            no_proxy: client.no_proxy.clone(),
            tries: tries.max(1),
            first_delay,
        })
    }

    /// The agent for `source`: through the scheme's proxy unless the host
    /// bypasses it.
    fn agent_for(&self, source: &str) -> &ureq::Agent {
        let https = source
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        let via = if https {
            &self.via_https
        } else {
            &self.via_http
        };
        match (via, host_port(source)) {
            (Some(v), Some((host, port))) if !bypasses_proxy(&host, port, &self.no_proxy) => v,
            _ => &self.agent,
        }
    }

    /// Whether a request for `source` would go through a proxy.
    pub fn proxied(&self, source: &str) -> bool {
        !std::ptr::eq(self.agent_for(source), &self.agent)
    }

    /// Ignition's defaults ([`Client::default`]); six tries, the first
    /// retry after a second (about a minute in all for a server that
    /// stays down).
    pub fn with_defaults() -> Self {
        Self::new(
            6,
            std::time::Duration::from_secs(1),
            Client::default().response_headers,
            None,
        )
    }

    fn once(&self, source: &str, r: &Resource) -> Result<Vec<u8>, (bool, String)> {
        let mut req = self.agent_for(source).get(source);
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
    fn hosts_and_ports_of_urls() {
        assert_eq!(
            host_port("https://Example.COM/x"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(
            host_port("http://u:p@10.0.2.2:8080/a?b"),
            Some(("10.0.2.2".into(), 8080))
        );
        assert_eq!(
            host_port("http://[fe80::1]:81/"),
            Some(("fe80::1".into(), 81))
        );
        assert_eq!(host_port("http://[::1]/"), Some(("::1".into(), 80)));
        assert_eq!(host_port("data:,x"), None);
    }

    #[test]
    fn no_proxy_follows_gos_httpproxy() {
        let np = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Loopback never goes through a proxy.
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "::1"] {
            assert!(bypasses_proxy(h, 80, &[]), "{h}");
        }
        assert!(!bypasses_proxy("10.0.2.2", 80, &[]));
        assert!(bypasses_proxy("anything.example", 443, &np(&["*"])));
        // A name: itself and its subdomains; a dot or star: subdomains only.
        let list = np(&["example.com", ".sub.org", "*.star.net"]);
        assert!(bypasses_proxy("example.com", 443, &list));
        assert!(bypasses_proxy("a.example.com", 443, &list));
        assert!(!bypasses_proxy("notexample.com", 443, &list));
        assert!(bypasses_proxy("x.sub.org", 443, &list));
        assert!(!bypasses_proxy("sub.org", 443, &list));
        assert!(bypasses_proxy("x.star.net", 443, &list));
        assert!(!bypasses_proxy("star.net", 443, &list));
        // Ports, addresses and prefixes.
        let list = np(&[
            "mirror.local:8080",
            "10.1.2.3",
            "192.168.0.0/16",
            "fd00::/8",
        ]);
        assert!(bypasses_proxy("mirror.local", 8080, &list));
        assert!(!bypasses_proxy("mirror.local", 80, &list));
        assert!(bypasses_proxy("10.1.2.3", 80, &list));
        assert!(!bypasses_proxy("10.1.2.4", 80, &list));
        assert!(bypasses_proxy("192.168.7.9", 80, &list));
        assert!(!bypasses_proxy("192.169.0.1", 80, &list));
        assert!(bypasses_proxy("fd12::1", 80, &list));
    }

    #[test]
    fn each_scheme_takes_its_own_proxy() {
        let client = Client {
            http_proxy: Some("http://127.0.0.1:3128".into()),
            https_proxy: None,
            no_proxy: vec!["direct.example".into()],
            ..Client::default()
        };
        let n = Network::with_client(1, std::time::Duration::ZERO, &client).unwrap();
        assert!(n.proxied("http://mirror.example/x"));
        assert!(!n.proxied("http://direct.example/x"));
        assert!(!n.proxied("http://127.0.0.1/x"));
        assert!(!n.proxied("https://mirror.example/x"));
        let bad = Client {
            https_proxy: Some("http://[oops".into()),
            ..Client::default()
        };
        let e = Network::with_client(1, std::time::Duration::ZERO, &bad)
            .err()
            .unwrap();
        assert!(e.starts_with("proxy http://[oops cannot be used"), "{e}");
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
