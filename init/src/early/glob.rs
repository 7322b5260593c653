//! Shell-style patterns: `fnmatch(3)` for names and module aliases, and
//! expansion of absolute path globs below a root (tmpfiles.d lines).

use std::fs;
use std::path::Path;

use crate::stage1::at;

/// Whether `s` contains a pattern character (`*`, `?` or `[`).
pub fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `fnmatch(pattern, s, 0)`: `*` and `?` match any characters (`/`
/// included), `[...]` a set with ranges and `!`/`^` negation, and `\`
/// makes the next character literal.
pub fn fnmatch(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    // Where to resume after the last `*`: (pattern index, string index).
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, si));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match class(&p[pi..], s[si]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                // No closing bracket: a literal '['.
                None => (s[si] == '[').then_some(1),
            },
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == s[si]).then_some(2),
            Some(c) => (*c == s[si]).then_some(1),
            None => None,
        };
        match step {
            Some(n) => {
                pi += n;
                si += 1;
            }
            None => match star {
                Some((sp, ss)) => {
                    pi = sp;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the bracket expression at the start of `p`;
/// returns (matched, length of the expression) or None if unterminated.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|h| *h != ']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

fn unescape(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Expands the absolute glob `pattern` against the tree below `root`, one
/// path component at a time as glob(3) does: a wildcard does not match a
/// leading `.` of a name. Returns the existing paths (inside the root,
/// absolute), sorted. A pattern without wildcards gives itself if it
/// exists.
pub fn expand(root: &Path, pattern: &str) -> Vec<String> {
    let mut cands = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &cands {
            if !is_pattern(comp) {
                next.push(format!("{base}/{}", unescape(comp)));
                continue;
            }
            let dir = if base.is_empty() { "/" } else { base.as_str() };
            let Ok(entries) = fs::read_dir(at(root, dir)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') || comp.starts_with('.'))
                .filter(|n| fnmatch(comp, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| format!("{base}/{n}")));
        }
        cands = next;
    }
    if cands == [""] {
        cands = vec!["/".to_string()];
    }
    cands.retain(|p| fs::symlink_metadata(at(root, p)).is_ok());
    cands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_fnmatch() {
        let yes = [
            ("abc", "abc"),
            ("a*c", "abbbc"),
            ("a*c", "ac"),
            ("*", ""),
            ("a?c", "abc"),
            ("[a-c]x", "bx"),
            ("[!a-c]x", "dx"),
            ("[^a]x", "bx"),
            ("[]]", "]"),
            ("[a-]", "-"),
            ("a\\*", "a*"),
            (
                "pci:v00001AF4d*sv*sd*bc*sc*i*",
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            ),
            ("*.X[0-9]*-lock", "a.X0-lock"),
            ("a[", "a["),
        ];
        for (p, s) in yes {
            assert!(fnmatch(p, s), "{p} should match {s}");
        }
        let no = [
            ("abc", "abd"),
            ("a*c", "ab"),
            ("a?c", "ac"),
            ("[a-c]x", "dx"),
            ("[!a-c]x", "ax"),
            ("a\\*", "ab"),
            ("pci:v00001AF4d*", "pci:v00008086d0001"),
        ];
        for (p, s) in no {
            assert!(!fnmatch(p, s), "{p} should not match {s}");
        }
    }

    #[test]
    fn expands_paths_below_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in [
            "tmp/.X11-unix",
            "tmp/systemd-private-1/tmp",
            "tmp/systemd-private-2",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["tmp/.X0-lock", "tmp/.X1-lock", "tmp/.Xa-lock", "tmp/x.txt"] {
            fs::write(root.join(f), "").unwrap();
        }
        assert_eq!(
            expand(root, "/tmp/.X[0-9]*-lock"),
            ["/tmp/.X0-lock", "/tmp/.X1-lock"]
        );
        assert_eq!(
            expand(root, "/tmp/systemd-private-*"),
            ["/tmp/systemd-private-1", "/tmp/systemd-private-2"]
        );
        assert_eq!(
            expand(root, "/tmp/systemd-private-*/tmp"),
            ["/tmp/systemd-private-1/tmp"]
        );
        // Wildcards do not match hidden names.
        assert_eq!(
            expand(root, "/tmp/*"),
            [
                "/tmp/systemd-private-1",
                "/tmp/systemd-private-2",
                "/tmp/x.txt"
            ]
        );
        assert_eq!(expand(root, "/tmp/x.txt"), ["/tmp/x.txt"]);
        assert!(expand(root, "/tmp/missing").is_empty());
        assert!(expand(root, "/nodir/*").is_empty());
    }
}
