//! Resolver behaviour on synthetic Packages data.
#![allow(clippy::unwrap_used)]

use debrepo::{parse_packages, Error, Repository};

/// Builds a repository from compact records: "name version arch ; Field: value ; ...".
fn repo(records: &[&str]) -> Repository {
    let mut text = String::new();
    for (i, r) in records.iter().enumerate() {
        let mut parts = r.split(" ; ");
        let head: Vec<&str> = parts.next().unwrap().split_whitespace().collect();
        let (name, version, arch) = (head[0], head[1], head.get(2).copied().unwrap_or("amd64"));
        text.push_str(&format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\
             Filename: pool/{name}_{version}_{arch}.deb\nSize: {}\nSHA256: {:064x}\n",
            100 + i,
            i
        ));
        for f in parts {
            text.push_str(f);
            text.push('\n');
        }
        text.push('\n');
    }
    Repository::from_packages(
        parse_packages(&text, "test", "http://m.invalid", "s").unwrap(),
        "amd64",
    )
}

fn names(repo: &Repository, req: &[&str]) -> Vec<String> {
    let req: Vec<String> = req.iter().map(|s| s.to_string()).collect();
    repo.resolve(&req)
        .unwrap()
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

fn err(repo: &Repository, req: &[&str]) -> String {
    let req: Vec<String> = req.iter().map(|s| s.to_string()).collect();
    repo.resolve(&req).unwrap_err().to_string()
}

#[test]
fn closure_over_depends_and_pre_depends_only() {
    let r = repo(&[
        "app 1 ; Depends: liba (>= 1), libb ; Pre-Depends: base ; Recommends: extra ; Suggests: more",
        "liba 1 ; Depends: base",
        "libb 2 all",
        "base 1",
        "extra 1",
        "more 1",
    ]);
    assert_eq!(names(&r, &["app"]), ["app=1", "base=1", "liba=1", "libb=2"]);
}

#[test]
fn highest_satisfying_version_and_request_forms() {
    let r = repo(&["x 1.0", "x 2.0~rc1", "x 1.5", "y 1 ; Depends: x (<< 2.0~)"]);
    assert_eq!(names(&r, &["x"]), ["x=2.0~rc1"]);
    assert_eq!(names(&r, &["x=1.0"]), ["x=1.0"]);
    assert_eq!(names(&r, &["x (<< 1.5)"]), ["x=1.0"]);
    assert_eq!(names(&r, &["y"]), ["x=1.5", "y=1"]);
    assert_eq!(r.find("x").unwrap().version, "2.0~rc1");
    // asking for y after x: x 2.0~rc1 is selected and does not fit y's constraint
    let e = err(&r, &["x", "y"]);
    assert!(e.contains("x (<< 2.0~)") && e.contains("2.0~rc1"), "{e}");
    assert!(err(&r, &["nope"]).contains("no package satisfies \"nope\""));
    assert!(err(&r, &["x (>= 3)"]).contains("no package"));
}

#[test]
fn alternatives_prefer_selected_then_first_satisfiable() {
    let r = repo(&[
        "app 1 ; Depends: mta-a | mta-b, gone | fallback, old (>= 2) | newer",
        "mta-a 1",
        "mta-b 1",
        "fallback 1",
        "old 1",
        "newer 1",
    ]);
    assert_eq!(
        names(&r, &["app"]),
        ["app=1", "fallback=1", "mta-a=1", "newer=1"]
    );
    // a requested alternative wins over the first one
    assert_eq!(
        names(&r, &["app", "mta-b"]),
        ["app=1", "fallback=1", "mta-b=1", "newer=1"]
    );
}

#[test]
fn virtual_packages() {
    let r = repo(&[
        "app 1 ; Depends: awk, libabi (>= 2), www-browser",
        "mawk 1 ; Provides: awk",
        "gawk 1 ; Provides: awk",
        "awk-real 1",
        "impl-old 1 ; Provides: libabi (= 1)",
        "impl-new 1 ; Provides: libabi (= 2.1)",
        "impl-unversioned 1 ; Provides: libabi",
        "zbrowser 1 ; Provides: www-browser",
        "lynx 1 ; Provides: www-browser",
    ]);
    // awk: first provider by name (gawk); libabi >= 2: only the versioned provide
    // satisfies; www-browser: first by name
    assert_eq!(
        names(&r, &["app"]),
        ["app=1", "gawk=1", "impl-new=1", "lynx=1"]
    );
    // an already selected provider is preferred
    assert_eq!(
        names(&r, &["mawk", "app"]),
        ["app=1", "impl-new=1", "lynx=1", "mawk=1"]
    );
    // a real package of the name wins over providers
    let r2 = repo(&["app 1 ; Depends: awk", "awk 1", "mawk 1 ; Provides: awk"]);
    assert_eq!(names(&r2, &["app"]), ["app=1", "awk=1"]);
}

#[test]
fn architecture_qualifiers() {
    let r = repo(&[
        "app 1 ; Depends: python3:any, libc:amd64, tool:native",
        "python3 1 ; Multi-Arch: allowed",
        "libc 1",
        "tool 1 all",
        "bad 1 ; Depends: plain:any",
        "plain 1",
        "foreign 1 ; Depends: libc:i386",
    ]);
    assert_eq!(
        names(&r, &["app"]),
        ["app=1", "libc=1", "python3=1", "tool=1"]
    );
    let e = err(&r, &["bad"]);
    assert!(e.contains("\"plain:any\""), "{e}");
    let e = err(&r, &["foreign"]);
    assert!(e.contains("libc:i386"), "{e}");
}

#[test]
fn unsatisfiable_names_the_chain() {
    let r = repo(&[
        "baz 1 ; Depends: bar",
        "bar 1 ; Depends: libfoo (>= 2)",
        "libfoo 1",
    ]);
    let req = vec!["baz".to_string()];
    let e = r.resolve(&req).unwrap_err();
    assert!(matches!(e, Error::Unsatisfiable { .. }));
    assert_eq!(
        e.to_string(),
        "unsatisfiable dependency \"libfoo (>= 2)\" of bar (needed by: baz -> bar)"
    );
}

#[test]
fn output_is_sorted_and_deterministic() {
    let r = repo(&["z 1 ; Depends: m, a", "m 1 ; Depends: a | b", "a 1", "b 1"]);
    let first = names(&r, &["z"]);
    assert_eq!(first, ["a=1", "m=1", "z=1"]);
    for _ in 0..5 {
        assert_eq!(names(&r, &["z"]), first);
    }
}

#[test]
fn excluded_packages_are_left_out_and_stale_exclusions_are_errors() {
    let r = repo(&[
        "tools 1 ; Depends: libc, python3:any, libicu (>= 72)",
        "libc 1",
        "python3 3 ; Multi-Arch: allowed ; Depends: libpython",
        "libpython 3",
        "libicu 72",
    ]);
    let ex = |req: &[&str], exclude: &[&str]| {
        let req: Vec<String> = req.iter().map(|s| s.to_string()).collect();
        let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        r.resolve_excluding(&req, &exclude)
            .map(|pkgs| pkgs.iter().map(|p| p.name.clone()).collect::<Vec<String>>())
    };
    assert_eq!(
        ex(&["tools"], &["python3", "libicu"]).unwrap(),
        ["libc", "tools"]
    );
    // Without the exclusion, all of it (the dependencies of python3 too).
    assert_eq!(ex(&["tools"], &[]).unwrap().len(), 5);
    assert_eq!(
        ex(&["tools"], &["perl"]).unwrap_err().to_string(),
        "excluded package \"perl\" is not a dependency of any selected package"
    );
    assert_eq!(
        ex(&["tools", "libicu"], &["libicu"])
            .unwrap_err()
            .to_string(),
        "excluded package \"libicu\" is also requested"
    );
}
