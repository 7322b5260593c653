//! The network client: http and https with Ignition's timeouts, retries,
//! proxies (by the rules of Go's `httpproxy`) and trusted certificates;
//! every answer bounded in size (its `Content-Length` and the bytes that
//! arrive).

use std::io::Read;

use ignition_config::v3_6::Resource;

use super::fetch::{Consume, Fetch, FetchError, InlineOnly, Limit};
use crate::url;
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
                .max_redirects(MAX_REDIRECTS)
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

    /// One request; `Err` says whether asking again may help.
    fn once(
        &self,
        source: &str,
        r: &Resource,
        limit: Limit<'_>,
        consume: &mut Consume<'_>,
    ) -> Result<(), Failed> {
        let mut req = self.agent_for(source).get(source);
        for h in r.http_headers.iter().flatten() {
            if let Some(v) = &h.value {
                req = req.header(h.name.as_str(), v.as_str());
            }
        }
        let final_ = |reason: String| {
            Failed::Final(FetchError::Source {
                url: source.to_string(),
                reason,
            })
        };
        let resp = req.call().map_err(|e| match &e {
            // A certificate the client does not trust will not become
            // trusted by asking again: TLS errors are final.
            ureq::Error::Rustls(_) | ureq::Error::Tls(_) => final_(e.to_string()),
            // rustls reports a refused certificate through the socket.
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                final_(e.to_string())
            }
            // A redirect loop stays one (Go's client, which Ignition
            // uses, stops after 10 redirects too).
            ureq::Error::TooManyRedirects => {
                final_(format!("stopped after {MAX_REDIRECTS} redirects"))
            }
            ureq::Error::RedirectFailed | ureq::Error::BadUri(_) => final_(e.to_string()),
            _ => Failed::Retry(e.to_string()),
        })?;
        let status = resp.status().as_u16();
        if status >= 500 {
            return Err(Failed::Retry(format!("server answered {status}")));
        }
        if status >= 300 {
            return Err(final_(format!("server answered {status}")));
        }
        if let Some(len) = resp.body().content_length() {
            if len > limit.bytes {
                return Err(Failed::Final(limit.exceeded(
                    source,
                    format!("the answer ({len} bytes, its Content-Length) is"),
                )));
            }
        }
        let mut body = Counted {
            inner: resp.into_body().into_reader(),
            count: 0,
            limit: limit.bytes,
            failed: None,
        };
        match consume(&mut body) {
            Ok(()) => Ok(()),
            Err(e) => Err(match body.failed {
                Some(BodyFailure::TooLarge) => {
                    Failed::Final(limit.exceeded(source, "the answer is"))
                }
                Some(BodyFailure::Read(why)) => Failed::Retry(format!("reading the answer: {why}")),
                None => Failed::Final(e),
            }),
        }
    }
}

/// How many redirects one request follows.
pub const MAX_REDIRECTS: u32 = 10;

/// Why a request failed.
enum Failed {
    /// Asking again may help (the network, the server's 5xx).
    Retry(String),
    Final(FetchError),
}

enum BodyFailure {
    TooLarge,
    Read(String),
}

/// The answer's body, failing once more than `limit` bytes came; it
/// remembers why it failed, so that a failure of the network can be told
/// from one of what reads it.
struct Counted<R> {
    inner: R,
    count: u64,
    limit: u64,
    failed: Option<BodyFailure>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte more than the limit is asked for, to see whether more
        // comes.
        let room = self.limit.saturating_sub(self.count).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want]).inspect_err(|e| {
            self.failed = Some(BodyFailure::Read(e.to_string()));
        })?;
        self.count += n as u64;
        if self.count > self.limit {
            self.failed = Some(BodyFailure::TooLarge);
            return Err(std::io::Error::other("larger than the limit"));
        }
        Ok(n)
    }
}

impl Fetch for Network {
    fn get(
        &self,
        source: &str,
        r: &Resource,
        limit: Limit<'_>,
        consume: &mut Consume<'_>,
    ) -> Result<(), FetchError> {
        let scheme = url::parse(source).map(|u| u.scheme).unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return InlineOnly.get(source, r, limit, consume);
        }
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match self.once(source, r, limit, consume) {
                Ok(()) => return Ok(()),
                Err(Failed::Retry(why)) if attempt < self.tries => {
                    eprintln!(
                        "keel-firstboot: fetching {source}: {why}; retrying in {} ms",
                        delay.as_millis()
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                    attempt += 1;
                }
                Err(Failed::Retry(why)) => {
                    return Err(FetchError::Source {
                        url: source.to_string(),
                        reason: format!("{why} (after {attempt} tries)"),
                    })
                }
                Err(Failed::Final(e)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
