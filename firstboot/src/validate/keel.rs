//! What Ignition accepts but Keel does not do. Each is an error, so a
//! config that asks for it fails validation instead of being half applied.

use ignition_config::v3_6::Resource;

use crate::config::Config;
use crate::report::{JsonPath, Report};
use crate::url;

/// Source schemes Keel fetches.
pub const SCHEMES: [&str; 3] = ["http", "https", "data"];
/// Kernel arguments that are Keel's contract between boot entry and
/// init; a config may not touch them.
pub const KEEL_KARGS: [&str; 2] = ["keel.slot", "keel.roothash"];
/// Filesystem formats Keel creates (`none`: leave the device alone).
pub const FORMATS: [&str; 5] = ["ext4", "xfs", "vfat", "swap", "none"];

fn source(report: &mut Report, at: JsonPath, r: &Resource) {
    let Some(s) = r.source.as_deref().filter(|s| !s.is_empty()) else {
        return;
    };
    let Ok(u) = url::parse(s) else { return };
    if !u.scheme.is_empty() && !SCHEMES.contains(&u.scheme.as_str()) {
        report.error(
            at.key("source"),
            format!(
                "{} sources are not supported by Keel (it fetches {})",
                u.scheme,
                SCHEMES.join(", ")
            ),
        );
    }
}

/// Keel's limits on `config` (the same for every spec version).
pub fn keel(config: &Config) -> Report {
    let mut r = Report::default();
    let root = JsonPath::root();
    let ig = root.key("ignition");
    if let Some(c) = &config.ignition.config {
        for (i, m) in c.merge.iter().flatten().enumerate() {
            source(&mut r, ig.key("config").key("merge").index(i), m);
        }
        if let Some(rep) = &c.replace {
            source(&mut r, ig.key("config").key("replace"), rep);
        }
    }
    let cas = config
        .ignition
        .security
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .and_then(|t| t.certificate_authorities.as_ref());
    for (i, ca) in cas.into_iter().flatten().enumerate() {
        let at = ig
            .key("security")
            .key("tls")
            .key("certificateAuthorities")
            .index(i);
        source(&mut r, at, ca);
    }
    if let Some(k) = &config.kernel_arguments {
        let ka = root.key("kernelArguments");
        for (list, args) in [
            ("shouldExist", &k.should_exist),
            ("shouldNotExist", &k.should_not_exist),
        ] {
            for (i, a) in args.iter().flatten().enumerate() {
                let name = a.split('=').next().unwrap_or_default();
                if KEEL_KARGS.contains(&name) {
                    r.error(
                        ka.key(list).index(i),
                        format!("{name} is Keel's own kernel argument (it selects and verifies the root); a config cannot set or remove it"),
                    );
                }
            }
        }
    }
    let Some(s) = &config.storage else { return r };
    let st = root.key("storage");
    for (i, f) in s.files.iter().flatten().enumerate() {
        let at = st.key("files").index(i);
        if let Some(c) = &f.contents {
            source(&mut r, at.key("contents"), c);
        }
        for (j, a) in f.append.iter().flatten().enumerate() {
            source(&mut r, at.key("append").index(j), a);
        }
    }
    for (i, fs) in s.filesystems.iter().flatten().enumerate() {
        if let Some(f) = fs.format.as_deref().filter(|f| !f.is_empty()) {
            let mounted = f != "swap" && f != "none";
            if let Some(path) = fs.path.as_deref().filter(|p| mounted && !p.is_empty()) {
                if let Some(what) = reserved_mount_point(path) {
                    r.error(
                        st.key("filesystems").index(i).key("path"),
                        format!(
                            "a file system cannot be mounted on {path} on Keel: that is {what}"
                        ),
                    );
                }
            }
            if !FORMATS.contains(&f) {
                r.error(
                    st.key("filesystems").index(i).key("format"),
                    format!(
                        "filesystem format {f} is not supported by Keel (it makes {})",
                        FORMATS.join(", ")
                    ),
                );
            }
        }
    }
    for i in 0..s.raid.as_ref().map_or(0, Vec::len) {
        r.error(st.key("raid").index(i), "RAID is not supported by Keel");
    }
    for i in 0..s.luks.as_ref().map_or(0, Vec::len) {
        r.error(st.key("luks").index(i), "LUKS is not supported by Keel");
    }
    r
}

/// Where Keel does not mount a file system, with why: the verified root,
/// the `/etc` overlay, the API file systems, and `/var` itself and Keel's
/// state in it (the `/etc` overlay's changes, the first-boot record).
fn reserved_mount_point(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    let within = |top: &str| path == top || path.starts_with(&format!("{top}/"));
    if path.is_empty() || within("/usr") {
        Some("the verified read-only root")
    } else if within("/etc") {
        Some("the /etc overlay")
    } else if ["/proc", "/sys", "/dev", "/run"].iter().any(|t| within(t)) {
        Some("an API file system")
    } else if path == "/var" || path == "/var/lib" || within("/var/lib/keel") {
        Some("Keel's var partition, which holds the /etc overlay and Keel's state (mount below it, e.g. /var/lib/containerd)")
    } else {
        None
    }
}
