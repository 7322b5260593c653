//! A node's first boot: find the config (kernel command line, QEMU
//! fw_cfg, the ESP), read and validate it, apply it to the root, and
//! record that it was applied, so that later boots never apply it again.
//!
//! Sources, in order (the first present wins):
//! 1. `ignition.config.url=` on the kernel command line: http, https or
//!    data URLs, or an absolute path on the node;
//! 2. QEMU's fw_cfg entry `opt/com.coreos/config`;
//! 3. a config file on the ESP, placed there when the image was built.
//!
//! None present is an empty config: nothing to apply, and the boot goes
//! on. Every path is given by the caller, so all of this runs on a
//! temporary directory in tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ignition_config::v3_6::Resource;
use sha2::{Digest, Sha256};

use crate::apply::{self, ApplyError, Fetch, Sys};
use crate::config::{self, ParseError};
use crate::report::Report;

/// Where success is recorded, below the root.
pub const STATE_FILE: &str = "var/lib/keel/firstboot.json";
/// The kernel command line key for the config URL.
pub const CMDLINE_KEY: &str = "ignition.config.url";
/// QEMU's fw_cfg entry for Ignition configs (as Fedora CoreOS reads it).
pub const FW_CFG_NAME: &str = "opt/com.coreos/config";
/// Where the kernel shows fw_cfg entries.
pub const FW_CFG_DIR: &str = "/sys/firmware/qemu_fw_cfg/by_name";
/// The config file's path on the ESP.
pub const ESP_CONFIG: &str = "keel/ignition.json";

/// Where to look for the config on this machine.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The kernel command line (`/proc/cmdline`'s text).
    pub cmdline: String,
    /// fw_cfg's `raw` file for [`FW_CFG_NAME`]
    /// (`/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw`).
    pub fw_cfg: PathBuf,
    /// The config file on the ESP.
    pub esp: PathBuf,
}

/// Where the config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Cmdline(String),
    FwCfg(PathBuf),
    Esp(PathBuf),
    None,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Cmdline(u) => write!(f, "{CMDLINE_KEY}={u}"),
            Origin::FwCfg(p) => write!(f, "fw_cfg {FW_CFG_NAME} ({})", p.display()),
            Origin::Esp(p) => write!(f, "ESP file {}", p.display()),
            Origin::None => f.write_str("no config"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("reading the config from {origin}: {reason}")]
    Source { origin: Origin, reason: String },
    #[error("config from {origin}: {source}")]
    Parse {
        origin: Origin,
        #[source]
        source: ParseError,
    },
    #[error("config from {origin} is invalid:\n{report}")]
    Invalid { origin: Origin, report: Report },
    #[error("applying the config from {origin}: {source}")]
    Apply {
        origin: Origin,
        #[source]
        source: Box<ApplyError>,
    },
    #[error("recording the first boot in {}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now (or nothing to apply); recorded in [`STATE_FILE`].
    Applied { origin: Origin, sha256: String },
    /// An earlier boot applied a config; nothing was done.
    AlreadyProvisioned,
}

/// The value of `key=` on a kernel command line (the last one wins).
fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .map(str::to_string)
}

/// Reads the config's bytes and says where they came from.
pub fn find(sources: &Sources, fetch: &dyn Fetch) -> Result<(Origin, Vec<u8>), ProvisionError> {
    if let Some(url) = cmdline_value(&sources.cmdline, CMDLINE_KEY) {
        let origin = Origin::Cmdline(url.clone());
        let bytes = if url.starts_with('/') {
            fs::read(&url).map_err(|e| e.to_string())
        } else {
            let r = Resource {
                source: Some(url.clone()),
                ..Resource::default()
            };
            fetch.get(&url, &r).map_err(|e| e.to_string())
        };
        return bytes
            .map(|b| (origin.clone(), b))
            .map_err(|reason| ProvisionError::Source { origin, reason });
    }
    for (path, origin) in [
        (&sources.fw_cfg, Origin::FwCfg(sources.fw_cfg.clone())),
        (&sources.esp, Origin::Esp(sources.esp.clone())),
    ] {
        match fs::read(path) {
            Ok(b) => return Ok((origin, b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ProvisionError::Source {
                    origin,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok((Origin::None, Vec::new()))
}

/// The first boot on `root`: unless [`STATE_FILE`] says it happened,
/// find, validate and apply the config, then record it. A failure leaves
/// no state file, so the next boot tries again from the start.
pub fn run(
    root: &Path,
    sources: &Sources,
    fetch: &dyn Fetch,
    sys: &dyn Sys,
) -> Result<Outcome, ProvisionError> {
    let state = root.join(STATE_FILE);
    if state.exists() {
        return Ok(Outcome::AlreadyProvisioned);
    }
    let (origin, bytes) = find(sources, fetch)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if origin != Origin::None {
        let parsed = config::parse(&bytes).map_err(|source| ProvisionError::Parse {
            origin: origin.clone(),
            source,
        })?;
        let report = crate::validate::validate(&parsed);
        if report.is_fatal() {
            return Err(ProvisionError::Invalid { origin, report });
        }
        apply::apply(root, &parsed.config, fetch, sys).map_err(|source| ProvisionError::Apply {
            origin: origin.clone(),
            source: Box::new(source),
        })?;
    }
    let record = serde_json::json!({
        "source": origin.to_string(),
        "sha256": sha256,
    });
    let err = |source| ProvisionError::State {
        path: state.clone(),
        source,
    };
    if let Some(dir) = state.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    // Written whole, then renamed: a crash leaves no half state file.
    let tmp = state.with_extension("json.tmp");
    fs::write(&tmp, format!("{record:#}\n")).map_err(err)?;
    fs::rename(&tmp, &state).map_err(err)?;
    Ok(Outcome::Applied { origin, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{InlineOnly, RecordingSys};

    fn sources(dir: &Path, cmdline: &str) -> Sources {
        Sources {
            cmdline: cmdline.to_string(),
            fw_cfg: dir.join("fw_cfg/raw"),
            esp: dir.join("esp/keel/ignition.json"),
        }
    }

    const CFG: &str = r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,provisioned"}}]}}"#;

    #[test]
    fn sources_in_order_and_none_is_an_empty_config() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let s = sources(d, "console=ttyS0");
        assert_eq!(find(&s, &InlineOnly).unwrap(), (Origin::None, Vec::new()));
        fs::create_dir_all(d.join("esp/keel")).unwrap();
        fs::write(&s.esp, "esp").unwrap();
        assert_eq!(find(&s, &InlineOnly).unwrap().0, Origin::Esp(s.esp.clone()));
        fs::create_dir_all(d.join("fw_cfg")).unwrap();
        fs::write(&s.fw_cfg, "fw").unwrap();
        assert_eq!(
            find(&s, &InlineOnly).unwrap(),
            (Origin::FwCfg(s.fw_cfg.clone()), b"fw".to_vec())
        );
        let local = d.join("local.ign");
        fs::write(&local, "local").unwrap();
        let s2 = sources(
            d,
            &format!("quiet ignition.config.url={} x", local.display()),
        );
        assert_eq!(find(&s2, &InlineOnly).unwrap().1, b"local");
        let s3 = sources(d, "ignition.config.url=data:,inline");
        assert_eq!(find(&s3, &InlineOnly).unwrap().1, b"inline");
        let s4 = sources(d, "ignition.config.url=/missing.ign");
        let e = find(&s4, &InlineOnly).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading the config from ignition.config.url=/missing.ign: "),
            "{e}"
        );
    }

    #[test]
    fn applied_once_then_never_again() {
        let t = tempfile::tempdir().unwrap();
        let (root, d) = (t.path().join("root"), t.path());
        fs::create_dir_all(&root).unwrap();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, CFG);
        let s = sources(d, &format!("ignition.config.url=data:;base64,{b64}"));
        let out = run(&root, &s, &InlineOnly, &RecordingSys::default()).unwrap();
        assert!(matches!(out, Outcome::Applied { .. }), "{out:?}");
        assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"provisioned");
        let state = fs::read_to_string(root.join(STATE_FILE)).unwrap();
        assert!(state.contains("\"sha256\""), "{state}");
        // A later boot changes nothing, even if the file was edited since.
        fs::write(root.join("etc/motd"), "edited").unwrap();
        assert_eq!(
            run(&root, &s, &InlineOnly, &RecordingSys::default()).unwrap(),
            Outcome::AlreadyProvisioned
        );
        assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"edited");
    }

    #[test]
    fn a_bad_config_fails_closed_and_is_tried_again_next_boot() {
        let t = tempfile::tempdir().unwrap();
        let (root, d) = (t.path().join("root"), t.path());
        fs::create_dir_all(&root).unwrap();
        let s = sources(d, "");
        fs::create_dir_all(d.join("fw_cfg")).unwrap();
        fs::write(
            &s.fw_cfg,
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/a"},{"path":"relative"}]}}"#,
        )
        .unwrap();
        let e = run(&root, &s, &InlineOnly, &RecordingSys::default()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("is invalid:\nerror at $.storage.files.1.path: path not absolute"),
            "{text}"
        );
        assert!(!root.join(STATE_FILE).exists());
        assert!(!root.join("etc/a").exists());
        fs::write(&s.fw_cfg, CFG).unwrap();
        assert!(matches!(
            run(&root, &s, &InlineOnly, &RecordingSys::default()).unwrap(),
            Outcome::Applied {
                origin: Origin::FwCfg(_),
                ..
            }
        ));
        assert!(root.join(STATE_FILE).exists());
    }

    #[test]
    fn no_config_is_recorded_too() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let out = run(
            &root,
            &sources(t.path(), ""),
            &InlineOnly,
            &RecordingSys::default(),
        )
        .unwrap();
        assert!(matches!(
            out,
            Outcome::Applied {
                origin: Origin::None,
                ..
            }
        ));
        assert!(root.join(STATE_FILE).exists());
    }
}
