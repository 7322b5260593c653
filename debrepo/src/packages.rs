//! Binary package records from a `Packages` index.

use crate::deb822;
use crate::deps::{parse_depends, parse_provides, DepGroup, Provide};
use crate::Error;

/// The Multi-Arch field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiArch {
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

/// One binary package as listed in a Packages index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Path of the .deb relative to the mirror URI.
    pub filename: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the .deb.
    pub sha256: String,
    pub depends: Vec<DepGroup>,
    pub pre_depends: Vec<DepGroup>,
    pub provides: Vec<Provide>,
    pub essential: bool,
    pub priority: Option<String>,
    pub multi_arch: MultiArch,
    /// Source package name (defaults to the binary name, version suffix dropped).
    pub source: String,
    /// Mirror URI the package comes from (no trailing slash).
    pub mirror: String,
    /// Suite of the index the package was found in.
    pub suite: String,
}

impl Package {
    /// Full download URL of the .deb.
    pub fn url(&self) -> String {
        format!("{}/{}", self.mirror, self.filename)
    }
}

/// Parses a Packages index. `origin` names the file in error messages.
pub fn parse_packages(
    text: &str,
    origin: &str,
    mirror: &str,
    suite: &str,
) -> Result<Vec<Package>, Error> {
    let syntax = |line: usize, message: String| Error::Syntax {
        path: origin.to_string(),
        line,
        message,
    };
    let paragraphs = deb822::parse(text).map_err(|e| syntax(e.line, e.message))?;
    let mut out = Vec::with_capacity(paragraphs.len());
    for p in paragraphs {
        let req = |field: &str| {
            p.get(field)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| syntax(p.line, format!("missing field {field}")))
        };
        let name = req("Package")?;
        let deps = |field: &str| -> Result<Vec<DepGroup>, Error> {
            match p.get(field) {
                Some(v) => parse_depends(v)
                    .map_err(|m| syntax(p.line, format!("package {name}, field {field}: {m}"))),
                None => Ok(Vec::new()),
            }
        };
        let size = req("Size")?;
        let size = size
            .parse()
            .map_err(|_| syntax(p.line, format!("package {name}: invalid Size {size:?}")))?;
        let sha256 = req("SHA256")?.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(syntax(p.line, format!("package {name}: invalid SHA256")));
        }
        let multi_arch = match p.get("Multi-Arch") {
            None | Some("no") => MultiArch::No,
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            Some(other) => {
                return Err(syntax(
                    p.line,
                    format!("package {name}: invalid Multi-Arch {other:?}"),
                ))
            }
        };
        let provides = match p.get("Provides") {
            Some(v) => parse_provides(v)
                .map_err(|m| syntax(p.line, format!("package {name}, field Provides: {m}")))?,
            None => Vec::new(),
        };
        let source = p
            .get("Source")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or(name)
            .to_string();
        out.push(Package {
            name: name.to_string(),
            version: req("Version")?.to_string(),
            architecture: req("Architecture")?.to_string(),
            filename: req("Filename")?.to_string(),
            size,
            sha256,
            depends: deps("Depends")?,
            pre_depends: deps("Pre-Depends")?,
            provides,
            essential: p.get("Essential") == Some("yes"),
            priority: p.get("Priority").map(str::to_string),
            multi_arch,
            source,
            mirror: mirror.trim_end_matches('/').to_string(),
            suite: suite.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_fields() {
        let text = format!(
            "Package: mawk\nSource: mawk (1.3.4-1)\nVersion: 1.3.4-1\nArchitecture: amd64\n\
             Multi-Arch: foreign\nPriority: required\nEssential: yes\n\
             Pre-Depends: libc6 (>= 2.34)\nDepends: a | b,\n c\nProvides: awk\n\
             Filename: pool/main/m/mawk/mawk_1.3.4-1_amd64.deb\nSize: 123\nSHA256: {SHA}\n\
             Description: a\n long\n\nPackage: x\nVersion: 1\nArchitecture: all\n\
             Filename: pool/x.deb\nSize: 1\nSHA256: {SHA}\n"
        );
        let p = parse_packages(&text, "Packages", "http://m/debian/", "s").unwrap();
        assert_eq!(p.len(), 2);
        let m = &p[0];
        assert_eq!(m.source, "mawk");
        assert!(m.essential);
        assert_eq!(m.multi_arch, MultiArch::Foreign);
        assert_eq!(m.depends.len(), 2);
        assert_eq!(m.pre_depends[0][0].name, "libc6");
        assert_eq!(m.provides[0].name, "awk");
        assert_eq!(
            m.url(),
            "http://m/debian/pool/main/m/mawk/mawk_1.3.4-1_amd64.deb"
        );
        assert_eq!(p[1].source, "x");
        assert!(!p[1].essential);
    }

    #[test]
    fn missing_field_is_an_error_naming_file_and_line() {
        let text = "Package: a\nVersion: 1\n";
        let e = parse_packages(text, "main/Packages", "m", "s").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("main/Packages line 1"), "{msg}");
        assert!(msg.contains("missing field"), "{msg}");
    }
}
