use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use super::super::accounts::Accounts;
use super::super::Log;
use super::parse::{decode_base64, extract_word, parse_line, unescape};
use super::*;

const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";
const BOOT_ID: &str = "fedcba9876543210fedcba9876543210";

fn spec() -> Specifiers {
    Specifiers {
        machine_id: Some(MACHINE_ID.into()),
        boot_id: Some(BOOT_ID.into()),
        hostname: "node1.example.com".into(),
        kernel_release: Some("6.1.0-test".into()),
    }
}

/// A root with users, groups and the usual top-level directories.
fn system() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for d in [
        "etc",
        "run",
        "tmp",
        "var/tmp",
        "var/lib",
        "usr/lib/tmpfiles.d",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998::/:/usr/sbin/nologin\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/group"),
        "root:x:0:\nutmp:x:43:\nsystemd-journal:x:999:\nsystemd-network:x:998:\n",
    )
    .unwrap();
    t
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// Applies with the test specifiers; returns (warnings, everything printed).
fn run(root: &Path) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut log = Log::new(&mut out);
    apply(root, &spec(), &mut log);
    let w = log.into_warnings();
    (w, String::from_utf8(out).unwrap())
}

/// Applies one /etc/tmpfiles.d/test.conf; returns the warnings.
fn run_conf(root: &Path, conf: &str) -> Vec<String> {
    put(root, "etc/tmpfiles.d/test.conf", conf);
    run(root).0
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn parse(line: &str) -> (Result<Option<Item>, String>, Vec<String>) {
    let mut out = Vec::new();
    let mut log = Log::new(&mut out);
    let accounts = Accounts {
        users: super::super::accounts::parse_passwd("daemon:x:1:1::/:/bin/false\n"),
        groups: super::super::accounts::parse_group("adm:x:4:\n"),
    };
    let r = parse_line(line, "/x.conf:1", &spec(), &accounts, &mut log);
    (r, log.into_warnings())
}

fn item(line: &str) -> Item {
    let (r, w) = parse(line);
    assert!(w.is_empty(), "{w:?}");
    r.unwrap().unwrap()
}

#[test]
fn splits_fields_with_quotes_and_escapes() {
    let (w, rest) = extract_word("  \"a b\"c\\x41 next").unwrap().unwrap();
    assert_eq!(w, b"a bcA");
    assert_eq!(rest, " next");
    let (w, _) = extract_word("'it\\'s'").unwrap().unwrap();
    assert_eq!(w, b"it's");
    assert!(extract_word("\"open").is_err());
    assert!(extract_word("   ").unwrap().is_none());
    assert_eq!(
        unescape("a\\tb\\n\\101\\u00e9\\s").unwrap(),
        "a\tb\nA\u{e9} ".as_bytes()
    );
    assert!(unescape("\\q").is_err());
    assert!(unescape("\\x4").is_err());
}

#[test]
fn parses_paths_and_arguments_like_systemd() {
    let i = item("f \"/run/with space\" 0600 daemon adm - hello world");
    assert_eq!(i.path, "/run/with space");
    assert_eq!(i.argument.as_deref(), Some(&b"hello world"[..]));
    assert_eq!((i.uid.unwrap().id, i.gid.unwrap().id), (1, 4));
    assert_eq!(i.mode.unwrap().bits, 0o600);
    // The argument is not unquoted (tmpfiles.d(5)), but C escapes work.
    let i = item("f /run/a - - - - \" foo bar \"");
    assert_eq!(i.argument.as_deref(), Some(&b"\" foo bar \""[..]));
    let i = item("f /run/a - - - - \\x20foo\\nbar");
    assert_eq!(i.argument.as_deref(), Some(&b" foo\nbar"[..]));
    let i = item("w /run/a\\x2db - - - - x");
    assert_eq!(i.path, "/run/a-b");
    let i = item("d //run/./x/ - - - -");
    assert_eq!(i.path, "/run/x");
    assert_eq!(i.argument, None);
}

#[test]
fn expands_specifiers() {
    let i = item("f /var/log/journal/%m/%b - - - - %H %l %v %%");
    assert_eq!(i.path, format!("/var/log/journal/{MACHINE_ID}/{BOOT_ID}"));
    assert_eq!(
        i.argument.as_deref(),
        Some(&b"node1.example.com node1 6.1.0-test %"[..])
    );
    let i = item("L %t/x - - - - %T:%V:%S:%C:%L:%h:%u:%U");
    assert_eq!(i.path, "/run/x");
    assert_eq!(
        i.argument.as_deref(),
        Some(&b"/tmp:/var/tmp:/var/lib:/var/cache:/var/log:/root:root:0"[..])
    );
    assert_eq!(parse("d /run/%q").0.unwrap_err(), "unknown specifier %q");
    let mut out = Vec::new();
    let mut log = Log::new(&mut out);
    let none = Specifiers::default();
    let e = parse_line("d /run/%m", "/x:1", &none, &Accounts::default(), &mut log).unwrap_err();
    assert_eq!(e, "specifier %m is unresolvable: no machine ID");
}

#[test]
fn parses_modifiers_modes_and_owners() {
    let i = item("f+!- /run/a ~0644 :daemon :adm 10d x");
    assert!(i.force && i.allow_failure);
    assert_eq!(
        i.mode,
        Some(Mode {
            bits: 0o644,
            masked: true,
            create_only: false
        })
    );
    assert!(i.uid.unwrap().create_only && i.gid.unwrap().create_only);
    assert_eq!(i.age.as_deref(), Some("10d"));
    assert!(item("d /run/a :0700 - - -").mode.unwrap().create_only);
    assert_eq!(item("d /run/a - - - bmA:1h").age.as_deref(), Some("bmA:1h"));
    assert_eq!(item("m /run/a 0600").kind, 'z');
    assert_eq!(item("F /run/a").kind, 'F');

    assert_eq!(
        parse("d /run/a 0999").0.unwrap_err(),
        "invalid mode \"0999\""
    );
    assert_eq!(
        parse("d /run/a - - - soon").0.unwrap_err(),
        "invalid age \"soon\""
    );
    assert_eq!(
        parse("d+? /run/a").0.unwrap_err(),
        "unknown modifier '?' in type 'd+?'"
    );
    assert_eq!(
        parse("d++ /run/a").0.unwrap_err(),
        "modifier '+' given twice in type 'd++'"
    );
    assert_eq!(
        parse("d run/a").0.unwrap_err(),
        "path \"run/a\" is not absolute"
    );
    assert_eq!(
        parse("d").0.unwrap_err(),
        "syntax error: a line needs at least a type and a path"
    );
    assert_eq!(parse("Y /run/a").0.unwrap_err(), "unknown type 'Y'");
    assert_eq!(parse("w /run/a").0.unwrap_err(), "w lines need an argument");
    for t in ["C", "p", "c", "b", "t", "T", "h", "H", "a+", "A"] {
        let k = t.chars().next().unwrap();
        assert_eq!(
            parse(&format!("{t} /run/a - - - - x")).0.unwrap_err(),
            format!("tmpfiles type '{k}' is not supported")
        );
    }
    // Lines that do nothing at boot.
    assert_eq!(parse("x /tmp/a*").0.unwrap(), None);
    assert_eq!(parse("X /tmp/a").0.unwrap(), None);
    assert_eq!(parse("f^ /etc/motd - - - - login.motd").0.unwrap(), None);

    let (r, w) = parse("d /run/a 0755 nosuchuser adm -");
    let i = r.unwrap().unwrap();
    assert_eq!(i.uid, None);
    assert_eq!(i.gid.unwrap().id, 4);
    assert_eq!(
        w,
        ["warning: /x.conf:1: unknown user \"nosuchuser\" (not in /etc/passwd); not changing the user"]
    );
    let (r, w) = parse("d= /run/a - - - - extra");
    assert!(r.unwrap().is_some());
    assert_eq!(w.len(), 2);
    assert!(w[0].contains("modifier '=' (replace mismatching file types) is not supported"));
    assert!(w[1].contains("d lines take no argument"));
}

#[test]
fn decodes_base64_arguments() {
    assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_base64("aGVs bG8").unwrap(), b"hello");
    assert!(decode_base64("a*b").is_err());
    let i = item("f~ /run/a - - - - AAEC/w==");
    assert_eq!(i.argument.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    assert!(parse("d~ /run/a").0.is_err());
}

#[test]
fn rewrites_legacy_var_run() {
    let (r, w) = parse("d /var/run/foo");
    assert_eq!(r.unwrap().unwrap().path, "/run/foo");
    assert!(w.is_empty());
    assert_eq!(item("L /var/run - - - - ../run").path, "/var/run");
}

#[test]
fn f_creates_files_and_f_plus_truncates() {
    let t = system();
    let root = t.path();
    put(root, "run/existing", "old content");
    fs::set_permissions(root.join("run/existing"), fs::Permissions::from_mode(0o600)).unwrap();
    put(root, "run/truncated", "old content");
    let w = run_conf(
        root,
        "f /run/new 0640 systemd-network utmp - hello\n\
         f /run/existing 0644 - - - ignored\n\
         f+ /run/truncated - - - - new\n\
         f /run/empty\n\
         f /run/deep/er/file 0600\n\
         F /run/legacy - - - - x\n\
         f /run/utmp :0664 - - -\n",
    );
    assert!(w.is_empty(), "{w:?}");
    let r = |p: &str| fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(r("run/new"), "hello");
    assert_eq!(mode(&root.join("run/new")), 0o640);
    assert_eq!(owner(&root.join("run/new")), (998, 43));
    assert_eq!(r("run/existing"), "old content");
    assert_eq!(mode(&root.join("run/existing")), 0o644);
    assert_eq!(r("run/truncated"), "new");
    assert_eq!(r("run/empty"), "");
    assert_eq!(mode(&root.join("run/empty")), 0o644);
    assert_eq!(mode(&root.join("run/deep/er")), 0o755);
    assert_eq!(mode(&root.join("run/deep/er/file")), 0o600);
    assert_eq!(r("run/legacy"), "x");
    assert_eq!(mode(&root.join("run/utmp")), 0o664);

    // Second boot: the ':' mode is for creation only.
    fs::set_permissions(root.join("run/utmp"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("run/new"), "changed").unwrap();
    assert!(run(root).0.is_empty());
    assert_eq!(mode(&root.join("run/utmp")), 0o600);
    assert_eq!(r("run/new"), "changed");
}

#[test]
fn f_on_a_directory_is_a_warning_and_dash_lines_only_inform() {
    let t = system();
    let root = t.path();
    fs::create_dir_all(root.join("run/dir")).unwrap();
    put(
        root,
        "etc/tmpfiles.d/a.conf",
        "f /run/dir\nf- /run/dir/x/../../dir\n",
    );
    let (w, text) = run(root);
    assert_eq!(
        w,
        ["warning: /etc/tmpfiles.d/a.conf:1: /run/dir exists and is not a regular file"]
    );
    assert!(text.contains("/etc/tmpfiles.d/a.conf:2: "));
    assert!(text.contains("(ignored: '-' line)"));
}

#[test]
fn w_writes_existing_files_only() {
    let t = system();
    let root = t.path();
    put(root, "run/a1", "xxxxxx");
    put(root, "run/a2", "");
    put(root, "run/log", "one\n");
    let w = run_conf(
        root,
        "w /run/a* - - - - 42\nw+ /run/log - - - - two\\n\nw /run/missing - - - - x\n",
    );
    assert!(w.is_empty(), "{w:?}");
    // Written in place, not truncated (like sysfs writes).
    assert_eq!(fs::read_to_string(root.join("run/a1")).unwrap(), "42xxxx");
    assert_eq!(fs::read_to_string(root.join("run/a2")).unwrap(), "42");
    assert_eq!(
        fs::read_to_string(root.join("run/log")).unwrap(),
        "one\ntwo\n"
    );
    assert!(!root.join("run/missing").exists());
}

#[test]
fn d_creates_and_adjusts_directories() {
    let t = system();
    let root = t.path();
    fs::create_dir_all(root.join("run/existing")).unwrap();
    fs::set_permissions(root.join("run/existing"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir_all(root.join("run/keep")).unwrap();
    fs::set_permissions(root.join("run/keep"), fs::Permissions::from_mode(0o700)).unwrap();
    put(root, "run/file", "");
    let w = run_conf(
        root,
        "d /run/new 1777 root root 10d\n\
         d /run/existing 0751 systemd-network systemd-journal -\n\
         d /run/keep - - - -\n\
         v /run/sub\nq /run/sub-q 0700\nQ /run/sub-Q\n\
         d /run/net 0755 systemd-network nosuchgroup -\n\
         d /run/file\n",
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        w[0],
        "warning: /etc/tmpfiles.d/test.conf:7: unknown group \"nosuchgroup\" (not in /etc/group); not changing the group"
    );
    assert_eq!(
        w[1],
        "warning: /etc/tmpfiles.d/test.conf:8: /run/file exists and is not a directory"
    );
    assert_eq!(mode(&root.join("run/new")), 0o1777);
    assert_eq!(mode(&root.join("run/existing")), 0o751);
    assert_eq!(owner(&root.join("run/existing")), (998, 999));
    assert_eq!(mode(&root.join("run/keep")), 0o700);
    assert_eq!(mode(&root.join("run/sub")), 0o755);
    assert_eq!(mode(&root.join("run/sub-q")), 0o700);
    assert!(root.join("run/sub-Q").is_dir());
    assert_eq!(owner(&root.join("run/net")), (998, 0));
}

#[test]
fn capital_d_empties_at_boot() {
    let t = system();
    let root = t.path();
    put(root, "tmp/.X11-unix/X0", "");
    put(root, "tmp/old/deep/file", "");
    symlink("/etc", root.join("tmp/link-to-etc")).unwrap();
    put(root, "etc/keep", "");
    let w = run_conf(
        root,
        "D /tmp 1777 root root -\nD! /tmp/.X11-unix 1777 root root 10d\n",
    );
    assert!(w.is_empty(), "{w:?}");
    let left: Vec<_> = fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [".X11-unix"]);
    assert_eq!(fs::read_dir(root.join("tmp/.X11-unix")).unwrap().count(), 0);
    assert_eq!(mode(&root.join("tmp/.X11-unix")), 0o1777);
    // The symlink went, not what it pointed to.
    assert!(root.join("etc/keep").exists());
    // D outside /run, /tmp, /var creates but never empties.
    put(root, "srv/data/file", "");
    let w = run_conf(root, "D /srv/data\n");
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("refusing to remove the contents of /srv/data"),
        "{w:?}"
    );
    assert!(root.join("srv/data/file").exists());
}

#[test]
fn l_creates_symlinks_and_l_plus_replaces() {
    let t = system();
    let root = t.path();
    put(root, "etc/mtab", "a file");
    put(root, "run/other", "");
    symlink("elsewhere", root.join("run/kept")).unwrap();
    fs::create_dir_all(root.join("var/run-dir/sub")).unwrap();
    let w = run_conf(
        root,
        "L /run/shm - - - - /dev/shm\n\
         L+ /etc/mtab - - - - ../proc/self/mounts\n\
         L /run/other - - - - /x\n\
         L /run/kept - - - - /x\n\
         L /etc/factory\n\
         L+ /var/run-dir - - - - ../run\n",
    );
    assert!(w.is_empty(), "{w:?}");
    let link = |p: &str| fs::read_link(root.join(p)).unwrap();
    assert_eq!(link("run/shm"), Path::new("/dev/shm"));
    assert_eq!(link("etc/mtab"), Path::new("../proc/self/mounts"));
    assert!(fs::symlink_metadata(root.join("run/other"))
        .unwrap()
        .is_file());
    assert_eq!(link("run/kept"), Path::new("elsewhere"));
    assert_eq!(
        link("etc/factory"),
        Path::new("/usr/share/factory/etc/factory")
    );
    assert_eq!(link("var/run-dir"), Path::new("../run"));
}

#[test]
fn z_and_capital_z_adjust_existing_paths() {
    let t = system();
    let root = t.path();
    put(root, "run/log/journal/m/system.journal", "");
    put(root, "run/log/journal/m/x", "");
    fs::set_permissions(
        root.join("run/log/journal/m/x"),
        fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    put(root, "var/a1", "");
    put(root, "var/a2", "");
    let w = run_conf(
        root,
        "z /run/log/journal 2755 root systemd-journal - -\n\
         Z /run/log/journal/m ~2750 root systemd-journal - -\n\
         z /var/a? 0600\n\
         z /run/missing 0600\n\
         e /run/log 0711\n",
    );
    assert!(w.is_empty(), "{w:?}");
    let j = root.join("run/log/journal");
    assert_eq!(mode(&j), 0o2755);
    assert_eq!(owner(&j).1, 999);
    assert_eq!(mode(&j.join("m")), 0o2750);
    // ~: no execute bits on files that had none, no set-id bits on files.
    assert_eq!(mode(&j.join("m/system.journal")), 0o640);
    // ~ on a read-only file: no write bits either.
    assert_eq!(mode(&j.join("m/x")), 0o440);
    assert_eq!(owner(&j.join("m/x")), (0, 999));
    assert_eq!(mode(&root.join("var/a1")), 0o600);
    assert_eq!(mode(&root.join("var/a2")), 0o600);
    assert_eq!(mode(&root.join("run/log")), 0o711);
    assert!(!root.join("run/missing").exists());
    assert_eq!(mask_mode(0o2750, 0o644, false), 0o640);
    assert_eq!(mask_mode(0o2750, 0o755, true), 0o2750);
    assert_eq!(mask_mode(0o777, 0o000, true), 0);
}

#[test]
fn r_and_capital_r_remove_only_below_run_tmp_var() {
    let t = system();
    let root = t.path();
    put(root, "tmp/.X0-lock", "");
    put(root, "tmp/.X1-lock", "");
    put(root, "tmp/systemd-private-abc/tmp/f", "");
    put(root, "var/lib/systemd/coredump/.#core1", "");
    put(root, "run/full/f", "");
    put(root, "forcefsck", "");
    put(root, "etc/important", "");
    symlink("../etc", root.join("var/escape")).unwrap();
    let w = run_conf(
        root,
        "r! /tmp/.X[0-9]*-lock\n\
         R! /tmp/systemd-private-*\n\
         r! /var/lib/systemd/coredump/.#*\n\
         r! /forcefsck\n\
         r /run/full\n\
         R /var/escape/important\n\
         r /nothing/here\n\
         R /var\n",
    );
    assert!(!root.join("tmp/.X0-lock").exists());
    assert!(!root.join("tmp/.X1-lock").exists());
    assert!(!root.join("tmp/systemd-private-abc").exists());
    assert!(!root.join("var/lib/systemd/coredump/.#core1").exists());
    assert!(root.join("forcefsck").exists());
    assert!(root.join("etc/important").exists());
    assert!(root.join("run/full/f").exists());
    assert!(root.join("var/lib").exists());
    assert_eq!(w.len(), 4, "{w:?}");
    assert_eq!(
        w[0],
        "warning: /etc/tmpfiles.d/test.conf:4: refusing to remove /forcefsck: at boot only paths below /run, /tmp, /var are removed"
    );
    assert!(
        w[1].starts_with("warning: /etc/tmpfiles.d/test.conf:5: removing /run/full: "),
        "{w:?}"
    );
    assert!(w[2].contains(":6: refusing to remove /var/escape/important"));
    assert!(w[3].contains(":8: refusing to remove /var"));
}

#[test]
fn removes_children_before_parents_and_creates_parents_first() {
    let t = system();
    let root = t.path();
    put(root, "run/dir/file", "");
    put(root, "tmp/x/old", "");
    let w = run_conf(
        root,
        "r /run/dir\n\
         r /run/dir/file\n\
         f /run/p/file - - - - x\n\
         d /run/p :0700\n\
         d /tmp/x 0700\n\
         R /tmp/x\n",
    );
    assert!(w.is_empty(), "{w:?}");
    assert!(!root.join("run/dir").exists());
    // d /run/p made /run/p (0700, create-only) before f needed it.
    assert_eq!(mode(&root.join("run/p")), 0o700);
    // R ran in the remove phase, d recreated the directory afterwards.
    assert!(root.join("tmp/x").is_dir());
    assert!(!root.join("tmp/x/old").exists());
}

#[test]
fn duplicate_paths_first_file_wins() {
    let t = system();
    let root = t.path();
    put(
        root,
        "usr/lib/tmpfiles.d/a.conf",
        "d /run/dup 0700 - - -\nz /run/dup 0700\n",
    );
    put(
        root,
        "usr/lib/tmpfiles.d/b.conf",
        "d /run/dup 0755 - - -\nd /run/dup 0700 - - -\n",
    );
    let (w, _) = run(root);
    assert_eq!(
        w,
        ["warning: /usr/lib/tmpfiles.d/b.conf:1: duplicate line for path /run/dup, ignoring (first given at /usr/lib/tmpfiles.d/a.conf:1)"]
    );
    assert_eq!(mode(&root.join("run/dup")), 0o700);
}

#[test]
fn masks_and_orders_across_directories() {
    let t = system();
    let root = t.path();
    put(
        root,
        "usr/lib/tmpfiles.d/10-a.conf",
        "f /run/order - - - - usr-10\n",
    );
    put(
        root,
        "usr/lib/tmpfiles.d/20-b.conf",
        "f /run/b - - - - usr\n",
    );
    put(root, "usr/lib/tmpfiles.d/30-masked.conf", "f /run/masked\n");
    put(root, "etc/tmpfiles.d/20-b.conf", "f /run/b - - - - etc\n");
    put(
        root,
        "run/tmpfiles.d/05-first.conf",
        "f /run/order - - - - run-05\n",
    );
    symlink("/dev/null", root.join("etc/tmpfiles.d/30-masked.conf")).unwrap();
    let (w, text) = run(root);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with(
        "warning: /usr/lib/tmpfiles.d/10-a.conf:1: duplicate line for path /run/order"
    ));
    assert_eq!(
        fs::read_to_string(root.join("run/order")).unwrap(),
        "run-05"
    );
    assert_eq!(fs::read_to_string(root.join("run/b")).unwrap(), "etc");
    assert!(!root.join("run/masked").exists());
    assert!(
        text.contains("tmpfiles: 2 lines from 3 files applied"),
        "{text}"
    );
}

#[test]
fn specifier_paths_and_skipped_lines() {
    let t = system();
    let root = t.path();
    let w = run_conf(
        root,
        "d /run/%m 0700\nd /run/%H\nf /run/%b\nC /run/copy - - - - /etc\nd /run/%Z\n",
    );
    assert_eq!(
        w,
        [
            "warning: /etc/tmpfiles.d/test.conf:4: tmpfiles type 'C' is not supported",
            "warning: /etc/tmpfiles.d/test.conf:5: unknown specifier %Z",
        ]
    );
    assert_eq!(mode(&root.join("run").join(MACHINE_ID)), 0o700);
    assert!(root.join("run/node1.example.com").is_dir());
    assert!(root.join("run").join(BOOT_ID).is_file());
}

/// The tmpfiles.d and sysctl.d files Debian bookworm ships (systemd,
/// procps) apply with exactly the expected warnings.
#[test]
fn debian_corpus_applies_with_expected_warnings() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/early");
    let t = system();
    let root = t.path();
    let dir = root.join("usr/lib/tmpfiles.d");
    for e in fs::read_dir(data.join("tmpfiles.d")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    put(root, "var/lib/systemd/coredump/.#core.x", "");
    put(root, "tmp/.X0-lock", "");
    let (w, _) = run(root);
    let expected = [
        "/usr/lib/tmpfiles.d/journal-nocow.conf:25: tmpfiles type 'h' is not supported",
        "/usr/lib/tmpfiles.d/journal-nocow.conf:26: tmpfiles type 'h' is not supported",
        "/usr/lib/tmpfiles.d/journal-nocow.conf:27: tmpfiles type 'h' is not supported",
        "/usr/lib/tmpfiles.d/systemd.conf:24: tmpfiles type 'a' is not supported",
        "/usr/lib/tmpfiles.d/systemd.conf:25: tmpfiles type 'a' is not supported",
        "/usr/lib/tmpfiles.d/systemd.conf:26: tmpfiles type 'a' is not supported",
        "/usr/lib/tmpfiles.d/systemd.conf:31: tmpfiles type 'a' is not supported",
        "/usr/lib/tmpfiles.d/systemd.conf:32: tmpfiles type 'a' is not supported",
        "/usr/lib/tmpfiles.d/systemd.conf:33: tmpfiles type 'a' is not supported",
        "/usr/lib/tmpfiles.d/systemd.conf:43: tmpfiles type 'C' is not supported",
        "/usr/lib/tmpfiles.d/systemd.conf:44: tmpfiles type 'C' is not supported",
    ];
    let expected: Vec<String> = expected.iter().map(|e| format!("warning: {e}")).collect();
    assert_eq!(w, expected);
    // A few effects.
    assert_eq!(mode(&root.join("tmp")), 0o1777);
    assert!(!root.join("tmp/.X0-lock").exists());
    assert!(!root.join("var/lib/systemd/coredump/.#core.x").exists());
    assert_eq!(owner(&root.join("run/systemd/netif")), (998, 998));
    assert_eq!(mode(&root.join("var/log/btmp")), 0o660);
    assert_eq!(owner(&root.join("var/log/btmp")).1, 43);
    assert_eq!(
        fs::read_link(root.join("var/run")).unwrap(),
        Path::new("../run")
    );
    assert!(fs::read_to_string(root.join("run/nologin"))
        .unwrap()
        .starts_with("\"System is booting up."));
    assert!(!root.join("var/log/journal").join(MACHINE_ID).exists());
    assert_eq!(mode(&root.join("root")), 0o700);
}
