//! Keel's validation against the reference implementation: Debian's
//! `ignition-validate` (Ignition 2.14, specs 3.0.0–3.3.0) on every config
//! in tests/corpus/. The verdicts must agree, and so must the findings
//! that carry a JSON path (message and path; Ignition's line and column
//! are left out). Type and syntax errors are compared by verdict only:
//! their text is Go's or serde's.
//!
//! Keel's own limits (`validate::keel`) are not part of this comparison;
//! they are tested in tests/validate.rs.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_firstboot::config;
use keel_firstboot::validate;

const REFERENCE: &str = "ignition-validate";

/// Where Keel follows newer Ignition than Debian's 2.14 on purpose:
/// (corpus file, why).
const NEWER_THAN_REFERENCE: &[(&str, &str)] = &[(
    "bad-file-is-unit-3.3.json",
    "Ignition 2.15 made a file at a unit's path an error (path conflicts with systemd unit or dropin)",
)];

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() > 50, "corpus in {} is too small", dir.display());
    files
}

/// `error at $.a.0.b, line 1 col 2: message` → `error at $.a.0.b: message`;
/// lines without a JSON path are dropped.
fn normalize(line: &str) -> Option<String> {
    let (head, message) = line.split_once(": ")?;
    let (kind, at) = head.split_once(" at ")?;
    let path = at.split(", line ").next()?;
    path.starts_with('$')
        .then(|| format!("{kind} at {path}: {message}"))
}

struct Verdict {
    valid: bool,
    findings: BTreeSet<String>,
    text: String,
}

fn reference(file: &Path) -> Verdict {
    let out = Command::new(REFERENCE)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{REFERENCE}: {e} (install Debian's ignition package; scripts/install-deps.sh does)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Verdict {
        valid: out.status.success(),
        findings: text.lines().filter_map(normalize).collect(),
        text,
    }
}

fn keel(file: &Path) -> Verdict {
    let bytes = fs::read(file).unwrap();
    match config::parse(&bytes) {
        Err(e) => Verdict {
            valid: false,
            findings: normalize(&e.to_string()).into_iter().collect(),
            text: e.to_string(),
        },
        Ok(p) => {
            let mut report = validate::ignition(&p.config, p.version.minor);
            report.merge(p.report.clone());
            let text = report.to_string();
            Verdict {
                valid: !report.is_fatal(),
                findings: text.lines().filter_map(normalize).collect(),
                text,
            }
        }
    }
}

#[test]
fn verdicts_and_findings_match_ignition_validate() {
    let mut failures = Vec::new();
    let mut compared = 0;
    for file in corpus() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (r, k) = (reference(&file), keel(&file));
        if let Some((_, why)) = NEWER_THAN_REFERENCE.iter().find(|(n, _)| *n == name) {
            assert!(
                r.valid && !k.valid,
                "{name}: expected only Keel to refuse it ({why})\nignition-validate:\n{}\nkeel:\n{}",
                r.text,
                k.text
            );
            continue;
        }
        compared += 1;
        // The file name says what the config is meant to be.
        let meant_valid = name.starts_with("ok-");
        if r.valid != meant_valid {
            failures.push(format!(
                "{name}: ignition-validate says valid={}:\n{}",
                r.valid, r.text
            ));
        }
        if r.valid != k.valid {
            failures.push(format!(
                "{name}: verdicts differ (ignition-validate valid={}, keel valid={})\nignition-validate:\n{}\nkeel:\n{}",
                r.valid, k.valid, r.text, k.text
            ));
            continue;
        }
        // Findings with a JSON path must agree, unless the reference
        // failed on types (no path) before validating.
        if !r.findings.is_empty() && r.findings != k.findings {
            failures.push(format!(
                "{name}: findings differ\nignition-validate:\n{}\nkeel:\n{}",
                r.text, k.text
            ));
        }
    }
    assert!(compared > 50);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
