//! `.mount` and `.swap` units: Butane's files, the load-time checks and the
//! synthesized commands.

use super::super::*;
use super::{link, machine, write, ETC, LIB};
use crate::fixtures::{
    BUTANE_FSCK_NAME, BUTANE_MOUNT, BUTANE_MOUNT_NAME, BUTANE_SWAP, BUTANE_SWAP_NAME, FSCK_TEMPLATE,
};
use std::time::Duration;

fn argv(cmds: &[Command]) -> Vec<Vec<String>> {
    cmds.iter().map(|c| c.argv.clone()).collect()
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// Loads the one unit `name` written to /etc/systemd/system.
fn load_etc(name: &str, text: &str) -> Result<(Unit, Vec<Warning>), LoadError> {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &format!("{ETC}/{name}"), text);
    load_one(dir.path(), &machine(), name)
}

#[test]
fn butane_mount_unit_loads_as_a_oneshot_running_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    write(r, &format!("{ETC}/{BUTANE_MOUNT_NAME}"), BUTANE_MOUNT);
    link(
        r,
        &format!("{ETC}/local-fs.target.requires/{BUTANE_MOUNT_NAME}"),
        &format!("/{ETC}/{BUTANE_MOUNT_NAME}"),
    );
    write(r, &format!("{LIB}/systemd-fsck@.service"), FSCK_TEMPLATE);
    let l = load_units(r, &machine());
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
    let u = &l.units[BUTANE_MOUNT_NAME];
    assert_eq!(u.kind, UnitKind::Mount);
    assert_eq!(
        u.mount,
        MountSection {
            what: Some("/dev/disk/by-partlabel/data".into()),
            where_: Some("/var/data".into()),
            fs_type: Some("ext4".into()),
            options: Some("noatime".into()),
            directory_mode: None,
        }
    );
    assert_eq!(u.unit.requires, [BUTANE_FSCK_NAME]);
    assert_eq!(u.unit.after, [BUTANE_FSCK_NAME]);
    assert_eq!(u.install.required_by, ["local-fs.target"]);
    // The synthesized service.
    let s = &u.service;
    assert_eq!(
        argv(&s.exec_start),
        [strings(&[
            "/usr/bin/mount",
            "--mkdir=0755",
            "-t",
            "ext4",
            "-o",
            "noatime",
            "/dev/disk/by-partlabel/data",
            "/var/data"
        ])]
    );
    assert_eq!(
        argv(&s.exec_stop),
        [strings(&["/usr/bin/umount", "/var/data"])]
    );
    assert_eq!(s.exec_start[0].path, "/usr/bin/mount");
    assert!(s.exec_start[0].no_env_expansion && !s.exec_start[0].ignore_failure);
    assert_eq!(s.service_type, ServiceType::Oneshot);
    assert!(s.remain_after_exit);
    let ninety = Some(TimeSpan::Finite(Duration::from_secs(90)));
    assert_eq!((s.timeout_start, s.timeout_stop), (ninety, ninety));
    // Enabled into the built-in local-fs.target; the fsck instance comes
    // from the template, with %f expanded.
    assert_eq!(
        l.links["local-fs.target"],
        (Vec::new(), vec![BUTANE_MOUNT_NAME.to_string()])
    );
    let fsck = &l.units[BUTANE_FSCK_NAME];
    assert_eq!(
        fsck.service.exec_start[0].argv,
        ["/usr/sbin/fsck", "-a", "/dev/disk/by-partlabel/data"]
    );
}

#[test]
fn butane_swap_unit_loads_as_a_oneshot_running_swapon() {
    let (u, w) = load_etc(BUTANE_SWAP_NAME, BUTANE_SWAP).expect("loads");
    assert!(w.is_empty(), "{w:#?}");
    assert_eq!(u.kind, UnitKind::Swap);
    assert_eq!(u.install.required_by, ["swap.target"]);
    let s = &u.service;
    assert_eq!(
        argv(&s.exec_start),
        [strings(&[
            "/usr/sbin/swapon",
            "/dev/disk/by-partlabel/swap"
        ])]
    );
    assert_eq!(
        argv(&s.exec_stop),
        [strings(&[
            "/usr/sbin/swapoff",
            "/dev/disk/by-partlabel/swap"
        ])]
    );
    assert_eq!(s.service_type, ServiceType::Oneshot);
    assert!(s.remain_after_exit);
}

#[test]
fn swap_priority_and_options_are_passed_to_swapon() {
    let text = "[Swap]\nWhat=/var/swapfile\nPriority=10\nOptions=discard,pri=5\nTimeoutSec=5s\n\
                Priority=99999\n";
    let (u, w) = load_etc("var-swapfile.swap", text).expect("loads");
    assert_eq!(
        argv(&u.service.exec_start),
        [strings(&[
            "/usr/sbin/swapon",
            "-p",
            "10",
            "-o",
            "discard,pri=5",
            "/var/swapfile"
        ])]
    );
    let five = Some(TimeSpan::Finite(Duration::from_secs(5)));
    assert_eq!(u.service.timeout_start, five);
    // The out-of-range priority is a warning, the earlier one stays.
    assert_eq!(
        w.iter()
            .map(|w| (w.line, w.directive.as_str()))
            .collect::<Vec<_>>(),
        [(6, "Priority")]
    );
}

#[test]
fn mount_specifiers_mode_and_unsupported_directives() {
    let text = "[Mount]\nWhat=/srv/%N.img\nWhere=/srv/images/\nOptions=loop,x-name=%n\n\
                DirectoryMode=0700\nLazyUnmount=yes\n[Service]\nExecStart=/bin/x\n";
    let (u, w) = load_etc("srv-images.mount", text).expect("loads");
    assert_eq!(
        argv(&u.service.exec_start),
        [strings(&[
            "/usr/bin/mount",
            "--mkdir=0700",
            "-o",
            "loop,x-name=srv-images.mount",
            "/srv/srv-images.img",
            "/srv/images"
        ])]
    );
    assert_eq!(
        u.mount.where_.as_deref(),
        Some(std::path::Path::new("/srv/images"))
    );
    let warned: Vec<(usize, &str, &str)> = w
        .iter()
        .map(|w| (w.line, w.section.as_str(), w.directive.as_str()))
        .collect();
    assert_eq!(
        warned,
        [(6, "Mount", "LazyUnmount"), (8, "Service", "ExecStart")]
    );
}

#[test]
fn a_mount_unit_named_after_another_path_is_refused() {
    let text = BUTANE_MOUNT.replace("Where=/var/data", "Where=/var/data2");
    let e = load_etc(BUTANE_MOUNT_NAME, &text)
        .expect_err("wrong name")
        .to_string();
    assert!(
        e.ends_with(
            "etc/systemd/system/var-data.mount: Where=/var/data2 means the unit must be named \
             var-data2.mount, but it is named var-data.mount, refusing"
        ),
        "{e}"
    );
    // The same for a swap and its What=.
    let e = load_etc("swap.swap", BUTANE_SWAP)
        .expect_err("wrong name")
        .to_string();
    assert!(
        e.contains("What=/dev/disk/by-partlabel/swap means the unit must be named dev-disk-by\\x2dpartlabel-swap.swap, but it is named swap.swap"),
        "{e}"
    );
}

#[test]
fn a_mount_without_what_or_with_a_relative_where_is_refused() {
    let e = load_etc("var-data.mount", "[Mount]\nWhere=/var/data\nType=ext4\n")
        .expect_err("no What=")
        .to_string();
    assert!(
        e.ends_with("var-data.mount: What= setting is missing, refusing"),
        "{e}"
    );
    let e = load_etc(BUTANE_SWAP_NAME, "[Swap]\nPriority=1\n")
        .expect_err("no What=")
        .to_string();
    assert!(e.ends_with("What= setting is missing, refusing"), "{e}");
    let e = load_etc("var-data.mount", "[Mount]\nWhat=/dev/vdb\nWhere=var/data\n")
        .expect_err("relative")
        .to_string();
    assert!(
        e.ends_with("Where=var/data is not an absolute, normalized path, refusing"),
        "{e}"
    );
    // Without Where= the mount point follows from the name, as in systemd.
    let (u, _) = load_etc("var-data.mount", "[Mount]\nWhat=/dev/vdb\n").expect("loads");
    assert_eq!(
        u.service.exec_start[0].argv,
        ["/usr/bin/mount", "--mkdir=0755", "/dev/vdb", "/var/data"]
    );
    // A failed mount unit fails alone.
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &format!("{ETC}/var-x.mount"),
        "[Mount]\nWhere=/var/x\n",
    );
    write(
        dir.path(),
        &format!("{ETC}/ok.service"),
        "[Service]\nExecStart=/bin/ok\n",
    );
    let l = load_units(dir.path(), &machine());
    assert!(l.units.contains_key("ok.service"));
    assert!(l.errors.contains_key("var-x.mount"));
}

#[test]
fn requires_mounts_for_takes_absolute_paths() {
    let (u, w) = load_etc(
        "app.service",
        "[Unit]\nRequiresMountsFor=/var/data//x /srv/%p rel\n[Service]\nExecStart=/bin/app\n",
    )
    .expect("loads");
    assert_eq!(
        u.unit.requires_mounts_for,
        [
            std::path::PathBuf::from("/var/data/x"),
            std::path::PathBuf::from("/srv/app")
        ]
    );
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].message.contains("\"rel\" is not absolute"), "{w:#?}");
}

#[test]
fn mount_units_for_a_path_and_its_parents() {
    assert_eq!(
        mount::mount_units_for(std::path::Path::new("/var/data/a b")),
        [
            "var-data-a\\x20b.mount",
            "var-data.mount",
            "var.mount",
            "-.mount"
        ]
    );
    assert!(mount::mount_units_for(std::path::Path::new("rel")).is_empty());
}
