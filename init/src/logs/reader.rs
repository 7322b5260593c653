//! Reading unit logs back: the last lines across rotated files, and
//! following the log as it grows (`keelctl logs UNIT [-f] [-n N]`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use super::{file_name, resolve, LogError};

/// How often [`print`] looks for new lines when following.
pub const POLL: Duration = Duration::from_millis(200);
/// Bytes read per step when reading a file backwards or forwards.
const CHUNK: usize = 64 * 1024;

/// The last `n` lines of a unit's log, oldest first, across the rotated
/// files. `unit` may omit `.service` (`containerd` finds
/// `containerd.service.log` when there is no `containerd.log`).
pub fn tail(dir: &Path, unit: &str, n: usize) -> Result<Vec<String>, LogError> {
    let unit = resolve(dir, unit)?;
    let path = dir.join(file_name(&unit)?);
    let file = File::open(&path).map_err(LogError::io("opening", &path))?;
    let len = file_len(&file, &path)?;
    let lines = last_lines(dir, &unit, &path, &file, len, n)?;
    Ok(lines.iter().map(|l| to_text(l)).collect())
}

/// Prints the last `n` lines of a unit's log (as [`tail`]) to `out`, then,
/// if `follow`, keeps printing new lines as they are written, polling every
/// [`POLL`], until `stop()` returns true. Following survives rotation: when
/// `<unit>.log` is replaced (another inode) or shrinks, the rest of the old
/// file and any rotated file written after it are printed, then the new
/// file from its start.
pub fn print(
    dir: &Path,
    unit: &str,
    n: usize,
    follow: bool,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<(), LogError> {
    let unit = resolve(dir, unit)?;
    let path = dir.join(file_name(&unit)?);
    let file = File::open(&path).map_err(LogError::io("opening", &path))?;
    let len = file_len(&file, &path)?;
    for line in last_lines(dir, &unit, &path, &file, len, n)? {
        out.write_all(&line).map_err(LogError::Output)?;
        out.write_all(b"\n").map_err(LogError::Output)?;
    }
    out.flush().map_err(LogError::Output)?;
    if !follow {
        return Ok(());
    }
    let mut follower = Follower {
        dir: dir.to_path_buf(),
        unit,
        id: file_id(&file, &path)?,
        path,
        file,
        pos: len,
        partial: Vec::new(),
    };
    loop {
        follower.poll(out)?;
        out.flush().map_err(LogError::Output)?;
        if stop() {
            return Ok(());
        }
        thread::sleep(POLL);
    }
}

/// The last `n` lines of `current` (its first `len` bytes), preceded by
/// lines of the rotated files `<unit>.log.1`, `.2`, … as far as needed.
fn last_lines(
    dir: &Path,
    unit: &str,
    path: &Path,
    current: &File,
    len: u64,
    n: usize,
) -> Result<Vec<Vec<u8>>, LogError> {
    let mut lines = last_lines_of(current, len, n).map_err(LogError::io("reading", path))?;
    for (_, rotated) in rotated_files(dir, unit)? {
        if lines.len() >= n {
            break;
        }
        let file = match File::open(&rotated) {
            Ok(file) => file,
            // Rotated away while we were reading: nothing older to add.
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(LogError::io("opening", &rotated)(e)),
        };
        let len = file_len(&file, &rotated)?;
        let mut older = last_lines_of(&file, len, n - lines.len())
            .map_err(LogError::io("reading", &rotated))?;
        older.append(&mut lines);
        lines = older;
    }
    Ok(lines)
}

/// The last `n` lines in the first `len` bytes of `file`, reading it
/// backwards in chunks. A last line without `\n` counts as a line.
fn last_lines_of(file: &File, len: u64, n: usize) -> io::Result<Vec<Vec<u8>>> {
    if n == 0 || len == 0 {
        return Ok(Vec::new());
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = len;
    while pos > 0 {
        let step = CHUNK.min(usize::try_from(pos).unwrap_or(CHUNK));
        pos -= step as u64;
        let mut chunk = vec![0u8; step];
        file.read_exact_at(&mut chunk, pos)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        // n newlines inside the body: the last n lines are complete.
        if body.iter().filter(|b| **b == b'\n').count() >= n {
            break;
        }
    }
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let mut lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let skip = lines.len().saturating_sub(n);
    lines.drain(..skip);
    Ok(lines.into_iter().map(<[u8]>::to_vec).collect())
}

/// `(k, path)` of the files `<unit>.log.<k>` in `dir`, newest (k = 1) first.
fn rotated_files(dir: &Path, unit: &str) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let prefix = format!("{}.", file_name(unit)?);
    let entries = fs::read_dir(dir).map_err(LogError::io("listing", dir))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(LogError::io("listing", dir))?;
        let name = entry.file_name();
        let Some(k) = name
            .to_str()
            .and_then(|name| name.strip_prefix(&prefix))
            .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|k| k.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((k, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Device and inode: what tells a rotated-in file from the old one.
type FileId = (u64, u64);

fn file_id(file: &File, path: &Path) -> Result<FileId, LogError> {
    let m = file.metadata().map_err(LogError::io("reading", path))?;
    Ok((m.dev(), m.ino()))
}

fn file_len(file: &File, path: &Path) -> Result<u64, LogError> {
    Ok(file
        .metadata()
        .map_err(LogError::io("reading the size of", path))?
        .len())
}

fn to_text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// State of `print --follow`: the file being read and how far.
struct Follower {
    dir: PathBuf,
    unit: String,
    path: PathBuf,
    file: File,
    id: FileId,
    pos: u64,
    /// Bytes after the last `\n` read so far.
    partial: Vec<u8>,
}

impl Follower {
    /// Prints what was written since the last call, switching files when
    /// the log was rotated.
    fn poll(&mut self, out: &mut dyn Write) -> Result<(), LogError> {
        self.read_new(out)?;
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            // Between the rename and the new file: look again next time.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LogError::io("reading", &self.path)(e)),
        };
        if (meta.dev(), meta.ino()) == self.id {
            if meta.len() < self.pos {
                // Truncated in place: start over.
                self.pos = 0;
                self.partial.clear();
                self.read_new(out)?;
            }
            return Ok(());
        }
        // Rotated. Every write to the old file happened before its rename,
        // so reading it to the end now gets all of it. Rotated files newer
        // than the old one hold lines written between two polls; the old
        // one is found among them by its inode (which stays ours while we
        // hold it open, even once it is deleted).
        self.read_new(out)?;
        let rotated = rotated_files(&self.dir, &self.unit)?;
        let mut newer = Vec::new();
        for (_, path) in rotated {
            match fs::metadata(&path) {
                Ok(m) if (m.dev(), m.ino()) == self.id => break,
                Ok(_) => newer.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("reading", &path)(e)),
            }
        }
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LogError::io("opening", &self.path)(e)),
        };
        self.flush_partial(out)?;
        // Oldest first.
        for path in newer.iter().rev() {
            match File::open(path) {
                Ok(file) => self.switch(file, path, out)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("opening", path)(e)),
            }
        }
        let path = self.path.clone();
        self.switch(file, &path, out)
    }

    /// Continues with `file` (`path`) from its start.
    fn switch(&mut self, file: File, path: &Path, out: &mut dyn Write) -> Result<(), LogError> {
        self.id = file_id(&file, path)?;
        self.file = file;
        self.pos = 0;
        self.read_new_from(path, out)?;
        self.flush_partial(out)
    }

    fn read_new(&mut self, out: &mut dyn Write) -> Result<(), LogError> {
        let path = self.path.clone();
        self.read_new_from(&path, out)
    }

    /// Prints the complete lines between `pos` and the end of the file.
    fn read_new_from(&mut self, path: &Path, out: &mut dyn Write) -> Result<(), LogError> {
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = match self.file.read_at(&mut chunk, self.pos) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LogError::io("reading", path)(e)),
            };
            self.pos += n as u64;
            let data = &chunk[..n];
            match data.iter().rposition(|b| *b == b'\n') {
                Some(last) => {
                    out.write_all(&self.partial).map_err(LogError::Output)?;
                    out.write_all(&data[..=last]).map_err(LogError::Output)?;
                    self.partial.clear();
                    self.partial.extend_from_slice(&data[last + 1..]);
                }
                None => self.partial.extend_from_slice(data),
            }
        }
    }

    /// Prints a last line that had no `\n` (a file that ends mid-line).
    fn flush_partial(&mut self, out: &mut dyn Write) -> Result<(), LogError> {
        if !self.partial.is_empty() {
            out.write_all(&self.partial).map_err(LogError::Output)?;
            out.write_all(b"\n").map_err(LogError::Output)?;
            self.partial.clear();
        }
        Ok(())
    }
}
