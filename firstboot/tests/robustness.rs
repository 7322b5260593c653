//! Parsing and validation never panic: the corpus configs, mutated many
//! times over with a fixed seed — as bytes (flips, insertions, deletions,
//! splices of JSON tokens) for the parser, and as JSON trees (nodes
//! replaced, removed, duplicated) for validation — all go through `parse`
//! and `validate`. The
//! run is bounded and deterministic, so a failure reproduces; the input
//! that panicked is printed.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use keel_firstboot::{config, validate};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces that make mutations land on interesting JSON.
const TOKENS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "4294967296",
    "1e400",
    "\"\"",
    "\"/\"",
    "[]",
    "{}",
    "\"data:,x\"",
    "\"data:;base64,!!\"",
    "\"sha512-\"",
    "\"3.6.0\"",
    "\"\\u0000\"",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "\"mode\":",
    "\"path\":",
    "\"source\":",
    "\"name\":",
    "\"contents\":\"[Unit\"",
    "\"../..\"",
    "\"%zz\"",
    "\"\u{1F600}\"",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
            2 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            _ => {
                // Copy a slice of the input somewhere else.
                let from = rng.below(input.len());
                let len = rng.below(64).min(input.len() - from);
                let piece = input[from..from + len].to_vec();
                v.splice(at..at, piece);
            }
        }
    }
    v
}

/// A value to replace `old` with: mostly of the same JSON type, so that
/// the config still fits the schema and reaches validation.
fn replacement(rng: &mut Rng, old: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    if rng.below(5) == 0 {
        return value(rng);
    }
    loop {
        let v = value(rng);
        let same = matches!(
            (old, &v),
            (Value::String(_), Value::String(_))
                | (Value::Number(_), Value::Number(_))
                | (Value::Bool(_), Value::Bool(_))
                | (Value::Array(_), Value::Array(_))
                | (Value::Object(_), Value::Object(_))
                | (Value::Null, _)
        );
        if same {
            return v;
        }
    }
}

/// Values that replace a node of the JSON tree.
fn value(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    let strings = [
        "",
        "/",
        "/etc/x",
        "rel",
        "/a/../b",
        "data:,x",
        "data:",
        "http://10.0.2.2/x",
        "s3://b/k?versionId=",
        "arn:aws:s3:::b",
        "sha512-",
        "sha256-00",
        "a.service",
        "x@.service",
        "[Unit]",
        "[Install]\nWantedBy=a",
        "gzip",
        "ext4",
        "none",
        "raid1",
        "3.0.0",
        "\u{0}",
        "%zz",
        "ü",
    ];
    match rng.below(9) {
        0 => json!(null),
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(rng.below(0o20000)),
        4 => json!(-(rng.below(10) as i64)),
        5 | 6 => json!(strings[rng.below(strings.len())]),
        7 => json!([]),
        _ => json!({}),
    }
}

/// Replaces, removes or duplicates random nodes of `v`.
fn mutate_tree(rng: &mut Rng, v: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    match v {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = keys[rng.below(keys.len())].clone();
            match rng.below(5) {
                0 if k != "ignition" => {
                    map.remove(&k);
                }
                1 => {
                    let new = replacement(rng, &map[&k]);
                    map.insert(k, new);
                }
                _ if depth < 12 => mutate_tree(rng, map.get_mut(&k).unwrap(), depth + 1),
                _ => {}
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            match rng.below(4) {
                0 => items.push(items[i].clone()),
                1 => items[i] = replacement(rng, &items[i]),
                _ if depth < 12 => mutate_tree(rng, &mut items[i], depth + 1),
                _ => {}
            }
        }
        other => *other = replacement(rng, other),
    }
}

fn check(input: &[u8]) -> bool {
    let result = std::panic::catch_unwind(|| match config::parse(input) {
        Ok(p) => {
            let _ = validate::validate(&p).to_string();
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    });
    match result {
        Ok(parsed) => parsed,
        Err(_) => panic!(
            "parse/validate panicked on:\n{}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn configs_mutated_as_json_trees_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seeds: Vec<serde_json::Value> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| serde_json::from_slice(&fs::read(e.unwrap().path()).unwrap()).ok())
        .collect();
    seeds.sort_by_key(|v| v.to_string());
    let mut rng = Rng(0x6669_7273_7462_6f6f);
    let (mut parsed, mut total) = (0, 0);
    for _ in 0..150 {
        for seed in &seeds {
            let mut v = seed.clone();
            for _ in 0..=rng.below(3) {
                mutate_tree(&mut rng, &mut v, 0);
            }
            // Mostly keep the version, so that validation runs.
            if rng.below(10) != 0 {
                if let (Some(ig), Some(ver)) =
                    (v.get_mut("ignition"), seed["ignition"].get("version"))
                {
                    if let Some(o) = ig.as_object_mut() {
                        o.insert("version".into(), ver.clone());
                    }
                }
            }
            total += 1;
            parsed += usize::from(check(v.to_string().as_bytes()));
        }
    }
    // Most trees keep a valid version and reach validation.
    assert!(
        parsed * 2 > total,
        "only {parsed} of {total} mutated configs parsed"
    );
}

#[test]
fn mutated_configs_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seeds: Vec<Vec<u8>> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .filter(|s| !s.is_empty())
        .collect();
    seeds.sort();
    let mut rng = Rng(0x4b45_454c_f1f0_2026);
    let (mut parsed, mut total) = (0, 0);
    for _ in 0..60 {
        for seed in &seeds {
            let input = mutate(&mut rng, seed);
            total += 1;
            parsed += usize::from(check(&input));
        }
    }
    // Byte mutations mostly break the JSON, which is the point; some
    // still reach validation.
    assert!(
        parsed * 50 > total,
        "only {parsed} of {total} mutated configs parsed"
    );
}
