//! Tests of the output pump and its line splitting.

use std::fs;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use super::pump::Splitter;
use super::*;

/// `(ident, text)` of every line in a log file's content.
fn entries(content: &str) -> Vec<(String, String)> {
    content
        .split_terminator('\n')
        .map(|l| {
            let (stamp, rest) = l.split_once(' ').unwrap();
            assert_eq!(stamp.len(), "1970-01-01T00:00:00.000Z".len(), "{l}");
            let (ident, text) = rest.split_once(": ").unwrap();
            (ident.to_string(), text.to_string())
        })
        .collect()
}

/// Feeds `input` through `pump` over a real pipe, in the given pieces, and
/// returns the log's entries and what was echoed.
fn pump_pieces(pieces: &[&[u8]], pid: u32) -> (Vec<(String, String)>, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(UnitLog::open(dir.path(), "svc.service", Rotation::default()).unwrap());
    let echoed = Arc::new(Mutex::new(Vec::<u8>::new()));
    let echo: Echo = Some(echoed.clone());
    let (reader, mut writer) = io::pipe().unwrap();
    let handle = pump(reader, Arc::clone(&log), pid, echo).unwrap();
    assert_eq!(handle.thread().name(), Some("log-svc.service"));
    for piece in pieces {
        writer.write_all(piece).unwrap();
    }
    drop(writer);
    handle.join().unwrap();
    let content = fs::read_to_string(dir.path().join("svc.service.log")).unwrap();
    let echoed = String::from_utf8(echoed.lock().unwrap().clone()).unwrap();
    (entries(&content), echoed)
}

fn texts(entries: &[(String, String)]) -> Vec<String> {
    entries.iter().map(|(_, t)| t.clone()).collect()
}

#[test]
fn pump_splits_lines_and_flushes_the_partial_last_one() {
    let (entries, echoed) = pump_pieces(&[b"one\ntw", b"o\n\nthree\r\nlast without newline"], 42);
    assert_eq!(
        texts(&entries),
        ["one", "two", "", "three", "last without newline"]
    );
    assert!(entries.iter().all(|(ident, _)| ident == "svc[42]"));
    assert_eq!(
        echoed,
        "svc[42]: one\nsvc[42]: two\nsvc[42]: \nsvc[42]: three\nsvc[42]: last without newline\n"
    );
}

#[test]
fn pump_replaces_invalid_utf8_and_only_a_trailing_cr() {
    let (entries, _) = pump_pieces(&[b"c\xffd\n", b"a\rb\r\r\n", b"\xe2\x82", b"\xac\n"], 1);
    assert_eq!(texts(&entries), ["c\u{fffd}d", "a\rb\r", "€"]);
}

#[test]
fn pump_splits_long_lines() {
    let long = "x".repeat(2 * MAX_LINE + 100);
    let (entries, _) = pump_pieces(&[long.as_bytes(), b"\nnext\n"], 1);
    let texts = texts(&entries);
    assert_eq!(texts.len(), 4);
    assert_eq!(texts[0].len(), MAX_LINE);
    assert_eq!(texts[1].len(), MAX_LINE);
    assert_eq!(texts[2], "x".repeat(100));
    assert_eq!(texts[3], "next");
    // Exactly MAX_LINE bytes (plus "\r\n") is still one line.
    let exact = format!("{}\r\n", "z".repeat(MAX_LINE));
    let (entries, _) = pump_pieces(&[exact.as_bytes()], 1);
    assert_eq!(self::texts(&entries), ["z".repeat(MAX_LINE)]);
}

#[test]
fn long_lines_are_split_between_characters() {
    // "é" is two bytes and would straddle the cut at MAX_LINE.
    let line = format!("{}éb\n", "a".repeat(MAX_LINE - 1));
    let (entries, _) = pump_pieces(&[line.as_bytes()], 1);
    assert_eq!(
        texts(&entries),
        ["a".repeat(MAX_LINE - 1), "éb".to_string()]
    );
    // Binary data without character boundaries is cut at MAX_LINE.
    let binary = vec![0x80u8; MAX_LINE + 1];
    let (entries, _) = pump_pieces(&[&binary], 1);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].1, "\u{fffd}".repeat(MAX_LINE));
    assert_eq!(entries[1].1, "\u{fffd}");
}

#[test]
fn splitter_gives_the_same_lines_whatever_the_chunking() {
    let input: Vec<u8> = [
        b"alpha\r\n".as_slice(),
        "é".repeat(MAX_LINE).as_bytes(),
        b"\n\nomega",
    ]
    .concat();
    let split = |chunk: usize| {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut s = Splitter::default();
        for piece in input.chunks(chunk) {
            s.push(piece, &mut |l| out.push(l.to_vec()));
        }
        s.finish(&mut |l| out.push(l.to_vec()));
        out
    };
    let whole = split(input.len());
    assert_eq!(
        whole.len(),
        5,
        "alpha, two halves of the é line, empty, omega"
    );
    assert_eq!(whole[0], b"alpha");
    assert_eq!(whole[1].len(), MAX_LINE);
    assert!(std::str::from_utf8(&whole[1]).is_ok());
    assert!(std::str::from_utf8(&whole[2]).is_ok());
    assert_eq!(whole[3], b"");
    assert_eq!(whole[4], b"omega");
    for chunk in [1, 2, 3, 7, 4096, 8193] {
        assert_eq!(split(chunk), whole, "chunks of {chunk}");
    }
}

/// Yields `data`, then fails.
struct Failing(Option<&'static [u8]>);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.take() {
            Some(data) => {
                buf[..data.len()].copy_from_slice(data);
                Ok(data.len())
            }
            None => Err(io::Error::other("device gone")),
        }
    }
}

#[test]
fn pump_notes_a_read_error_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(UnitLog::open(dir.path(), "svc.service", Rotation::default()).unwrap());
    pump(Failing(Some(b"half")), Arc::clone(&log), 5, None)
        .unwrap()
        .join()
        .unwrap();
    let content = fs::read_to_string(dir.path().join("svc.service.log")).unwrap();
    assert_eq!(
        entries(&content),
        [
            ("svc[5]".to_string(), "half".to_string()),
            (
                "svc".to_string(),
                "reading the output of pid 5: device gone".to_string()
            )
        ]
    );
}
