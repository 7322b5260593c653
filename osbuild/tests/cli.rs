//! `osbuild build` end to end: reproducible output from a warm cache with
//! no network, and bad input that fails with one clear line and leaves no
//! image under a final name.
//!
//! These run against the download cache that `make image` filled
//! (`--offline`), and the keel-init binary it built ($KEEL_INIT_BINARY, or
//! target/x86_64-unknown-linux-gnu/release/keel-init).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn two_offline_builds_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for out in [&a, &b] {
        let o = osbuild(&minimal_config(), tmp.path(), out, &["--format", "raw"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let raw = "minimal-0.1.0.raw";
    assert_eq!(
        sha256(&a.join(raw)),
        sha256(&b.join(raw)),
        "raw images differ"
    );
    let manifest = "minimal-0.1.0.manifest.json";
    assert_eq!(
        fs::read(a.join(manifest)).unwrap(),
        fs::read(b.join(manifest)).unwrap()
    );
    // Only the requested format and the manifest; no work tree, partial
    // or lock file left over.
    assert_eq!(listing(&a), [manifest, raw]);
}

/// The container-host image: its file tree, sysusers.d accounts, CA bundle
/// and depmod indexes are reproducible too.
#[test]
fn two_offline_builds_of_the_container_image_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = workspace().join("image-configs");
    let config = fs::read_to_string(configs.join("containerd.toml")).unwrap();
    // osbuild() writes the config into tmp; its tree must be inside the
    // config's directory (a symlink to image-configs/ would point out).
    let st = Command::new("cp")
        .arg("-a")
        .arg(configs.join("containerd.tree"))
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for out in [&a, &b] {
        let o = osbuild(&config, tmp.path(), out, &["--format", "raw"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let raw = "containerd-0.1.0.raw";
    assert_eq!(
        sha256(&a.join(raw)),
        sha256(&b.join(raw)),
        "raw images differ"
    );
}

#[test]
fn missing_tree_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cfg = format!(
        "{}\n[files]\ntrees = [\"no-such.tree\"]\n",
        minimal_config()
    );
    let line = error_line(&osbuild(&cfg, tmp.path(), &out, &[]));
    assert!(
        line.contains("image.toml")
            && line.contains("files.trees[0]")
            && line.contains("no-such.tree"),
        "{line}"
    );
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

#[test]
fn unknown_key_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cfg = minimal_config().replace("include =", "includes =");
    let line = error_line(&osbuild(&cfg, tmp.path(), &out, &[]));
    assert!(
        line.contains("image.toml") && line.contains("packages.includes"),
        "{line}"
    );
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

#[test]
fn missing_package_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cfg = minimal_config().replace("include = [", "include = [\"keel-no-such-package\", ");
    let line = error_line(&osbuild(&cfg, tmp.path(), &out, &[]));
    assert!(line.contains("keel-no-such-package"), "{line}");
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

#[test]
fn unwritable_output_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    fs::write(&not_a_dir, "x").unwrap();
    let line = error_line(&osbuild(
        &minimal_config(),
        tmp.path(),
        &not_a_dir.join("out"),
        &[],
    ));
    assert!(
        line.contains("output directory") && line.contains("file/out"),
        "{line}"
    );
}

/// A failure late in the pipeline (after the root filesystem was made)
/// removes the work tree and leaves no image under its final name.
#[test]
fn late_failure_leaves_no_image() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cfg = minimal_config().replace(
        "initrd-modules = [",
        "initrd-modules = [\"keel_no_such_module\", ",
    );
    let line = error_line(&osbuild(&cfg, tmp.path(), &out, &[]));
    assert!(line.contains("keel_no_such_module"), "{line}");
    assert!(listing(&out).is_empty(), "left behind: {:?}", listing(&out));
}

#[test]
fn dynamically_linked_binaries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("image.toml");
    fs::write(&cfg, minimal_config()).unwrap();
    let init = init_binary();
    let firstboot = firstboot_binary();
    for (flag, init, firstboot) in [
        (
            "--init-binary",
            Path::new("/usr/bin/true"),
            firstboot.as_path(),
        ),
        (
            "--firstboot-binary",
            init.as_path(),
            Path::new("/usr/bin/true"),
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
            .args(["build", "--offline", "--init-binary"])
            .arg(init)
            .arg("--firstboot-binary")
            .arg(firstboot)
            .arg("--out")
            .arg(tmp.path().join("out"))
            .arg(&cfg)
            .output()
            .unwrap();
        let line = error_line(&o);
        assert!(
            line.contains("/usr/bin/true") && line.contains("dynamically linked"),
            "{flag}: {line}"
        );
    }
}

/// `--ignition`: an invalid config fails the build before anything is
/// written, naming the file and the finding; a valid one lands on the
/// ESP as keel/ignition.json, byte for byte.
#[test]
fn the_ignition_config_is_checked_and_put_on_the_esp() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.ign");
    fs::write(
        &bad,
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"etc/motd"}]}}"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = osbuild(
        &minimal_config(),
        tmp.path(),
        &out,
        &["--format", "raw", "--ignition", bad.to_str().unwrap()],
    );
    let line = error_line(&o);
    assert!(
        line.contains("bad.ign") && line.contains("invalid"),
        "{line}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("error at $.storage.files.0.path: path not absolute"),
        "{stderr}"
    );
    assert!(listing(&out).is_empty(), "left behind: {:?}", listing(&out));

    let good = tmp.path().join("good.ign");
    let config = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hi"}}]}}"#;
    fs::write(&good, config).unwrap();
    let o = osbuild(
        &minimal_config(),
        tmp.path(),
        &out,
        &["--format", "raw", "--ignition", good.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let raw = out.join("minimal-0.1.0.raw");
    // The ESP is the first partition; mtools reads it in place.
    let table = Command::new("sgdisk").arg("-p").arg(&raw).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let start: u64 = table
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("1")).then(|| w.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no partition 1 in:\n{table}"));
    let copied = tmp.path().join("copied.ign");
    let o = Command::new("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{}", raw.display(), start * 512))
        .arg("::keel/ignition.json")
        .arg(&copied)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read_to_string(&copied).unwrap(), config);
}
