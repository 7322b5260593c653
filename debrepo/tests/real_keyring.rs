//! Verifies a real Debian InRelease against the real debian-archive-keyring,
//! which holds several keys, some of them expired. The InRelease is taken
//! at test time from apt's lists directory (public signed data that apt
//! itself verified); `make test` runs `apt-get update` through
//! scripts/install-deps.sh when the host lacks packages, and a Debian host
//! that can install packages has these files.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use debrepo::{load_keys, parse_date, verify_inrelease, Error, KeySet, Keyring};

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const LISTS: &str = "/var/lib/apt/lists";

/// The first InRelease in apt's lists signed for Debian, with its suite.
fn fixture() -> (String, String) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(LISTS)
        .unwrap_or_else(|e| panic!("{LISTS}: {e}: run `apt-get update`"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_InRelease"))
        .collect();
    names.sort();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        if field("Origin:").as_deref() == Some("Debian") {
            if let Some(suite) = field("Suite:") {
                return (text, suite);
            }
        }
    }
    panic!("no Debian InRelease in {LISTS}: run `apt-get update`");
}

/// A time shortly after the InRelease's Date, so the test does not depend on the clock.
fn fixture_time(text: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with("Date:")).unwrap();
    parse_date(&line["Date:".len()..]).unwrap() + 3600
}

fn keyring() -> KeySet {
    assert!(
        Path::new(KEYRING).exists(),
        "{KEYRING} is not installed (apt-get install debian-archive-keyring)"
    );
    load_keys(&[Keyring::File(PathBuf::from(KEYRING))]).unwrap()
}

#[test]
fn real_inrelease_verifies_with_real_keyring() {
    let keys = keyring();
    assert!(keys.len() >= 3, "expected several keys, got {}", keys.len());
    let (text, suite) = fixture();
    let r = verify_inrelease(&text, &keys, &suite, "file:///fixture", fixture_time(&text)).unwrap();
    assert!(r.codename.is_some());
    assert!(r.architectures.iter().any(|a| a == "amd64"));
    // The security archive lists its components as updates/main but keeps
    // the indexes under main/.
    assert!(r.components.iter().any(|c| c.ends_with("main")));
    assert!(r.sha256.contains_key("main/binary-amd64/Packages.xz"));
}

#[test]
fn real_inrelease_with_one_changed_byte_is_rejected() {
    let keys = keyring();
    let (text, suite) = fixture();
    let now = fixture_time(&text);
    let h = text.find("\nSHA256:\n ").unwrap() + "\nSHA256:\n ".len();
    let mut tampered = text.clone();
    // flip one hex digit of an index hash
    let flipped = if &text[h..h + 1] == "0" { "1" } else { "0" };
    tampered.replace_range(h..h + 1, flipped);
    let e = verify_inrelease(&tampered, &keys, &suite, "file:///fixture", now).unwrap_err();
    assert!(matches!(e, Error::Signature { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&suite) && msg.contains("file:///fixture"),
        "{msg}"
    );
}
