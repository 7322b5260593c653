//! Loading: precedence, masks, aliases, drop-ins, templates, wants dirs.

use super::super::*;
use super::{link, machine, write, ETC, LIB};

#[test]
fn syntax_error_fails_only_that_unit() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!("{LIB}/bad.service"),
        "[Service]\nExecStart=/bin/x\nnonsense\n",
    );
    write(
        dir.path(),
        &format!("{LIB}/good.service"),
        "[Service]\nExecStart=/bin/x\n",
    );
    let l = load_units(dir.path(), &machine());
    assert!(l.units.contains_key("good.service"));
    let e = l.errors.get("bad.service").unwrap().to_string();
    assert!(
        e.ends_with("bad.service:3: missing '=' in \"nonsense\""),
        "{e}"
    );
    // A bad drop-in fails the unit too.
    write(
        dir.path(),
        &format!("{ETC}/good.service.d/x.conf"),
        "ExecStart=\n",
    );
    let l = load_units(dir.path(), &machine());
    assert!(l
        .errors
        .get("good.service")
        .unwrap()
        .to_string()
        .contains("x.conf:1:"));
}

#[test]
fn dropins_override_reset_and_merge_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        &format!("{LIB}/a.service"),
        "[Service]\nExecStart=/bin/orig\nEnvironment=A=1\nUser=lib\n",
    );
    // Same file name in lib and etc: etc's wins, lib's is not applied.
    write(
        r,
        &format!("{LIB}/a.service.d/10-x.conf"),
        "[Service]\nUser=from-lib-dropin\n",
    );
    write(
        r,
        &format!("{ETC}/a.service.d/10-x.conf"),
        "[Service]\nGroup=g\n",
    );
    // Applied in lexical order across dirs: 05 (run) < 10 (etc) < 20 (lib).
    write(
        r,
        &format!("{LIB}/a.service.d/20-y.conf"),
        "[Service]\nExecStart=\nExecStart=/bin/new\n",
    );
    write(
        r,
        "run/systemd/system/a.service.d/05-z.conf",
        "[Service]\nUser=run\nEnvironment=B=2\n",
    );
    write(r, &format!("{ETC}/a.service.d/README"), "not a drop-in");
    link(r, &format!("{ETC}/a.service.d/30-m.conf"), "/dev/null");
    write(
        r,
        &format!("{LIB}/a.service.d/30-m.conf"),
        "[Service]\nUser=masked\n",
    );
    let l = load_units(r, &machine());
    let u = &l.units["a.service"];
    assert_eq!(u.service.exec_start.len(), 1);
    assert_eq!(u.service.exec_start[0].path, "/bin/new");
    assert_eq!(u.service.user.as_deref(), Some("run"));
    assert_eq!(u.service.group.as_deref(), Some("g"));
    assert_eq!(u.service.environment.len(), 2);
    let names: Vec<_> = u
        .dropins
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(names, ["05-z.conf", "10-x.conf", "20-y.conf"]);
    assert!(u.dropins[1].starts_with(r.join(ETC)));
}

#[test]
fn precedence_mask_and_alias() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        &format!("{LIB}/p.service"),
        "[Unit]\nDescription=lib\n[Service]\nExecStart=/bin/true\n",
    );
    write(
        r,
        &format!("{ETC}/p.service"),
        "[Unit]\nDescription=etc\n[Service]\nExecStart=/bin/true\n",
    );
    write(
        r,
        "run/systemd/system/q.service",
        "[Unit]\nDescription=run\n[Service]\nExecStart=/bin/true\n",
    );
    write(
        r,
        &format!("{LIB}/q.service"),
        "[Unit]\nDescription=lib\n[Service]\nExecStart=/bin/true\n",
    );
    write(
        r,
        &format!("{LIB}/m.service"),
        "[Unit]\nDescription=m\n[Service]\nExecStart=/bin/true\n",
    );
    link(r, &format!("{ETC}/m.service"), "/dev/null");
    write(
        r,
        &format!("{LIB}/e.service"),
        "[Unit]\nDescription=e\n[Service]\nExecStart=/bin/true\n",
    );
    write(r, &format!("{ETC}/e.service"), "");
    write(
        r,
        &format!("{LIB}/real.service"),
        "[Unit]\nDescription=real\n[Service]\nExecStart=/bin/true\n",
    );
    link(r, &format!("{LIB}/other.service"), "real.service");
    link(
        r,
        &format!("{ETC}/abs.service"),
        "/usr/lib/systemd/system/real.service",
    );
    // A linked unit file: same name, file outside the search path.
    write(
        r,
        "opt/linked.service",
        "[Service]\nExecStart=/opt/bin/linked\n",
    );
    link(r, &format!("{ETC}/linked.service"), "/opt/linked.service");
    let l = load_units(r, &machine());
    assert_eq!(
        l.units["linked.service"].fragment,
        r.join("opt/linked.service")
    );
    let d = |n: &str| l.units[n].unit.description.clone().unwrap();
    assert_eq!(
        (d("p.service"), d("q.service")),
        ("etc".into(), "run".into())
    );
    assert_eq!(
        l.masked.iter().collect::<Vec<_>>(),
        ["e.service", "m.service"]
    );
    assert!(!l.units.contains_key("m.service"));
    assert_eq!(l.aliases["other.service"], "real.service");
    assert_eq!(l.aliases["abs.service"], "real.service");
    assert_eq!(
        l.units["real.service"].aliases,
        ["abs.service", "other.service"]
    );
    assert_eq!(l.get("other.service").unwrap().name, "real.service");
    assert!(!l.units.contains_key("other.service"));
    assert!(matches!(
        load_one(r, &machine(), "m.service"),
        Err(LoadError::Masked { .. })
    ));
    assert_eq!(
        load_one(r, &machine(), "other.service").unwrap().0.name,
        "real.service"
    );
    assert!(matches!(
        load_one(r, &machine(), "nope.service"),
        Err(LoadError::NotFound { .. })
    ));
    assert!(matches!(
        load_one(r, &machine(), "a b.service"),
        Err(LoadError::InvalidName { .. })
    ));
}

#[test]
fn merged_usr_lib_is_read_once_and_split_lib_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        &format!("{LIB}/a.service"),
        "[Unit]\nDescription=a\n[Service]\nExecStart=/bin/true\n",
    );
    write(
        r,
        &format!("{LIB}/a.service.d/x.conf"),
        "[Service]\nEnvironment=A=1\n",
    );
    link(r, "lib", "usr/lib");
    let l = load_units(r, &machine());
    assert_eq!(l.units["a.service"].dropins.len(), 1);
    assert_eq!(l.units["a.service"].service.environment.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "lib/systemd/system/old.service",
        "[Unit]\nDescription=old\n[Service]\nExecStart=/bin/true\n",
    );
    let l = load_units(r, &machine());
    assert!(l.units.contains_key("old.service"));
}

#[test]
fn templates_instances_and_wants_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        &format!("{LIB}/getty@.service"),
        "[Service]\nExecStart=-/sbin/agetty %I $TERM\nRuntimeDirectory=g-%i\n",
    );
    write(
        r,
        &format!("{LIB}/getty.target"),
        "[Unit]\nDescription=Login Prompts\n",
    );
    write(
        r,
        &format!("{LIB}/multi-user.target"),
        "[Unit]\nDescription=MU\nWants=w@from-dep.service\n",
    );
    write(
        r,
        &format!("{LIB}/w@.service"),
        "[Service]\nExecStart=/bin/w %i\n",
    );
    link(
        r,
        &format!("{LIB}/getty.target.wants/getty@tty1.service"),
        "../getty@.service",
    );
    link(
        r,
        &format!("{ETC}/getty.target.wants/getty@ttyS0.service"),
        "/usr/lib/systemd/system/getty@.service",
    );
    write(
        r,
        &format!("{ETC}/getty@ttyS0.service.d/o.conf"),
        "[Service]\nEnvironment=TERM=vt220\n",
    );
    write(
        r,
        &format!("{LIB}/svc.service"),
        "[Service]\nExecStart=/bin/svc\n",
    );
    link(
        r,
        &format!("{ETC}/multi-user.target.wants/svc.service"),
        "/usr/lib/systemd/system/svc.service",
    );
    link(
        r,
        &format!("{ETC}/multi-user.target.requires/getty.target"),
        "/usr/lib/systemd/system/getty.target",
    );
    link(
        r,
        &format!("{ETC}/multi-user.target.wants/missing.service"),
        "/usr/lib/systemd/system/missing.service",
    );
    let l = load_units(r, &machine());
    assert!(
        !l.units.contains_key("getty@.service"),
        "templates are not units"
    );
    let tty1 = &l.units["getty@tty1.service"];
    assert_eq!(
        tty1.service.exec_start[0].argv,
        ["/sbin/agetty", "tty1", "$TERM"]
    );
    assert_eq!(tty1.service.runtime_directory.names, ["g-tty1"]);
    assert!(tty1.fragment.ends_with("getty@.service"));
    let s0 = &l.units["getty@ttyS0.service"];
    assert_eq!(s0.service.environment, [("TERM".into(), "vt220".into())]);
    assert!(tty1.service.environment.is_empty());
    let gt = &l.units["getty.target"];
    assert_eq!(gt.unit.wants, ["getty@tty1.service", "getty@ttyS0.service"]);
    let mu = &l.units["multi-user.target"];
    assert_eq!(
        mu.unit.wants,
        ["w@from-dep.service", "missing.service", "svc.service"]
    );
    assert_eq!(mu.unit.requires, ["getty.target"]);
    assert_eq!(
        l.units["w@from-dep.service"].service.exec_start[0].argv,
        ["/bin/w", "from-dep"]
    );
    assert!(matches!(
        l.errors.get("missing.service"),
        Some(LoadError::NotFound { .. })
    ));
    // On demand: an instance nobody asked for yet.
    let (u, w) = load_one(r, &machine(), "getty@tty9.service").unwrap();
    assert!(w.is_empty());
    assert_eq!(u.service.exec_start[0].argv[1], "tty9");
    assert!(matches!(
        load_one(r, &machine(), "getty@.service"),
        Err(LoadError::NotFound { .. })
    ));
}

#[test]
fn service_consistency_checks_fail_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let svc = |n: &str, t: &str| write(r, &format!("{LIB}/{n}.service"), t);
    svc("none", "[Unit]\nDescription=x\n");
    svc("stoponly", "[Service]\nExecStop=/bin/x\n");
    svc("stopsimple", "[Service]\nType=simple\nExecStop=/bin/x\n");
    svc("two", "[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n");
    svc(
        "twoshot",
        "[Service]\nType=oneshot\nExecStart=/bin/a\nExecStart=/bin/b\n",
    );
    svc(
        "reset",
        "[Service]\nExecStart=/bin/a\nExecStart=\nExecStart=/bin/b\n",
    );
    svc(
        "shotalways",
        "[Service]\nType=oneshot\nExecStart=/bin/a\nRestart=always\n",
    );
    let l = load_units(r, &machine());
    let invalid: Vec<_> = l.errors.keys().map(String::as_str).collect();
    assert_eq!(
        invalid,
        [
            "none.service",
            "shotalways.service",
            "stopsimple.service",
            "two.service"
        ]
    );
    assert!(l.errors["two.service"]
        .to_string()
        .contains("two.service: service has more than one ExecStart="));
    assert_eq!(
        l.units["stoponly.service"].service.service_type,
        ServiceType::Oneshot
    );
    assert_eq!(l.units["twoshot.service"].service.exec_start.len(), 2);
    assert_eq!(
        l.units["reset.service"].service.exec_start[0].path,
        "/bin/b"
    );
}
