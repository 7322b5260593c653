//! The host name from `/etc/hostname`.

use std::fs;
use std::io;
use std::path::Path;

use super::Log;
use crate::stage1::at;
use crate::sys::Sys;

pub const HOSTNAME_FILE: &str = "/etc/hostname";
/// What the host is called when `/etc/hostname` names nothing usable.
pub const FALLBACK: &str = "localhost";

/// Whether `name` is acceptable as a host name: 1 to 64 characters of
/// `a-z A-Z 0-9 - .`, not starting with `-` or `.`, not ending with `.`
/// and without empty labels (`..`).
pub fn is_valid(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with('.')
        && !name.contains("..")
}

/// The host name to use: the first line of `<root>/etc/hostname` that is
/// neither blank nor a `#` comment; [`FALLBACK`] if there is none or it is
/// invalid (a warning).
pub fn read(root: &Path, log: &mut Log) -> String {
    let text = match fs::read_to_string(at(root, HOSTNAME_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return FALLBACK.to_string(),
        Err(e) => {
            log.warn(&format!("reading {HOSTNAME_FILE}: {e}; using {FALLBACK}"));
            return FALLBACK.to_string();
        }
    };
    let Some(name) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return FALLBACK.to_string();
    };
    if !is_valid(name) {
        log.warn(&format!(
            "{HOSTNAME_FILE}: {name:?} is not a valid host name; using {FALLBACK}"
        ));
        return FALLBACK.to_string();
    }
    name.to_string()
}

/// Sets the kernel's host name from `<root>/etc/hostname` (see [`read`]);
/// returns the name chosen.
pub fn set(sys: &dyn Sys, root: &Path, log: &mut Log) -> String {
    let name = read(root, log);
    match sys.sethostname(&name) {
        Ok(()) => log.info(&format!("hostname {name}")),
        Err(e) => log.warn(&format!("setting hostname {name:?}: {e}")),
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSys;

    fn run_with(content: Option<&str>) -> (Vec<String>, Vec<String>, String) {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        if let Some(c) = content {
            fs::write(t.path().join("etc/hostname"), c).unwrap();
        }
        let sys = RecordingSys::new(t.path());
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let name = set(&sys, t.path(), &mut log);
        (sys.calls(), log.into_warnings(), name)
    }

    #[test]
    fn sets_the_first_non_comment_line() {
        let (calls, warnings, name) =
            run_with(Some("# set by ignition\n\n  node-1.example  \nother\n"));
        assert_eq!(calls, ["sethostname node-1.example"]);
        assert!(warnings.is_empty());
        assert_eq!(name, "node-1.example");
    }

    #[test]
    fn falls_back_to_localhost() {
        for content in [None, Some(""), Some("# only a comment\n\n")] {
            let (calls, warnings, _) = run_with(content);
            assert_eq!(calls, ["sethostname localhost"], "{content:?}");
            assert!(warnings.is_empty());
        }
        let (calls, warnings, _) = run_with(Some("-bad\n"));
        assert_eq!(calls, ["sethostname localhost"]);
        assert_eq!(
            warnings,
            ["warning: /etc/hostname: \"-bad\" is not a valid host name; using localhost"]
        );
    }

    #[test]
    fn validates_names() {
        for ok in ["a", "node-1", "Node1.Example.com", &"a".repeat(64)] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "a.",
            "a..b",
            "a_b",
            "a b",
            "nöde",
            &"a".repeat(65),
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn a_failing_sethostname_is_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let sys = RecordingSys::new(t.path());
        sys.fail_on("sethostname", libc::EPERM);
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        assert_eq!(set(&sys, t.path(), &mut log), "localhost");
        assert!(log.warnings()[0].starts_with("warning: setting hostname \"localhost\""));
    }
}
