//! Fetched contents between fetching and writing, bounded.
//!
//! Every resource is fetched (and decompressed, and its hash checked)
//! before the first write, so the contents have to be kept somewhere
//! until then. A [`Budget`] keeps them: small contents in memory (at most
//! [`MEMORY`] bytes in all), the rest in one anonymous spool file
//! (`O_TMPFILE`: it has no name and vanishes with the process) on the
//! target's file system. The budget is also the bound on what a config
//! may bring in: at most [`MAX_TOTAL`] bytes in all, and at most half the
//! free space of the spool's file system (the spool and the written copy
//! must both fit), whichever is less; a resource that would go past it
//! (a decompression bomb, say) is an error naming the limit.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What all the resources of one config may add up to, at most.
pub const MAX_TOTAL: u64 = 4 << 30;
/// How much of the contents is kept in memory, at most; the rest is
/// spooled.
pub const MEMORY: u64 = 16 << 20;
/// Contents longer than this go to the spool even while memory is left.
const MEMORY_EACH: usize = 1 << 20;
/// Where the spool is made, inside the root, the first that works: on a
/// node `/` is read-only and `/var` is where the written files go too.
const SPOOL_DIRS: [&str; 3] = ["/var/tmp", "/var", "/"];

/// One resource's bytes, in memory or in the spool.
#[derive(Debug, Clone)]
pub struct Contents(Repr);

#[derive(Debug, Clone)]
enum Repr {
    Memory(Vec<u8>),
    Spooled {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

impl Contents {
    /// Contents kept in memory.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self(Repr::Memory(bytes))
    }

    pub fn len(&self) -> u64 {
        match &self.0 {
            Repr::Memory(v) => v.len() as u64,
            Repr::Spooled { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the contents to `out` (they can be written any number of
    /// times).
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        match &self.0 {
            Repr::Memory(v) => out.write_all(v),
            Repr::Spooled { file, offset, len } => {
                let mut buf = vec![0u8; 1 << 16];
                let mut done = 0u64;
                while done < *len {
                    let want =
                        usize::try_from((*len - done).min(buf.len() as u64)).unwrap_or(buf.len());
                    let n = file.read_at(&mut buf[..want], offset + done)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the spool file is shorter than what was kept in it",
                        ));
                    }
                    out.write_all(&buf[..n])?;
                    done += n as u64;
                }
                Ok(())
            }
        }
    }

    /// The contents as bytes in memory.
    pub fn into_vec(self) -> io::Result<Vec<u8>> {
        match self.0 {
            Repr::Memory(v) => Ok(v),
            Repr::Spooled { .. } => {
                let mut out = Vec::new();
                self.write_to(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// The spool: one anonymous file, appended to.
#[derive(Debug)]
struct Spool {
    file: Arc<File>,
    dir: PathBuf,
    end: u64,
}

/// Where fetched contents are kept, and how much may come in; see the
/// module documentation.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    /// Why the limit is what it is (for the error).
    why: String,
    used: u64,
    memory: u64,
    spool: Option<Spool>,
}

/// Bytes in a form people read: `1048576 bytes (1.0 MiB)`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = "";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit.is_empty() {
        format!("{bytes} bytes")
    } else {
        format!("{bytes} bytes ({v:.1} {unit})")
    }
}

/// An anonymous file in `dir` (which must be a real directory): with
/// `O_TMPFILE` where the file system has it, else a new name unlinked at
/// once.
fn anonymous(dir: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    match rustix::fs::open(dir, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::ISDIR => {
            let name = dir.join(format!(
                ".keel-firstboot-spool-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            let f = keel_core::beneath::create_new(&name, 0o600)?;
            std::fs::remove_file(&name)?;
            Ok(f)
        }
        Err(e) => Err(e.into()),
    }
}

impl Budget {
    /// Contents in memory only, at most `limit` bytes in all (configs and
    /// certificates, which are parsed in memory anyway).
    pub fn memory(limit: u64, why: &str) -> Self {
        Self {
            limit,
            why: why.to_string(),
            used: 0,
            memory: 0,
            spool: None,
        }
    }

    /// The budget for applying to `root`: the spool in the first of
    /// [`SPOOL_DIRS`] below `root` (resolved inside it) where an anonymous
    /// file can be made, the limit from its file system's free space and
    /// `cap` ([`MAX_TOTAL`] unless the caller was told otherwise). Without
    /// such a directory, memory only, at most [`MEMORY`] bytes.
    pub fn for_root(root: &Path, cap: u64) -> Self {
        let mut why_not = Vec::new();
        for d in SPOOL_DIRS {
            let dir = match keel_core::beneath::resolve(root, Path::new(d)) {
                Ok(Some(p)) if p.is_dir() => p,
                Ok(_) => continue,
                Err(e) => {
                    why_not.push(format!("{d}: {e}"));
                    continue;
                }
            };
            let made = anonymous(&dir).and_then(|f| {
                let st = rustix::fs::fstatvfs(&f)?;
                Ok((f, st.f_bavail.saturating_mul(st.f_frsize)))
            });
            match made {
                Ok((file, free)) => {
                    let (limit, why) = if free / 2 < cap {
                        (
                            free / 2,
                            format!(
                                "half the free space of the file system holding {} ({} free)",
                                dir.display(),
                                human(free)
                            ),
                        )
                    } else {
                        let why = if cap == MAX_TOTAL {
                            "Keel's limit for the contents of one config"
                        } else {
                            "the limit given for this apply"
                        };
                        (cap, why.to_string())
                    };
                    return Self {
                        limit,
                        why,
                        used: 0,
                        memory: 0,
                        spool: Some(Spool {
                            file: Arc::new(file),
                            dir,
                            end: 0,
                        }),
                    };
                }
                Err(e) => why_not.push(format!("{}: {e}", dir.display())),
            }
        }
        Self::memory(
            MEMORY.min(cap),
            &format!(
                "kept in memory: no spool file could be made below {} ({})",
                root.display(),
                why_not.join("; ")
            ),
        )
    }

    /// What may still come in.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// The limit, and why it is what it is.
    pub fn limit(&self) -> (u64, &str) {
        (self.limit, &self.why)
    }

    /// Where the spool is, if there is one.
    pub fn spool_dir(&self) -> Option<&Path> {
        self.spool.as_ref().map(|s| s.dir.as_path())
    }

    /// A collector for one resource's bytes.
    pub fn collect(&mut self) -> Collector<'_> {
        let start = self.spool.as_ref().map_or(0, |s| s.end);
        Collector {
            budget: self,
            mem: Vec::new(),
            spooled: 0,
            start,
            total: 0,
        }
    }
}

/// One resource's bytes on their way into the [`Budget`]; dropped without
/// [`Collector::finish`], it takes back nothing it kept but spool space,
/// which the next collector reuses.
pub struct Collector<'b> {
    budget: &'b mut Budget,
    mem: Vec<u8>,
    /// Bytes written to the spool from `start`.
    spooled: u64,
    start: u64,
    total: u64,
}

/// Why a collector took no more.
#[derive(Debug)]
pub enum Refused {
    /// The budget's limit would be passed.
    Limit {
        limit: u64,
        why: String,
    },
    Io(io::Error),
}

impl Collector<'_> {
    /// Takes `data`, or refuses it (the limit, or the spool failed).
    pub fn push(&mut self, data: &[u8]) -> Result<(), Refused> {
        let total = self.total + data.len() as u64;
        if total > self.budget.remaining() {
            return Err(Refused::Limit {
                limit: self.budget.limit,
                why: self.budget.why.clone(),
            });
        }
        self.total = total;
        let in_memory = self.budget.memory + self.mem.len() as u64 + data.len() as u64;
        let spool = match &self.budget.spool {
            Some(s) if self.spooled > 0 || self.mem.len() + data.len() > MEMORY_EACH => s,
            Some(s) if in_memory > MEMORY => s,
            _ => {
                self.mem.extend_from_slice(data);
                return Ok(());
            }
        };
        let mem = std::mem::take(&mut self.mem);
        for chunk in [mem.as_slice(), data] {
            spool
                .file
                .write_all_at(chunk, self.start + self.spooled)
                .map_err(Refused::Io)?;
            self.spooled += chunk.len() as u64;
        }
        Ok(())
    }

    /// The bytes taken, now kept.
    pub fn finish(self) -> Contents {
        let Collector {
            budget,
            mem,
            spooled,
            start,
            total,
        } = self;
        budget.used += total;
        match &mut budget.spool {
            Some(s) if spooled > 0 => {
                s.end = start + spooled;
                Contents(Repr::Spooled {
                    file: s.file.clone(),
                    offset: start,
                    len: spooled,
                })
            }
            _ => {
                budget.memory += mem.len() as u64;
                Contents(Repr::Memory(mem))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(c: &Contents) -> Vec<u8> {
        let mut out = Vec::new();
        c.write_to(&mut out).unwrap();
        out
    }

    #[test]
    fn small_contents_stay_in_memory_large_ones_are_spooled() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/tmp")).unwrap();
        let mut b = Budget::for_root(root.path(), MAX_TOTAL);
        assert_eq!(
            b.spool_dir().unwrap(),
            root.path().join("var/tmp").as_path()
        );
        let mut c = b.collect();
        c.push(b"small").unwrap();
        let small = c.finish();
        assert!(matches!(small.0, Repr::Memory(_)));
        let big: Vec<u8> = (0..3 * MEMORY_EACH).map(|i| (i % 251) as u8).collect();
        let mut c = b.collect();
        for part in big.chunks(4096) {
            c.push(part).unwrap();
        }
        let spooled = c.finish();
        assert!(matches!(spooled.0, Repr::Spooled { .. }));
        // A second spooled resource goes after the first.
        let mut c = b.collect();
        c.push(&big[..2 * MEMORY_EACH]).unwrap();
        let second = c.finish();
        assert_eq!(bytes(&small), b"small");
        assert_eq!(bytes(&spooled), big);
        assert_eq!(bytes(&second), &big[..2 * MEMORY_EACH]);
        // Nothing was left with a name in the root.
        assert_eq!(
            std::fs::read_dir(root.path().join("var/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn the_limit_counts_every_resource_and_names_itself() {
        let mut b = Budget::memory(10, "a test limit");
        let mut c = b.collect();
        c.push(b"123456").unwrap();
        c.finish();
        let mut c = b.collect();
        match c.push(b"12345") {
            Err(Refused::Limit { limit, why }) => {
                assert_eq!((limit, why.as_str()), (10, "a test limit"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.remaining(), 4);
        assert_eq!(human(1 << 20), "1048576 bytes (1.0 MiB)");
        assert_eq!(human(1000), "1000 bytes");
    }

    #[test]
    fn a_root_without_a_writable_directory_keeps_contents_in_memory() {
        let root = tempfile::tempdir().unwrap();
        let gone = root.path().join("missing");
        let b = Budget::for_root(&gone, MAX_TOTAL);
        assert!(b.spool_dir().is_none());
        assert_eq!(b.limit().0, MEMORY);
    }
}
