//! Unit names: validation (systemd.unit(5) rules), type suffix, templates
//! and instances, and systemd's name unescaping.

/// Unit type suffixes systemd knows.
const TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// Longest valid unit name.
const NAME_MAX: usize = 255;

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\')
}

/// The parts of a valid unit name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitName<'a> {
    /// Part before `@` (or before the suffix when there is no `@`).
    pub prefix: &'a str,
    /// `None`: plain unit; `Some("")`: template; `Some(x)`: instance `x`.
    pub instance: Option<&'a str>,
    /// Type suffix without the dot, e.g. `service`.
    pub suffix: &'a str,
}

impl UnitName<'_> {
    /// Whether this is a template (`foo@.service`).
    pub fn is_template(&self) -> bool {
        self.instance == Some("")
    }

    /// The template this instance belongs to (`foo@bar.service` → `foo@.service`).
    pub fn template(&self) -> Option<String> {
        match self.instance {
            Some(i) if !i.is_empty() => Some(format!("{}@.{}", self.prefix, self.suffix)),
            _ => None,
        }
    }
}

/// Splits and validates a unit name, `None` when it is invalid.
pub fn parse_name(name: &str) -> Option<UnitName<'_>> {
    if name.is_empty() || name.len() > NAME_MAX {
        return None;
    }
    let (stem, suffix) = name.rsplit_once('.')?;
    if !TYPES.contains(&suffix) || stem.is_empty() {
        return None;
    }
    let (prefix, instance) = match stem.split_once('@') {
        Some((p, i)) => (p, Some(i)),
        None => (stem, None),
    };
    if prefix.is_empty() || !prefix.chars().all(valid_char) {
        return None;
    }
    if let Some(i) = instance {
        if !i.chars().all(|c| valid_char(c) || c == '@') {
            return None;
        }
    }
    Some(UnitName {
        prefix,
        instance,
        suffix,
    })
}

/// Whether `name` is a valid unit name (plain, template or instance).
pub fn is_valid(name: &str) -> bool {
    parse_name(name).is_some()
}

/// systemd's unit name unescaping: `-` becomes `/`, `\xNN` a byte.
pub fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' => out.push(b'/'),
            b'\\' if bytes.get(i + 1) == Some(&b'x') => {
                let hex = s
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => out.push(b'\\'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// systemd's path unescaping (`%f`): unescaped, always with one leading `/`.
pub fn unescape_path(s: &str) -> String {
    let u = unescape(s);
    format!("/{}", u.trim_start_matches('/'))
}

/// systemd's unit name escaping (`systemd-escape`): `/` becomes `-`;
/// letters, digits, `:`, `_` and `.` (but not a leading `.`) stay; every
/// other byte becomes `\xNN`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => {
                out.push(char::from(b));
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// An absolute path with duplicate slashes, `.` components and a trailing
/// slash removed (systemd's `path_simplify()`); `None` when it is not
/// absolute or has a `..` component.
pub fn normalize_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// systemd's path escaping (`systemd-escape --path`): the normalized path
/// without its leading `/`, escaped; `/` itself is `-`. `None` when the
/// path is not absolute and normalized (see [`normalize_path`]).
pub fn escape_path(path: &str) -> Option<String> {
    let p = normalize_path(path)?;
    if p == "/" {
        return Some("-".to_string());
    }
    Some(escape(p.trim_start_matches('/')))
}

/// The unit name for a path: `/var/data` and `mount` → `var-data.mount`.
pub fn from_path(path: &str, suffix: &str) -> Option<String> {
    escape_path(path).map(|e| format!("{e}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in [
            "ssh.service",
            "getty@.service",
            "getty@tty1.service",
            "dev-disk-by\\x2dlabel-var.device",
            "a:b_c.target",
            "x@a@b.service",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "ssh",
            "ssh.conf",
            ".service",
            "@x.service",
            "a b.service",
            "a/b.service",
            "ä.service",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(!is_valid(&format!("{}.service", "a".repeat(250))));
    }

    #[test]
    fn parts() {
        let n = parse_name("getty@tty1.service").unwrap();
        assert_eq!(
            (n.prefix, n.instance, n.suffix),
            ("getty", Some("tty1"), "service")
        );
        assert_eq!(n.template().as_deref(), Some("getty@.service"));
        assert!(parse_name("getty@.service").unwrap().is_template());
        assert_eq!(parse_name("ssh.service").unwrap().template(), None);
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape("dev-sda1"), "dev/sda1");
        assert_eq!(unescape("a\\x2db"), "a-b");
        assert_eq!(unescape("a\\x2"), "a\\x2");
        assert_eq!(unescape_path("dev-sda1"), "/dev/sda1");
        assert_eq!(unescape_path("-"), "/");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_path("/var/data").as_deref(), Some("var-data"));
        assert_eq!(
            escape_path("/dev/disk/by-partlabel/swap").as_deref(),
            Some("dev-disk-by\\x2dpartlabel-swap")
        );
        assert_eq!(escape_path("//var//data/./").as_deref(), Some("var-data"));
        assert_eq!(escape_path("/").as_deref(), Some("-"));
        assert_eq!(escape_path("/.x/a b").as_deref(), Some("\\x2ex-a\\x20b"));
        assert_eq!(escape_path("var/data"), None);
        assert_eq!(escape_path("/var/../etc"), None);
        assert_eq!(
            from_path("/var/data", "mount").as_deref(),
            Some("var-data.mount")
        );
        // Escaping and unescaping are inverse.
        for p in [
            "/var/data",
            "/dev/disk/by-partlabel/swap",
            "/a b/\u{e4}-x.y",
        ] {
            let e = escape_path(p).expect("absolute");
            assert_eq!(unescape_path(&e), p);
        }
    }

    /// Escaping, cross-checked with systemd-escape.
    #[test]
    fn escaping_matches_systemd_escape() {
        for path in [
            "/var/data",
            "/dev/disk/by-partlabel/swap",
            "/a b/\u{e4}.x",
            "/.hidden/x",
            "/",
            "/var//data/",
            "/-x/_y:z",
        ] {
            let out = match std::process::Command::new("systemd-escape")
                .args(["--path", path])
                .output()
            {
                Ok(o) => o,
                Err(e) => panic!("systemd-escape: {e} (apt-get install systemd)"),
            };
            assert!(out.status.success(), "{path}");
            let want = String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_string();
            assert_eq!(escape_path(path).as_deref(), Some(want.as_str()), "{path}");
        }
    }

    /// Cross-check with systemd-escape, when it is installed.
    #[test]
    fn unescaping_matches_systemd_escape() {
        for (input, path) in [
            ("dev-ttyS0\\x2dx", false),
            ("a\\x20b-c", false),
            ("dev-disk-by\\x2dlabel-var", true),
            ("-", true),
        ] {
            let mut args = vec!["--unescape"];
            if path {
                args.push("--path");
            }
            args.push(input);
            let out = match std::process::Command::new("systemd-escape")
                .args(&args)
                .output()
            {
                Ok(o) => o,
                Err(e) => panic!("systemd-escape: {e} (apt-get install systemd)"),
            };
            assert!(out.status.success(), "{input}");
            let want = String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_string();
            let got = if path {
                unescape_path(input)
            } else {
                unescape(input)
            };
            assert_eq!(got, want, "{input}");
        }
    }
}
