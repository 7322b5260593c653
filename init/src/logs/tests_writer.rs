//! Tests of file names, line format and rotation.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

/// The text of every line of `content` (what follows `<ident>: `).
fn texts(content: &str) -> Vec<String> {
    content
        .lines()
        .map(|l| {
            let (_, rest) = l.split_once(' ').unwrap();
            rest.split_once(": ").unwrap().1.to_string()
        })
        .collect()
}

fn umask() -> u32 {
    let status = read(Path::new("/proc/self/status"));
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

#[test]
fn line_format_with_pid() {
    let dir = tempfile::tempdir().unwrap();
    let log = UnitLog::open(dir.path(), "containerd.service", Rotation::default()).unwrap();
    let when = UNIX_EPOCH + Duration::from_millis(1_795_341_600_123);
    log.line_at(when, Some(245), "msg").unwrap();
    log.line_at(when + Duration::from_millis(1), Some(245), "two words")
        .unwrap();
    assert_eq!(
        read(&dir.path().join("containerd.service.log")),
        "2026-11-22T10:00:00.123Z containerd[245]: msg\n\
         2026-11-22T10:00:00.124Z containerd[245]: two words\n"
    );
    assert_eq!(log.path(), dir.path().join("containerd.service.log"));
    assert_eq!(log.unit(), "containerd.service");
}

#[test]
fn ident_without_pid_and_other_unit_types() {
    let dir = tempfile::tempdir().unwrap();
    let init = UnitLog::open(dir.path(), "keel-init", Rotation::default()).unwrap();
    assert_eq!(init.ident(None), "keel-init");
    assert_eq!(init.ident(Some(1)), "keel-init[1]");
    init.line_at(UNIX_EPOCH, None, "starting containerd.service")
        .unwrap();
    assert_eq!(
        read(&dir.path().join("keel-init.log")),
        "1970-01-01T00:00:00.000Z keel-init: starting containerd.service\n"
    );
    // Only ".service" is dropped from the ident.
    let mount = UnitLog::open(dir.path(), "var.mount", Rotation::default()).unwrap();
    assert_eq!(mount.ident(Some(7)), "var.mount[7]");
    let inst = UnitLog::open(dir.path(), "getty@tty1.service", Rotation::default()).unwrap();
    assert_eq!(inst.ident(Some(9)), "getty@tty1[9]");
}

#[test]
fn newlines_in_text_stay_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = UnitLog::open(dir.path(), "a.service", Rotation::default()).unwrap();
    log.line(None, "first\nsecond").unwrap();
    let content = read(&dir.path().join("a.service.log"));
    assert_eq!(content.split_terminator('\n').count(), 1);
    assert!(content.ends_with(" a: first second\n"), "{content}");
}

#[test]
fn line_uses_the_current_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = UnitLog::open(dir.path(), "a.service", Rotation::default()).unwrap();
    let before = civil::rfc3339_millis(std::time::SystemTime::now());
    log.line(Some(3), "now").unwrap();
    let after = civil::rfc3339_millis(std::time::SystemTime::now());
    let content = read(&dir.path().join("a.service.log"));
    let stamp = content.split(' ').next().unwrap();
    assert!(
        before.as_str() <= stamp && stamp <= after.as_str(),
        "{content}"
    );
}

#[test]
fn creates_dir_and_file_with_restricted_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("var/log/keel");
    let log = UnitLog::open(&dir, "a.service", Rotation::default()).unwrap();
    log.line(None, "x").unwrap();
    let mask = umask();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o750 & !mask);
    assert_eq!(mode(&tmp.path().join("var")), 0o750 & !mask);
    assert_eq!(mode(&dir.join("a.service.log")), 0o640 & !mask);
}

/// `count` lines of equal length: "line 00", "line 01", …
fn write_numbered(log: &UnitLog, count: usize) {
    for i in 0..count {
        log.line_at(UNIX_EPOCH, Some(1), &format!("line {i:02}"))
            .unwrap();
    }
}

/// Length of one line written by `write_numbered` for unit `u.service`.
const LINE_LEN: u64 = ("1970-01-01T00:00:00.000Z u[1]: line 00\n".len()) as u64;

#[test]
fn rotation_keeps_files_continuous_and_drops_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_bytes: 3 * LINE_LEN,
        keep: 3,
    };
    let log = UnitLog::open(dir.path(), "u.service", rotation).unwrap();
    write_numbered(&log, 20);
    let file = |suffix: &str| dir.path().join(format!("u.service.log{suffix}"));
    let lines = |suffix: &str| texts(&read(&file(suffix)));
    assert_eq!(lines(""), ["line 18", "line 19"]);
    assert_eq!(lines(".1"), ["line 15", "line 16", "line 17"]);
    assert_eq!(lines(".2"), ["line 12", "line 13", "line 14"]);
    assert_eq!(lines(".3"), ["line 09", "line 10", "line 11"]);
    assert!(!file(".4").exists());
    for suffix in ["", ".1", ".2", ".3"] {
        assert!(fs::metadata(file(suffix)).unwrap().len() <= rotation.max_bytes);
    }
}

#[test]
fn rotation_counts_what_the_file_already_holds() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_bytes: 3 * LINE_LEN,
        keep: 2,
    };
    write_numbered(
        &UnitLog::open(dir.path(), "u.service", rotation).unwrap(),
        2,
    );
    // A new UnitLog (init restarted) appends, and rotates after one more.
    let log = UnitLog::open(dir.path(), "u.service", rotation).unwrap();
    write_numbered(&log, 2);
    assert_eq!(
        texts(&read(&dir.path().join("u.service.log.1"))),
        ["line 00", "line 01", "line 00"]
    );
    assert_eq!(texts(&read(&dir.path().join("u.service.log"))), ["line 01"]);
}

#[test]
fn keep_zero_starts_the_file_over() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_bytes: 2 * LINE_LEN,
        keep: 0,
    };
    let log = UnitLog::open(dir.path(), "u.service", rotation).unwrap();
    write_numbered(&log, 5);
    assert_eq!(texts(&read(&dir.path().join("u.service.log"))), ["line 04"]);
    assert!(!dir.path().join("u.service.log.1").exists());
}

#[test]
fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_bytes: 50,
        keep: 3,
    };
    let log = UnitLog::open(dir.path(), "u.service", rotation).unwrap();
    let long = "y".repeat(100);
    log.line(None, "short").unwrap();
    log.line(None, &long).unwrap();
    log.line(None, "after").unwrap();
    assert_eq!(texts(&read(&dir.path().join("u.service.log.2"))), ["short"]);
    assert_eq!(texts(&read(&dir.path().join("u.service.log.1"))), [long]);
    assert_eq!(texts(&read(&dir.path().join("u.service.log"))), ["after"]);
}

#[test]
fn failed_rotation_still_writes_the_line_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_bytes: LINE_LEN,
        keep: 1,
    };
    let log = UnitLog::open(dir.path(), "u.service", rotation).unwrap();
    // A directory where the oldest rotated file goes cannot be removed.
    fs::create_dir(dir.path().join("u.service.log.1")).unwrap();
    write_numbered(&log, 1);
    let err = log
        .line_at(UNIX_EPOCH, Some(1), "line 01")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("removing") && err.contains("u.service.log.1"),
        "{err}"
    );
    assert_eq!(
        texts(&read(&dir.path().join("u.service.log"))),
        ["line 00", "line 01"]
    );
    // Once the obstacle is gone, the next line rotates.
    fs::remove_dir(dir.path().join("u.service.log.1")).unwrap();
    log.line_at(UNIX_EPOCH, Some(1), "line 02").unwrap();
    assert_eq!(
        texts(&read(&dir.path().join("u.service.log.1"))),
        ["line 00", "line 01"]
    );
    assert_eq!(texts(&read(&dir.path().join("u.service.log"))), ["line 02"]);
}

#[test]
fn concurrent_writers_never_interleave_or_lose_lines() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_bytes: 4096,
        keep: 1000,
    };
    let log = Arc::new(UnitLog::open(dir.path(), "u.service", rotation).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..250 {
                    log.line(Some(t), &format!("thread {t} line {i}")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut all = Vec::new();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let content = read(&entry.unwrap().path());
        assert!(content.len() as u64 <= rotation.max_bytes);
        all.extend(content.split_terminator('\n').map(str::to_string));
    }
    assert_eq!(all.len(), 1000);
    for t in 0..4 {
        for i in 0..250 {
            let want = format!(" u[{t}]: thread {t} line {i}");
            assert!(all.iter().any(|l| l.ends_with(&want)), "missing {want}");
        }
    }
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", ".", "..", "a/b", "../etc/passwd", "a\0b"] {
        match file_name(bad) {
            Err(LogError::BadName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(
        file_name("getty@tty1.service").unwrap(),
        "getty@tty1.service.log"
    );
    assert_eq!(file_name("a\\x2db.mount").unwrap(), "a\\x2db.mount.log");
    assert_eq!(file_name("...").unwrap(), "....log");
    let dir = tempfile::tempdir().unwrap();
    let err = UnitLog::open(dir.path(), "../x", Rotation::default()).unwrap_err();
    assert!(matches!(err, LogError::BadName { .. }), "{err:?}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(
        Rotation::default(),
        Rotation {
            max_bytes: 1 << 20,
            keep: 3
        }
    );
}

#[test]
fn a_log_deleted_by_hand_is_started_anew_at_the_next_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        max_bytes: 2 * LINE_LEN,
        keep: 3,
    };
    let log = UnitLog::open(dir.path(), "u.service", rotation).unwrap();
    write_numbered(&log, 1);
    fs::remove_file(log.path()).unwrap();
    write_numbered(&log, 2);
    assert_eq!(texts(&read(log.path())), ["line 01"]);
    assert!(!dir.path().join("u.service.log.1").exists());
}
