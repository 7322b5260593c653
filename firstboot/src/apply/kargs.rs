//! `kernelArguments`: the booted entry's kernel command line, edited on
//! the ESP (Boot Loader Specification entry, its `options` lines).
//!
//! `shouldExist` arguments missing from the entry are appended in order;
//! every occurrence of a `shouldNotExist` argument is removed. Arguments
//! are compared whole (`quiet`, `console=ttyS0`), as Ignition does. The
//! new entry is computed before anything of the config is written and
//! put in place last (a new file, then renamed over the entry); a change
//! takes effect at the next boot, which the caller arranges.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ignition_config::v3_6::KernelArguments;

/// An entry to rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub entry: PathBuf,
    pub text: String,
}

fn args(list: &Option<Vec<String>>) -> &[String] {
    list.as_deref().unwrap_or_default()
}

/// Whether the config asks for any kernel argument change at all.
pub fn wanted(k: Option<&KernelArguments>) -> bool {
    k.is_some_and(|k| !args(&k.should_exist).is_empty() || !args(&k.should_not_exist).is_empty())
}

/// The options after the config's changes.
pub fn edit_options(options: &str, k: &KernelArguments) -> String {
    let remove = args(&k.should_not_exist);
    let mut out: Vec<&str> = options
        .split_whitespace()
        .filter(|a| !remove.iter().any(|r| r == a))
        .collect();
    for a in args(&k.should_exist) {
        if !out.contains(&a.as_str()) {
            out.push(a);
        }
    }
    out.join(" ")
}

/// Reads `entry` and returns its new text, or `None` when the entry
/// already has what the config asks for.
pub fn prepare(entry: &Path, k: &KernelArguments) -> Result<Option<Edit>, String> {
    let text =
        fs::read_to_string(entry).map_err(|e| format!("reading {}: {e}", entry.display()))?;
    let options: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("options"))
        .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
        .collect();
    if options.is_empty() {
        return Err(format!("{} has no options line", entry.display()));
    }
    let old = options.join(" ");
    let new = edit_options(&old, k);
    if new.split_whitespace().eq(old.split_whitespace()) {
        return Ok(None);
    }
    // One options line where the first was; the others go.
    let mut out = String::new();
    let mut written = false;
    for line in text.lines() {
        let is_options = line
            .trim_start()
            .strip_prefix("options")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if is_options {
            if !written {
                out.push_str("options ");
                out.push_str(&new);
                out.push('\n');
                written = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(Some(Edit {
        entry: entry.to_path_buf(),
        text: out,
    }))
}

/// Puts the new entry in place: written beside it, synced, renamed over
/// it, and the directory synced.
pub fn write(edit: &Edit) -> std::io::Result<()> {
    let tmp = edit.entry.with_extension("conf.keel-new");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(edit.text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    if let Err(e) = fs::rename(&tmp, &edit.entry) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = edit.entry.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(exist: &[&str], not: &[&str]) -> KernelArguments {
        KernelArguments {
            should_exist: Some(exist.iter().map(|s| s.to_string()).collect()),
            should_not_exist: Some(not.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn arguments_are_added_once_and_removed_everywhere() {
        let opts = "keel.slot=a keel.roothash=00 console=ttyS0 quiet panic=10 quiet";
        assert_eq!(
            edit_options(opts, &k(&["mitigations=off", "console=ttyS0"], &["quiet"])),
            "keel.slot=a keel.roothash=00 console=ttyS0 panic=10 mitigations=off"
        );
        assert!(!wanted(Some(&k(&[], &[]))));
        assert!(wanted(Some(&k(&[], &["quiet"]))));
        assert!(!wanted(None));
    }

    #[test]
    fn the_entry_is_rewritten_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("keel-1.0+2-1.conf");
        fs::write(
            &entry,
            "title Keel 1.0\nlinux /keel/1.0/vmlinuz\noptions keel.slot=a quiet\noptions panic=10\n",
        )
        .unwrap();
        assert_eq!(prepare(&entry, &k(&["quiet"], &["nosuch"])).unwrap(), None);
        let edit = prepare(&entry, &k(&["x=1"], &["quiet"])).unwrap().unwrap();
        assert_eq!(
            edit.text,
            "title Keel 1.0\nlinux /keel/1.0/vmlinuz\noptions keel.slot=a panic=10 x=1\n"
        );
        write(&edit).unwrap();
        assert_eq!(fs::read_to_string(&entry).unwrap(), edit.text);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        fs::write(&entry, "title no options\n").unwrap();
        let e = prepare(&entry, &k(&["x=1"], &[])).unwrap_err();
        assert!(e.ends_with("has no options line"), "{e}");
        let e = prepare(&dir.path().join("missing.conf"), &k(&["x"], &[])).unwrap_err();
        assert!(e.starts_with("reading "), "{e}");
    }
}
