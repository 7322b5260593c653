//! [`super::apply`] on temporary roots.

use super::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnogroup:x:65534:\n";

fn root_with(conf: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::write(r.join("etc/passwd"), PASSWD).unwrap();
    fs::write(r.join("etc/group"), GROUP).unwrap();
    let shadow: String = PASSWD
        .lines()
        .map(|l| format!("{}:*::0:99999:7:::\n", l.split(':').next().unwrap()))
        .collect();
    fs::write(r.join("etc/shadow"), shadow).unwrap();
    let gshadow: String = GROUP
        .lines()
        .map(|l| format!("{}:*::\n", l.split(':').next().unwrap()))
        .collect();
    fs::write(r.join("etc/gshadow"), gshadow).unwrap();
    for (rel, text) in conf {
        let p = r.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    tmp
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap()
}

fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn the_container_host_accounts() {
    let conf = r#"
# Debian's maintainer scripts would have made these.
g _ssh    -
u sshd    -:nogroup  "sshd privilege separation" /run/sshd        /usr/sbin/nologin
u _chrony -          "Chrony daemon"             /var/lib/chrony
u dhcpcd  -:nogroup  "DHCP Client Daemon"        /usr/lib/dhcpcd   /bin/false
"#;
    let tmp = root_with(&[("usr/lib/sysusers.d/keel.conf", conf)]);
    let r = tmp.path();
    let report = apply(r).unwrap();
    // Groups first: _ssh takes 999. sshd's group is nogroup, its UID the
    // next free one; _chrony gets one number for user and group.
    assert_eq!(
        report.groups,
        [
            Created {
                name: "_ssh".into(),
                uid: None,
                gid: 999
            },
            Created {
                name: "_chrony".into(),
                uid: None,
                gid: 997
            },
        ]
    );
    let users: Vec<_> = report
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.uid.unwrap(), u.gid))
        .collect();
    assert_eq!(
        users,
        [
            ("sshd", 998, 65534),
            ("_chrony", 997, 997),
            ("dhcpcd", 996, 65534)
        ]
    );
    let passwd = read(r, "etc/passwd");
    assert!(
        passwd.starts_with(PASSWD),
        "existing entries kept:\n{passwd}"
    );
    assert_eq!(
        line(&passwd, "sshd"),
        "sshd:x:998:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin"
    );
    assert_eq!(
        line(&passwd, "_chrony"),
        "_chrony:x:997:997:Chrony daemon:/var/lib/chrony:/usr/sbin/nologin"
    );
    assert_eq!(
        line(&passwd, "dhcpcd"),
        "dhcpcd:x:996:65534:DHCP Client Daemon:/usr/lib/dhcpcd:/bin/false"
    );
    assert_eq!(line(&read(r, "etc/group"), "_ssh"), "_ssh:x:999:");
    assert_eq!(line(&read(r, "etc/shadow"), "sshd"), "sshd:!*:::::::");
    assert_eq!(line(&read(r, "etc/gshadow"), "_chrony"), "_chrony:!::");
    assert!(read(r, "etc/shadow").starts_with("root:*::0:99999:7:::\n"));

    // A second run changes nothing: existing accounts are kept.
    let before: Vec<_> = ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"]
        .iter()
        .map(|f| read(r, f))
        .collect();
    let again = apply(r).unwrap();
    assert_eq!(again, Report::default());
    let after: Vec<_> = ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"]
        .iter()
        .map(|f| read(r, f))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn explicit_ids_are_honoured_and_used_ids_skipped() {
    let conf = "u web 800 - /srv/web\nu taken 1\ng both 700\nu both -\ng early\nu next\n";
    // `daemon` has ID 1, so `taken` falls back to an automatic ID; `both`
    // reuses its group's 700 as UID; 999 goes to group early.
    let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", conf)]);
    let r = tmp.path();
    apply(r).unwrap();
    let passwd = read(r, "etc/passwd");
    assert_eq!(
        line(&passwd, "web"),
        "web:x:800:800::/srv/web:/usr/sbin/nologin"
    );
    assert_eq!(line(&passwd, "both"), "both:x:700:700::/:/usr/sbin/nologin");
    assert_eq!(line(&read(r, "etc/group"), "early"), "early:x:999:");
    // Groups first (early 999), then users: taken's group 998 and UID 998,
    // next's group and UID 997.
    assert_eq!(
        line(&passwd, "taken"),
        "taken:x:998:998::/:/usr/sbin/nologin"
    );
    assert_eq!(line(&passwd, "next"), "next:x:997:997::/:/usr/sbin/nologin");
}

#[test]
fn explicit_gid_and_members() {
    let conf = "g docker 990\nu svc 980:docker\nm svc daemon\nm extra newgroup\n";
    let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", conf)]);
    let r = tmp.path();
    let report = apply(r).unwrap();
    let passwd = read(r, "etc/passwd");
    assert_eq!(line(&passwd, "svc"), "svc:x:980:990::/:/usr/sbin/nologin");
    let group = read(r, "etc/group");
    assert_eq!(line(&group, "daemon"), "daemon:x:1:svc");
    // m lines create what they name: group newgroup (999, implicit groups
    // come after declared ones) and user extra (own group 998).
    assert_eq!(line(&group, "newgroup"), "newgroup:x:999:extra");
    assert_eq!(
        line(&passwd, "extra"),
        "extra:x:998:998::/:/usr/sbin/nologin"
    );
    assert_eq!(line(&read(r, "etc/gshadow"), "daemon"), "daemon:*::svc");
    assert_eq!(
        report.members,
        [
            ("svc".to_string(), "daemon".to_string()),
            ("extra".to_string(), "newgroup".to_string())
        ]
    );
}

#[test]
fn file_order_override_and_mask() {
    let tmp = root_with(&[
        ("usr/lib/sysusers.d/b.conf", "u second\n"),
        ("usr/lib/sysusers.d/a.conf", "u first\n"),
        ("usr/lib/sysusers.d/c.conf", "u vendor\n"),
        ("etc/sysusers.d/c.conf", "u admin\n"),
        ("usr/lib/sysusers.d/d.conf", "u masked\n"),
    ]);
    let r = tmp.path();
    std::os::unix::fs::symlink("/dev/null", r.join("etc/sysusers.d/d.conf")).unwrap();
    let report = apply(r).unwrap();
    let names: Vec<_> = report.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["first", "second", "admin"]);
    assert_eq!(report.users[0].uid, Some(999));
}

#[test]
fn first_declaration_wins() {
    let tmp = root_with(&[(
        "usr/lib/sysusers.d/a.conf",
        "u svc 500 \"one\"\nu svc 501 \"two\"\n",
    )]);
    apply(tmp.path()).unwrap();
    assert_eq!(
        line(&read(tmp.path(), "etc/passwd"), "svc"),
        "svc:x:500:500:one:/:/usr/sbin/nologin"
    );
}

#[test]
fn bad_lines_name_file_and_line() {
    for (text, needle) in [
        ("u\n", "not a valid user"),
        ("u 9lives\n", "not a valid user"),
        ("u svc abc\n", "not a valid UID"),
        ("u svc 1:bad$name\n", "neither a GID"),
        ("u svc /usr/bin/svc\n", "not supported"),
        ("g grp - \"gecos\"\n", "g lines take no GECOS"),
        ("r - 500-900\n", "r lines"),
        ("x svc\n", "unknown line type"),
        ("u svc - \"unterminated\n", "unterminated quote"),
        ("u %u\n", "specifiers"),
        ("u a - b c d e\n", "at most 6"),
        ("m svc\n", "not a valid group name"),
    ] {
        let tmp = root_with(&[("usr/lib/sysusers.d/bad.conf", &format!("# c\n{text}"))]);
        let e = apply(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("usr/lib/sysusers.d/bad.conf:2:") && e.contains(needle),
            "{text:?}: {e}"
        );
    }
    let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", "u svc -:nosuchgroup\n")]);
    let e = apply(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("nosuchgroup") && e.contains("svc"), "{e}");
}

#[test]
fn no_config_changes_nothing() {
    let tmp = root_with(&[]);
    assert_eq!(apply(tmp.path()).unwrap(), Report::default());
    assert_eq!(read(tmp.path(), "etc/passwd"), PASSWD);
}

#[test]
fn malformed_database_is_named() {
    let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", "u svc\n")]);
    fs::write(tmp.path().join("etc/passwd"), "root:x:0\n").unwrap();
    let e = apply(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("etc/passwd:1") && e.contains("root:x:0"), "{e}");
}

#[test]
fn keeps_mode_of_shadow() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = root_with(&[("usr/lib/sysusers.d/a.conf", "u svc\n")]);
    let shadow = tmp.path().join("etc/shadow");
    fs::set_permissions(&shadow, fs::Permissions::from_mode(0o640)).unwrap();
    apply(tmp.path()).unwrap();
    let m = fs::metadata(&shadow).unwrap().permissions().mode() & 0o777;
    assert_eq!(m, 0o640);
    assert!(user_names(tmp.path()).unwrap().contains("svc"));
}

/// Links in the root that point at a sibling directory (absolute, and
/// `..` past the root): the config is read and the accounts are written
/// inside the root; the sibling is untouched, bytes and modes.
#[test]
fn links_out_of_the_root_are_resolved_inside_it() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    let sibling = outer.path().join("sibling");
    fs::create_dir_all(sibling.join("sysusers.d")).unwrap();
    fs::write(sibling.join("passwd"), PASSWD).unwrap();
    fs::write(sibling.join("sysusers.d/evil.conf"), "u evil\n").unwrap();
    fs::set_permissions(sibling.join("passwd"), fs::Permissions::from_mode(0o600)).unwrap();
    let snapshot = || {
        let mut v = Vec::new();
        for p in ["passwd", "sysusers.d/evil.conf"] {
            let m = fs::metadata(sibling.join(p)).unwrap().permissions().mode();
            v.push((p, fs::read(sibling.join(p)).unwrap(), m));
        }
        (v, fs::read_dir(&sibling).unwrap().count())
    };
    let before = snapshot();
    fs::create_dir_all(root.join("usr/lib/sysusers.d")).unwrap();
    // /etc climbs out; an absolute link names the sibling's host path.
    symlink("../../../../sibling", root.join("etc")).unwrap();
    symlink(
        sibling.join("sysusers.d/evil.conf"),
        root.join("usr/lib/sysusers.d/a.conf"),
    )
    .unwrap();
    symlink(
        "../../../../../sibling/sysusers.d/evil.conf",
        root.join("usr/lib/sysusers.d/b.conf"),
    )
    .unwrap();
    fs::write(root.join("usr/lib/sysusers.d/c.conf"), "u svc\n").unwrap();
    // a.conf and b.conf resolve to nothing inside the root.
    let e = apply(&root).unwrap_err().to_string();
    assert!(e.contains("/usr/lib/sysusers.d/a.conf"), "{e}");
    fs::remove_file(root.join("usr/lib/sysusers.d/a.conf")).unwrap();
    let e = apply(&root).unwrap_err().to_string();
    assert!(e.contains("/usr/lib/sysusers.d/b.conf"), "{e}");
    fs::remove_file(root.join("usr/lib/sysusers.d/b.conf")).unwrap();
    apply(&root).unwrap();
    assert_eq!(snapshot(), before);
    // The accounts went to the image's /etc, which is root/sibling.
    let passwd = fs::read_to_string(root.join("sibling/passwd")).unwrap();
    assert!(
        passwd.contains("svc:") && !passwd.contains("evil"),
        "{passwd}"
    );
}
