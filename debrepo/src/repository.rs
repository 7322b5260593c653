//! Opening a repository: verified InRelease files and Packages indexes of one or more
//! sources, cached under a cache directory.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache::{self, Wanted};
use crate::net::{Client, NetMode};
use crate::openpgp::load_keys;
use crate::packages::{parse_packages, Package};
use crate::release::{verify_inrelease, Release};
use crate::sources::Source;
use crate::version::compare_versions;
use crate::Error;

/// The verified package indexes of one or more sources for one architecture.
pub struct Repository {
    pub(crate) arch: String,
    pub(crate) packages: Vec<Package>,
    /// Real packages by name, highest version first.
    pub(crate) by_name: HashMap<String, Vec<usize>>,
    /// Providers by virtual name: (package index, provided version).
    pub(crate) providers: HashMap<String, Vec<(usize, Option<String>)>>,
    pub(crate) client: Client,
    releases: Vec<(Source, Release)>,
}

impl Repository {
    /// Opens `sources` for `arch` (e.g. `amd64`), using and filling the cache dir.
    pub fn open(
        sources: &[Source],
        arch: &str,
        cache: &Path,
        mode: NetMode,
    ) -> Result<Self, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::open_at(sources, arch, cache, mode, now)
    }

    /// Like [`Repository::open`], checking signatures and Valid-Until at `now`
    /// (seconds since the epoch).
    pub fn open_at(
        sources: &[Source],
        arch: &str,
        cache: &Path,
        mode: NetMode,
        now: u64,
    ) -> Result<Self, Error> {
        let client = Client::new();
        let mut packages = Vec::new();
        let mut releases = Vec::new();
        for source in sources {
            let release = open_release(&client, source, cache, mode, now)?;
            for component in &source.components {
                let text = open_index(&client, source, &release, component, arch, cache, mode)?;
                let origin = format!(
                    "{}/dists/{}/{component}/binary-{arch}/Packages",
                    source.uri, source.suite
                );
                let pkgs = parse_packages(&text, &origin, &source.uri, &source.suite)?;
                packages.extend(
                    pkgs.into_iter()
                        .filter(|p| p.architecture == arch || p.architecture == "all"),
                );
            }
            releases.push((source.clone(), release));
        }
        let mut repo = Self::from_packages(packages, arch);
        repo.releases = releases;
        Ok(repo)
    }

    /// A repository over packages that are already known (for instance parsed with
    /// [`crate::parse_packages`]); duplicates (same name, version, architecture) are
    /// dropped, the first one wins.
    pub fn from_packages(mut packages: Vec<Package>, arch: &str) -> Self {
        let mut seen = HashSet::new();
        packages
            .retain(|p| seen.insert((p.name.clone(), p.version.clone(), p.architecture.clone())));
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<(usize, Option<String>)>> = HashMap::new();
        for (i, p) in packages.iter().enumerate() {
            by_name.entry(p.name.clone()).or_default().push(i);
            for prov in &p.provides {
                providers
                    .entry(prov.name.clone())
                    .or_default()
                    .push((i, prov.version.clone()));
            }
        }
        for list in by_name.values_mut() {
            list.sort_by(|a, b| compare_versions(&packages[*b].version, &packages[*a].version));
        }
        Repository {
            arch: arch.to_string(),
            packages,
            by_name,
            providers,
            client: Client::new(),
            releases: Vec::new(),
        }
    }

    /// All packages of all opened indexes.
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// The highest version of the real package `name`.
    pub fn find(&self, name: &str) -> Option<&Package> {
        self.by_name
            .get(name)
            .and_then(|v| v.first())
            .map(|i| &self.packages[*i])
    }

    /// The sources and their verified Release data.
    pub fn releases(&self) -> &[(Source, Release)] {
        &self.releases
    }

    /// The architecture the repository was opened for.
    pub fn arch(&self) -> &str {
        &self.arch
    }
}

fn cache_name(url: &str) -> String {
    url.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn open_release(
    client: &Client,
    source: &Source,
    cache: &Path,
    mode: NetMode,
    now: u64,
) -> Result<Release, Error> {
    let keys = load_keys(&source.keyrings)?;
    if keys.is_empty() {
        return Err(Error::EmptyKeyring {
            suite: source.suite.clone(),
        });
    }
    let url = format!("{}/dists/{}/InRelease", source.uri, source.suite);
    let cached = cache.join("inrelease").join(cache_name(&url));
    let from_cache = || -> Result<Release, Error> {
        let text = std::fs::read_to_string(&cached).map_err(|source| Error::Read {
            path: cached.clone(),
            source,
        })?;
        verify_inrelease(&text, &keys, &source.suite, &url, now)
    };
    if mode == NetMode::Offline {
        if !cached.is_file() {
            return Err(Error::NotCached {
                what: format!("InRelease of suite {}", source.suite),
                url,
                cache: cache.to_path_buf(),
            });
        }
        return from_cache();
    }
    match client.get(&url) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| Error::Signature {
                suite: source.suite.clone(),
                url: url.clone(),
                reason: "not UTF-8 text".to_string(),
            })?;
            let release = verify_inrelease(&text, &keys, &source.suite, &url, now)?;
            cache::write_atomic(&cached, text.as_bytes())?;
            Ok(release)
        }
        Err(e) if e.is_unreachable() && cached.is_file() => {
            let err = e.into_error(&url);
            log::warn!(
                "{err}; using the cached InRelease of suite {}",
                source.suite
            );
            from_cache()
        }
        Err(e) => Err(e.into_error(&url)),
    }
}

fn open_index(
    client: &Client,
    source: &Source,
    release: &Release,
    component: &str,
    arch: &str,
    cache: &Path,
    mode: NetMode,
) -> Result<String, Error> {
    let base = format!("{component}/binary-{arch}/Packages");
    let dist = format!("{}/dists/{}", source.uri, source.suite);
    let mut last_err = None;
    for ext in [".xz", ".gz", ""] {
        let rel = format!("{base}{ext}");
        let Some(entry) = release.sha256.get(&rel) else {
            continue;
        };
        let mut urls = Vec::new();
        if release.acquire_by_hash {
            urls.push(format!(
                "{dist}/{component}/binary-{arch}/by-hash/SHA256/{}",
                entry.sha256
            ));
        }
        urls.push(format!("{dist}/{rel}"));
        let what = format!("index {rel} of suite {}", source.suite);
        let want = Wanted {
            what: &what,
            urls: &urls,
            sha256: &entry.sha256,
            size: entry.size,
        };
        let path = match cache::ensure(
            client,
            &cache.join("index"),
            &entry.sha256,
            &want,
            mode,
            &|_| {},
        ) {
            Ok(p) => p,
            Err(e @ Error::HttpStatus { status: 404, .. }) => {
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        return decompress(&path, ext, &format!("{dist}/{rel}"));
    }
    Err(last_err.unwrap_or(Error::NotInRelease {
        suite: source.suite.clone(),
        file: base,
    }))
}

fn decompress(path: &Path, ext: &str, name: &str) -> Result<String, Error> {
    let data = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let derr = |message: String| Error::Decompress {
        file: name.to_string(),
        message,
    };
    let bytes = match ext {
        ".xz" => {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(&data[..]), &mut out)
                .map_err(|e| derr(e.to_string()))?;
            out
        }
        ".gz" => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&data[..])
                .read_to_end(&mut out)
                .map_err(|e| derr(e.to_string()))?;
            out
        }
        _ => data,
    };
    String::from_utf8(bytes).map_err(|_| derr("not UTF-8 text".to_string()))
}
