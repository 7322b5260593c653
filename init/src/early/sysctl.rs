//! Kernel parameters from sysctl.d (sysctl.d(5)), as systemd-sysctl and
//! `sysctl --system` apply them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use keel_units::confdirs;

use super::{glob, Log};
use crate::stage1::at;

/// The configuration directory name below [`confdirs::CONF_ROOTS`].
pub const SYSCTL_D: &str = "sysctl.d";
/// Read after every sysctl.d file (procps does; Debian links it into
/// /etc/sysctl.d as 99-sysctl.conf, then it is read only once).
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";
pub const PROC_SYS: &str = "/proc/sys";

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The key as a path below /proc/sys (`net/ipv4/ip_forward`).
    pub key: String,
    pub value: String,
    /// `-key = value`: failing to write is not reported.
    pub ignore_failure: bool,
    /// Where it was set: `file:line`.
    pub origin: String,
}

/// Maps a key to its path below /proc/sys: if the first separator is a
/// `/`, the key is a path already; if it is a `.`, dots and slashes swap
/// (`net.ipv4.conf.enp3s0/200.forwarding` → `net/ipv4/conf/enp3s0.200/forwarding`).
pub fn key_path(key: &str) -> String {
    let key = key.trim_start_matches(['.', '/']);
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'.' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// Parses one file's lines into `out`, a later assignment of a key
/// replacing an earlier one (and moving to the end, as systemd does).
fn parse_into(shown: &str, text: &str, out: &mut Vec<Assignment>, log: &mut Log) {
    for (n, line) in confdirs::lines(text, &['#', ';']) {
        let origin = format!("{shown}:{n}");
        let Some((key, value)) = line.split_once('=') else {
            // `-key` alone excludes a key from glob assignments; globs are
            // not supported, so there is nothing to exclude from.
            if !line.starts_with('-') {
                log.warn(&format!("{origin}: not a key = value assignment, ignoring"));
            }
            continue;
        };
        let key = key.trim();
        let (key, ignore_failure) = match key.strip_prefix('-') {
            Some(k) => (k.trim(), true),
            None => (key, false),
        };
        if key.is_empty() {
            log.warn(&format!("{origin}: empty key, ignoring"));
            continue;
        }
        if glob::is_pattern(key) {
            log.warn(&format!(
                "{origin}: sysctl key pattern {key} is not supported, ignoring"
            ));
            continue;
        }
        let key = key_path(key);
        out.retain(|a| a.key != key);
        out.push(Assignment {
            key,
            value: value.trim().to_string(),
            ignore_failure,
            origin,
        });
    }
}

/// Reads every sysctl.d file and then /etc/sysctl.conf; returns the
/// assignments to make, in order.
pub fn collect(root: &Path, log: &mut Log) -> Vec<Assignment> {
    let mut files = super::conf_files(root, SYSCTL_D, log);
    let conf = at(root, SYSCTL_CONF);
    let canonical = |p: &Path| fs::canonicalize(super::follow_in_root(root, p)).ok();
    let conf_real = canonical(&conf);
    let already = conf_real.is_some() && files.iter().any(|f| canonical(&f.path) == conf_real);
    if conf_real.is_some() && !already {
        files.push(confdirs::ConfFile {
            shown: SYSCTL_CONF.to_string(),
            path: conf,
        });
    }
    let mut out = Vec::new();
    for file in files {
        match file.read(root) {
            Ok(text) => parse_into(&file.shown, &text, &mut out, log),
            Err(e) => log.warn(&format!("reading {}: {e}", file.shown)),
        }
    }
    out
}

/// Writes every assignment of sysctl.d and /etc/sysctl.conf to
/// `<root>/proc/sys`. A failed write is a warning naming file, line and
/// key, except for keys written with a leading `-`.
pub fn apply(root: &Path, log: &mut Log) {
    let assignments = collect(root, log);
    let mut failed = 0;
    for a in &assignments {
        let path = at(root, PROC_SYS).join(&a.key);
        let written = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{}\n", a.value).as_bytes()));
        if let Err(e) = written {
            failed += 1;
            if !a.ignore_failure {
                log.warn(&format!(
                    "{}: setting {} = {}: {e}",
                    a.origin,
                    a.key.replace('/', "."),
                    a.value
                ));
            }
        }
    }
    if !assignments.is_empty() {
        log.info(&format!(
            "sysctl: {} settings applied, {failed} failed",
            assignments.len() - failed
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn maps_keys_like_sysctl_d() {
        assert_eq!(key_path("net.ipv4.ip_forward"), "net/ipv4/ip_forward");
        assert_eq!(key_path("kernel/domainname"), "kernel/domainname");
        assert_eq!(
            key_path("net.ipv4.conf.enp3s0/200.forwarding"),
            "net/ipv4/conf/enp3s0.200/forwarding"
        );
        assert_eq!(
            key_path("net/ipv4/conf/enp3s0.200/forwarding"),
            "net/ipv4/conf/enp3s0.200/forwarding"
        );
        assert_eq!(key_path("kernel"), "kernel");
    }

    #[test]
    fn applies_in_order_with_masking_and_last_wins() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for k in [
            "net/ipv4/ip_forward",
            "kernel/pid_max",
            "fs/protected_regular",
            "vm/swappiness",
        ] {
            put(root, &format!("proc/sys/{k}"), "0\n");
        }
        put(
            root,
            "usr/lib/sysctl.d/50-pid-max.conf",
            "kernel.pid_max = 4194304\n",
        );
        put(
            root,
            "usr/lib/sysctl.d/60-masked.conf",
            "vm.swappiness = 99\n",
        );
        put(
            root,
            "usr/lib/sysctl.d/99-protect.conf",
            "fs.protected_regular = 2\n",
        );
        put(
            root,
            "etc/sysctl.d/10-fwd.conf",
            "; comment\nnet.ipv4.ip_forward=1\nvm/swappiness = 10\n",
        );
        symlink("/dev/null", root.join("etc/sysctl.d/60-masked.conf")).unwrap();
        put(
            root,
            "run/sysctl.d/99-protect.conf",
            "fs.protected_regular = 1\n",
        );
        put(
            root,
            "etc/sysctl.conf",
            "# overrides everything\nkernel.pid_max = 65536\n",
        );
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        apply(root, &mut log);
        assert!(log.warnings().is_empty(), "{:?}", log.warnings());
        let read = |k: &str| fs::read_to_string(root.join("proc/sys").join(k)).unwrap();
        assert_eq!(read("net/ipv4/ip_forward"), "1\n");
        assert_eq!(read("vm/swappiness"), "10\n");
        assert_eq!(read("fs/protected_regular"), "1\n");
        assert_eq!(read("kernel/pid_max"), "65536\n");
        drop(log);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("sysctl: 4 settings applied, 0 failed"));
    }

    #[test]
    fn later_assignment_wins_and_moves_last() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        put(root, "etc/sysctl.d/a.conf", "a.b = 1\nc.d = 2\n");
        put(root, "etc/sysctl.d/b.conf", "a/b = 3\n");
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let got: Vec<(String, String, String)> = collect(root, &mut log)
            .into_iter()
            .map(|a| (a.key, a.value, a.origin))
            .collect();
        assert_eq!(
            got,
            [
                ("c/d".into(), "2".into(), "/etc/sysctl.d/a.conf:2".into()),
                ("a/b".into(), "3".into(), "/etc/sysctl.d/b.conf:1".into()),
            ]
        );
    }

    #[test]
    fn warns_for_failures_unless_dashed_and_for_globs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        put(
            root,
            "etc/sysctl.d/x.conf",
            "net.missing.key = 1\n-net.also.missing = 2\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.lo.rp_filter\nnot an assignment\n",
        );
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        apply(root, &mut log);
        let w = log.warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(
            w[0],
            "warning: /etc/sysctl.d/x.conf:3: sysctl key pattern net.ipv4.conf.*.rp_filter is not supported, ignoring"
        );
        assert_eq!(
            w[1],
            "warning: /etc/sysctl.d/x.conf:5: not a key = value assignment, ignoring"
        );
        assert!(
            w[2].starts_with(
                "warning: /etc/sysctl.d/x.conf:1: setting net.missing.key = 1: No such file"
            ),
            "{}",
            w[2]
        );
    }

    #[test]
    fn reads_sysctl_conf_once_when_linked() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        put(root, "etc/sysctl.conf", "a.b = 1\n");
        fs::create_dir_all(root.join("etc/sysctl.d")).unwrap();
        symlink("../sysctl.conf", root.join("etc/sysctl.d/99-sysctl.conf")).unwrap();
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let got = collect(root, &mut log);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].origin, "/etc/sysctl.d/99-sysctl.conf:1");
    }

    /// What Debian bookworm ships (systemd's 50-pid-max.conf, procps'
    /// 99-protect-links.conf and /etc/sysctl.conf with its 99-sysctl.conf
    /// link) applies without warnings.
    #[test]
    fn debian_corpus_applies_cleanly() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/early");
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("usr/lib/sysctl.d")).unwrap();
        fs::create_dir_all(root.join("etc/sysctl.d")).unwrap();
        for e in fs::read_dir(data.join("sysctl.d")).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), root.join("usr/lib/sysctl.d").join(e.file_name())).unwrap();
        }
        fs::copy(data.join("sysctl.conf"), root.join("etc/sysctl.conf")).unwrap();
        symlink("../sysctl.conf", root.join("etc/sysctl.d/99-sysctl.conf")).unwrap();
        let keys = [
            "kernel/pid_max",
            "fs/protected_fifos",
            "fs/protected_hardlinks",
            "fs/protected_regular",
            "fs/protected_symlinks",
        ];
        for k in keys {
            put(root, &format!("proc/sys/{k}"), "0\n");
        }
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        apply(root, &mut log);
        assert!(log.warnings().is_empty(), "{:?}", log.warnings());
        let values: Vec<String> = keys
            .iter()
            .map(|k| fs::read_to_string(root.join("proc/sys").join(k)).unwrap())
            .collect();
        assert_eq!(values, ["4194304\n", "1\n", "1\n", "2\n", "1\n"]);
    }
}
