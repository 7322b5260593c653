//! Downloads over http://, https:// and file:// with timeouts and bounded retries.

use std::io::{Read, Write};
use std::time::Duration;

/// How many times a download is tried before giving up.
const TRIES: u32 = 3;
/// Pause before the first retry; doubles on every further retry.
const BACKOFF: Duration = Duration::from_millis(500);

/// Whether the network may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetMode {
    /// Fetch what is missing; if a mirror is unreachable, fall back to cached
    /// InRelease files (re-verified) with a warning.
    #[default]
    Online,
    /// Use only the cache; anything missing is an error.
    Offline,
}

/// A failed download.
#[derive(Debug)]
pub(crate) enum NetError {
    /// The server answered with this status; final for 4xx.
    Status(u16),
    /// Connection, TLS, timeout or transfer problem.
    Transport(String),
    /// Writing the download locally failed; not retried.
    Local(String),
}

impl NetError {
    /// Whether the mirror could not be reached or failed on its side (a 4xx answer
    /// is a definite "no", everything else may be transient).
    pub(crate) fn is_unreachable(&self) -> bool {
        match self {
            NetError::Status(s) => *s >= 500,
            NetError::Transport(_) => true,
            NetError::Local(_) => false,
        }
    }

    pub(crate) fn into_error(self, url: &str) -> crate::Error {
        match self {
            NetError::Status(status) => crate::Error::HttpStatus {
                url: url.to_string(),
                status,
            },
            NetError::Transport(message) | NetError::Local(message) => crate::Error::Fetch {
                url: url.to_string(),
                message,
            },
        }
    }
}

/// An HTTP client shared by all downloads of a repository.
#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new() -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("keel-debrepo/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { agent }
    }

    /// Streams `url` into `out`, retrying transient failures. `out` is rewound by
    /// `reset` before each retry. `progress` gets the number of bytes of each chunk.
    pub(crate) fn download(
        &self,
        url: &str,
        out: &mut dyn Write,
        reset: &mut dyn FnMut() -> std::io::Result<()>,
        progress: &dyn Fn(u64),
    ) -> Result<(), NetError> {
        let mut delay = BACKOFF;
        let mut attempt = 1;
        loop {
            let result = self.try_once(url, out, progress);
            match result {
                Err(e) if e.is_unreachable() && attempt < TRIES => {
                    log::debug!("fetching {url} failed ({e:?}), retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                    reset().map_err(|e| NetError::Local(format!("rewinding output: {e}")))?;
                }
                other => return other,
            }
        }
    }

    /// Downloads `url` into memory.
    pub(crate) fn get(&self, url: &str) -> Result<Vec<u8>, NetError> {
        let buf = std::cell::RefCell::new(Vec::new());
        let mut sink = RefWriter(&buf);
        let mut reset = || {
            buf.borrow_mut().clear();
            Ok(())
        };
        self.download(url, &mut sink, &mut reset, &|_| {})?;
        Ok(buf.into_inner())
    }

    fn try_once(
        &self,
        url: &str,
        out: &mut dyn Write,
        progress: &dyn Fn(u64),
    ) -> Result<(), NetError> {
        let mut reader: Box<dyn Read> = if let Some(path) = url.strip_prefix("file://") {
            match std::fs::File::open(path) {
                Ok(f) => Box::new(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(NetError::Status(404))
                }
                Err(e) => return Err(NetError::Transport(format!("{path}: {e}"))),
            }
        } else if url.starts_with("http://") || url.starts_with("https://") {
            match self.agent.get(url).call() {
                Ok(resp) => Box::new(resp.into_body().into_reader()),
                Err(ureq::Error::StatusCode(s)) => return Err(NetError::Status(s)),
                Err(e) => return Err(NetError::Transport(e.to_string())),
            }
        } else {
            return Err(NetError::Transport("unsupported URL scheme".to_string()));
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NetError::Transport(e.to_string())),
            };
            out.write_all(&buf[..n])
                .map_err(|e| NetError::Local(format!("writing download: {e}")))?;
            progress(n as u64);
        }
    }
}

struct RefWriter<'a>(&'a std::cell::RefCell<Vec<u8>>);

impl Write for RefWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
