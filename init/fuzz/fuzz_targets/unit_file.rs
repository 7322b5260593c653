//! A unit file and a drop-in, any bytes, through the unit loader (keel-units)
//! (`keel_units::load_one`: syntax, directives, specifiers, commands,
//! service and mount checks) from a real directory tree: nothing may panic.
//!
//! Input: one byte choosing the unit's name (and so its type, see
//! [`NAMES`]), the unit file, then optionally a NUL byte and a drop-in
//! (`NAME.d/fuzz.conf`). `scripts/fuzz.sh` seeds the corpus with the unit
//! files of `keel-units/tests/data/units` and `image-configs/*.tree`.
//!
//! Invariants checked besides "no panic":
//! - the parsed entries, written back as `[Section]` and `Key=value` lines,
//!   parse to the same entries (section, key, value), unless a value ends
//!   in a backslash (which the syntax cannot write without continuing);
//! - every warning names the unit file or the drop-in, at a line that file
//!   has.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use keel_units::{self as unit, syntax, MachineInfo};
use libfuzzer_sys::fuzz_target;

/// The unit name the first byte selects, and the file it is loaded from.
const NAMES: &[(&str, &str)] = &[
    ("fuzz.service", "fuzz.service"),
    ("fuzz@inst.service", "fuzz@.service"),
    ("var-lib-fuzz.mount", "var-lib-fuzz.mount"),
    ("dev-vdb.swap", "dev-vdb.swap"),
    ("fuzz.target", "fuzz.target"),
    ("fuzz.socket", "fuzz.socket"),
];

const UNIT_DIR: &str = "usr/lib/systemd/system";

/// One root per name below `$TMPDIR`, so a root only ever holds the files
/// of the current input (scripts/fuzz.sh points TMPDIR at a directory it
/// removes afterwards).
fn roots() -> &'static Vec<PathBuf> {
    static ROOTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("keel-fuzz-unit-file.{}", std::process::id()));
        NAMES
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let root = base.join(i.to_string());
                let dropins = root.join(UNIT_DIR).join(format!("{name}.d"));
                fs::create_dir_all(&dropins).expect("creating the fuzz root");
                root
            })
            .collect()
    })
}

fn render(entries: &[syntax::Entry]) -> String {
    let mut out = String::new();
    let mut section: Option<&str> = None;
    for e in entries {
        if section != Some(e.section.as_str()) {
            out.push_str(&format!("[{}]\n", e.section));
            section = Some(&e.section);
        }
        out.push_str(&format!("{}={}\n", e.key, e.value));
    }
    out
}

fn check_syntax(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let path = Path::new("/fuzz.service");
    let Ok(entries) = syntax::parse(path, text) else {
        return;
    };
    if entries.iter().any(|e| e.value.ends_with('\\')) {
        return;
    }
    let rendered = render(&entries);
    let again = syntax::parse(path, &rendered)
        .unwrap_or_else(|e| panic!("rendered entries do not parse: {e}\n{rendered}"));
    let key = |e: &syntax::Entry| (e.section.clone(), e.key.clone(), e.value.clone());
    assert_eq!(
        entries.iter().map(key).collect::<Vec<_>>(),
        again.iter().map(key).collect::<Vec<_>>(),
        "rendered:\n{rendered}"
    );
}

fn lines_of(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes).lines().count()
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (fragment, dropin) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], Some(&rest[nul + 1..])),
        None => (rest, None),
    };
    check_syntax(fragment);
    if let Some(d) = dropin {
        check_syntax(d);
    }

    let i = usize::from(pick) % NAMES.len();
    let (name, file) = NAMES[i];
    let root = &roots()[i];
    let dir = root.join(UNIT_DIR);
    let fragment_path = dir.join(file);
    let dropin_path = dir.join(format!("{name}.d/fuzz.conf"));
    fs::write(&fragment_path, fragment).expect("writing the unit file");
    match dropin {
        Some(d) => fs::write(&dropin_path, d).expect("writing the drop-in"),
        None => {
            let _ = fs::remove_file(&dropin_path);
        }
    }

    let machine = MachineInfo {
        hostname: "node1".into(),
        machine_id: "0123456789abcdef0123456789abcdef".into(),
    };
    match unit::load_one(root, &machine, name) {
        Ok((unit, warnings)) => {
            let _ = format!("{unit:?}");
            for w in &warnings {
                let _ = w.to_string();
                let lines = if w.file == fragment_path {
                    lines_of(fragment)
                } else if w.file == dropin_path {
                    lines_of(dropin.unwrap_or_default())
                } else {
                    panic!("warning about a file that was not loaded: {w}");
                };
                assert!(w.line <= lines, "warning beyond the end of its file: {w}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
