//! `keel-firstboot validate`: Keel's own limits on top of Ignition's
//! rules, specs that the reference validator does not know (3.4–3.6), and
//! the command's output and exit codes.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use keel_firstboot::{config, validate};

fn findings(json: &str) -> Vec<String> {
    let p = config::parse(json.as_bytes()).unwrap();
    validate::validate(&p)
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn what_keel_does_not_do_is_an_error_naming_it() {
    let f = findings(
        r#"{"ignition":{"version":"3.3.0"},"storage":{
            "raid":[{"name":"md0","level":"raid1","devices":["/dev/vdb","/dev/vdc"]}],
            "luks":[{"name":"data","device":"/dev/vdd"}],
            "filesystems":[{"device":"/dev/vde","format":"btrfs"}],
            "files":[{"path":"/etc/a","contents":{"source":"s3://bucket/a"}},
                     {"path":"/etc/b","contents":{"source":"tftp://10.0.2.2/b"}}]}}"#,
    );
    assert_eq!(
        f,
        [
            "error at $.storage.files.0.contents.source: s3 sources are not supported by Keel (it fetches http, https, data)",
            "error at $.storage.files.1.contents.source: tftp sources are not supported by Keel (it fetches http, https, data)",
            "error at $.storage.filesystems.0.format: filesystem format btrfs is not supported by Keel (it makes ext4, xfs, vfat, swap, none)",
            "error at $.storage.raid.0: RAID is not supported by Keel",
            "error at $.storage.luks.0: LUKS is not supported by Keel",
        ]
    );
    let f = findings(
        r#"{"ignition":{"version":"3.6.0","config":{"merge":[{"source":"gs://b/c.ign"}]},
            "security":{"tls":{"certificateAuthorities":[{"source":"arn:aws:s3:::b/ca.pem"}]}}}}"#,
    );
    assert_eq!(
        f,
        [
            "error at $.ignition.config.merge.0.source: gs sources are not supported by Keel (it fetches http, https, data)",
            "error at $.ignition.security.tls.certificateAuthorities.0.source: arn sources are not supported by Keel (it fetches http, https, data)",
        ]
    );
}

#[test]
fn mount_points_keel_keeps_for_itself_are_errors() {
    for (path, what) in [
        ("/var", "Keel's var partition"),
        ("/var/lib/keel/etc", "Keel's var partition"),
        ("/usr/local", "the verified read-only root"),
        ("/", "the verified read-only root"),
        ("/etc/containerd", "the /etc overlay"),
        ("/run/x", "an API file system"),
    ] {
        let f = findings(&format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"filesystems":[
                {{"device":"/dev/vdb","format":"ext4","path":"{path}"}}]}}}}"#
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with(&format!(
                "error at $.storage.filesystems.0.path: a file system cannot be mounted on {path} on Keel: that is {what}"
            )),
            "{f:?}"
        );
    }
    // Below /var is fine, and swap has no mount point.
    let f = findings(
        r#"{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[
            {"device":"/dev/vdb","format":"ext4","path":"/var/lib/containerd"},
            {"device":"/dev/vdc","format":"swap","path":"/var"}]}}"#,
    );
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn later_specs_follow_their_own_rules() {
    let mode = |v: &str| {
        findings(&format!(
            r#"{{"ignition":{{"version":"{v}"}},"storage":{{"files":[{{"path":"/usr/local/bin/x","mode":2541}}]}}}}"#
        ))
    };
    // Special mode bits: a warning before 3.6, fine from 3.6.
    assert_eq!(
        mode("3.5.0"),
        ["warning at $.storage.files.0.mode: setuid/setgid/sticky bits are not supported in spec versions older than 3.4.0"]
    );
    assert!(mode("3.6.0").is_empty());
    // arn: URLs exist from 3.4 (Ignition accepts them; Keel does not fetch them).
    let arn = |v: &str| {
        let p = config::parse(
            format!(
                r#"{{"ignition":{{"version":"{v}"}},"storage":{{"files":[{{"path":"/etc/a","contents":{{"source":"arn:aws:s3:us-east-1:123:accesspoint/ap/object/k"}}}}]}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        validate::ignition(&p.config, p.version.minor).to_string()
    };
    assert_eq!(
        arn("3.3.0"),
        "error at $.storage.files.0.contents.source: invalid url scheme\n"
    );
    assert_eq!(arn("3.4.0"), "");
    // Keys of a later spec are unknown in an earlier one.
    let f = findings(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"d","device":"/dev/vdb","discard":true}]}}"#,
    );
    assert!(
        f.contains(&"warning at $.storage.luks.0.discard: Unused key discard".to_string()),
        "{f:?}"
    );
}

fn cli(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel-firstboot"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn the_command_prints_findings_and_exits_by_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ign");
    std::fs::write(&good, r#"{"ignition":{"version":"3.4.0"},"extra":true}"#).unwrap();
    let out = cli(&["validate", good.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "warning at $.extra: Unused key extra\n"
    );

    let out = cli(
        &["validate", "-"],
        Some(r#"{"ignition":{"version":"3.2.0"},"storage":{"files":[{"path":"x"}]}}"#),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "error at $.storage.files.0.path: path not absolute\n"
    );

    let out = cli(
        &["validate", "-"],
        Some(r#"{"ignition":{"version":"2.3.0"}}"#),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "unsupported config version 2.3.0; Keel accepts Ignition spec 3.0.0 through 3.6.0"
        ),
        "{text}"
    );

    let missing = dir.path().join("missing.ign");
    let out = cli(&["validate", missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("keel-firstboot: error: reading config ") && err.contains("missing.ign"),
        "{err}"
    );

    let out = cli(&["frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
    let help = cli(&["validate", "--help"], None);
    assert!(String::from_utf8_lossy(&help.stdout).contains("exits 0 when the config is"));
}

#[test]
fn the_apply_command_writes_a_root_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let good = r#"{"ignition":{"version":"3.4.0"},
        "passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA core"]}]},
        "storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hi%0A"}}]}}"#;
    let r = root.to_str().unwrap();
    let out = cli(&["apply", "--root", r, "--config", "-"], Some(good));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(root.join("etc/motd")).unwrap(), b"hi\n");
    assert_eq!(
        std::fs::read_to_string(root.join("home/core/.ssh/authorized_keys.d/ignition")).unwrap(),
        "ssh-ed25519 AAAA core\n"
    );
    // Invalid: nothing written, the finding printed.
    let bad = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/new"},{"path":"rel"}]}}"#;
    let out = cli(&["apply", "--root", r, "--config", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("error at $.storage.files.1.path: path not absolute"));
    assert!(!root.join("etc/new").exists());
    // A tree has no boot entry: kernel arguments are refused before
    // anything is written.
    let kargs = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/new"}]},"kernelArguments":{"shouldExist":["quiet"]}}"#;
    let out = cli(&["apply", "--root", r, "--config", "-"], Some(kargs));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("$.kernelArguments: kernel arguments cannot be applied: a directory tree has no boot entry to edit"),
        "{err}"
    );
    assert!(!root.join("etc/new").exists());
}

#[test]
fn the_run_command_provisions_once_from_the_command_line_url() {
    use qemu_tests::http::{HttpServer, Response};
    let srv = HttpServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(
        &cmdline,
        format!(
            "console=ttyS0 ignition.config.url=http://127.0.0.1:{}/bad.ign\n",
            srv.port()
        ),
    )
    .unwrap();
    srv.route(
        "/bad.ign",
        Response::ok(r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"x"}]}}"#),
    );
    let args = |c: &std::path::Path| {
        vec![
            "run".to_string(),
            "--root".into(),
            root.display().to_string(),
            "--cmdline".into(),
            c.display().to_string(),
            "--fw-cfg".into(),
            dir.path().join("no-fw-cfg").display().to_string(),
            "--esp".into(),
            dir.path().join("no-esp").display().to_string(),
            // The host's network is up; never run a DHCP client here.
            "--network-up".into(),
            String::new(),
        ]
    };
    let a = args(&cmdline);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = cli(&a, None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(
            "keel-firstboot: failed: config from ignition.config.url=http://127.0.0.1:"
        ) && text.contains("error at $.storage.files.0.path: path not absolute"),
        "{text}"
    );
    assert!(!root.join("var/lib/keel/firstboot.json").exists());

    srv.route(
        "/bad.ign",
        Response::ok(r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hello","contents":{"source":"data:,hi"}}]}}"#),
    );
    let out = cli(&a, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("keel-firstboot: applied ignition.config.url="));
    assert_eq!(std::fs::read(root.join("etc/hello")).unwrap(), b"hi");
    let out = cli(&a, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("keel-firstboot: already provisioned"));
    assert_eq!(
        srv.requests().len(),
        2,
        "the config was fetched again after provisioning"
    );
}

#[test]
fn the_run_command_edits_the_boot_entry_and_asks_for_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let entry = dir.path().join("keel-1.0+2-1.conf");
    std::fs::write(&entry, "title Keel\noptions keel.slot=a quiet\n").unwrap();
    let config = r#"{"ignition":{"version":"3.3.0"},"kernelArguments":{"shouldExist":["nosmt"],"shouldNotExist":["quiet"]}}"#;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, config);
    let cmdline = dir.path().join("cmdline");
    std::fs::write(
        &cmdline,
        format!("ignition.config.url=data:;base64,{b64}\n"),
    )
    .unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let (r, c, e) = (
        root.display().to_string(),
        cmdline.display().to_string(),
        entry.display().to_string(),
    );
    let (fw, esp) = (d("no-fw-cfg"), d("no-esp"));
    let mut args = vec![
        "run",
        "--root",
        &r,
        "--cmdline",
        &c,
        "--fw-cfg",
        &fw,
        "--esp",
        &esp,
        "--network-up",
        "",
    ];
    // Without the entry: failed, nothing recorded.
    let out = cli(&args, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the booted boot entry is not known"));
    assert!(!root.join("var/lib/keel/firstboot.json").exists());
    args.extend(["--boot-entry", &e]);
    let out = cli(&args, None);
    assert_eq!(
        out.status.code(),
        Some(100),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(&entry).unwrap(),
        "title Keel\noptions keel.slot=a nosmt\n"
    );
    assert!(root.join("var/lib/keel/firstboot.json").exists());
    // Keel's own arguments are not the config's to change.
    let bad =
        r#"{"ignition":{"version":"3.3.0"},"kernelArguments":{"shouldNotExist":["keel.slot=a"]}}"#;
    let out = cli(&["validate", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(
        "error at $.kernelArguments.shouldNotExist.0: keel.slot is Keel's own kernel argument"
    ));
}
