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

use ignition_config::v3_6::{Config, Resource};
use sha2::{Digest, Sha256};

use crate::apply::{self, ApplyError, Fetch, Sys};
use crate::config::{self, ParseError};
use crate::report::Report;

/// Where success is recorded, below the root.
pub const STATE_FILE: &str = keel_core::layout::FIRSTBOOT_STATE.split_at(1).1;
/// The kernel command line key for the config URL.
pub const CMDLINE_KEY: &str = "ignition.config.url";
/// QEMU's fw_cfg entry for Ignition configs (as Fedora CoreOS reads it).
pub const FW_CFG_NAME: &str = "opt/com.coreos/config";
/// Where the kernel shows fw_cfg entries.
pub const FW_CFG_DIR: &str = "/sys/firmware/qemu_fw_cfg/by_name";
/// The config file's path on the ESP.
pub const ESP_CONFIG: &str = keel_core::layout::ESP_IGNITION_CONFIG;

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
    /// A file given on the command line (`keel-firstboot apply`).
    File(PathBuf),
    None,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Cmdline(u) => write!(f, "{CMDLINE_KEY}={u}"),
            Origin::FwCfg(p) => write!(f, "fw_cfg {FW_CFG_NAME} ({})", p.display()),
            Origin::Esp(p) => write!(f, "ESP file {}", p.display()),
            Origin::File(p) => write!(f, "{}", p.display()),
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
    #[error("config from {origin}: {source}")]
    Reference {
        origin: Origin,
        #[source]
        source: RenderError,
    },
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
    /// `reboot`: the config changed the kernel command line, which only
    /// the next boot uses.
    Applied {
        origin: Origin,
        sha256: String,
        reboot: bool,
    },
    /// An earlier boot applied a config; nothing was done.
    AlreadyProvisioned,
}

/// Makes the fetcher for a config's references and resources: the
/// config's `ignition.timeouts` shape the network client (`None` for the
/// config itself, which is fetched with Ignition's defaults).
pub trait Fetchers {
    fn for_config(&self, config: Option<&Config>) -> Box<dyn Fetch + '_>;
}

impl Fetchers for apply::InlineOnly {
    fn for_config(&self, _config: Option<&Config>) -> Box<dyn Fetch + '_> {
        Box::new(apply::InlineOnly)
    }
}

/// The fetchers of a node (or of a tree being provisioned): http and
/// https with each config's `ignition.timeouts`, `ignition.proxy` and
/// `ignition.security.tls.certificateAuthorities`, the network brought up
/// on first need.
pub struct NodeFetchers {
    root: PathBuf,
    up: apply::NetworkUp,
}

/// Where a root keeps the CA bundle that the extra CAs are added to.
pub const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

impl NodeFetchers {
    /// `root` holds the CA bundle ([`CA_BUNDLE`]) trusted together with a
    /// config's CAs.
    pub fn new(root: &Path, up: apply::NetworkUp) -> Self {
        Self {
            root: root.to_path_buf(),
            up,
        }
    }

    fn client(&self, config: Option<&Config>) -> Result<apply::Client, (String, String)> {
        let mut client = apply::Client::default();
        let Some(config) = config else {
            return Ok(client);
        };
        if let Some(t) = &config.ignition.timeouts {
            let secs = |v: Option<i64>| {
                v.filter(|s| *s > 0)
                    .map(|s| std::time::Duration::from_secs(s.unsigned_abs()))
            };
            if let Some(d) = secs(t.http_response_headers) {
                client.response_headers = d;
            }
            client.total = secs(t.http_total);
        }
        if let Some(p) = &config.ignition.proxy {
            client.http_proxy = p.http_proxy.clone().filter(|s| !s.is_empty());
            client.https_proxy = p.https_proxy.clone().filter(|s| !s.is_empty());
            client.no_proxy = p.no_proxy.clone().unwrap_or_default();
        }
        let cas = config
            .ignition
            .security
            .as_ref()
            .and_then(|s| s.tls.as_ref())
            .and_then(|t| t.certificate_authorities.as_ref())
            .filter(|c| !c.is_empty());
        let Some(cas) = cas else { return Ok(client) };
        // The CAs themselves come with the client as it is so far.
        let plain = apply::Online {
            inner: apply::Network::with_client(6, std::time::Duration::from_secs(1), &client)
                .map_err(|e| ("$.ignition.proxy".to_string(), e))?,
            up: &self.up,
        };
        let mut roots = Vec::new();
        let bundle = self.root.join(CA_BUNDLE);
        match fs::read(&bundle) {
            Ok(text) => roots.extend(
                apply::fetch::pem_certificates(&text)
                    .map_err(|e| (bundle.display().to_string(), e))?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err((bundle.display().to_string(), e.to_string())),
        }
        for (i, ca) in cas.iter().enumerate() {
            let name = format!(
                "certificate authority {i} ({})",
                ca.source.as_deref().unwrap_or("")
            );
            let text = apply::fetch::resource(&plain, ca)
                .map_err(|e| (name.clone(), e.to_string()))?
                .unwrap_or_default();
            roots.extend(apply::fetch::pem_certificates(&text).map_err(|e| (name, e))?);
        }
        client.roots = Some(roots);
        Ok(client)
    }
}

impl Fetchers for NodeFetchers {
    fn for_config(&self, config: Option<&Config>) -> Box<dyn Fetch + '_> {
        let network = self.client(config).and_then(|client| {
            apply::Network::with_client(6, std::time::Duration::from_secs(1), &client)
                .map_err(|e| ("$.ignition.proxy".to_string(), e))
        });
        match network {
            Ok(inner) => Box::new(apply::Online {
                inner,
                up: &self.up,
            }),
            Err((url, reason)) => Box::new(apply::Failing { url, reason }),
        }
    }
}

/// How deep configs may reference configs (Ignition sets no bound; a
/// config that references itself would never end).
pub const MAX_DEPTH: usize = 10;

/// A referenced config (`ignition.config.merge` or `replace`) that could
/// not be used.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("referenced config {0}")]
    Fetch(#[from] apply::FetchError),
    #[error("referenced config {url}: {source}")]
    Parse {
        url: String,
        #[source]
        source: ParseError,
    },
    #[error("referenced config {url} is invalid:\n{report}")]
    Invalid { url: String, report: Report },
    #[error("referenced config {url}: configs reference configs more than {MAX_DEPTH} deep")]
    TooDeep { url: String },
}

/// Ignition's rendering: with `ignition.config.replace`, the referenced
/// config (rendered in turn) is the config; otherwise every config of
/// `ignition.config.merge` is fetched, rendered and merged in, in order
/// (see [`crate::merge`]). Each referenced config is verified
/// (`verification.hash`, over its decompressed bytes), parsed (any 3.x
/// version) and validated before it is used. Returns the config and
/// whether anything was referenced.
pub fn render(config: Config, fetchers: &dyn Fetchers) -> Result<(Config, bool), RenderError> {
    let referenced = config.ignition.config.as_ref().is_some_and(|c| {
        c.replace.as_ref().is_some_and(|r| r.source.is_some())
            || c.merge.as_ref().is_some_and(|m| !m.is_empty())
    });
    Ok((render_at(config, fetchers, 0)?, referenced))
}

fn render_at(config: Config, fetchers: &dyn Fetchers, depth: usize) -> Result<Config, RenderError> {
    let refs = config.ignition.config.clone().unwrap_or_default();
    let replace = refs.replace.filter(|r| r.source.is_some());
    let merges = refs.merge.unwrap_or_default();
    if replace.is_none() && merges.is_empty() {
        // No fetcher (its CAs may be fetched) for a config that names none.
        return Ok(config);
    }
    let fetch = fetchers.for_config(Some(&config));
    if let Some(replace) = replace {
        let child = referenced(&replace, fetch.as_ref(), depth)?;
        return render_at(child, fetchers, depth + 1);
    }
    let mut merged = config;
    for r in merges {
        let child = referenced(&r, fetch.as_ref(), depth)?;
        let child = render_at(child, fetchers, depth + 1)?;
        merged = crate::merge::merge(&merged, &child);
    }
    Ok(merged)
}

fn referenced(r: &Resource, fetch: &dyn Fetch, depth: usize) -> Result<Config, RenderError> {
    let url = r.source.clone().unwrap_or_default();
    if depth >= MAX_DEPTH {
        return Err(RenderError::TooDeep { url });
    }
    let bytes = apply::fetch::resource(fetch, r)?.unwrap_or_default();
    let parsed = config::parse(&bytes).map_err(|source| RenderError::Parse {
        url: url.clone(),
        source,
    })?;
    let report = crate::validate::validate(&parsed);
    if report.is_fatal() {
        return Err(RenderError::Invalid { url, report });
    }
    Ok(parsed.config)
}

/// A parsed and valid config made ready to apply: references rendered,
/// and the result validated again (as the newest spec) when there were
/// any, since merging two valid configs can make an invalid one.
pub fn prepare(
    origin: &Origin,
    parsed: config::Parsed,
    fetchers: &dyn Fetchers,
) -> Result<Config, ProvisionError> {
    let (config, referenced) =
        render(parsed.config, fetchers).map_err(|source| ProvisionError::Reference {
            origin: origin.clone(),
            source,
        })?;
    if referenced {
        let merged = config::Parsed {
            version: semver::Version::new(3, 6, 0),
            config,
            report: Report::default(),
        };
        let report = crate::validate::validate(&merged);
        if report.is_fatal() {
            return Err(ProvisionError::Invalid {
                origin: origin.clone(),
                report,
            });
        }
        return Ok(merged.config);
    }
    Ok(config)
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
            fs::File::open(&url)
                .and_then(apply::fetch::read_config)
                .map_err(|e| e.to_string())
        } else {
            let r = Resource {
                source: Some(url.clone()),
                ..Resource::default()
            };
            apply::fetch::bytes(fetch, &url, &r).map_err(|e| e.to_string())
        };
        return bytes
            .map(|b| (origin.clone(), b))
            .map_err(|reason| ProvisionError::Source { origin, reason });
    }
    for (path, origin) in [
        (&sources.fw_cfg, Origin::FwCfg(sources.fw_cfg.clone())),
        (&sources.esp, Origin::Esp(sources.esp.clone())),
    ] {
        match fs::File::open(path).and_then(apply::fetch::read_config) {
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
///
/// `node` has the booted boot entry that `kernelArguments` edit (or why
/// there is none) and the node's disks.
pub fn run(
    root: &Path,
    sources: &Sources,
    fetchers: &dyn Fetchers,
    sys: &dyn Sys,
    node: apply::Node<'_>,
) -> Result<Outcome, ProvisionError> {
    let state = root.join(STATE_FILE);
    if state.exists() {
        return Ok(Outcome::AlreadyProvisioned);
    }
    let (origin, bytes) = find(sources, fetchers.for_config(None).as_ref())?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let mut reboot = false;
    if origin != Origin::None {
        let parsed = config::parse(&bytes).map_err(|source| ProvisionError::Parse {
            origin: origin.clone(),
            source,
        })?;
        let report = crate::validate::validate(&parsed);
        if report.is_fatal() {
            return Err(ProvisionError::Invalid { origin, report });
        }
        let config = prepare(&origin, parsed, fetchers)?;
        let fetch = fetchers.for_config(Some(&config));
        reboot = apply::apply_node(root, &config, fetch.as_ref(), sys, node).map_err(|source| {
            ProvisionError::Apply {
                origin: origin.clone(),
                source: Box::new(source),
            }
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
    // Written whole, synced, then renamed and the directory synced: a
    // crash leaves no half state file, and once `run` returns the record
    // is on disk (a lost record would apply the config a second time).
    let tmp = state.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(format!("{record:#}\n").as_bytes())
            .map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    fs::rename(&tmp, &state).map_err(err)?;
    if let Some(dir) = state.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(Outcome::Applied {
        origin,
        sha256,
        reboot,
    })
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

    /// A run with the inline-only fetcher, in a tree without boot entry.
    fn provision(root: &Path, s: &Sources) -> Result<Outcome, ProvisionError> {
        run(
            root,
            s,
            &InlineOnly,
            &RecordingSys::default(),
            apply::Node {
                boot_entry: Err("no boot entry in tests"),
                storage: None,
            },
        )
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
        let out = provision(&root, &s).unwrap();
        assert!(matches!(out, Outcome::Applied { .. }), "{out:?}");
        assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"provisioned");
        let state = fs::read_to_string(root.join(STATE_FILE)).unwrap();
        assert!(state.contains("\"sha256\""), "{state}");
        // A later boot changes nothing, even if the file was edited since.
        fs::write(root.join("etc/motd"), "edited").unwrap();
        assert_eq!(provision(&root, &s).unwrap(), Outcome::AlreadyProvisioned);
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
        let e = provision(&root, &s).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("is invalid:\nerror at $.storage.files.1.path: path not absolute"),
            "{text}"
        );
        assert!(!root.join(STATE_FILE).exists());
        assert!(!root.join("etc/a").exists());
        fs::write(&s.fw_cfg, CFG).unwrap();
        assert!(matches!(
            provision(&root, &s).unwrap(),
            Outcome::Applied {
                origin: Origin::FwCfg(_),
                ..
            }
        ));
        assert!(root.join(STATE_FILE).exists());
    }

    fn data_url(text: &str) -> String {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
        format!("data:;base64,{b64}")
    }

    fn with_refs(kind: &str, child: &str, hash: Option<String>) -> String {
        let r = serde_json::json!({
            "source": data_url(child),
            "verification": {"hash": hash},
        });
        let refs = if kind == "merge" {
            serde_json::json!({"merge": [r]})
        } else {
            serde_json::json!({"replace": r})
        };
        serde_json::json!({
            "ignition": {"version": "3.2.0", "config": refs},
            "storage": {"files": [{"path": "/etc/parent", "contents": {"source": "data:,p"}}]}
        })
        .to_string()
    }

    fn provision_with(root: &Path, d: &Path, config: &str) -> Result<Outcome, ProvisionError> {
        provision(
            root,
            &sources(d, &format!("ignition.config.url={}", data_url(config))),
        )
    }

    #[test]
    fn merged_and_replacing_configs_are_verified_and_used() {
        use sha2::Sha512;
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let sha512 = |b: &str| Some(format!("sha512-{}", hex::encode(Sha512::digest(b))));

        let root = d.join("merged");
        fs::create_dir_all(&root).unwrap();
        provision_with(&root, d, &with_refs("merge", CFG, sha512(CFG))).unwrap();
        assert_eq!(fs::read(root.join("etc/parent")).unwrap(), b"p");
        assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"provisioned");

        let root = d.join("replaced");
        fs::create_dir_all(&root).unwrap();
        provision_with(&root, d, &with_refs("replace", CFG, None)).unwrap();
        assert!(!root.join("etc/parent").exists());
        assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"provisioned");

        // A wrong hash: nothing applied, nothing recorded.
        let root = d.join("wrong");
        fs::create_dir_all(&root).unwrap();
        let wrong = sha512("something else");
        let e = provision_with(&root, d, &with_refs("merge", CFG, wrong)).unwrap_err();
        assert!(
            e.to_string().contains("hash mismatch: expected sha512-"),
            "{e}"
        );
        assert!(!root.join("etc/parent").exists() && !root.join(STATE_FILE).exists());

        // An invalid child names itself and its problem.
        let bad = r#"{"ignition":{"version":"3.0.0"},"storage":{"files":[{"path":"x"}]}}"#;
        let e = provision_with(&root, d, &with_refs("merge", bad, None)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("referenced config data:;base64,")
                && text.contains("is invalid:\nerror at $.storage.files.0.path: path not absolute"),
            "{text}"
        );
        // So does a merge whose result is invalid: here a path that is a
        // file in the parent and a directory in the child is fine (the
        // child wins), but a file below a link is not.
        let child = r#"{"ignition":{"version":"3.0.0"},"storage":{"links":[{"path":"/etc","target":"/x"}]}}"#;
        let e = provision_with(&root, d, &with_refs("merge", child, None)).unwrap_err();
        assert!(e.to_string().contains("is invalid:"), "{e}");
        assert!(!root.join(STATE_FILE).exists());
    }

    #[test]
    fn a_config_that_references_itself_ends() {
        // A replace chain deeper than MAX_DEPTH.
        let mut config = CFG.to_string();
        for _ in 0..=MAX_DEPTH {
            config = serde_json::json!({
                "ignition": {"version": "3.6.0", "config": {"replace": {"source": data_url(&config)}}}
            })
            .to_string();
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let e = provision_with(&root, t.path(), &config).unwrap_err();
        assert!(e.to_string().contains("more than 10 deep"), "{e}");
    }

    #[test]
    fn no_config_is_recorded_too() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let out = provision(&root, &sources(t.path(), "")).unwrap();
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
