//! `%` specifiers (systemd.unit(5) "Specifiers") for the system manager.

use super::name::{parse_name, unescape, unescape_path};

/// Facts about the machine that some specifiers need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// `%H`: host name.
    pub hostname: String,
    /// `%m`: machine ID.
    pub machine_id: String,
}

/// What specifiers expand against: the unit and the machine.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Full unit name (an instance, not the template, when instantiated).
    pub name: &'a str,
    /// Fragment file path (for `%y`), when known.
    pub fragment: Option<&'a str>,
    /// Machine facts.
    pub machine: &'a MachineInfo,
}

/// Expands specifiers in `s`. Unknown ones stay as written and are
/// returned as messages for warnings.
pub fn expand(s: &str, ctx: &Context<'_>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(s.len());
    let mut warnings = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(spec) => match lookup(spec, ctx) {
                Some(v) => out.push_str(&v),
                None => {
                    warnings.push(format!("unknown specifier %{spec}, left as is"));
                    out.push('%');
                    out.push(spec);
                }
            },
            None => {
                warnings.push("trailing '%' without specifier".to_string());
                out.push('%');
            }
        }
    }
    (out, warnings)
}

fn lookup(spec: char, ctx: &Context<'_>) -> Option<String> {
    let parsed = parse_name(ctx.name);
    let prefix = parsed.as_ref().map_or(ctx.name, |n| n.prefix);
    let instance = parsed.as_ref().and_then(|n| n.instance).unwrap_or("");
    let stem = ctx.name.rsplit_once('.').map_or(ctx.name, |(s, _)| s);
    Some(match spec {
        'n' => ctx.name.to_string(),
        'N' => stem.to_string(),
        'p' => prefix.to_string(),
        'P' => unescape(prefix),
        'j' => prefix.rsplit('-').next().unwrap_or(prefix).to_string(),
        'J' => unescape(prefix.rsplit('-').next().unwrap_or(prefix)),
        'i' => instance.to_string(),
        'I' => unescape(instance),
        'f' => {
            if instance.is_empty() {
                unescape_path(prefix)
            } else {
                unescape_path(instance)
            }
        }
        't' => "/run".to_string(),
        'S' => "/var/lib".to_string(),
        'C' => "/var/cache".to_string(),
        'L' => "/var/log".to_string(),
        'E' => "/etc".to_string(),
        'T' => "/tmp".to_string(),
        'V' => "/var/tmp".to_string(),
        'h' => "/root".to_string(),
        's' => "/bin/sh".to_string(),
        'u' | 'g' => "root".to_string(),
        'U' | 'G' => "0".to_string(),
        'H' => ctx.machine.hostname.clone(),
        'l' => ctx
            .machine
            .hostname
            .split('.')
            .next()
            .unwrap_or("")
            .to_string(),
        'm' => ctx.machine.machine_id.clone(),
        'y' => ctx.fragment?.to_string(),
        'Y' => {
            let f = ctx.fragment?;
            f.rsplit_once('/')
                .map_or(".", |(d, _)| if d.is_empty() { "/" } else { d })
                .to_string()
        }
        '%' => "%".to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_required_specifiers() {
        let m = MachineInfo {
            hostname: "node1.example".into(),
            machine_id: "abc".into(),
        };
        let ctx = Context {
            name: "foo-bar@dev-ttyS0\\x2dx.service",
            fragment: Some("/usr/lib/systemd/system/foo-bar@.service"),
            machine: &m,
        };
        let (s, w) = expand(
            "%n|%N|%p|%P|%i|%I|%f|%t %S %C %L %h %u %U|%H|%m|%%|%j|%l|%Y",
            &ctx,
        );
        assert!(w.is_empty());
        assert_eq!(
            s,
            "foo-bar@dev-ttyS0\\x2dx.service|foo-bar@dev-ttyS0\\x2dx|foo-bar|foo/bar|dev-ttyS0\\x2dx|dev/ttyS0-x|/dev/ttyS0-x|/run /var/lib /var/cache /var/log /root root 0|node1.example|abc|%|bar|node1|/usr/lib/systemd/system"
        );
        let plain = Context {
            name: "ssh.service",
            fragment: None,
            machine: &m,
        };
        assert_eq!(expand("%i|%f|%N", &plain).0, "|/ssh|ssh");
    }

    #[test]
    fn unknown_specifier_warns() {
        let m = MachineInfo::default();
        let ctx = Context {
            name: "a.service",
            fragment: None,
            machine: &m,
        };
        let (s, w) = expand("x%qy%", &ctx);
        assert_eq!(s, "x%qy%");
        assert_eq!(w.len(), 2);
    }
}
