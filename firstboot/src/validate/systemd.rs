//! `systemd.units`: names, contents (the unit file syntax as systemd's
//! and go-systemd's lexers see it), dropins, enablement.

use std::collections::HashMap;

use ignition_config::v3_6::Systemd;

use super::Ctx;
use crate::report::JsonPath;

/// Unit types Ignition accepts by name.
const UNIT_TYPES: [&str; 12] = [
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "snapshot",
    "slice",
    "scope",
];

/// Longest line go-systemd's lexer reads.
const MAX_LINE: usize = 2048;

/// A unit file's options: (section, key, value) in order.
pub type Options = Vec<(String, String, String)>;

/// Parses unit file text into its options; an error says what is wrong.
/// Lines before the first section header are ignored, as go-systemd does.
pub fn parse_unit(text: &str) -> Result<Options, String> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut lines = text.split('\n').peekable();
    while let Some(raw) = lines.next() {
        if raw.len() > MAX_LINE {
            return Err(format!("line too long (max {MAX_LINE} bytes)"));
        }
        let mut line = raw.trim().to_string();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some((name, after)) = rest.split_once(']') else {
                return Err("unable to find end of section".into());
            };
            if !after.trim().is_empty() {
                return Err(format!(
                    "found garbage after section name {name}: {after:?}"
                ));
            }
            section = Some(name.to_string());
            continue;
        }
        // A trailing backslash continues the value on the next line.
        while line.ends_with('\\') {
            line.pop();
            line.truncate(line.trim_end().len());
            match lines.next() {
                Some(next) => {
                    line.push(' ');
                    line.push_str(next.trim());
                }
                None => break,
            }
        }
        let Some(sec) = &section else { continue };
        let Some((key, value)) = line.split_once('=') else {
            return Err(if lines.peek().is_none() {
                "EOF".into()
            } else {
                "unexpected newline encountered while parsing option name".into()
            });
        };
        out.push((
            sec.clone(),
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    Ok(out)
}

/// Why `name` cannot be a unit's file name, beyond its type suffix (which
/// Ignition's own check covers): systemd's rules, letters, digits and
/// `:-_.\`, at most one `@` (templates and instances), a non-empty name
/// before it, at most 255 bytes. Ignition itself joins the name to the
/// unit directory as it is, so `../x.service` would land elsewhere.
pub fn bad_unit_name(name: &str) -> Option<String> {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let ok = name.len() <= 255
        && !stem.is_empty()
        && !stem.starts_with('@')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
        && name.matches('@').count() <= 1;
    (!ok).then(|| {
        format!(
            "invalid unit name {name:?}: a unit name is made of letters, digits and \":-_.\\\", with at most one \"@\", and has no \"/\""
        )
    })
}

/// Why `name` cannot be a drop-in's file name: it must be one file name
/// (no `/`, not `.` or `..`, no NUL).
pub fn bad_dropin_name(name: &str) -> Option<String> {
    (name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0'])).then(|| {
        format!("invalid drop-in name {name:?}: a drop-in name is a file name, without \"/\"")
    })
}

fn extension(name: &str) -> &str {
    name.rfind('.').map_or("", |i| &name[i + 1..])
}

fn has_install(options: &Options) -> bool {
    options.iter().any(|(s, _, _)| s == "Install")
}

pub fn systemd(cx: &mut Ctx, at: &JsonPath, s: &Systemd) {
    let units = s.units.as_deref().unwrap_or_default();
    let up = at.key("units");
    let mut parsed: HashMap<&str, Options> = HashMap::new();
    for (i, u) in units.iter().enumerate() {
        let p = up.index(i);
        if !UNIT_TYPES.contains(&extension(&u.name)) {
            cx.error(p.key("name"), "invalid systemd unit extension");
        } else if let Some(why) = bad_unit_name(&u.name) {
            cx.error(p.key("name"), why);
        }
        if let Some(text) = &u.contents {
            match parse_unit(text) {
                Err(e) => cx.error(p.key("contents"), format!("invalid unit content: {e}")),
                Ok(opts) => {
                    if u.enabled == Some(true) && !text.is_empty() && !has_install(&opts) {
                        cx.warning(
                            p.key("contents"),
                            format!(
                                "unit {:?} is enabled, but has no install section so enable does nothing",
                                u.name
                            ),
                        );
                    }
                    if !text.is_empty() {
                        parsed.insert(u.name.as_str(), opts);
                    }
                }
            }
        }
        let dropins = u.dropins.as_deref().unwrap_or_default();
        for (j, d) in dropins.iter().enumerate() {
            let dp = p.key("dropins").index(j);
            if let Some(text) = &d.contents {
                if let Err(e) = parse_unit(text) {
                    cx.error(dp.key("contents"), format!("invalid unit content: {e}"));
                }
            }
            if extension(&d.name) != "conf" || !d.name.contains('.') {
                cx.error(dp.key("name"), "invalid systemd drop-in extension");
            } else if let Some(why) = bad_dropin_name(&d.name) {
                cx.error(dp.key("name"), why);
            }
        }
        cx.dups(&p.key("dropins"), dropins.iter().map(|d| d.name.clone()));
    }
    // An enabled instance whose template (in the config) cannot be enabled.
    for (i, u) in units.iter().enumerate() {
        if u.enabled != Some(true) {
            continue;
        }
        let Some((prefix, rest)) = u.name.split_once('@') else {
            continue;
        };
        if rest.strip_suffix(".service").is_none_or(str::is_empty) {
            continue;
        }
        let template = format!("{prefix}@.service");
        if let Some(opts) = parsed.get(template.as_str()) {
            if !has_install(opts) {
                cx.warning(
                    up.index(i).key("contents"),
                    format!(
                        "template unit {template:?} for {:?} doesn't have Install section",
                        u.name
                    ),
                );
            }
        }
    }
    cx.dups(&up, units.iter().map(|u| u.name.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_syntax() {
        let opts = parse_unit(
            "# comment\n[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/sh -c \\\n  'echo hi'\n[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        assert_eq!(opts.len(), 3);
        assert_eq!(opts[1].2, "/bin/sh -c 'echo hi'");
        assert!(has_install(&opts));
        assert_eq!(parse_unit("junk before\n[Unit]\n").unwrap(), vec![]);
        assert_eq!(
            parse_unit("[Unit").unwrap_err(),
            "unable to find end of section"
        );
        assert!(parse_unit("[Unit] x\n")
            .unwrap_err()
            .starts_with("found garbage after section name"));
        assert_eq!(parse_unit("[Unit]\nfoo").unwrap_err(), "EOF");
        assert_eq!(
            parse_unit("[Unit]\nfoo\nbar=1\n").unwrap_err(),
            "unexpected newline encountered while parsing option name"
        );
        assert!(parse_unit(&format!("[Unit]\nA={}\n", "x".repeat(3000)))
            .unwrap_err()
            .starts_with("line too long"));
        assert!(!has_install(&parse_unit("[Install]\n").unwrap()));
    }
}
