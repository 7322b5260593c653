//! Parallel download of .deb files into the content-addressed cache
//! `<cache>/debs/<sha256>.deb`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cache::{self, Wanted};
use crate::net::NetMode;
use crate::packages::Package;
use crate::repository::Repository;
use crate::Error;

/// Number of parallel downloads.
const WORKERS: usize = 4;

impl Repository {
    /// Makes sure every package of `pkgs` is in `<cache>/debs/` with the size and
    /// SHA-256 its index lists, downloading what is missing (never in Offline mode).
    /// Returns the paths in the order of `pkgs`.
    pub fn fetch(
        &self,
        pkgs: &[Package],
        cache: &Path,
        mode: NetMode,
    ) -> Result<Vec<PathBuf>, Error> {
        let dir = cache.join("debs");
        let total: u64 = pkgs.iter().map(|p| p.size).sum();
        let bar = if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message("fetching");
            b
        } else {
            ProgressBar::hidden()
        };
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Mutex<Option<Result<PathBuf, Error>>>> =
            pkgs.iter().map(|_| Mutex::new(None)).collect();
        let work = || loop {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(pkg) = pkgs.get(i) else { return };
            let urls = [pkg.url()];
            let what = format!("package {} {}", pkg.name, pkg.version);
            let want = Wanted {
                what: &what,
                urls: &urls,
                sha256: &pkg.sha256,
                size: pkg.size,
            };
            let name = format!("{}.deb", pkg.sha256);
            let r = cache::ensure(&self.client, &dir, &name, &want, mode, &|n| bar.inc(n));
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            if let Ok(mut slot) = results[i].lock() {
                *slot = Some(r);
            }
        };
        std::thread::scope(|s| -> Result<(), Error> {
            let mut handles = Vec::new();
            for n in 0..WORKERS.min(pkgs.len()) {
                let h = std::thread::Builder::new()
                    .name(format!("fetch-{n}"))
                    .spawn_scoped(s, work)
                    .map_err(Error::Thread)?;
                handles.push(h);
            }
            for h in handles {
                if let Err(panic) = h.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        let mut out = Vec::with_capacity(pkgs.len());
        let mut missing = None;
        for (slot, pkg) in results.into_iter().zip(pkgs) {
            match slot.into_inner().ok().flatten() {
                Some(Ok(p)) => out.push(p),
                Some(Err(e)) => return Err(e),
                None => {
                    missing.get_or_insert(pkg.name.clone());
                }
            }
        }
        match missing {
            // only reachable if a worker stopped early, which happens after an error
            Some(name) => Err(Error::Fetch {
                url: name,
                message: "download was not attempted".to_string(),
            }),
            None => Ok(out),
        }
    }
}
