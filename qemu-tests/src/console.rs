//! Captured output of QEMU (the serial console, or QEMU's own stderr): a reader
//! thread appends every chunk to a log file and to an in-memory buffer that waits
//! can search; a condition variable wakes waiters on new output and on EOF.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

/// How many lines of output error messages quote.
pub(crate) const TAIL_LINES: usize = 40;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The writer (QEMU) closed its end: no more output until the next start.
    closed: bool,
}

/// The searchable output of one stream of one guest, across QEMU restarts.
#[derive(Default)]
pub(crate) struct Console {
    state: Mutex<State>,
    changed: Condvar,
}

/// Outcome of [`Console::wait_until`].
pub(crate) enum Wait<T> {
    Found(T),
    Closed,
    TimedOut,
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another thread while holding the lock cannot leave the
        // buffer inconsistent (only appends happen under it), so ignore poison.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a thread that copies `reader` into the buffer and into `log`
    /// until EOF, then marks the console closed.
    pub(crate) fn spawn_reader<R: Read + Send + 'static>(
        self: &Arc<Self>,
        mut reader: R,
        mut log: File,
    ) -> JoinHandle<()> {
        self.lock().closed = false;
        let console = Arc::clone(self);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        // The log is a debugging aid; a full disk must not stop
                        // the guest's output from reaching the waiters.
                        let _ = log.write_all(&chunk[..n]);
                        console.append(&chunk[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = log.flush();
            console.lock().closed = true;
            console.changed.notify_all();
        })
    }

    /// Add bytes as if the guest had written them (used for harness notes).
    pub(crate) fn append(&self, bytes: &[u8]) {
        self.lock().buf.extend_from_slice(bytes);
        self.changed.notify_all();
    }

    /// Number of bytes captured so far; an offset for [`Console::wait_until`].
    pub(crate) fn len(&self) -> usize {
        self.lock().buf.len()
    }

    /// Everything captured, invalid UTF-8 replaced.
    pub(crate) fn contents(&self) -> String {
        String::from_utf8_lossy(&self.lock().buf).into_owned()
    }

    /// The last `n` lines, cleaned of terminal control sequences.
    pub(crate) fn tail(&self, n: usize) -> String {
        let text = clean_for_display(&self.lock().buf);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Call `check` on the whole buffer now and after each new chunk until it
    /// returns `Some`, the writer closes, or `deadline` passes.
    pub(crate) fn wait_until<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&[u8]) -> Option<T>,
    ) -> Wait<T> {
        let mut state = self.lock();
        loop {
            if let Some(found) = check(&state.buf) {
                return Wait::Found(found);
            }
            if state.closed {
                return Wait::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wait::TimedOut;
            }
            state = match self.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Position of the first `needle` in `hay` at or after `from`.
pub(crate) fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from.min(hay.len()));
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Most kernel console messages one match may step over.
const MAX_KERNEL_LINES: usize = 3;

/// If a kernel console message (`[   12.345678] …`, up to and including
/// its newline) starts at byte `i`, where it ends.
fn kernel_message_at(hay: &[u8], i: usize) -> Option<usize> {
    let rest = hay.get(i..)?;
    if rest.first() != Some(&b'[') {
        return None;
    }
    let close = rest.iter().position(|&b| b == b']')?;
    let stamp: Vec<u8> = rest[1..close]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .collect();
    let (secs, frac) = stamp.split_at(stamp.iter().position(|&b| b == b'.')?);
    let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
    if !digits(secs) || !digits(&frac[1..]) {
        return None;
    }
    let nl = rest.iter().position(|&b| b == b'\n')?;
    Some(i + nl + 1)
}

/// Where `needle` matches at `start`, stepping over kernel messages the
/// kernel printed into the middle of it; the end of the match.
fn match_at(hay: &[u8], needle: &[u8], start: usize) -> Option<usize> {
    let (mut i, mut j, mut skipped) = (start, 0, 0);
    while j < needle.len() {
        let b = *hay.get(i)?;
        if b == needle[j] {
            i += 1;
            j += 1;
        } else if let Some(after) = (j > 0 && skipped < MAX_KERNEL_LINES)
            .then(|| kernel_message_at(hay, i))
            .flatten()
        {
            i = after;
            skipped += 1;
        } else {
            return None;
        }
    }
    Some(i)
}

/// The first `needle` at or after `from`, as [`find`], but also where the
/// kernel's console messages cut into the middle of it (the guest's
/// programs and the kernel share the serial console, and a line such as
/// `keel-init: unmounted /var` can arrive as `keel-init: unmounted [
/// 27.54] kvm: exiting hardware virtualization\n/var`). Returns the
/// match's start and end.
pub(crate) fn find_text(hay: &[u8], needle: &[u8], from: usize) -> Option<(usize, usize)> {
    let first = *needle.first()?;
    let mut s = from;
    while s < hay.len() {
        let start = s + hay[s..].iter().position(|&b| b == first)?;
        if let Some(end) = match_at(hay, needle, start) {
            return Some((start, end));
        }
        s = start + 1;
    }
    None
}

/// Where a later search for a `needle_len`-byte needle must start so that
/// no match still arriving is missed: the start of the line holding the
/// last `needle_len` bytes, or earlier by the lines a match may step over.
pub(crate) fn rescan_from(hay: &[u8], needle_len: usize) -> usize {
    let mut at = hay.len().saturating_sub(needle_len);
    for _ in 0..=MAX_KERNEL_LINES {
        match hay[..at].iter().rposition(|&b| b == b'\n') {
            Some(nl) => at = nl,
            None => return 0,
        }
    }
    at + 1
}

/// The line around byte `at`: from after the previous `\n` to before the next
/// one (or the end of what has arrived), without `\r`.
pub(crate) fn line_around(hay: &[u8], at: usize) -> String {
    let start = hay[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let end = hay[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(hay.len(), |p| p + at);
    clean_for_display(&hay[start..end])
}

/// Text as a person would read it on a terminal: drop `\r`, ANSI escape
/// sequences (CSI and two-byte ESC sequences) and other control bytes except
/// newline and tab.
pub(crate) fn clean_for_display(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0x1b => {
                i += 1;
                match bytes.get(i) {
                    Some(b'[') => {
                        i += 1;
                        // Parameters and intermediates, then one final byte.
                        while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                            i += 1;
                        }
                        i += 1;
                    }
                    Some(b'(' | b')') => i += 2,
                    Some(_) => i += 1,
                    None => {}
                }
            }
            b'\n' | b'\t' => {
                out.push(bytes[i]);
                i += 1;
            }
            b if b < 0x20 || b == 0x7f => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_respects_offset() {
        let hay = b"login: x\nlogin: y\n";
        assert_eq!(find(hay, b"login", 0), Some(0));
        assert_eq!(find(hay, b"login", 1), Some(9));
        assert_eq!(find(hay, b"login", 10), None);
        assert_eq!(find(hay, b"login", 100), None);
    }

    #[test]
    fn find_text_steps_over_kernel_messages_cutting_in() {
        let hay = b"x\nkeel-init: unmounted [   27.547983] kvm: exiting hardware virtualization\r\n/var\nnext";
        let (start, end) = find_text(hay, b"keel-init: unmounted /var", 0).unwrap();
        assert_eq!(start, 2);
        assert_eq!(&hay[end..], b"\nnext");
        // A plain match, and a bracket that is not a kernel timestamp.
        assert_eq!(find_text(b"ab cd", b"cd", 0), Some((3, 5)));
        assert_eq!(find_text(b"un[x] y\nmounted", b"unmounted", 0), None);
        // An incomplete kernel line is not stepped over yet.
        assert_eq!(find_text(b"un[ 1.5] half", b"unmounted", 0), None);
        assert_eq!(find_text(b"abc", b"", 0), None);
        // A later search starts early enough for a match still arriving.
        let partial = b"one\ntwo\nkeel-init: unmounted [ 1.0] msg";
        let from = rescan_from(partial, 9);
        assert!(from <= 8, "{from}");
        let mut full = partial.to_vec();
        full.extend_from_slice(b"\n/var");
        assert_eq!(
            find_text(&full, b"keel-init: unmounted /var", from).map(|m| m.0),
            Some(8)
        );
    }

    #[test]
    fn line_around_strips_cr_and_stops_at_newline() {
        let hay = b"first\r\nKeel booted ok\r\nnext";
        let at = find(hay, b"booted", 0).unwrap();
        assert_eq!(line_around(hay, at), "Keel booted ok");
        let at = find(hay, b"nex", 0).unwrap();
        assert_eq!(line_around(hay, at), "next");
    }

    #[test]
    fn clean_removes_escape_sequences() {
        let raw = b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[0m\x1b(BBdsDxe: loading\r\n\x07ok\n";
        assert_eq!(clean_for_display(raw), "BdsDxe: loading\nok\n");
    }

    #[test]
    fn waits_end_on_close_and_on_match() {
        let console = Arc::new(Console::default());
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = File::create(dir.path().join("log")).unwrap();
        let reader = console.spawn_reader(rx, log);
        tx.write_all(b"hello\r\nworld").unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        match console.wait_until(deadline, |b| find(b, b"world", 0)) {
            Wait::Found(at) => assert_eq!(at, 7),
            _ => panic!("world not found"),
        }
        drop(tx);
        assert!(matches!(
            console.wait_until(deadline, |b| find(b, b"never", 0)),
            Wait::Closed
        ));
        reader.join().unwrap();
        let logged = std::fs::read(dir.path().join("log")).unwrap();
        assert_eq!(logged, b"hello\r\nworld");
    }
}
