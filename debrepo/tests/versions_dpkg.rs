//! compare_versions against `dpkg --compare-versions` on real versions (from the
//! host's dpkg database) and hand-written tricky pairs.
#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;
use std::process::Command;

use debrepo::compare_versions;

fn dpkg(a: &str, op: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .status()
        .unwrap()
        .success()
}

fn dpkg_order(a: &str, b: &str) -> Ordering {
    if dpkg(a, "lt", b) {
        Ordering::Less
    } else if dpkg(a, "eq", b) {
        Ordering::Equal
    } else {
        Ordering::Greater
    }
}

const TRICKY: &[&str] = &[
    "1.0",
    "1.0-0",
    "0:1.0",
    "1:1.0",
    "1.0~rc1",
    "1.0~rc1-1",
    "1.0~~",
    "1.0~",
    "1.0+b1",
    "1.0a",
    "1.0.1",
    "1.00",
    "1.0-1",
    "1.0-1.1",
    "1.0-1~bpo12+1",
    "1.0-1+deb12u1",
    "1.0-10",
    "1.0-9",
    "2:0.1",
    "10",
    "9",
    "1.2.3a",
    "1.2.3+",
    "1.2.3.",
    "1.2.3-a",
    "1~",
    "1~~a",
    "0.0",
    "0",
    "a1",
    "1a1",
    "1.0+dfsg-1",
    "1.0~dfsg-1",
    "1.0ubuntu1",
    "1:9.2p1-2+deb12u10",
    "6.1.192-2",
    "6.1.0-56",
    "2.36-9+deb12u14",
    "3.0.22-1~deb12u2",
];

#[test]
fn matches_dpkg_on_200_plus_pairs() {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}\n"])
        .output()
        .unwrap();
    let mut real: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    real.sort();
    real.dedup();
    let mut pairs: Vec<(String, String)> = Vec::new();
    // neighbours in lexical order are close versions: good pairs
    for w in real.windows(2) {
        pairs.push((w[0].clone(), w[1].clone()));
    }
    for (i, a) in TRICKY.iter().enumerate() {
        for b in &TRICKY[i..] {
            pairs.push((a.to_string(), b.to_string()));
        }
        if let Some(r) = real.get(i * 7 % real.len().max(1)) {
            pairs.push((a.to_string(), r.clone()));
        }
    }
    assert!(pairs.len() >= 200, "only {} pairs", pairs.len());
    let mut bad = Vec::new();
    for (a, b) in &pairs {
        let want = dpkg_order(a, b);
        if compare_versions(a, b) != want || compare_versions(b, a) != want.reverse() {
            bad.push(format!("{a} vs {b}: dpkg says {want:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} pairs differ:\n{}",
        bad.len(),
        pairs.len(),
        bad.join("\n")
    );
    eprintln!("{} pairs agree with dpkg", pairs.len());
}
