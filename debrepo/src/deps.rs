//! Dependency fields: `a (>= 1) | b:any, c`, Provides lists and package requests.

use std::fmt;

use crate::version::Relation;

/// One alternative of a dependency: a package name with an optional architecture
/// qualifier and an optional version constraint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dep {
    pub name: String,
    /// `any`, `native` or an architecture name, from `name:qualifier`.
    pub arch: Option<String>,
    pub constraint: Option<(Relation, String)>,
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((rel, v)) = &self.constraint {
            write!(f, " ({} {v})", rel.as_str())?;
        }
        Ok(())
    }
}

/// A dependency: one or more alternatives, any of which satisfies it.
pub type DepGroup = Vec<Dep>;

/// Formats a group as it appears in a control file (`a | b (>= 1)`).
pub fn group_to_string(group: &[Dep]) -> String {
    group
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Parses a Depends-style field. Architecture restrictions (`[...]`) and build
/// profiles (`<...>`) are dropped; they do not occur in binary package indexes.
pub fn parse_depends(field: &str) -> Result<Vec<DepGroup>, String> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let alts = group
            .split('|')
            .map(parse_dep)
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(alts);
    }
    Ok(groups)
}

/// Parses one `name[:arch] [(op version)]` item.
pub fn parse_dep(item: &str) -> Result<Dep, String> {
    let item = strip_brackets(item.trim(), '[', ']');
    let item = strip_brackets(&item, '<', '>');
    let item = item.trim();
    let (head, constraint) = match item.find('(') {
        Some(open) => {
            let close = item[open..]
                .find(')')
                .map(|c| c + open)
                .ok_or_else(|| format!("missing \")\" in {item:?}"))?;
            let inner = item[open + 1..close].trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let (op, ver) = inner.split_at(split);
            let rel = Relation::parse(op.trim())
                .ok_or_else(|| format!("invalid version relation {op:?} in {item:?}"))?;
            let ver = ver.trim();
            if ver.is_empty() || ver.contains(char::is_whitespace) {
                return Err(format!("invalid version {ver:?} in {item:?}"));
            }
            (item[..open].trim(), Some((rel, ver.to_string())))
        }
        None => (item, None),
    };
    if head.is_empty() || head.contains(char::is_whitespace) {
        return Err(format!("invalid package name {head:?}"));
    }
    let (name, arch) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (head, None),
    };
    Ok(Dep {
        name: name.to_string(),
        arch,
        constraint,
    })
}

fn strip_brackets(s: &str, open: char, close: char) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut in_parens = false;
    for c in s.chars() {
        if c == '(' {
            in_parens = true;
        } else if c == ')' {
            in_parens = false;
        }
        if in_parens && depth == 0 {
            out.push(c);
        } else if c == open {
            depth += 1;
        } else if c == close && depth > 0 {
            depth -= 1;
        } else if depth == 0 {
            out.push(c);
        }
    }
    out
}

/// A Provides entry: a virtual package name, optionally with the exact version it
/// provides (`foo (= 1.2)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provide {
    pub name: String,
    pub version: Option<String>,
}

/// Parses a Provides field.
pub fn parse_provides(field: &str) -> Result<Vec<Provide>, String> {
    let mut out = Vec::new();
    for group in parse_depends(field)? {
        for dep in group {
            let version = match dep.constraint {
                None => None,
                Some((Relation::Eq, v)) => Some(v),
                Some((rel, v)) => {
                    return Err(format!(
                        "provides {} with relation {} {v} (only = is allowed)",
                        dep.name,
                        rel.as_str()
                    ))
                }
            };
            out.push(Provide {
                name: dep.name,
                version,
            });
        }
    }
    Ok(out)
}

/// Parses a package request: `name`, `name (>= 1.0)` or `name=1.0`.
pub fn parse_request(request: &str) -> Result<Dep, String> {
    let r = request.trim();
    if !r.contains('(') {
        if let Some((name, ver)) = r.split_once('=') {
            return parse_dep(&format!("{} (= {})", name.trim(), ver.trim()));
        }
    }
    if r.contains(['|', ',']) {
        return Err("alternatives and lists are not allowed in a request".to_string());
    }
    parse_dep(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn depends_with_alternatives_and_qualifiers() {
        let g = parse_depends(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo [amd64] <!nocheck>",
        )
        .unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(
            g[0][0].constraint,
            Some((Relation::GreaterEq, "2.34".to_string()))
        );
        assert_eq!(g[1].len(), 2);
        assert_eq!(g[1][1].name, "debconf-2.0");
        assert_eq!(g[2][0].arch.as_deref(), Some("any"));
        assert_eq!(g[3][0].name, "foo");
        assert_eq!(group_to_string(&g[1]), "debconf (>= 0.5) | debconf-2.0");
    }

    #[test]
    fn tight_spacing_and_errors() {
        let d = parse_dep("foo(<<1:2.0-1)").unwrap();
        assert_eq!(d.constraint, Some((Relation::Less, "1:2.0-1".to_string())));
        assert!(parse_dep("foo (~= 1)").is_err());
        assert!(parse_dep("foo (>= 1").is_err());
        assert!(parse_dep("").is_err());
    }

    #[test]
    fn provides_and_requests() {
        let p = parse_provides("awk, libfoo-abi (= 2.1)").unwrap();
        assert_eq!(p[1].version.as_deref(), Some("2.1"));
        assert!(parse_provides("x (>= 1)").is_err());
        let r = parse_request("bash=5.2-1").unwrap();
        assert_eq!(r.constraint, Some((Relation::Eq, "5.2-1".to_string())));
        let r = parse_request("bash (>= 5)").unwrap();
        assert_eq!(r.constraint, Some((Relation::GreaterEq, "5".to_string())));
        assert!(parse_request("a | b").is_err());
    }
}
