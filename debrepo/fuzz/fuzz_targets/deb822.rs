//! Any text through debrepo's deb822 parser (`debrepo::deb822::parse`, the
//! base of the Release and Packages parsers): nothing may panic.
//!
//! Invariant: the paragraphs, written back (`Name:value` per field, the
//! value's continuation lines as they are, a blank line between
//! paragraphs), parse to the same paragraphs with the same fields in the
//! same order; and `get` finds the first field of a name, whatever its case.
#![no_main]

use debrepo::deb822::{self, Paragraph};
use libfuzzer_sys::fuzz_target;

fn render(paragraphs: &[Paragraph<'_>]) -> String {
    let mut out = String::new();
    for (i, p) in paragraphs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (name, value) in p.fields() {
            out.push_str(name);
            out.push(':');
            out.push_str(value);
            out.push('\n');
        }
    }
    out
}

fn fields<'a>(p: &'a Paragraph<'_>) -> Vec<(&'a str, &'a str)> {
    p.fields().collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let paragraphs = match deb822::parse(text) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.line >= 1, "error at line 0: {e:?}");
            return;
        }
    };
    for p in &paragraphs {
        assert!(p.line >= 1);
        for (name, value) in p.fields() {
            assert!(!name.is_empty() && !name.contains(char::is_whitespace));
            // The first field of that name wins.
            let first = p.fields().find(|(n, _)| n.eq_ignore_ascii_case(name));
            assert_eq!(p.get(name), first.map(|(_, v)| v.trim()));
            let _ = value;
            assert!(p.lines(name).is_some());
        }
    }
    let rendered = render(&paragraphs);
    let again = deb822::parse(&rendered)
        .unwrap_or_else(|e| panic!("rendered paragraphs do not parse: {e:?}\n{rendered}"));
    assert_eq!(
        paragraphs.iter().map(fields).collect::<Vec<_>>(),
        again.iter().map(fields).collect::<Vec<_>>(),
        "rendered:\n{rendered}"
    );
});
