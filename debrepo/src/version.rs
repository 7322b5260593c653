//! Debian version comparison (the dpkg algorithm) and version relations.

use std::cmp::Ordering;

/// Compares two Debian versions `[epoch:]upstream[-revision]` the way
/// `dpkg --compare-versions` does. A missing or malformed epoch counts as 0.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

fn split(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
            (e.parse().unwrap_or(0), r)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(|c| c.is_ascii_digit());
    let nondigit = |s: &[u8], k: usize| s.get(k).is_some_and(|c| !c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while nondigit(a, i) || nondigit(b, j) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// A version relation operator of a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// `<<`
    Less,
    /// `<=` (and the obsolete `<`)
    LessEq,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    GreaterEq,
    /// `>>`
    Greater,
}

impl Relation {
    /// Parses an operator; `None` if it is not one.
    pub fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "<<" => Self::Less,
            "<=" | "<" => Self::LessEq,
            "=" => Self::Eq,
            ">=" | ">" => Self::GreaterEq,
            ">>" => Self::Greater,
            _ => return None,
        })
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Less => "<<",
            Self::LessEq => "<=",
            Self::Eq => "=",
            Self::GreaterEq => ">=",
            Self::Greater => ">>",
        }
    }

    /// Whether `version` stands in this relation to `wanted`.
    pub fn holds(self, version: &str, wanted: &str) -> bool {
        let ord = compare_versions(version, wanted);
        match self {
            Self::Less => ord == Ordering::Less,
            Self::LessEq => ord != Ordering::Greater,
            Self::Eq => ord == Ordering::Equal,
            Self::GreaterEq => ord != Ordering::Less,
            Self::Greater => ord == Ordering::Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn known_orderings() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-0", Equal),
            ("0:1.0", "1.0", Equal),
            ("1:1.0", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0.1", "1.0a", Greater),
            ("2.36-9+deb12u10", "2.36-9+deb12u9", Greater),
            ("1.2-3-4", "1.2-3", Greater),
            ("10", "9", Greater),
            ("1.001", "1.1", Equal),
            ("a", "B", Greater),
            ("1-1", "1-1~bpo1", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn relations() {
        assert!(Relation::parse(">=")
            .unwrap_or(Relation::Eq)
            .holds("2", "1"));
        assert!(Relation::Less.holds("1~", "1"));
        assert!(!Relation::Greater.holds("1", "1"));
        assert!(Relation::LessEq.holds("1", "1"));
        assert_eq!(Relation::parse("<"), Some(Relation::LessEq));
        assert_eq!(Relation::parse("!="), None);
    }
}
