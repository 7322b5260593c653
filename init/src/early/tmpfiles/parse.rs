//! One tmpfiles.d line (tmpfiles.d(5)) into an [`Item`]: fields with
//! quotes and C escapes, type modifiers, specifiers, mode and ownership.

use super::super::accounts::Accounts;
use super::super::Log;
use super::Specifiers;

/// A mode column: `0755`, `~0755` (masked by the existing mode) or
/// `:0755` (applied only when creating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub bits: u32,
    pub masked: bool,
    pub create_only: bool,
}

/// A user or group column resolved to an id; `:` means only when creating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub id: u32,
    pub create_only: bool,
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The type letter (`f`, `d`, `L`, ...), without modifiers.
    pub kind: char,
    /// `+`: truncate (f), replace (L), append (w).
    pub force: bool,
    /// `-`: a failure to create is not a warning.
    pub allow_failure: bool,
    /// Absolute path inside the system, specifiers expanded.
    pub path: String,
    pub mode: Option<Mode>,
    pub uid: Option<Owner>,
    pub gid: Option<Owner>,
    /// The age column as written (ageing is not done at boot).
    pub age: Option<String>,
    /// Unescaped, specifiers expanded (or base64-decoded with `~`).
    pub argument: Option<Vec<u8>>,
    /// `file:line`, for messages.
    pub origin: String,
}

/// Where `L` lines without an argument point (to the same path below it).
pub const FACTORY_DIR: &str = "/usr/share/factory";

/// Types that are parsed and applied.
const SUPPORTED: &str = "fFwdDevqQLzZrRxXm";
/// Valid types that are reported as not supported.
const UNSUPPORTED: &str = "pcbCtThHaA";

/// Types whose path may be a glob.
pub fn needs_glob(kind: char) -> bool {
    "wexXrRzZtTaAhHm".contains(kind)
}

/// Types that own their path (two such lines for one path conflict
/// unless they are identical).
pub fn takes_ownership(kind: char) -> bool {
    "fFdDevqQpLcbCwxXrR".contains(kind)
}

/// Whether the type creates a directory.
pub fn is_dir_kind(kind: char) -> bool {
    "dDvqQ".contains(kind)
}

/// The mode used when the column is `-`.
pub fn default_mode(kind: char) -> u32 {
    if is_dir_kind(kind) {
        0o755
    } else {
        0o644
    }
}

/// Parses `line` (trimmed, not a comment). `Ok(None)` for lines that do
/// nothing at boot (`x`, `X`, and `^` lines: no credentials are passed);
/// `Err` for lines to skip with a warning. Unknown users and groups are
/// warnings and leave ownership alone.
pub fn parse_line(
    line: &str,
    origin: &str,
    spec: &Specifiers,
    accounts: &Accounts,
    log: &mut Log,
) -> Result<Option<Item>, String> {
    let mut rest = line;
    let mut fields: Vec<String> = Vec::new();
    while fields.len() < 6 {
        match extract_word(rest)? {
            Some((word, r)) => {
                fields.push(
                    String::from_utf8(word)
                        .map_err(|_| "a field is not UTF-8 after unescaping".to_string())?,
                );
                rest = r;
            }
            None => {
                rest = "";
                break;
            }
        }
    }
    if fields.len() < 2 {
        return Err("syntax error: a line needs at least a type and a path".into());
    }
    let argument = match rest.trim_start() {
        "" | "-" => None,
        a => Some(a),
    };
    let field = |i: usize| -> Option<&str> {
        fields
            .get(i)
            .map(String::as_str)
            .filter(|f| !f.is_empty() && *f != "-")
    };

    let action = &fields[0];
    let mut chars = action.chars();
    let kind = chars.next().ok_or("empty type")?;
    let (mut force, mut allow_failure, mut base64, mut credential) = (false, false, false, false);
    let mut seen = String::new();
    for m in chars {
        if seen.contains(m) {
            return Err(format!("modifier '{m}' given twice in type '{action}'"));
        }
        seen.push(m);
        match m {
            '!' => {} // boot-only: this is the boot
            '+' => force = true,
            '-' => allow_failure = true,
            '~' => base64 = true,
            '^' => credential = true,
            '=' => log.warn(&format!(
                "{origin}: modifier '=' (replace mismatching file types) is not supported, ignoring it"
            )),
            _ => return Err(format!("unknown modifier '{m}' in type '{action}'")),
        }
    }
    if UNSUPPORTED.contains(kind) {
        return Err(format!("tmpfiles type '{kind}' is not supported"));
    }
    if !SUPPORTED.contains(kind) {
        return Err(format!("unknown type '{kind}'"));
    }
    let kind = if kind == 'm' { 'z' } else { kind };
    if (base64 || credential) && !"fFw".contains(kind) {
        return Err(format!(
            "modifiers '~' and '^' only apply to f and w lines, not '{kind}'"
        ));
    }
    if credential {
        // The argument names a service credential; keel-init receives none,
        // and systemd skips such lines silently when the credential is unset.
        return Ok(None);
    }
    if matches!(kind, 'x' | 'X') {
        // Exclusions from age-based cleanup, which does not run at boot.
        return Ok(None);
    }

    let mut path = expand(fields[1].as_bytes(), spec)
        .and_then(|p| String::from_utf8(p).map_err(|_| "path is not UTF-8".to_string()))?;
    if !path.starts_with('/') {
        return Err(format!("path {path:?} is not absolute"));
    }
    path = simplify(&path);
    if let Some(sub) = path.strip_prefix("/var/run/") {
        let new = format!("/run/{sub}");
        log.info(&format!(
            "{origin}: {path} is below legacy /var/run, using {new} (please update the file)"
        ));
        path = new;
    }

    let argument = match (kind, argument) {
        ('w', None) => return Err("w lines need an argument".into()),
        ('L', None) => Some(format!("{FACTORY_DIR}{path}").into_bytes()),
        ('f' | 'F' | 'w' | 'L', Some(a)) if base64 => Some(decode_base64(a)?),
        ('f' | 'F' | 'w' | 'L', Some(a)) => Some(expand(&unescape(a)?, spec)?),
        (_, Some(_)) => {
            log.warn(&format!(
                "{origin}: {kind} lines take no argument, ignoring it"
            ));
            None
        }
        (_, None) => None,
    };

    let mode = field(2).map(parse_mode).transpose()?;
    let uid = field(3).and_then(|u| {
        owner(u, origin, "user", log, |s| {
            accounts.user(s).map(|u| u.uid).map_err(|e| e.to_string())
        })
    });
    let gid = field(4).and_then(|g| {
        owner(g, origin, "group", log, |s| {
            accounts.group(s).map(|g| g.gid).map_err(|e| e.to_string())
        })
    });
    let age = field(5)
        .map(|a| check_age(a).map(|()| a.to_string()))
        .transpose()?;

    Ok(Some(Item {
        kind,
        force,
        allow_failure,
        path,
        mode,
        uid,
        gid,
        age,
        argument,
        origin: origin.to_string(),
    }))
}

fn owner(
    col: &str,
    origin: &str,
    what: &str,
    log: &mut Log,
    resolve: impl Fn(&str) -> Result<u32, String>,
) -> Option<Owner> {
    let (name, create_only) = match col.strip_prefix(':') {
        Some(n) => (n, true),
        None => (col, false),
    };
    match resolve(name) {
        Ok(id) => Some(Owner { id, create_only }),
        Err(e) => {
            log.warn(&format!("{origin}: {e}; not changing the {what}"));
            None
        }
    }
}

fn parse_mode(col: &str) -> Result<Mode, String> {
    let mut s = col;
    let (mut masked, mut create_only) = (false, false);
    loop {
        if let Some(r) = s.strip_prefix('~') {
            masked = true;
            s = r;
        } else if let Some(r) = s.strip_prefix(':') {
            create_only = true;
            s = r;
        } else {
            break;
        }
    }
    let bits = u32::from_str_radix(s, 8)
        .ok()
        .filter(|b| *b <= 0o7777 && !s.is_empty())
        .ok_or_else(|| format!("invalid mode {col:?}"))?;
    Ok(Mode {
        bits,
        masked,
        create_only,
    })
}

/// `10d`, `1h30min`, `~5m`, `bmA:1h`: checked for shape only.
fn check_age(col: &str) -> Result<(), String> {
    let s = col.strip_prefix('~').unwrap_or(col);
    let s = match s.split_once(':') {
        Some((by, r)) if !by.is_empty() && by.chars().all(|c| "aAbBcCmM".contains(c)) => r,
        _ => s,
    };
    let ok = s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == ' ');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid age {col:?}"))
    }
}

/// Collapses `//` and `/./` and drops a trailing `/` (not `..`).
fn simplify(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Splits the first whitespace-separated word off `s`, removing quotes
/// (`"..."`, `'...'`) and decoding C escapes as systemd's
/// `extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE)` does.
pub fn extract_word(s: &str) -> Result<Option<(Vec<u8>, &str)>, String> {
    let s = s.trim_start();
    if s.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => return Ok(Some((out, &s[i..]))),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                let rest = &s[i + 1..];
                let (bytes, used) = unescape_one(rest)?;
                out.extend(bytes);
                for _ in 0..used {
                    it.next();
                }
            }
            (_, c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    Ok(Some((out, "")))
}

/// Decodes C escapes (systemd's `cunescape`); an unknown escape is an error.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut it = s.char_indices();
    while let Some((i, c)) = it.next() {
        if c == '\\' {
            let (bytes, used) = unescape_one(&s[i + 1..])?;
            out.extend(bytes);
            for _ in 0..used {
                it.next();
            }
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Ok(out)
}

/// The escape after a backslash: its bytes and how many chars it used.
fn unescape_one(s: &str) -> Result<(Vec<u8>, usize), String> {
    let mut chars = s.chars();
    let c = chars.next().ok_or("backslash at the end")?;
    let simple = match c {
        'a' => Some(7u8),
        'b' => Some(8),
        'f' => Some(12),
        'n' => Some(b'\n'),
        'r' => Some(b'\r'),
        't' => Some(b'\t'),
        'v' => Some(11),
        's' => Some(b' '),
        '\\' => Some(b'\\'),
        '"' => Some(b'"'),
        '\'' => Some(b'\''),
        _ => None,
    };
    if let Some(b) = simple {
        return Ok((vec![b], 1));
    }
    let digits = |n: usize, radix: u32| -> Result<u32, String> {
        let d: String = s.chars().skip(1).take(n).collect();
        if d.chars().count() != n {
            return Err(format!("incomplete escape \\{c}{d}"));
        }
        u32::from_str_radix(&d, radix).map_err(|_| format!("invalid escape \\{c}{d}"))
    };
    match c {
        'x' => {
            let v = digits(2, 16)?;
            // Lossless: two hex digits always fit a byte.
            Ok((vec![v as u8], 3))
        }
        'u' | 'U' => {
            let n = if c == 'u' { 4 } else { 8 };
            let v = digits(n, 16)?;
            let ch = char::from_u32(v).ok_or_else(|| format!("invalid code point \\{c}{v:x}"))?;
            let mut buf = [0u8; 4];
            Ok((ch.encode_utf8(&mut buf).as_bytes().to_vec(), n + 1))
        }
        '0'..='7' => {
            let d: String = s.chars().take(3).collect();
            let v = u32::from_str_radix(&d, 8)
                .ok()
                .filter(|v| d.len() == 3 && *v <= 0xff)
                .ok_or_else(|| format!("invalid octal escape \\{d}"))?;
            Ok((vec![v as u8], 3))
        }
        _ => Err(format!("unknown escape \\{c}")),
    }
}

/// Expands `%` specifiers; an unknown or unresolvable one is an error.
pub fn expand(s: &[u8], spec: &Specifiers) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let c = it.next().ok_or("'%' at the end without a specifier")?;
        let unknown = |what: &str| format!("specifier %{} is unresolvable: {what}", *c as char);
        let v: String = match c {
            b'%' => "%".into(),
            b'm' => spec
                .machine_id
                .clone()
                .ok_or_else(|| unknown("no machine ID"))?,
            b'b' => spec.boot_id.clone().ok_or_else(|| unknown("no boot ID"))?,
            b'H' => spec.hostname.clone(),
            b'l' => spec.hostname.split('.').next().unwrap_or("").to_string(),
            b'v' => spec
                .kernel_release
                .clone()
                .ok_or_else(|| unknown("no kernel release"))?,
            b'T' => "/tmp".into(),
            b'V' => "/var/tmp".into(),
            b't' => "/run".into(),
            b'S' => "/var/lib".into(),
            b'C' => "/var/cache".into(),
            b'L' => "/var/log".into(),
            b'u' | b'g' => "root".into(),
            b'U' | b'G' => "0".into(),
            b'h' => "/root".into(),
            other => return Err(format!("unknown specifier %{}", *other as char)),
        };
        out.extend_from_slice(v.as_bytes());
    }
    Ok(out)
}

/// Standard base64 (RFC 4648), whitespace ignored, padding optional.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = false;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            _ => return Err(format!("invalid base64 character {:?}", c as char)),
        };
        if padding {
            return Err("base64 data after padding".into());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
