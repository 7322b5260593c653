//! Copying a process's output pipe into its unit's log, line by line.

use std::io::{self, Read};
use std::sync::{Arc, PoisonError};
use std::thread::{self, JoinHandle};

use super::{Echo, UnitLog};

/// Longest line written as one; longer output is split into pieces of at
/// most this many bytes (at a UTF-8 character boundary when there is one).
pub const MAX_LINE: usize = 8 * 1024;
const STACK_SIZE: usize = 64 * 1024;
const READ_SIZE: usize = 8 * 1024;

/// Spawns a thread (64 KiB stack, named `log-<unit>`) that reads `from`
/// until EOF and writes every line with `log.line(Some(pid), ..)` and, when
/// `echo` is given, `<ident>: <text>\n` to it.
///
/// Lines: a final partial line is written at EOF; lines longer than
/// [`MAX_LINE`] bytes are split; invalid UTF-8 is replaced lossily (U+FFFD);
/// a trailing `\r` is dropped. A failed log write does not stop the thread
/// (the pipe must keep draining or the service blocks); a read error ends it
/// after noting the error in the log.
pub fn pump(
    from: impl Read + Send + 'static,
    log: Arc<UnitLog>,
    pid: u32,
    echo: Echo,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("log-{}", log.unit()))
        .stack_size(STACK_SIZE)
        .spawn(move || run(from, &log, pid, &echo))
}

fn run(mut from: impl Read, log: &UnitLog, pid: u32, echo: &Echo) {
    let ident = log.ident(Some(pid));
    let mut emit = |raw: &[u8]| {
        let text = String::from_utf8_lossy(raw);
        // Nowhere to report a failed log write but the log itself.
        let _ = log.line(Some(pid), &text);
        if let Some(echo) = echo {
            let mut out = echo.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = out.write_all(format!("{ident}: {text}\n").as_bytes());
            let _ = out.flush();
        }
    };
    let mut splitter = Splitter::default();
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => splitter.push(&buf[..n], &mut emit),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                splitter.finish(&mut emit);
                let _ = log.line(None, &format!("reading the output of pid {pid}: {e}"));
                return;
            }
        }
    }
    splitter.finish(&mut emit);
}

/// Splits a byte stream into lines (see [`pump`]).
#[derive(Debug, Default)]
pub(super) struct Splitter {
    pending: Vec<u8>,
}

impl Splitter {
    /// Adds `data` and emits every complete line (and every piece of
    /// [`MAX_LINE`] bytes of an overlong one).
    pub(super) fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(nl) if strip_cr(&rest[..nl]).len() <= MAX_LINE => {
                    emit(strip_cr(&rest[..nl]));
                    start += nl + 1;
                }
                _ if rest.len() > MAX_LINE => {
                    let cut = char_boundary(rest, MAX_LINE);
                    emit(&rest[..cut]);
                    start += cut;
                }
                _ => break,
            }
        }
        self.pending.drain(..start);
    }

    /// Emits what is left as the last line, if anything.
    pub(super) fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(strip_cr(&self.pending));
            self.pending.clear();
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The largest cut ≤ `max` that does not split a UTF-8 sequence of `bytes`
/// (`max` itself when there is no sequence to keep whole, e.g. in binary
/// output). `bytes` is longer than `max`.
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    let mut cut = max;
    // A UTF-8 sequence is at most 4 bytes: its start is at most 3 back.
    while cut > max.saturating_sub(3) && is_continuation(bytes[cut]) {
        cut -= 1;
    }
    if cut == 0 || is_continuation(bytes[cut]) {
        max
    } else {
        cut
    }
}
