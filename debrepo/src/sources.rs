//! Mirror discovery from the apt configuration of a root directory:
//! `etc/apt/sources.list`, `etc/apt/sources.list.d/*.list` and `*.sources`.

use std::path::{Path, PathBuf};

use crate::deb822;
use crate::Error;

/// Where the OpenPGP keys that may sign a suite come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyring {
    /// A keyring file, binary (`.gpg`) or ASCII-armored (`.asc`).
    File(PathBuf),
    /// An ASCII-armored key block given inline (deb822 `Signed-By:`).
    Armored(String),
}

/// One suite of one mirror, with the keys trusted to sign it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Mirror base URI, e.g. `http://HOST/debian` (no trailing slash).
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    pub keyrings: Vec<Keyring>,
}

impl Source {
    /// A source given explicitly (command line or config override).
    pub fn new(uri: &str, suite: &str, components: &[&str], keyrings: Vec<Keyring>) -> Self {
        Source {
            uri: uri.trim_end_matches('/').to_string(),
            suite: suite.to_string(),
            components: components.iter().map(|c| c.to_string()).collect(),
            keyrings,
        }
    }
}

/// Keyrings apt uses when a source has no `Signed-By`, relative to `root`.
pub fn default_keyrings(root: &Path) -> Result<Vec<Keyring>, Error> {
    let mut out = Vec::new();
    let dir = root.join("etc/apt/trusted.gpg.d");
    for path in list_dir(&dir)? {
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("gpg" | "asc")
        ) {
            out.push(Keyring::File(path));
        }
    }
    for legacy in [
        "etc/apt/trusted.gpg",
        "usr/share/keyrings/debian-archive-keyring.gpg",
    ] {
        let p = root.join(legacy);
        if p.is_file() {
            out.push(Keyring::File(p));
        }
    }
    Ok(out)
}

/// The `deb` entries for `suites` configured under `root` (real use: `/`), in
/// configuration order, without duplicates.
pub fn apt_sources(root: &Path, suites: &[String]) -> Result<Vec<Source>, Error> {
    let mut all = Vec::new();
    let main = root.join("etc/apt/sources.list");
    if main.is_file() {
        all.extend(parse_one_line(&main, &read(&main)?, root)?);
    }
    for path in list_dir(&root.join("etc/apt/sources.list.d"))? {
        match path.extension().and_then(|e| e.to_str()) {
            Some("list") => all.extend(parse_one_line(&path, &read(&path)?, root)?),
            Some("sources") => all.extend(parse_deb822(&path, &read(&path)?, root)?),
            _ => {}
        }
    }
    let defaults = default_keyrings(root)?;
    let mut out: Vec<Source> = Vec::new();
    for mut s in all {
        if !suites.contains(&s.suite) {
            continue;
        }
        if s.keyrings.is_empty() {
            s.keyrings = defaults.clone();
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

fn signed_by(path: &Path, value: &str, root: &Path) -> Result<Vec<Keyring>, Error> {
    if value.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return Ok(vec![Keyring::Armored(value.to_string())]);
    }
    let mut out = Vec::new();
    for item in value
        .split([',', ' ', '\t', '\n'])
        .filter(|s| !s.is_empty())
    {
        if !item.starts_with('/') {
            return Err(Error::UnsupportedSignedBy {
                path: path.to_path_buf(),
                value: item.to_string(),
            });
        }
        out.push(Keyring::File(root.join(item.trim_start_matches('/'))));
    }
    Ok(out)
}

fn parse_one_line(path: &Path, text: &str, root: &Path) -> Result<Vec<Source>, Error> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let syntax = |message: String| Error::Syntax {
            path: path.display().to_string(),
            line: idx + 1,
            message,
        };
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (kind, mut rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        rest = rest.trim_start();
        let mut keyrings = Vec::new();
        if let Some(opts) = rest.strip_prefix('[') {
            let (opts, after) = opts
                .split_once(']')
                .ok_or_else(|| syntax("missing \"]\" after options".to_string()))?;
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    keyrings.extend(signed_by(path, v, root)?);
                }
            }
            rest = after.trim_start();
        }
        if kind != "deb" {
            continue;
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            return Err(syntax(
                "expected \"deb URI SUITE COMPONENT...\"".to_string(),
            ));
        };
        out.push(Source {
            uri: uri.trim_end_matches('/').to_string(),
            suite: suite.to_string(),
            components: words.map(str::to_string).collect(),
            keyrings,
        });
    }
    Ok(out)
}

fn parse_deb822(path: &Path, text: &str, root: &Path) -> Result<Vec<Source>, Error> {
    let paragraphs = deb822::parse(text).map_err(|e| Error::Syntax {
        path: path.display().to_string(),
        line: e.line,
        message: e.message,
    })?;
    let mut out = Vec::new();
    for p in paragraphs {
        let words = |f: &str| -> Vec<String> {
            p.get(f)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if p.get("Enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        if !words("Types").iter().any(|t| t == "deb") {
            continue;
        }
        let keyrings = match p.lines("Signed-By") {
            Some(lines) => signed_by(path, &lines.join("\n"), root)?,
            None => Vec::new(),
        };
        for uri in words("URIs") {
            for suite in words("Suites") {
                out.push(Source {
                    uri: uri.trim_end_matches('/').to_string(),
                    suite,
                    components: words("Components"),
                    keyrings: keyrings.clone(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn both_formats_signed_by_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/apt/sources.list",
            "# comment\ndeb [arch=amd64 signed-by=/k/one.gpg] http://m.invalid/debian/ stable main contrib # trailing\n\
             deb-src http://m.invalid/debian stable main\n\
             deb http://other.invalid/debian bookworm main\n",
        );
        write(
            root,
            "etc/apt/sources.list.d/a.sources",
            "Types: deb deb-src\n# c\nURIs: http://m.invalid/debian\nSuites: bookworm bookworm-updates\n\
             Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n\
             Types: deb\nURIs: http://sec.invalid/s\nSuites: bookworm-security\nComponents: main\n\
             Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----\n\n\
             Types: deb\nEnabled: no\nURIs: http://off.invalid\nSuites: bookworm\nComponents: main\n",
        );
        write(
            root,
            "etc/apt/sources.list.d/x.list.disabled",
            "deb http://no.invalid bookworm main\n",
        );
        write(root, "etc/apt/trusted.gpg.d/z.asc", "");
        write(root, "etc/apt/trusted.gpg.d/ignored.txt", "");
        let suites: Vec<String> = ["bookworm", "bookworm-security", "stable"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = apt_sources(root, &suites).unwrap();
        assert_eq!(s.len(), 4, "{s:#?}");
        assert_eq!(s[0].uri, "http://m.invalid/debian");
        assert_eq!(s[0].suite, "stable");
        assert_eq!(s[0].components, vec!["main", "contrib"]);
        assert_eq!(s[0].keyrings, vec![Keyring::File(root.join("k/one.gpg"))]);
        assert_eq!(s[1].uri, "http://other.invalid/debian");
        assert_eq!(
            s[1].keyrings,
            vec![Keyring::File(root.join("etc/apt/trusted.gpg.d/z.asc"))]
        );
        assert_eq!(s[2].suite, "bookworm");
        assert_eq!(
            s[2].keyrings,
            vec![Keyring::File(root.join("usr/share/keyrings/k.gpg"))]
        );
        assert_eq!(s[3].suite, "bookworm-security");
        match &s[3].keyrings[..] {
            [Keyring::Armored(k)] => {
                assert!(
                    k.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n"),
                    "{k}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_line_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "etc/apt/sources.list",
            "\ndeb http://only-uri\n",
        );
        let e = apt_sources(dir.path(), &["x".to_string()]).unwrap_err();
        assert!(e.to_string().contains("sources.list line 2"), "{e}");
    }
}
