//! Tests of reading logs back: `tail` and `print` (with `follow`).

use std::fs;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::*;

fn texts(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().1.to_string())
        .collect()
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("line {i:02}")).collect()
}

const LINE_LEN: u64 = ("1970-01-01T00:00:00.000Z u[1]: line 00\n".len()) as u64;

/// Writes "line 00" .. in a log rotated every 3 lines, keeping 3 files.
fn rotated_log(dir: &std::path::Path, count: usize) {
    let rotation = Rotation {
        max_bytes: 3 * LINE_LEN,
        keep: 3,
    };
    let log = UnitLog::open(dir, "u.service", rotation).unwrap();
    for i in 0..count {
        log.line_at(UNIX_EPOCH, Some(1), &format!("line {i:02}"))
            .unwrap();
    }
}

#[test]
fn tail_reads_across_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    rotated_log(dir.path(), 20);
    // Files: .3 = 09..11, .2 = 12..14, .1 = 15..17, current = 18..19.
    let last = |n| texts(&tail(dir.path(), "u.service", n).unwrap());
    assert_eq!(last(0), Vec::<String>::new());
    assert_eq!(last(1), numbered(19..20));
    assert_eq!(last(2), numbered(18..20));
    assert_eq!(last(5), numbered(15..20));
    assert_eq!(last(9), numbered(11..20));
    assert_eq!(last(100), numbered(9..20));
    let full = tail(dir.path(), "u.service", 1).unwrap();
    assert_eq!(full, ["1970-01-01T00:00:00.000Z u[1]: line 19"]);
}

#[test]
fn tail_of_a_big_file_reads_it_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let log = UnitLog::open(dir.path(), "big.service", Rotation::default()).unwrap();
    for i in 0..5000 {
        log.line_at(
            UNIX_EPOCH,
            None,
            &format!("entry {i:04} {}", "-".repeat(i % 50)),
        )
        .unwrap();
    }
    assert!(fs::metadata(log.path()).unwrap().len() > 3 * 64 * 1024);
    let got = tail(dir.path(), "big.service", 4000).unwrap();
    assert_eq!(got.len(), 4000);
    for (k, line) in got.iter().enumerate() {
        let i = 1000 + k;
        assert!(
            line.ends_with(&format!(" big: entry {i:04} {}", "-".repeat(i % 50))),
            "{k}: {line}"
        );
    }
    assert_eq!(tail(dir.path(), "big.service", 2).unwrap(), got[3998..]);
}

#[test]
fn tail_of_an_empty_log_and_a_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    UnitLog::open(dir.path(), "e.service", Rotation::default()).unwrap();
    assert!(tail(dir.path(), "e.service", 10).unwrap().is_empty());
    fs::write(dir.path().join("p.service.log"), "a\nb\nhalf").unwrap();
    assert_eq!(tail(dir.path(), "p", 2).unwrap(), ["b", "half"]);
}

#[test]
fn unit_names_resolve_to_services() {
    let dir = tempfile::tempdir().unwrap();
    let write = |unit: &str, text: &str| {
        UnitLog::open(dir.path(), unit, Rotation::default())
            .unwrap()
            .line(None, text)
            .unwrap();
    };
    write("containerd.service", "from the service");
    assert_eq!(
        texts(&tail(dir.path(), "containerd", 5).unwrap()),
        ["from the service"]
    );
    assert_eq!(
        texts(&tail(dir.path(), "containerd.service", 5).unwrap()),
        ["from the service"]
    );
    // An exact match wins over the ".service" guess.
    write("keel-init", "init");
    write("keel-init.service", "not init");
    assert_eq!(texts(&tail(dir.path(), "keel-init", 5).unwrap()), ["init"]);

    let err = tail(dir.path(), "sshd", 5).unwrap_err();
    assert!(matches!(&err, LogError::NoLog { unit, .. } if unit == "sshd"));
    let msg = err.to_string();
    assert!(
        msg.contains("sshd") && msg.contains(&dir.path().display().to_string()),
        "{msg}"
    );
    let mut out = Vec::new();
    let err = print(dir.path(), "sshd", 5, false, &mut out, &|| true).unwrap_err();
    assert!(matches!(err, LogError::NoLog { .. }), "{err:?}");
    let missing_dir = dir.path().join("nowhere");
    assert!(matches!(
        tail(&missing_dir, "containerd", 1),
        Err(LogError::NoLog { .. })
    ));
}

#[test]
fn bad_names_are_refused_when_reading() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("..log"), "x\n").unwrap();
    for bad in ["", ".", "..", "../u.service", "a\0b"] {
        assert!(
            matches!(tail(dir.path(), bad, 1), Err(LogError::BadName { .. })),
            "{bad:?}"
        );
        let mut out = Vec::new();
        assert!(
            matches!(
                print(dir.path(), bad, 1, false, &mut out, &|| true),
                Err(LogError::BadName { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn print_without_follow_prints_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    rotated_log(dir.path(), 20);
    let mut out = Vec::new();
    let stop_called = AtomicBool::new(false);
    print(dir.path(), "u", 4, false, &mut out, &|| {
        stop_called.store(true, Ordering::SeqCst);
        true
    })
    .unwrap();
    let want: String = tail(dir.path(), "u", 4)
        .unwrap()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(String::from_utf8(out).unwrap(), want);
    assert!(!stop_called.load(Ordering::SeqCst));
}

/// A writer the test can look into while `print` owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lines(&self) -> Vec<String> {
        let data = self.0.lock().unwrap();
        String::from_utf8(data.clone())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn print_follows_the_log_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    // About 10 lines per file; 5 rotated files are kept, so the follower
    // keeps up unless it sleeps for several seconds.
    let rotation = Rotation {
        max_bytes: 10 * LINE_LEN,
        keep: 5,
    };
    let log = Arc::new(UnitLog::open(dir.path(), "u.service", rotation).unwrap());
    for i in 0..5 {
        log.line_at(UNIX_EPOCH, Some(1), &format!("line {i:02}"))
            .unwrap();
    }
    const TOTAL: usize = 100;
    let writer = {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            // Let `print` show the tail first.
            thread::sleep(Duration::from_millis(300));
            for i in 5..TOTAL {
                log.line_at(UNIX_EPOCH, Some(1), &format!("line {i:02}"))
                    .unwrap();
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let out = Shared::default();
    let seen = out.clone();
    let started = Instant::now();
    let mut sink = out;
    print(dir.path(), "u", 2, true, &mut sink, &|| {
        seen.lines().len() >= TOTAL - 3 || started.elapsed() > Duration::from_secs(5)
    })
    .unwrap();
    writer.join().unwrap();
    // The tail (03, 04), then every new line once, in order.
    assert_eq!(texts(&seen.lines()), numbered(3..TOTAL));
    assert!(dir.path().join("u.service.log.5").exists());
}

#[test]
fn print_follows_a_file_truncated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.service.log");
    fs::write(&path, "old 1\nold 2\nold 3\n").unwrap();
    let out = Shared::default();
    let seen = out.clone();
    let writer = {
        let path = path.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            fs::write(&path, "new\n").unwrap();
        })
    };
    let started = Instant::now();
    let mut sink = out;
    print(dir.path(), "t", 1, true, &mut sink, &|| {
        seen.lines().len() >= 2 || started.elapsed() > Duration::from_secs(5)
    })
    .unwrap();
    writer.join().unwrap();
    assert_eq!(seen.lines(), ["old 3", "new"]);
}

#[test]
fn print_catches_up_after_several_rotations_between_polls() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_bytes: 10 * LINE_LEN,
        keep: 5,
    };
    let log = UnitLog::open(dir.path(), "u.service", rotation).unwrap();
    let write = |range: std::ops::Range<usize>| {
        for i in range {
            log.line_at(UNIX_EPOCH, Some(1), &format!("line {i:02}"))
                .unwrap();
        }
    };
    write(0..3);
    // `stop` runs between two polls: the test writes from there, so what
    // happens between polls is exact. First 35 lines (3 rotations, the
    // file being followed ends up as .3), then 12 more (1 rotation).
    let calls = Mutex::new(0);
    let mut out = Vec::new();
    print(dir.path(), "u", 1, true, &mut out, &|| {
        let mut calls = calls.lock().unwrap();
        *calls += 1;
        match *calls {
            1 => write(3..38),
            2 => write(38..50),
            _ => return true,
        }
        false
    })
    .unwrap();
    let lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(texts(&lines), numbered(2..50));
}
