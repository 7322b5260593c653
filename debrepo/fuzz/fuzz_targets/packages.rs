//! Any text through debrepo's Packages index parser
//! (`debrepo::parse_packages`, with its Depends/Pre-Depends/Provides
//! parsers), and the text as one dependency field (`debrepo::parse_depends`):
//! nothing may panic.
//!
//! Invariants: every dependency group, written back as a control file has
//! it (`debrepo::group_to_string`), parses to the same group; a parsed
//! package has its required fields, a 64-digit lowercase SHA256 and a URL
//! below its mirror.
#![no_main]

use debrepo::{group_to_string, parse_depends, parse_packages, DepGroup};
use libfuzzer_sys::fuzz_target;

fn check_groups(groups: &[DepGroup]) {
    for g in groups {
        let text = group_to_string(g);
        let again = parse_depends(&text)
            .unwrap_or_else(|e| panic!("written group {text:?} does not parse: {e}"));
        assert_eq!(
            again.as_slice(),
            std::slice::from_ref(g),
            "written as {text:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_packages(
        text,
        "fuzz/Packages",
        "http://mirror.invalid/debian/",
        "fuzz",
    ) {
        Ok(packages) => {
            for p in &packages {
                for field in [&p.name, &p.version, &p.architecture, &p.filename] {
                    assert!(!field.is_empty());
                }
                assert_eq!(p.sha256.len(), 64);
                assert!(p.sha256.bytes().all(|c| !c.is_ascii_uppercase()));
                assert!(p.url().starts_with("http://mirror.invalid/debian/"));
                check_groups(&p.depends);
                check_groups(&p.pre_depends);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(groups) = parse_depends(text) {
        check_groups(&groups);
    }
});
