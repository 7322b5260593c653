//! Command lines (`ExecStart=` and friends) and `Environment=` values:
//! systemd's word splitting, exec prefixes and `$VAR` expansion.

use std::collections::BTreeMap;

/// One word of a split line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The unquoted, unescaped text.
    pub text: String,
    /// True when the word used no quotes and no escapes.
    pub plain: bool,
}

/// Splits `s` into words: whitespace separates; `"…"` and `'…'` quote
/// (also in the middle of a word); C-style backslash escapes.
pub fn split_words(s: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut text = String::new();
        let mut plain = true;
        let mut quote: Option<char> = None;
        loop {
            let Some(c) = chars.next() else {
                if let Some(q) = quote {
                    return Err(format!("unbalanced quote {q} in {s:?}"));
                }
                break;
            };
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => {
                    plain = false;
                    quote = Some(c);
                }
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    plain = false;
                    unescape_one(&mut chars, &mut text).map_err(|e| format!("{e} in {s:?}"))?;
                }
                (_, c) => text.push(c),
            }
        }
        words.push(Word { text, plain });
    }
}

fn unescape_one(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
) -> Result<(), String> {
    let c = chars.next().ok_or("trailing backslash")?;
    let simple = match c {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        's' => Some(' '),
        '\\' | '"' | '\'' | ';' | ' ' => Some(c),
        _ => None,
    };
    if let Some(s) = simple {
        out.push(s);
        return Ok(());
    }
    let (radix, len) = match c {
        'x' => (16, 2),
        'u' => (16, 4),
        'U' => (16, 8),
        '0'..='7' => (8, 2),
        _ => return Err(format!("invalid escape \\{c}")),
    };
    let mut digits = String::new();
    if radix == 8 {
        digits.push(c);
    }
    for _ in 0..len {
        digits.push(chars.next().ok_or("short escape sequence")?);
    }
    let n =
        u32::from_str_radix(&digits, radix).map_err(|_| format!("invalid escape \\{c}{digits}"))?;
    let ch = char::from_u32(n)
        .filter(|&ch| ch != '\0')
        .ok_or("invalid escaped character")?;
    out.push(ch);
    Ok(())
}

/// A parsed `Exec*=` command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    /// Program: an absolute path, or a name to be looked up at start time.
    pub path: String,
    /// Arguments including `argv[0]`, with `$VAR` left unexpanded.
    pub argv: Vec<String>,
    /// `-`: a failing exit status is ignored.
    pub ignore_failure: bool,
    /// `@`: the second word is `argv[0]`.
    pub argv0_given: bool,
    /// `+`: run with full privileges (User=, Group= not applied).
    pub full_privileges: bool,
    /// `!`: User=, Group= and SupplementaryGroups= are not applied (the
    /// program drops privileges itself, e.g. `chronyd -u _chrony`).
    pub elevated: bool,
    /// `!!`: as `!` (systemd falls back to it without ambient
    /// capabilities, which Keel does not set up).
    pub elevated_ambient: bool,
    /// `:`: no environment variable expansion.
    pub no_env_expansion: bool,
}

/// Parses one command line with its prefixes.
pub fn parse_command(value: &str) -> Result<Command, String> {
    let words = split_words(value)?;
    let mut iter = words.into_iter();
    let first = iter.next().ok_or("empty command line")?;
    let mut cmd = Command::default();
    let mut rest = first.text.as_str();
    loop {
        if let Some(r) = rest.strip_prefix("!!") {
            set_once(&mut cmd.elevated_ambient, "!!")?;
            rest = r;
        } else if let Some(c) = rest.chars().next().filter(|c| "-@+!:".contains(*c)) {
            let flag = match c {
                '-' => &mut cmd.ignore_failure,
                '@' => &mut cmd.argv0_given,
                '+' => &mut cmd.full_privileges,
                '!' => &mut cmd.elevated,
                _ => &mut cmd.no_env_expansion,
            };
            set_once(flag, &c.to_string())?;
            rest = &rest[1..];
        } else {
            break;
        }
    }
    if cmd.full_privileges && (cmd.elevated || cmd.elevated_ambient) {
        return Err("prefixes '+' and '!' cannot be combined".to_string());
    }

    if rest.is_empty() {
        return Err("missing program name".to_string());
    }
    cmd.path = rest.to_string();
    let mut argv: Vec<String> = Vec::new();
    for w in iter {
        if w.plain && w.text == ";" {
            return Err("multiple commands separated by ';' are not supported".to_string());
        }
        argv.push(w.text);
    }
    if cmd.argv0_given {
        if argv.is_empty() {
            return Err("prefix '@' needs argv[0] after the program".to_string());
        }
    } else {
        argv.insert(0, cmd.path.clone());
    }
    cmd.argv = argv;
    Ok(cmd)
}

fn set_once(flag: &mut bool, what: &str) -> Result<(), String> {
    if *flag {
        return Err(format!("prefix {what:?} given twice"));
    }
    *flag = true;
    Ok(())
}

/// Whether `s` is a valid environment variable name.
pub fn env_name_valid(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands variables in command arguments as systemd does: `${VAR}`
/// substitutes within a word; a word that is exactly `$VAR` becomes the
/// whitespace-separated words of the value (none when unset or empty);
/// `$$` is a literal `$`. Unset variables expand to nothing.
pub fn expand(words: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for w in words {
        if let Some(name) = w.strip_prefix('$').filter(|n| env_name_valid(n)) {
            if let Some(v) = env.get(name) {
                out.extend(v.split_whitespace().map(str::to_string));
            }
            continue;
        }
        out.push(expand_word(w, env));
    }
    out
}

fn expand_word(w: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = w;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some((name, r)) = after.strip_prefix('{').and_then(|a| a.split_once('}')) {
            if env_name_valid(name) {
                out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
            } else {
                out.push_str(&rest[pos..pos + name.len() + 3]);
            }
            rest = r;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// One word of an `Environment=` value: a pair, or why it is invalid.
pub type EnvItem = Result<(String, String), String>;

/// Parses an `Environment=` value: several quoted `NAME=value` words.
/// Invalid words come back as `Err` with a message, valid ones as pairs.
pub fn parse_environment(value: &str) -> Result<Vec<EnvItem>, String> {
    Ok(split_words(value)?
        .into_iter()
        .map(|w| match w.text.split_once('=') {
            Some((k, v)) if env_name_valid(k) => Ok((k.to_string(), v.to_string())),
            _ => Err(format!(
                "invalid environment assignment {:?}, ignored",
                w.text
            )),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        split_words(s)
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn splitting() {
        assert_eq!(
            texts(r#"  a "b c"  'd "e' f\ g"#),
            ["a", "b c", "d \"e", "f g"]
        );
        assert_eq!(texts(r#"x"y z"w \x41\n\101"#), ["xy zw", "A\nA"]);
        assert_eq!(texts(r#""""#), [""]);
        assert!(split_words("\"abc").is_err());
        assert!(split_words("abc\\").is_err());
        assert!(split_words("a\\qb").is_err());
    }

    #[test]
    fn prefixes() {
        let c = parse_command("-/sbin/modprobe overlay").unwrap();
        assert!(c.ignore_failure);
        assert_eq!(
            (c.path.as_str(), c.argv.clone()),
            (
                "/sbin/modprobe",
                vec!["/sbin/modprobe".into(), "overlay".into()]
            )
        );
        let c = parse_command("@-/bin/sh name -c 'echo $X'").unwrap();
        assert!(c.argv0_given && c.ignore_failure);
        assert_eq!(c.argv, ["name", "-c", "echo $X"]);
        let c = parse_command("!!:/bin/x").unwrap();
        assert!(c.elevated_ambient && c.no_env_expansion && !c.elevated);
        let c = parse_command("+true").unwrap();
        assert!(c.full_privileges);
        assert_eq!(c.path, "true");
        assert!(parse_command("--/bin/x").is_err());
        assert!(parse_command("+!/bin/x").is_err());
        assert!(parse_command("-").is_err());
        assert!(parse_command("@/bin/x").is_err());
        assert!(parse_command("").is_err());
    }

    #[test]
    fn semicolon() {
        assert!(parse_command("/bin/a ; /bin/b").is_err());
        let c = parse_command(r"/bin/a \; b ';'").unwrap();
        assert_eq!(c.argv, ["/bin/a", ";", "b", ";"]);
    }

    #[test]
    fn expansion() {
        let env: BTreeMap<String, String> = [("A", "x  y"), ("B", "1"), ("E", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            expand(&w(&["-D", "$A", "$E", "$U"]), &env),
            ["-D", "x", "y"]
        );
        assert_eq!(
            expand(&w(&["${A}", "a${B}b", "${U}z"]), &env),
            ["x  y", "a1b", "z"]
        );
        assert_eq!(
            expand(&w(&["$$A", "a$Bb", "cost$", "${1x}"]), &env),
            ["$A", "a$Bb", "cost$", "${1x}"]
        );
    }

    #[test]
    fn environment() {
        let e = parse_environment(r#"A=1 "B=two words" C= 'D=$x' bad 1X=2"#).unwrap();
        let ok: Vec<_> = e.iter().filter_map(|r| r.clone().ok()).collect();
        assert_eq!(
            ok,
            [("A", "1"), ("B", "two words"), ("C", ""), ("D", "$x")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(e.iter().filter(|r| r.is_err()).count(), 2);
    }
}
