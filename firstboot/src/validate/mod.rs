//! Validation before anything is fetched or written.
//!
//! [`ignition`] applies Ignition's own rules for the config's spec version
//! (the messages are Ignition's, so a report reads the same as
//! `ignition-validate`'s); [`keel`] adds what Keel does not support; and
//! [`validate`] is both, plus the parser's warnings. The deliberate
//! differences from Ignition are listed in docs/ignition.md.

mod keel;
mod resource;
mod storage;
pub(crate) mod systemd;

use std::collections::HashSet;

use crate::config::{Config, Parsed};
use crate::report::{JsonPath, Report};

pub use keel::keel;
pub use resource::url_problem;
pub use systemd::parse_unit;

/// Validation state: the spec version's minor number and the findings.
pub struct Ctx {
    pub minor: u64,
    pub report: Report,
}

impl Ctx {
    fn new(minor: u64) -> Self {
        Self {
            minor,
            report: Report::default(),
        }
    }

    pub fn error(&mut self, path: JsonPath, message: impl Into<String>) {
        self.report.error(path, message);
    }

    pub fn warning(&mut self, path: JsonPath, message: impl Into<String>) {
        self.report.warning(path, message);
    }

    /// `duplicate entry defined` at `list.N` for every entry whose key was
    /// seen before in the same list.
    pub fn dups(&mut self, list: &JsonPath, keys: impl IntoIterator<Item = String>) {
        let mut seen = HashSet::new();
        for (i, k) in keys.into_iter().enumerate() {
            if !seen.insert(k) {
                self.error(list.index(i), "duplicate entry defined");
            }
        }
    }
}

/// Ignition's rules for `config`, written for spec 3.`minor`.
pub fn ignition(config: &Config, minor: u64) -> Report {
    let mut cx = Ctx::new(minor);
    let root = JsonPath::root();
    storage::systemd_conflicts(&mut cx, config);
    ignition_section(&mut cx, config);
    if let Some(s) = &config.storage {
        storage::storage(&mut cx, &root.key("storage"), s);
    }
    if let Some(p) = &config.passwd {
        let path = root.key("passwd");
        if let Some(users) = &p.users {
            cx.dups(&path.key("users"), users.iter().map(|u| u.name.clone()));
            for (i, u) in users.iter().enumerate() {
                let up = path.key("users").index(i);
                if let Some(keys) = &u.ssh_authorized_keys {
                    cx.dups(&up.key("sshAuthorizedKeys"), keys.iter().cloned());
                }
                if let Some(groups) = &u.groups {
                    cx.dups(&up.key("groups"), groups.iter().cloned());
                }
            }
        }
        if let Some(groups) = &p.groups {
            cx.dups(&path.key("groups"), groups.iter().map(|g| g.name.clone()));
        }
    }
    if let Some(s) = &config.systemd {
        systemd::systemd(&mut cx, &root.key("systemd"), s);
    }
    if let Some(k) = &config.kernel_arguments {
        // shouldExist and shouldNotExist share one set of keys.
        let path = root.key("kernelArguments");
        let mut seen = HashSet::new();
        for (list, args) in [
            ("shouldExist", &k.should_exist),
            ("shouldNotExist", &k.should_not_exist),
        ] {
            for (i, a) in args.iter().flatten().enumerate() {
                if !seen.insert(a.clone()) {
                    cx.error(path.key(list).index(i), "duplicate entry defined");
                }
            }
        }
    }
    cx.report
}

fn ignition_section(cx: &mut Ctx, config: &Config) {
    let path = JsonPath::root().key("ignition");
    let ig = &config.ignition;
    if let Some(c) = &ig.config {
        let cp = path.key("config");
        if let Some(merge) = &c.merge {
            for (i, r) in merge.iter().enumerate() {
                let mp = cp.key("merge").index(i);
                if cx.minor >= 1 {
                    resource::required_source(cx, &mp, r);
                }
                resource::resource(cx, &mp, r, cx.minor >= 1);
            }
            cx.dups(
                &cp.key("merge"),
                merge.iter().map(|r| r.source.clone().unwrap_or_default()),
            );
        }
        if let Some(r) = &c.replace {
            resource::resource(cx, &cp.key("replace"), r, cx.minor >= 1);
        }
    }
    if let Some(p) = &ig.proxy {
        let pp = path.key("proxy");
        for (key, value, https) in [
            ("httpProxy", &p.http_proxy, false),
            ("httpsProxy", &p.https_proxy, true),
        ] {
            let Some(v) = value else { continue };
            match crate::url::parse(v) {
                Err(_) => cx.error(pp.key(key), resource::UNPARSABLE),
                Ok(u) if u.scheme != "http" && u.scheme != "https" => {
                    cx.error(pp.key(key), "proxies must be http(s)")
                }
                Ok(u) if https && u.scheme == "http" => cx.warning(
                    pp.key(key),
                    "insecure plaintext HTTP proxy specified for HTTPS resources",
                ),
                Ok(_) => {}
            }
        }
        if let Some(np) = &p.no_proxy {
            cx.dups(&pp.key("noProxy"), np.iter().cloned());
        }
    }
    if let Some(cas) = ig
        .security
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .and_then(|t| t.certificate_authorities.as_ref())
    {
        let cp = path
            .key("security")
            .key("tls")
            .key("certificateAuthorities");
        for (i, r) in cas.iter().enumerate() {
            let p = cp.index(i);
            if cx.minor >= 1 {
                resource::required_source(cx, &p, r);
                resource::resource(cx, &p, r, true);
            } else {
                // 3.0: the source is a plain string, checked even when empty.
                let s = r.source.as_deref().unwrap_or("");
                if let Some(problem) = url_problem(0, s) {
                    cx.error(p.key("source"), problem);
                }
                if let Some(v) = &r.verification {
                    resource::verification(cx, &p.key("verification"), v);
                }
            }
        }
        cx.dups(
            &cp,
            cas.iter().map(|r| r.source.clone().unwrap_or_default()),
        );
    }
}

/// Everything Keel checks before a first boot: the parser's warnings,
/// Ignition's rules, and Keel's own limits.
pub fn validate(parsed: &Parsed) -> Report {
    let mut report = ignition(&parsed.config, parsed.version.minor);
    report.merge(keel(&parsed.config));
    report.merge(parsed.report.clone());
    report
}
