//! Applying a validated config to a target root (a directory: the node's
//! `/` at first boot, or an image tree at build time).
//!
//! Built: `storage.files`, `storage.directories` and `storage.links`
//! ([`nodes`]) with `data:`, http and https sources ([`fetch`]), `passwd`
//! ([`passwd`]), `systemd.units` ([`units`]) and, on a node,
//! `kernelArguments` ([`kargs`]), and, on a node, `storage.disks` and
//! `storage.filesystems` ([`storage`], [`disks`]). Everything is fetched
//! and every owner resolved before the first write, and a failure part
//! way restores the root ([`journal`]); partition tables and file systems
//! are made first and stay (see [`storage`]). RAID and LUKS are not
//! built: a config that asks for them is refused, naming the JSON path,
//! before anything is written.

pub mod contents;
pub mod disks;
pub mod fetch;
pub mod journal;
pub mod kargs;
pub mod network;
pub mod nodes;
pub mod passwd;
pub mod storage;
pub mod sys;
pub mod units;

use std::io;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::report::JsonPath;

pub use fetch::{Client, Failing, Fetch, FetchError, InlineOnly, Network, NetworkUp, Online};
pub use storage::{Storage, Tools};
pub use sys::{RealSys, RecordingSys, Sys};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path}: {what} is not supported by Keel")]
    NotBuilt { path: JsonPath, what: &'static str },
    #[error("{path}: {message}")]
    Config { path: JsonPath, message: String },
    /// Partitioning, making or mounting a file system failed. What the
    /// step made before stays (see [`storage`]); nothing else was written.
    #[error("{path}: {message}")]
    Storage { path: JsonPath, message: String },
    /// A partition table could not be made as asked (nothing was written
    /// to that disk).
    #[error(transparent)]
    Disk(#[from] disks::DiskError),
    /// The fetch error's message is complete: it is part of this one,
    /// not a source to print again after it.
    #[error("{path}: {error}")]
    Fetch { path: JsonPath, error: FetchError },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {message}{}", undo_note(undo))]
    Write {
        path: JsonPath,
        message: String,
        /// What could not be undone (empty: the root is as it was).
        undo: Vec<String>,
    },
    #[error("applied, but backups were left behind: {}", .0.join("; "))]
    Cleanup(Vec<String>),
}

fn undo_note(undo: &[String]) -> String {
    if undo.is_empty() {
        "; nothing was changed".into()
    } else {
        format!("; rolling back failed: {}", undo.join("; "))
    }
}

/// The parts of a config that cannot be applied yet, first one wins.
fn not_built(config: &Config) -> Option<ApplyError> {
    let root = JsonPath::root();
    let storage = config.storage.as_ref();
    let checks: [(bool, JsonPath, &'static str); 2] = [
        (
            storage.is_some_and(|s| s.raid.as_ref().is_some_and(|d| !d.is_empty())),
            root.key("storage").key("raid"),
            "storage.raid",
        ),
        (
            storage.is_some_and(|s| s.luks.as_ref().is_some_and(|d| !d.is_empty())),
            root.key("storage").key("luks"),
            "storage.luks",
        ),
    ];
    checks
        .into_iter()
        .find(|(hit, _, _)| *hit)
        .map(|(_, path, what)| ApplyError::NotBuilt { path, what })
}

/// Applies `config` (already validated) to `root`: everything is fetched
/// and checked first, then written; a failure part way puts the root back
/// as it was. A config with `kernelArguments`, disks or file systems is
/// refused: a tree has no boot entry and no disks of its own (see
/// [`apply_node`]).
pub fn apply(root: &Path, config: &Config, f: &dyn Fetch, sys: &dyn Sys) -> Result<(), ApplyError> {
    apply_limited(root, config, f, sys, contents::MAX_TOTAL)
}

/// [`apply`] with the fetched contents adding up to at most `max_fetched`
/// bytes (and half the free space where they are kept, see
/// [`contents::Budget`]) instead of [`contents::MAX_TOTAL`].
pub fn apply_limited(
    root: &Path,
    config: &Config,
    f: &dyn Fetch,
    sys: &dyn Sys,
    max_fetched: u64,
) -> Result<(), ApplyError> {
    let node = Node {
        boot_entry: Err("a directory tree has no boot entry to edit"),
        storage: None,
    };
    apply_node_limited(root, config, f, sys, node, max_fetched).map(|_| ())
}

/// What only a node has.
pub struct Node<'a> {
    /// The booted Boot Loader Specification entry, whose options
    /// `kernelArguments` edit, or why there is none.
    pub boot_entry: Result<&'a Path, &'a str>,
    /// The node's disks, for `storage.disks` and `storage.filesystems`
    /// (`None`: a directory tree, where they are refused).
    pub storage: Option<&'a dyn Storage>,
}

/// [`apply`] on a node. The boot entry is read and its new text made
/// before the first write, and put in place after everything else; if
/// that fails, the root is put back too. Disks are partitioned and file
/// systems made after everything is fetched and before the first file is
/// written; those with a `path` are mounted below `root` while the files
/// are written, and get a mount unit. Returns whether the kernel command
/// line changed (it takes effect at the next boot).
pub fn apply_node(
    root: &Path,
    config: &Config,
    f: &dyn Fetch,
    sys: &dyn Sys,
    node: Node<'_>,
) -> Result<bool, ApplyError> {
    apply_node_limited(root, config, f, sys, node, contents::MAX_TOTAL)
}

fn apply_node_limited(
    root: &Path,
    config: &Config,
    f: &dyn Fetch,
    sys: &dyn Sys,
    node: Node<'_>,
    max_fetched: u64,
) -> Result<bool, ApplyError> {
    if let Some(e) = not_built(config) {
        return Err(e);
    }
    let disks = match (storage::wanted(config), node.storage) {
        (false, _) => None,
        (true, None) => {
            return Err(ApplyError::Config {
                path: JsonPath::root().key("storage"),
                message: "disks and filesystems are applied only on a node at first boot (keel-firstboot run), not to a directory tree".into(),
            })
        }
        (true, Some(st)) => {
            storage::check(root, config)?;
            Some(st)
        }
    };
    let kargs_path = JsonPath::root().key("kernelArguments");
    let edit = match (&config.kernel_arguments, node.boot_entry) {
        (Some(k), entry) if kargs::wanted(Some(k)) => {
            let entry = entry.map_err(|why| ApplyError::Config {
                path: kargs_path.clone(),
                message: format!("kernel arguments cannot be applied: {why}"),
            })?;
            kargs::prepare(entry, k).map_err(|message| ApplyError::Config {
                path: kargs_path.clone(),
                message,
            })?
        }
        _ => None,
    };
    let mut entries = match &config.storage {
        Some(s) => nodes::prepare(s, f, &mut contents::Budget::for_root(root, max_fetched))?,
        None => Vec::new(),
    };
    let (mounted, mount_units) = match disks {
        Some(st) => (
            storage::apply(root, config, st)?,
            storage::mount_units(config),
        ),
        None => (storage::Mounted::default(), Vec::new()),
    };
    let mut journal = journal::Journal::default();
    let written =
        write_all(root, config, &mount_units, &mut entries, &mut journal, sys).and_then(|()| {
            match &edit {
                Some(e) => kargs::write(e).map_err(|err| {
                    (
                        kargs_path.clone(),
                        format!("writing {}: {err}", e.entry.display()),
                    )
                }),
                None => Ok(()),
            }
        });
    if let Err((path, message)) = written {
        let mut undo = journal.rollback(sys);
        if let Some(st) = disks {
            undo.extend(mounted.unmount(st));
        }
        return Err(ApplyError::Write {
            path,
            message,
            undo,
        });
    }
    let mut leftovers = journal.commit();
    if let Some(st) = disks {
        // Still mounted is no harm: the mount unit finds it mounted.
        for left in mounted.unmount(st) {
            st.log(&format!("warning: {left}"));
        }
    }
    if leftovers.is_empty() {
        Ok(edit.is_some())
    } else {
        leftovers.sort();
        Err(ApplyError::Cleanup(leftovers))
    }
}

/// The writing half of [`apply`], every change recorded in `journal`.
fn write_all(
    root: &Path,
    config: &Config,
    mount_units: &[(JsonPath, ignition_config::v3_6::Unit)],
    entries: &mut [nodes::Entry],
    journal: &mut journal::Journal,
    sys: &dyn Sys,
) -> Result<(), (JsonPath, String)> {
    // Accounts first, so that files can belong to the config's users.
    if let Some(p) = &config.passwd {
        passwd::apply(root, p, journal, sys)?;
    }
    nodes::resolve_owners(root, entries)?;
    nodes::write(root, entries, journal, sys)?;
    if config.systemd.is_some() || !mount_units.is_empty() {
        units::apply(root, config.systemd.as_ref(), mount_units, journal, sys)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> Config {
        crate::config::parse(json.as_bytes()).unwrap().config
    }

    #[test]
    fn what_is_not_built_is_refused_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        let c = parsed(
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/a"}],
                "luks":[{"name":"data","device":"/dev/vdb"}]}}"#,
        );
        let e = apply(root.path(), &c, &InlineOnly, &RecordingSys::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "$.storage.luks: storage.luks is not supported by Keel"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        // Disks and file systems are a node's, not a tree's.
        let c = parsed(
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/a"}],
                "filesystems":[{"device":"/dev/vdb","format":"ext4"}]}}"#,
        );
        let e = apply(root.path(), &c, &InlineOnly, &RecordingSys::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "$.storage: disks and filesystems are applied only on a node at first boot (keel-firstboot run), not to a directory tree"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        let c = parsed(
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/a","contents":{"source":"http://10.0.2.2/a"}}]}}"#,
        );
        let e = apply(root.path(), &c, &InlineOnly, &RecordingSys::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "$.storage.files.0.contents: http://10.0.2.2/a: only inline (data:) sources here, not http"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn kernel_arguments_edit_the_boot_entry_last_and_all_or_nothing() {
        let root = tempfile::tempdir().unwrap();
        let esp = tempfile::tempdir().unwrap();
        let entry = esp.path().join("keel-1.0+2-1.conf");
        let before = "title Keel\noptions keel.slot=a quiet\n";
        std::fs::write(&entry, before).unwrap();
        let c = parsed(
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/a","contents":{"source":"data:,a"}}]},
                "kernelArguments":{"shouldExist":["x=1"],"shouldNotExist":["quiet"]}}"#,
        );
        // In a tree, or without the entry, nothing is written.
        let e = apply(root.path(), &c, &InlineOnly, &RecordingSys::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "$.kernelArguments: kernel arguments cannot be applied: a directory tree has no boot entry to edit"
        );
        let missing = esp.path().join("gone.conf");
        let e = apply_node(
            root.path(),
            &c,
            &InlineOnly,
            &RecordingSys::default(),
            Node {
                boot_entry: Ok(&missing),
                storage: None,
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("$.kernelArguments: reading "),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);

        let changed = apply_node(
            root.path(),
            &c,
            &InlineOnly,
            &RecordingSys::default(),
            Node {
                boot_entry: Ok(&entry),
                storage: None,
            },
        )
        .unwrap();
        assert!(changed);
        assert_eq!(
            std::fs::read_to_string(&entry).unwrap(),
            "title Keel\noptions keel.slot=a x=1\n"
        );
        assert_eq!(std::fs::read(root.path().join("etc/a")).unwrap(), b"a");
        // Applied again, the entry has what it asks for: no change.
        let root2 = tempfile::tempdir().unwrap();
        let again = apply_node(
            root2.path(),
            &c,
            &InlineOnly,
            &RecordingSys::default(),
            Node {
                boot_entry: Ok(&entry),
                storage: None,
            },
        )
        .unwrap();
        assert!(!again);
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let what = if m.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(&p).unwrap().display())
                } else if m.is_dir() {
                    stack.push(p.clone());
                    "dir".into()
                } else {
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
                };
                out.push(format!(
                    "{} {what}",
                    p.strip_prefix(root).unwrap().display()
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_failure_late_in_the_units_puts_everything_back() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let sysd = r.join("etc/systemd/system");
        std::fs::create_dir_all(sysd.join("multi-user.target.wants")).unwrap();
        std::fs::write(
            sysd.join("old.service"),
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/etc/systemd/system/old.service",
            sysd.join("multi-user.target.wants/old.service"),
        )
        .unwrap();
        std::fs::write(r.join("etc/motd"), "before").unwrap();
        let before = listing(r);
        let c = parsed(
            r#"{"ignition":{"version":"3.3.0"},
                "storage":{"files":[{"path":"/etc/motd","overwrite":true,"contents":{"source":"data:,after"}},
                                    {"path":"/var/lib/new/file","contents":{"source":"data:,x"}}]},
                "systemd":{"units":[
                  {"name":"old.service","enabled":false},
                  {"name":"new.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"},
                  {"name":"missing.service","enabled":true}]}}"#,
        );
        let e = apply(r, &c, &InlineOnly, &RecordingSys::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "$.systemd.units.2.enabled: enabling missing.service: unit file missing.service does not exist; nothing was changed"
        );
        assert_eq!(listing(r), before);
        // Without the missing unit it all goes through.
        let c = parsed(
            r#"{"ignition":{"version":"3.3.0"},
                "storage":{"files":[{"path":"/etc/motd","overwrite":true,"contents":{"source":"data:,after"}}]},
                "systemd":{"units":[
                  {"name":"old.service","enabled":false},
                  {"name":"new.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}}"#,
        );
        apply(r, &c, &InlineOnly, &RecordingSys::default()).unwrap();
        let after = listing(r);
        assert!(after.contains(&"etc/motd after".to_string()), "{after:?}");
        assert!(after.contains(
            &"etc/systemd/system/multi-user.target.wants/new.service -> /etc/systemd/system/new.service"
                .to_string()
        ), "{after:?}");
        assert!(
            !after.iter().any(|l| l.contains("wants/old.service")),
            "{after:?}"
        );
        assert!(
            !after.iter().any(|l| l.contains(".keel-firstboot-")),
            "backups left: {after:?}"
        );
    }

    #[test]
    fn owners_go_through_sys_and_default_to_root() {
        let root = tempfile::tempdir().unwrap();
        let c = parsed(
            r#"{"ignition":{"version":"3.3.0"},"storage":{
                "files":[{"path":"/etc/x/f","user":{"id":7},"contents":{"source":"data:,hi"}}]}}"#,
        );
        let sys = RecordingSys::default();
        apply(root.path(), &c, &InlineOnly, &sys).unwrap();
        let calls = sys.calls.borrow();
        let rel: Vec<(String, u32, u32)> = calls
            .iter()
            .map(|(p, u, g)| {
                let p = p.strip_prefix(root.path()).unwrap().display().to_string();
                (p, *u, *g)
            })
            .collect();
        assert_eq!(
            rel,
            [
                ("etc".to_string(), 0, 0),
                ("etc/x".to_string(), 0, 0),
                ("etc/x/f".to_string(), 0, 0),
                ("etc/x/f".to_string(), 7, 0),
            ]
        );
        assert_eq!(std::fs::read(root.path().join("etc/x/f")).unwrap(), b"hi");
    }
}
