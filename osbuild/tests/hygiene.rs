//! `osbuild build` keeps to its target and leaves nothing behind: image
//! trees cannot reach outside the staging root or the config's directory,
//! a signal or a failure at the very end leaves no work tree, no partial
//! file and no new file under a final name, and two builds of one name
//! into one directory do not run at once.
//!
//! Like cli.rs, these run real builds offline against the download cache
//! `make image` filled, with the binaries it built.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use rustix::process::{kill_process, Pid, Signal};

/// Long enough for a whole build of the minimal image on a busy machine.
const BUILD_LIMIT: Duration = Duration::from_secs(900);

/// A directory beside the build's, with a file, whose bytes and modes the
/// tests check afterwards.
fn sibling(dir: &Path) -> std::path::PathBuf {
    let s = dir.join("sibling");
    fs::create_dir_all(&s).unwrap();
    fs::write(s.join("victim"), "keep").unwrap();
    fs::set_permissions(s.join("victim"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(&s, fs::Permissions::from_mode(0o750)).unwrap();
    s
}

fn assert_untouched(s: &Path) {
    assert_eq!(listing(s), ["victim"]);
    assert_eq!(fs::read(s.join("victim")).unwrap(), b"keep");
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&s.join("victim")), 0o640);
    assert_eq!(mode(s), 0o750);
}

/// SIGINT or SIGTERM at several points of a build (while it resolves,
/// unpacks, runs mkfs.erofs and qemu-img): osbuild exits with 128 + the
/// signal and the output directory is empty again.
#[test]
fn a_signal_during_a_build_leaves_nothing_behind() {
    for (step, signal, code) in [
        ("resolving packages", Signal::INT, 130),
        ("composing the root filesystem", Signal::INT, 130),
        ("making the erofs root", Signal::TERM, 143),
        ("converting to qcow2", Signal::INT, 130),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let mut b = spawn(
            &minimal_config(),
            tmp.path(),
            &out,
            &["--format", "raw,qcow2"],
        );
        b.wait_for(step, BUILD_LIMIT);
        kill_process(Pid::from_child(&b.child), signal).unwrap();
        let (status, stderr) = b.finish();
        assert_eq!(status, Some(code), "{step}:\n{stderr}");
        assert!(stderr.contains("interrupted by SIG"), "{step}:\n{stderr}");
        assert!(
            listing(&out).is_empty(),
            "{step}: left behind {:?}",
            listing(&out)
        );
    }
}

/// A second build of the same image into the same directory fails at
/// once, before any work, naming the build and the directory; the first
/// one is not disturbed.
#[test]
fn a_second_build_into_the_same_out_fails_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut first = spawn(&minimal_config(), tmp.path(), &out, &["--format", "raw"]);
    first.wait_for("resolving packages", BUILD_LIMIT);
    let second = osbuild(&minimal_config(), tmp.path(), &out, &["--format", "raw"]);
    let line = error_line(&second);
    assert_eq!(
        line,
        format!(
            "osbuild: error: another build of minimal-0.1.0 is running in {}",
            out.display()
        )
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!stderr.contains("resolving"), "{stderr}");
    let (status, stderr) = first.finish();
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(
        listing(&out),
        ["minimal-0.1.0.manifest.json", "minimal-0.1.0.raw"]
    );
}

/// The manifest cannot take its final name (a directory is in the way):
/// the build fails, its new images are not left under their final names,
/// and the previous raw image is still there, unchanged.
#[test]
fn a_failure_while_writing_the_manifest_leaves_no_image() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir_all(out.join("minimal-0.1.0.manifest.json/in-the-way")).unwrap();
    fs::write(out.join("minimal-0.1.0.raw"), "previous image").unwrap();
    let o = osbuild(
        &minimal_config(),
        tmp.path(),
        &out,
        &["--format", "raw,qcow2"],
    );
    let line = error_line(&o);
    assert!(line.contains("minimal-0.1.0.manifest.json"), "{line}");
    assert_eq!(
        listing(&out),
        ["minimal-0.1.0.manifest.json", "minimal-0.1.0.raw"]
    );
    assert_eq!(
        fs::read(out.join("minimal-0.1.0.raw")).unwrap(),
        b"previous image"
    );
}

/// `trees = ["../x"]` names a directory outside the config's: refused
/// before anything is written.
#[test]
fn a_tree_outside_the_config_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    fs::create_dir_all(configs.join("ok.tree")).unwrap();
    let s = sibling(tmp.path());
    let out = tmp.path().join("out");
    let cfg = format!("{}\n[files]\ntrees = [\"../sibling\"]\n", minimal_config());
    let line = error_line(&osbuild(&cfg, &configs, &out, &[]));
    assert!(
        line.contains("image.toml")
            && line.contains("files.trees[0]")
            && line.contains("../sibling")
            && line.contains("outside"),
        "{line}"
    );
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
    assert_untouched(&s);
}

/// A tree that turns usr/lib/keel (where osbuild writes keel-init) into a
/// symlink to a sibling of the build: the build fails naming the tree and
/// both paths, and the sibling is untouched.
#[test]
fn a_tree_with_a_symlink_where_osbuild_writes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sibling(tmp.path());
    let tree = tmp.path().join("evil.tree");
    fs::create_dir_all(tree.join("usr/lib")).unwrap();
    symlink(&s, tree.join("usr/lib/keel")).unwrap();
    let out = tmp.path().join("out");
    let cfg = format!("{}\n[files]\ntrees = [\"evil.tree\"]\n", minimal_config());
    let line = error_line(&osbuild(&cfg, tmp.path(), &out, &["--format", "raw"]));
    assert!(
        line.contains("evil.tree")
            && line.contains("usr/lib/keel: ")
            && line.contains("/usr/lib/keel/keel-init"),
        "{line}"
    );
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
    assert_untouched(&s);
}

/// A package that is not a kernel, as kernel.package: the message names
/// it and what it lacks, not a path of the (removed) work tree.
#[test]
fn a_kernel_package_that_is_no_kernel_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cfg = minimal_config().replace(
        "package = \"linux-image-cloud-amd64\"",
        "package = \"busybox-static\"",
    );
    assert_ne!(cfg, minimal_config(), "minimal.toml changed its kernel");
    let line = error_line(&osbuild(&cfg, tmp.path(), &out, &["--format", "raw"]));
    assert!(
        line.contains("kernel.package \"busybox-static\" is not a kernel"),
        "{line}"
    );
    assert!(!line.contains(".work-"), "{line}");
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

/// A static ELF that is not keel-init (keel-firstboot, say) is refused as
/// --init-binary, and the other way round.
#[test]
fn only_keel_init_and_keel_firstboot_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("image.toml");
    fs::write(&cfg, minimal_config()).unwrap();
    let (init, firstboot) = (init_binary(), firstboot_binary());
    for (flag, init, firstboot, wanted) in [
        ("--init-binary", &firstboot, &firstboot, "keel-init"),
        ("--firstboot-binary", &init, &init, "keel-firstboot"),
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
            line.contains(&format!("is not {wanted}")) && line.contains(flag),
            "{flag}: {line}"
        );
    }
}
