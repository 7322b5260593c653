//! Debian version comparison (`debrepo::compare_versions`, dpkg's
//! algorithm) and relations (`debrepo::Relation`) on any three strings
//! (the input split at NUL bytes): nothing may panic, and the order is a
//! total preorder:
//! - reflexive: `a == a`;
//! - antisymmetric: `cmp(a, b)` is the reverse of `cmp(b, a)`;
//! - transitive: `a <= b` and `b <= c` give `a <= c` (strict if either
//!   is), and `a == b` gives `cmp(a, c) == cmp(b, c)`;
//! - every relation (`<<`, `<=`, `=`, `>=`, `>>`) holds exactly when the
//!   comparison says so.
#![no_main]

use std::cmp::Ordering;

use debrepo::{compare_versions as cmp, Relation};
use libfuzzer_sys::fuzz_target;

fn check_relations(a: &str, b: &str) {
    let ord = cmp(a, b);
    for (op, expected) in [
        ("<<", ord == Ordering::Less),
        ("<=", ord != Ordering::Greater),
        ("<", ord != Ordering::Greater),
        ("=", ord == Ordering::Equal),
        (">=", ord != Ordering::Less),
        (">", ord != Ordering::Less),
        (">>", ord == Ordering::Greater),
    ] {
        let rel = Relation::parse(op).expect("a dpkg relation");
        assert_eq!(rel.holds(a, b), expected, "{a:?} {op} {b:?}");
        assert_eq!(Relation::parse(rel.as_str()), Some(rel));
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();
    let c = parts.next().unwrap_or_default();

    for v in [a, b, c] {
        assert_eq!(cmp(v, v), Ordering::Equal, "{v:?} against itself");
    }
    for (x, y) in [(a, b), (b, c), (a, c)] {
        assert_eq!(cmp(x, y), cmp(y, x).reverse(), "{x:?} against {y:?}");
        check_relations(x, y);
    }
    // Every order of the three, so each pair is tried as (x, y) and (y, z).
    for (x, y, z) in [
        (a, b, c),
        (a, c, b),
        (b, a, c),
        (b, c, a),
        (c, a, b),
        (c, b, a),
    ] {
        let (xy, yz, xz) = (cmp(x, y), cmp(y, z), cmp(x, z));
        if xy != Ordering::Greater && yz != Ordering::Greater {
            let expected = if xy == Ordering::Less || yz == Ordering::Less {
                Ordering::Less
            } else {
                Ordering::Equal
            };
            assert_eq!(xz, expected, "{x:?} <= {y:?} <= {z:?}");
        }
        if xy == Ordering::Equal {
            assert_eq!(xz, yz, "{x:?} == {y:?} but not against {z:?}");
        }
    }
});
